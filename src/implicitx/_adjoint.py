import abc

import equinox as eqx
import lineax as lx
from jaxtyping import PyTree

from ._implicit import BackwardSolve, implicit_solve
from ._linear_solve import check_solver
from ._solution import Solution


class AbstractAdjoint(eqx.Module):
    """How the derivatives of a solution are obtained."""

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


class ImplicitAdjoint(AbstractAdjoint):
    """Exact derivatives by implicit differentiation (the default).

    The tangent `t` of `x*` along a tangent `u` of the parameters solves
    `A t = B u` with `A = -dF/dx`, `B = dF/dtheta` at the solution; reverse mode solves
    the transposed system. Works with `jax.jvp`, `jax.grad`, `jax.jacfwd`,
    `jax.jacrev`, `jax.hessian`, `jax.vmap` and `jax.jit`, in any combination.

    **Arguments:**

    - `linear_solver`: the lineax solver for the backward system. Default `None`:
        chosen from the structure of `A` — for systems of size at most
        `dense_max_size`, a dense factorisation (Cholesky when the condition states `A`
        is definite, LU otherwise); above it, CG (definite `A`) or GMRES (any `A`).
        Solvers valid only for symmetric definite systems (`lineax.CG`,
        `lineax.Cholesky`) are refused for conditions that do not state it.
    - `dense_max_size`: the largest system solved densely by the default choice.
    - `max_condition`: direct solves (LU, QR, Cholesky) are checked for numerical
        singularity with a cheap lower bound of the condition number of `A`; above
        this value the system is reported singular (see `throw`). Default
        `0.01 / eps` of the dtype, i.e. a derivative that would have lost all but
        about two significant digits. Use `float("inf")` to disable the check, or
        `linear_solver=lineax.SVD()` to ask for the pseudo-inverse derivative of a
        singular system.
    """

    linear_solver: lx.AbstractLinearSolver | None = None
    dense_max_size: int = eqx.field(default=500, static=True)
    max_condition: float | None = eqx.field(default=None, static=True)

    def apply(
        self,
        residual,
        solve,
        theta,
        x0,
        *,
        tags,
        condition_name,
        throw,
    ) -> Solution:
        if self.linear_solver is not None:
            check_solver(self.linear_solver, tags, condition_name)
        backward = BackwardSolve(
            self.linear_solver,
            throw=throw,
            dense_max_size=self.dense_max_size,
            max_condition=self.max_condition,
        )
        return implicit_solve(residual, solve, theta, x0, tags=tags, backward=backward)
