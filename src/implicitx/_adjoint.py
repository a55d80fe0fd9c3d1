import abc

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
from jaxtyping import PyTree

from ._failure import accepted, guard_tangent
from ._implicit import cut_from_differentiation, implicit_solve
from ._linear_solve import BackwardSolve, check_solver
from ._results import RESULTS
from ._solution import Solution, with_checked_result
from ._while_loops import checkpointed_while_loop, lax_while_loop


class AbstractAdjoint(eqx.Module):
    """How the derivatives of a solution are obtained."""

    def while_loop(self, cond_fun, body_fun, init_val, *, max_steps):
        """The loop that the forward solver runs its iterations with (this adjoint
        hands it over; the solver does not ask how it will be differentiated). By
        default a plain `lax.while_loop`: the forward solve is not differentiated
        through."""
        return lax_while_loop(cond_fun, body_fun, init_val, max_steps=max_steps)

    def check_solver(self, solver) -> None:
        """Refuses, at trace time, a forward solver this adjoint cannot work with.
        By default every solver is accepted."""
        del solver

    @abc.abstractmethod
    def apply(
        self,
        residual,
        solve,
        theta: PyTree,
        x0: PyTree,
        *,
        tags: frozenset[object],
        condition_name: str,
        throw: bool,
    ) -> Solution:
        """Runs the forward solve and attaches derivatives to its value.

        **Arguments:**

        - `residual`: the closure-converted condition, `(x, theta) -> F(x, theta)`.
        - `solve`: the closure-converted forward solve, `(theta, x0) -> Solution`.
        - `theta`: the parameters.
        - `x0`: the initial guess.
        - `tags`: lineax tags of `A = -dF/dx`.
        - `condition_name`: the condition's name, for error messages.
        - `throw`: the failure policy.

        **Returns:**

        An [`implicitx.Solution`][].
        """

    def accepts(self, result: RESULTS) -> jax.Array:
        """Whether the value of a solve with this forward `result` is returned (rather
        than raised on with `throw=True`). Default: only `successful`."""
        return result == RESULTS.successful


def _float_dtype(solve):
    """The floating dtype of the solution that the (closure-converted) `solve`
    returns."""
    leaves = jax.tree_util.tree_leaves(solve.out_struct.value)
    return jnp.result_type(*leaves) if leaves else jnp.float32


class ImplicitAdjoint(AbstractAdjoint):
    """Exact derivatives by implicit differentiation (the default).

    The tangent `t` of `x*` along a tangent `u` of the parameters solves
    `A t = B u` with `A = -dF/dx`, `B = dF/dtheta` at the solution; reverse mode solves
    the transposed system. Works with `jax.jvp`, `jax.grad`, `jax.jacfwd`,
    `jax.jacrev`, `jax.hessian`, `jax.vmap` and `jax.jit`, in any combination.

    **Arguments:**

    - `linear_solver`: the lineax solver for the backward system. Default `None`:
        chosen at trace time from the size of `A` and the condition's tags (see
        [Choosing the backward solver](#choosing-the-backward-solver)). Solvers
        valid only for symmetric definite systems (`lineax.CG`, `lineax.Cholesky`)
        are refused for conditions that do not state it. Every answer is verified
        by its true residual `||A t - b||`, computed without trusting the tags (so
        wrong tags are caught), and Krylov solves are checked for singular systems;
        see the
        [failures](../failures.md) page.
    - `dense_max_size`: the largest system solved densely by the default choice.
        Default `None`: the sizes of the table in
        [Choosing the backward solver](#choosing-the-backward-solver). An explicit
        value applies to every system.
    - `max_condition`: direct solves (LU, QR, Cholesky) are checked for numerical
        singularity with a cheap lower bound of the condition number of `A`; above
        this value the system is reported singular (see `throw`). Default
        `0.01 / eps` of the dtype, i.e. a derivative that would have lost all but
        about two significant digits. Use `float("inf")` to disable the check, or
        `linear_solver=lineax.SVD()` to ask for the pseudo-inverse derivative of a
        singular system. The same bound rules out an `A` that is negligible next to
        `B = dF/dtheta` (see the [failures](../failures.md) page).
    - `root_tol`: the value returned by the forward solver must be a root: with
        `max|F(x, theta)| <= root_tol * max|A u|` for a fixed direction `u` of the
        size of `x` (so: a Newton step of at most about `root_tol` relative to `x`).
        Otherwise the result is `implicitx.RESULTS.nonroot`. Default `None`:
        `eps ** (1/3)` of the dtype (`6e-6` in float64, `5e-3` in float32).
        `float("inf")` disables the check.
    - `inexact`: `False` (default): derivatives only at a solution. `True` asks
        explicitly for the implicit derivative at the *last iterate* of a solver that
        ran out of steps or stopped away from the root (a fixed budget of
        iterations, as in meta-learning), and accepts an iterative backward solve
        that stops before its tolerance (e.g. `lineax.CG(..., max_steps=5)`). The
        derivative is then approximate: by Theorem 1 of Blondel et al. (2021) its
        error is proportional to the distance of the iterate to the solution (and
        to the residual of the backward solve). `Solution.result` still reports the
        forward solver's code (`nonlinear_max_steps_reached`, `nonroot`), and
        nothing raises for it; singular systems and non-finite values are still
        refused.
    """

    linear_solver: lx.AbstractLinearSolver | None = None
    dense_max_size: int | None = eqx.field(default=None, static=True)
    max_condition: float | None = eqx.field(default=None, static=True)
    root_tol: float | None = eqx.field(default=None, static=True)
    inexact: bool = eqx.field(default=False, static=True)

    def accepts(self, result: RESULTS) -> jax.Array:
        return accepted(result, self.inexact)

    def apply(self, residual, solve, theta, x0, *, tags, condition_name, throw):
        if self.linear_solver is not None:
            check_solver(self.linear_solver, tags, condition_name)
        backward = BackwardSolve(
            self.linear_solver,
            throw=throw,
            dense_max_size=self.dense_max_size,
            max_condition=self.max_condition,
            inexact=self.inexact,
        )
        root_tol = self.root_tol
        if root_tol is None:
            root_tol = float(jnp.finfo(_float_dtype(solve)).eps) ** (1 / 3)
        return implicit_solve(
            residual,
            solve,
            theta,
            x0,
            tags=tags,
            backward=backward,
            root_tol=None if root_tol == float("inf") else root_tol,
        )


class UnrolledAdjoint(AbstractAdjoint):
    """Derivatives by differentiating through the iterations of the forward solver
    (unrolling), instead of implicitly.

    The derivative is then that of the *iterate returned*, exact for what the solver
    computed, and equal to the implicit derivative only at convergence. It exists for
    comparison (and for solvers stopped early on purpose); it costs memory and time
    that grow with the number of iterations. implicitx's own solvers run their loops
    with nested checkpointing when unrolled (forward and reverse mode); the optimistix
    wrappers support reverse mode only; `FunctionSolver` is differentiated as written;
    external (callback) solvers cannot be unrolled.
    """

    def while_loop(self, cond_fun, body_fun, init_val, *, max_steps):
        """A bounded loop with nested checkpointing, differentiable in forward and
        reverse mode."""
        return checkpointed_while_loop(
            cond_fun, body_fun, init_val, max_steps=max_steps
        )

    def check_solver(self, solver) -> None:
        if not solver.can_unroll:
            raise ValueError(
                f"`{type(solver).__name__}` cannot be differentiated through "
                "(unrolled): it does not run JAX operations that JAX can "
                "differentiate. Use the default `ImplicitAdjoint()` with it."
            )

    def apply(self, residual, solve, theta, x0, *, tags, condition_name, throw):
        del residual, tags, condition_name, throw
        x0 = jax.tree_util.tree_map(jax.lax.stop_gradient, x0)
        return with_checked_result(solve(theta, x0))


class OneStepAdjoint(AbstractAdjoint):
    """An approximate derivative that skips the backward linear solve: the derivative
    of one application of the condition's fixed-point map at the solution (also known
    as Jacobian-free backpropagation). For `x = T(x, theta)` it is `dT/dtheta`, i.e.
    it replaces `A = I - dT/dx` by the identity.

    It is cheap (one product with `B`) and accurate when `T` is strongly contractive at
    the solution; otherwise it is an approximation whose error is not controlled. For
    conditions that are not fixed points, `x + F(x, theta)` plays the role of `T`.
    Exists as an explicit choice for comparison and for speed; the default
    [`implicitx.ImplicitAdjoint`][] is exact.
    """

    def apply(self, residual, solve, theta, x0, *, tags, condition_name, throw):
        del tags, condition_name
        solve, x0 = cut_from_differentiation(solve, x0)
        sol = with_checked_result(solve(theta, x0))
        x = jax.tree_util.tree_map(jax.lax.stop_gradient, sol.value)
        # x + F(x, theta) - stop_gradient(F(x, theta)): the value of x, the tangent of
        # F in theta (and in the condition's parameters).
        r = residual(x, theta)
        value = jax.tree_util.tree_map(
            lambda xi, ri: xi + (ri - jax.lax.stop_gradient(ri)), x, r
        )
        value = guard_tangent(value, sol.result, throw)
        return Solution(value=value, result=sol.result, aux=sol.aux, stats=sol.stats)
