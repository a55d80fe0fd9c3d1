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

from ._checks import not_negligible, root_result
from ._failure import apply_policy
from ._jacobians import backward_operator
from ._misc import inexact_leaves_asarray
from ._solution import Solution, with_checked_result


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
    solve, x0 = cut_from_differentiation(solve, x0)
    value, result, aux, stats = _implicit_impl(
        residual, theta, solve, x0, tags=tags, backward=backward, root_tol=root_tol
    )
    return Solution(value=value, result=result, aux=aux, stats=stats)


def cut_from_differentiation(solve, x0):
    """The forward solver and initial guess, cut from differentiation: at a root,
    `x*` depends on neither."""
    solve_dynamic, solve_static = eqx.partition(solve, eqx.is_array)
    solve = eqx.combine(jax.lax.stop_gradient(solve_dynamic), solve_static)
    return solve, jtu.tree_map(jax.lax.stop_gradient, x0)


@eqx.filter_custom_jvp
def _implicit_impl(residual, theta, solve, x0, *, tags, backward, root_tol):
    del tags, backward
    theta, x0 = inexact_leaves_asarray((theta, x0))
    sol = with_checked_result(solve(theta, x0))
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
        at = apply_policy(value, result, throw=True, ok=ok)

    def _residual_at_solution(_diff):
        _residual, _theta = eqx.combine(_diff, nondiff)
        return _residual(at, _theta)

    # B u, with B = dF/d(inputs) at the solution.
    _, b_u = jax.jvp(_residual_at_solution, (diff,), (t_inputs,))
    operator = backward_operator(residual, at, theta, tags)
    nonsingular = not_negligible(operator, _residual_at_solution, diff, backward)
    t_value = backward(operator, b_u, nonsingular=nonsingular)
    if not backward.throw:
        # A derivative at an unconverged or non-finite "solution" is not a derivative
        # of x*(theta): it is NaN. (With throw=True the primal raises instead.)
        t_value = apply_policy(t_value, result, throw=False, ok=ok)
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
