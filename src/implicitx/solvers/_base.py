import abc

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
    ) -> Solution:
        """**Arguments:**

        - `condition`: the optimality condition the solution must satisfy.
        - `theta`: the parameters.
        - `x0`: the initial guess (a warm start), or `None` if the solver needs none.

        **Returns:**

        An [`implicitx.Solution`][] with the value, a result code, auxiliary output and
        statistics.
        """


def require_x0(x0, solver: AbstractSolver):
    if x0 is None:
        raise ValueError(
            f"`{type(solver).__name__}` needs an initial guess: pass `x0=` to "
            "`ImplicitArgmin(...)` or to the call `argmin(theta, x0)`."
        )
    return x0
