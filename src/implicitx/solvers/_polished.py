"""A coarse solve, then a polish from its answer."""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, PyTree, Scalar

from .._misc import tree_all_finite
from .._results import RESULTS
from .._solution import Solution
from .._while_loops import lax_while_loop
from ._base import AbstractSolver


class Polished(AbstractSolver):
    """Runs `coarse`, then `polish` from its solution, and keeps whichever has the
    smaller `error(x, theta)`. It has converged when that error is at most
    `max_error`, or, with `max_error=None`, when `coarse` has (a non-finite solution
    is `nonfinite_iterate`); `polish`'s own result is not used, so a few steps of a fast
    local method suffice.

    Use it where a global method finds the solution to a modest accuracy and a fast
    local one makes it accurate to rounding (the transport projections: L-BFGS, then
    semismooth Newton; the exponential cone: bisection, then Newton), or to judge
    convergence by a measure of the problem's own (the marginals of a transport plan).

    **Arguments:**

    - `coarse`: the solver that finds the solution.
    - `polish`: the solver started from it, e.g. a few Newton steps.
    - `error`: `error(x, theta) -> scalar`, zero at the solution.
    - `max_error`: the largest error of a converged solve, or `None`: `coarse` judges.
    """

    coarse: AbstractSolver
    polish: AbstractSolver
    error: Callable[[PyTree[Array], PyTree[ArrayLike]], Scalar]
    max_error: float | None = eqx.field(static=True)

    def solve(self, condition, theta, x0, *, while_loop=lax_while_loop) -> Solution:
        coarse = self.coarse.solve(condition, theta, x0, while_loop=while_loop)
        fine = self.polish.solve(condition, theta, coarse.value, while_loop=while_loop)
        coarse_error = self.error(coarse.value, theta)
        fine_error = self.error(fine.value, theta)
        use_fine = fine_error <= coarse_error  # False if NaN.
        value = jax.tree.map(
            lambda u, v: jnp.where(use_fine, u, v), fine.value, coarse.value
        )
        error = jnp.where(use_fine, fine_error, coarse_error)
        if self.max_error is None:
            result = coarse.result
        else:
            ok, failed = RESULTS.successful, RESULTS.nonlinear_max_steps_reached
            result = RESULTS.where(error <= self.max_error, ok, failed)  # pyright: ignore
        result = RESULTS.where(
            tree_all_finite(value),
            result,
            RESULTS.nonfinite_iterate,  # pyright: ignore[reportArgumentType]
        )
        stats = {"coarse": coarse.stats, "polish": fine.stats}
        return Solution(value=value, result=result, aux=None, stats=stats)
