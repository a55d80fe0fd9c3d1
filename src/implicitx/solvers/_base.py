import abc
from typing import TypeVar

import equinox as eqx
from jaxtyping import ArrayLike, PyTree

from .._conditions import AbstractCondition
from .._solution import Solution


class AbstractSolver(eqx.Module):
    """A forward solver: finds `x*(theta)` satisfying a condition.

    A solver knows nothing about derivatives; [`implicitx.ImplicitArgmin`][] attaches
    them. It holds configuration only (tolerances, step limits); the problem comes from
    the condition and `theta`.
    """

    @abc.abstractmethod
    def solve(
        self,
        condition: AbstractCondition,
        theta: PyTree[ArrayLike],
        x0: PyTree[ArrayLike] | None,
        *,
        differentiable: bool = False,
    ) -> Solution:
        """**Arguments:**

        - `condition`: the optimality condition the solution must satisfy.
        - `theta`: the parameters.
        - `x0`: the initial guess (a warm start), or `None` if the solver needs none.
        - `differentiable`: `False` (the default, used with implicit differentiation):
            the solve is never differentiated and may use any loop. `True` (used by
            [`implicitx.UnrolledAdjoint`][]): JAX differentiates through the
            iterations, so loops must be differentiable (see
            `implicitx.solvers.AbstractSolver` subclasses for which support it).

        **Returns:**

        An [`implicitx.Solution`][] with the value, a result code, auxiliary output and
        statistics.
        """


_X = TypeVar("_X")


def require_x0(x0: _X | None, solver: AbstractSolver) -> _X:
    if x0 is None:
        raise ValueError(
            f"`{type(solver).__name__}` needs an initial guess: pass `x0=` to "
            "`ImplicitArgmin(...)` or to the call `argmin(theta, x0)`."
        )
    return x0


def not_differentiable(solver: AbstractSolver):
    raise ValueError(
        f"`{type(solver).__name__}` cannot be differentiated through (unrolled): it "
        "does not run JAX operations that JAX can differentiate. Use the default "
        "`ImplicitAdjoint()` with it."
    )
