import abc
from collections.abc import Callable
from typing import Any, TypeVar

import equinox as eqx
import optimistix as optx
from equinox import AbstractVar

from .._conditions import (
    AbstractCondition,
    AbstractFixedPointCondition,
    AbstractObjectiveCondition,
    LeastSquaresStationarity,
)
from .._misc import tree_all_finite
from .._results import as_results, RESULTS
from .._solution import Solution
from .._while_loops import lax_while_loop
from ._base import AbstractSolver, require_x0


def _to_solution(sol: optx.Solution, finite) -> Solution:
    result = RESULTS.where(
        finite,
        as_results(sol.result),
        RESULTS.nonfinite_iterate,  # pyright: ignore[reportArgumentType]
    )
    return Solution(value=sol.value, result=result, aux=None, stats=dict(sol.stats))


_C = TypeVar("_C")


def _require(condition, kind: type[_C], what: str, solver) -> _C:
    if not isinstance(condition, kind):
        raise TypeError(
            f"`{type(solver).__name__}` needs {what}, but got the condition "
            f"`{type(condition).__name__}`."
        )
    return condition


class _AbstractOptimistixSolver(AbstractSolver):
    """Runs an optimistix entry point (`optx.minimise`, `optx.root_find`, ...) on a
    function of the condition, with failures reported in the result code, never
    raised. A final iterate, or a value of the function at it, that is not finite is
    reported as `nonfinite_iterate` (optimistix would say that the maximum number of
    steps was reached).

    Each wrapper says which kind of optimistix solver its `solver` is.
    """

    solver: AbstractVar[Any]
    max_steps: AbstractVar[int]

    @abc.abstractmethod
    def _problem(self, condition: AbstractCondition) -> tuple[Callable, Callable]:
        """`(entry point, fn)`: what to run on the condition; raises a `TypeError`
        if the condition has no such function."""

    def _options(self, theta) -> dict[str, Any]:
        """The optimistix solver's `options` at `theta` (none by default)."""
        del theta
        return {}

    def solve(self, condition, theta, x0, *, while_loop=lax_while_loop) -> Solution:
        del while_loop  # optimistix's own
        entry, fn = self._problem(condition)
        sol = entry(
            fn,
            self.solver,
            require_x0(x0, self),
            args=theta,
            options=self._options(theta),
            max_steps=self.max_steps,
            # optimistix runs its own loop; when unrolled, its checkpointed loop
            # supports reverse mode (not forward mode).
            adjoint=optx.RecursiveCheckpointAdjoint(),
            throw=False,
        )
        finite = tree_all_finite(sol.value) & tree_all_finite(fn(sol.value, theta))
        return _to_solution(sol, finite)


class OptimistixMinimiser(_AbstractOptimistixSolver):
    """Minimises the condition's objective with an optimistix minimiser (BFGS, L-BFGS,
    nonlinear CG, gradient descent, Newton via `optimistix.BFGS` with exact Hessians,
    ...). The condition must come from an objective, e.g.
    [`implicitx.Stationarity`][].

    **Arguments:**

    - `solver`: an `optimistix.AbstractMinimiser`, e.g.
        `optimistix.BFGS(rtol=1e-10, atol=1e-10)`.
    - `max_steps`: the maximum number of steps; reaching it is reported as a failure.
    """

    solver: optx.AbstractMinimiser
    max_steps: int = eqx.field(default=256, static=True)

    def _problem(self, condition: AbstractCondition) -> tuple[Callable, Callable]:
        kind = AbstractObjectiveCondition
        objective = _require(condition, kind, "an objective", self)
        return optx.minimise, objective.objective_value


class OptimistixRootFinder(_AbstractOptimistixSolver):
    """Finds a root of the condition's residual `F(x, theta)` with an optimistix root
    finder (`optimistix.Newton`, `optimistix.Chord`, ...). Works with any condition.

    **Arguments:**

    - `solver`: an `optimistix.AbstractRootFinder`, e.g.
        `optimistix.Newton(rtol=1e-10, atol=1e-10)`.
    - `max_steps`: as for [`implicitx.solvers.OptimistixMinimiser`][].
    - `options`: the root finder's `options` as a function of `theta`, e.g. the
        bracket of `optimistix.Bisection`,
        `lambda theta: dict(lower=..., upper=...)`. Default: none.
    """

    solver: optx.AbstractRootFinder
    max_steps: int = eqx.field(default=256, static=True)
    options: Callable[[Any], dict[str, Any]] | None = None

    def _problem(self, condition: AbstractCondition) -> tuple[Callable, Callable]:
        return optx.root_find, condition

    def _options(self, theta) -> dict[str, Any]:
        return {} if self.options is None else self.options(theta)


class OptimistixFixedPoint(_AbstractOptimistixSolver):
    """Iterates the condition's fixed-point map `T(x, theta)` with an optimistix
    fixed-point solver (`optimistix.FixedPointIteration`, ...). The condition must be a
    fixed point, e.g. [`implicitx.FixedPoint`][] or
    [`implicitx.GradientDescentFixedPoint`][].

    **Arguments:**

    - `solver`: an `optimistix.AbstractFixedPointSolver`, e.g.
        `optimistix.FixedPointIteration(rtol=1e-10, atol=1e-10)`.
    - `max_steps`: as for [`implicitx.solvers.OptimistixMinimiser`][].
    """

    solver: optx.AbstractFixedPointSolver
    max_steps: int = eqx.field(default=256, static=True)

    def _problem(self, condition: AbstractCondition) -> tuple[Callable, Callable]:
        kind, what = AbstractFixedPointCondition, "a fixed-point map"
        return optx.fixed_point, _require(condition, kind, what, self).fixed_point_map


class OptimistixLeastSquares(_AbstractOptimistixSolver):
    """Solves a nonlinear least-squares problem with an optimistix least-squares
    solver (`optimistix.GaussNewton`, `optimistix.LevenbergMarquardt`,
    `optimistix.Dogleg`, ...). The condition must be an
    [`implicitx.LeastSquaresStationarity`][].

    **Arguments:**

    - `solver`: an `optimistix.AbstractLeastSquaresSolver`, e.g.
        `optimistix.LevenbergMarquardt(rtol=1e-10, atol=1e-10)`.
    - `max_steps`: as for [`implicitx.solvers.OptimistixMinimiser`][].
    """

    solver: optx.AbstractLeastSquaresSolver
    max_steps: int = eqx.field(default=256, static=True)

    def _problem(self, condition: AbstractCondition) -> tuple[Callable, Callable]:
        kind, what = LeastSquaresStationarity, "least-squares residuals"
        return optx.least_squares, _require(condition, kind, what, self).residuals_value
