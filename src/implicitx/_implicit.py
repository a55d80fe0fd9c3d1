"""The one differentiation rule of implicitx: the implicit function theorem.

Given a condition `F(x, theta) = 0` and a forward solver producing `x*(theta)`, the
tangent of `x*` along a tangent `u` of the differentiable inputs is the `t` solving

    A t = B u,    A = -dF/dx(x*, theta),    B u = dF/d(inputs)(x*, theta) . u

The differentiable inputs are the floating-point leaves of `theta` and of the
(closure-converted) residual function, i.e. the array parameters of the condition and
any arrays the user's functions close over. The forward solver and the initial guess
get no tangent: at a root, `x*` does not depend on them.

Reverse mode is obtained by JAX transposing this rule (the backward solve is a
`lax.custom_linear_solve`). The primal solution is recomputed by calling the rule's own
primal inside the JVP, so that differentiating the rule again (second and higher order)
sees how `x*` moves and stays exact.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import lineax as lx

from ._linear_solve import (
    default_max_condition,
    default_solver,
    max_abs,
    probe_vector,
    solve_adjoint_system,
)
from ._misc import inexact_leaves_asarray, tree_scale
from ._operators import a_operator
from ._results import RESULTS
from ._solution import checked, Solution


def _is_none(x):
    return x is None


def implicit_solve(residual, solve, theta, x0, *, tags, backward, root_tol) -> Solution:
    """Runs `solve(theta, x0)` and gives its value implicit derivatives.

    **Arguments:**

    - `residual`: a closure-converted `F(x, theta)` (a PyTree whose array leaves are
        differentiable inputs).
    - `solve`: a closure-converted `(theta, x0) -> Solution` forward solver.
    - `theta`: the parameters (its floating-point leaves are differentiable inputs).
    - `x0`: the initial guess (not differentiated).
    - `tags`: lineax tags of `A`.
    - `backward`: a `BackwardSolve`, the backward linear solve and failure policy.
    - `root_tol`: the tolerance of the root check (see `root_result`), or `None` for
        no check.
    """
    solve, x0 = frozen(solve, x0)
    value, result, aux, stats = _implicit_impl(
        residual, theta, solve, x0, tags=tags, backward=backward, root_tol=root_tol
    )
    return Solution(value=value, result=result, aux=aux, stats=stats)


def frozen(solve, x0):
    """The forward solver and initial guess, cut from differentiation: at a root,
    `x*` depends on neither."""
    solve_dynamic, solve_static = eqx.partition(solve, eqx.is_array)
    solve = eqx.combine(jax.lax.stop_gradient(solve_dynamic), solve_static)
    return solve, jtu.tree_map(jax.lax.stop_gradient, x0)


def _structure(tree):
    return jtu.tree_map(lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype), tree)


def root_result(residual, x, theta, result: RESULTS, root_tol: float) -> RESULTS:
    """Reports `nonroot` unless `max|F(x, theta)| <= root_tol * max|A u|`.

    `u` is a fixed pseudo-random direction with entries of size `1 + max|x|`, so that
    `max|A u|` is the size of the change of `F` over a step as large as `x`: the check
    is invariant to the scaling of `F`, and says that the distance to the root is at
    most about `root_tol` relative to `x` (Newton's step, `A^{-1} F`). One product
    with `A`, on top of the evaluation of `F`.
    """
    scale = 1 + max_abs(x)
    u = jtu.tree_map(lambda p: p * scale.astype(p.dtype), probe_vector(_structure(x)))
    r, a_u = jax.jvp(lambda _x: residual(_x, theta), (x,), (u,))
    bad = max_abs(r) > root_tol * max_abs(a_u)  # NaN is reported elsewhere
    return RESULTS.where((result == RESULTS.successful) & bad, RESULTS.nonroot, result)


@eqx.filter_custom_jvp
def _implicit_impl(residual, theta, solve, x0, *, tags, backward, root_tol):
    del tags, backward
    theta, x0 = inexact_leaves_asarray((theta, x0))
    sol = checked(solve(theta, x0))
    result = sol.result
    if root_tol is not None:
        result = root_result(residual, sol.value, theta, result, root_tol)
    value = jtu.tree_map(jnp.asarray, sol.value)
    aux = jtu.tree_map(jnp.asarray, sol.aux)
    stats = jtu.tree_map(jnp.asarray, sol.stats)
    return value, result, aux, stats


@_implicit_impl.def_jvp
def _implicit_jvp(primals, tangents, *, tags, backward, root_tol):
    # JAX may hand concrete primals over as typed Python scalars; keep them arrays so
    # that the closure-converted functions see the structure they were traced with.
    residual, theta, solve, x0 = inexact_leaves_asarray(primals)
    t_residual, t_theta, t_solve, t_x0 = tangents
    if any(t is not None for t in jtu.tree_leaves((t_solve, t_x0), is_leaf=_is_none)):
        raise AssertionError("the forward solver and x0 must not carry tangents")
    # The primal, computed by the rule's own primal (not received from outside), so
    # that a further differentiation of this rule sees the dependence of `x*`.
    out = _implicit_impl(
        residual, theta, solve, x0, tags=tags, backward=backward, root_tol=root_tol
    )
    value, result, aux, stats = out

    inputs = (residual, theta)
    t_inputs = (t_residual, t_theta)
    no_tangent = jtu.tree_map(_is_none, t_inputs, is_leaf=_is_none)
    if all(jtu.tree_leaves(no_tangent)):
        return out, jtu.tree_map(lambda _: None, out)
    nondiff, diff = eqx.partition(inputs, no_tangent, is_leaf=_is_none)

    at = value
    ok = backward.accepts(result)
    if backward.throw:
        # Tie the failure check of the forward solve to the primal point at which the
        # derivative is computed: a derivative-only program (e.g. `jax.grad`) does not
        # use `value` itself, so a check on `value` alone would be dropped.
        at = result.error_if(value, jnp.logical_not(ok))

    def _residual_at_solution(_diff):
        _residual, _theta = eqx.combine(_diff, nondiff)
        return _residual(at, _theta)

    # B u, with B = dF/d(inputs) at the solution.
    _, b_u = jax.jvp(_residual_at_solution, (diff,), (t_inputs,))
    operator = a_operator(residual, at, theta, tags)
    nonsingular = _not_negligible(operator, _residual_at_solution, diff, backward)
    t_value = backward(operator, b_u, nonsingular=nonsingular)
    if not backward.throw:
        # A derivative at an unconverged or non-finite "solution" is not a derivative
        # of x*(theta): it is NaN. (With throw=True the primal raises instead.)
        t_value = tree_scale(t_value, jnp.where(ok, 1.0, jnp.nan))
    # `aux` and `stats` are not differentiated. Their tangents are NaN (forward mode
    # through them is not a silent zero) and linked to the input tangents, so that
    # reverse mode through them reaches the `nondifferentiable_backward` guard applied
    # by the caller and raises, rather than returning a silent zero gradient.
    link = jnp.asarray(sum(0 * jnp.sum(leaf) for leaf in jtu.tree_leaves(t_value)))
    t_aux, t_stats = jtu.tree_map(
        lambda leaf: (
            jnp.full_like(leaf, jnp.nan) + link.astype(leaf.dtype)
            if eqx.is_inexact_array(leaf)
            else None
        ),
        (aux, stats),
    )
    t_result = jtu.tree_map(lambda _: None, result)
    return out, (t_value, t_result, t_aux, t_stats)


def _not_negligible(operator, residual_of_inputs, diff, backward) -> jax.Array:
    """Whether `A` is not negligible next to `B`: `max|A p| * max_condition` must be
    at least `max|B q|`, with `p` a fixed direction of unit size and `q` a unit change
    of every differentiable input.

    A condition estimate is scale-free, so it passes an `A` that is uniformly tiny
    (e.g. a zero Hessian at the solution), whose inverse then gives derivatives of
    ~1/eps. Relative to `B`, such an `A` is zero.
    """
    probe = probe_vector(operator.in_structure())
    a_p = max_abs(operator.mv(probe))
    ones = jtu.tree_map(jnp.ones_like, diff)
    _, b_q = jax.jvp(residual_of_inputs, (diff,), (ones,))
    max_condition = backward.condition_limit(operator)
    return jnp.logical_not(a_p * max_condition < max_abs(b_q))


class BackwardSolve(eqx.Module):
    """The backward linear solve `(A, b) -> t` used by the rule, and which forward
    results it accepts."""

    solver: lx.AbstractLinearSolver | None
    throw: bool = eqx.field(static=True)
    dense_max_size: int | None = eqx.field(static=True)
    max_condition: float | None = eqx.field(static=True)
    inexact: bool = eqx.field(default=False, static=True)

    def accepts(self, result: RESULTS) -> jax.Array:
        """Whether a derivative is returned at a forward result: at a solution, or,
        with `inexact=True`, also at the last iterate of a solver that stopped short
        of one."""
        return accepted(result, self.inexact)

    def condition_limit(self, operator) -> float:
        """`max_condition`, or its default for the dtype of `A`."""
        if self.max_condition is not None:
            return self.max_condition
        dtype = jnp.result_type(*jtu.tree_leaves(operator.in_structure()))
        return default_max_condition(dtype)

    def __call__(self, operator, vector, nonsingular=True):
        solver = self.solver
        if solver is None:
            solver = default_solver(operator, self.dense_max_size)
        max_condition = self.condition_limit(operator)
        return solve_adjoint_system(
            operator,
            vector,
            solver,
            throw=self.throw,
            max_condition=max_condition,
            nonsingular=nonsingular,
            inexact=self.inexact,
        )


def accepted(result: RESULTS, inexact: bool) -> jax.Array:
    """`successful`, or with `inexact=True` a solver that ran out of steps or stopped
    away from the root (its last iterate is then differentiated, approximately)."""
    ok = result == RESULTS.successful
    if inexact:
        ok = ok | (result == RESULTS.nonlinear_max_steps_reached)
        ok = ok | (result == RESULTS.nonroot)
    return ok
