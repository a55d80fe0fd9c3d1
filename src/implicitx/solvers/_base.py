import abc
from typing import ClassVar, TypeVar

import equinox as eqx
from jaxtyping import ArrayLike, PyTree

from .._conditions import AbstractCondition
from .._solution import Solution
from .._while_loops import lax_while_loop, WhileLoop


class AbstractSolver(eqx.Module):
    """A forward solver: finds `x*(theta)` satisfying a condition.

    A solver knows nothing about derivatives; [`implicitx.ImplicitArgmin`][] attaches
    them. It holds configuration only (tolerances, step limits); the problem comes from
    the condition and `theta`.
    """

    #: Whether [`implicitx.UnrolledAdjoint`][] can differentiate through this solver:
    #: False for solvers that run outside JAX (host callbacks).
    can_unroll: ClassVar[bool] = True

    @abc.abstractmethod
    def solve(
        self,
        condition: AbstractCondition,
        theta: PyTree[ArrayLike],
        x0: PyTree[ArrayLike] | None,
        *,
        while_loop: WhileLoop = lax_while_loop,
    ) -> Solution:
        """**Arguments:**

        - `condition`: the optimality condition the solution must satisfy.
        - `theta`: the parameters.
        - `x0`: the initial guess (a warm start), or `None` if the solver needs none.
        - `while_loop`: the loop to run the iterations with, handed over by the
            adjoint ([`implicitx.AbstractAdjoint.while_loop`][]): a plain
            `lax.while_loop` under implicit differentiation, a differentiable
            checkpointed loop when unrolled. A solver uses it for every loop it runs
            and never asks how it will be differentiated.

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
