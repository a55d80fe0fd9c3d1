import equinox as eqx
import optimistix as optx
from jaxtyping import ArrayLike, PyTree

from .._conditions import (
    AbstractCondition,
    AbstractFixedPointCondition,
    AbstractObjectiveCondition,
    LeastSquaresStationarity,
)
from .._misc import tree_all_finite
from .._results import as_results, RESULTS
from .._solution import Solution
from .._while_loops import lax_while_loop, WhileLoop
from ._base import AbstractSolver, require_x0


def _run(entry, fn, wrapper, theta, x0, while_loop) -> Solution:
    """Runs an optimistix entry point (`optx.minimise`, `optx.root_find`, ...) with
    failures reported in the result code, never raised. A final iterate, or a value of
    `fn` at it, that is not finite is reported as `nonfinite_iterate` (optimistix
    would say that the maximum number of steps was reached)."""
    del while_loop  # optimistix's own
    sol = entry(
        fn,
        wrapper.solver,
        require_x0(x0, wrapper),
        args=theta,
        max_steps=wrapper.max_steps,
        # optimistix runs its own loop; when unrolled, its checkpointed loop supports
        # reverse mode (not forward mode).
        adjoint=optx.RecursiveCheckpointAdjoint(),
        throw=False,
    )
    finite = tree_all_finite(sol.value) & tree_all_finite(fn(sol.value, theta))
    return _to_solution(sol, finite)


def _to_solution(sol: optx.Solution, finite) -> Solution:
    result = RESULTS.where(
        finite,
        as_results(sol.result),
        RESULTS.nonfinite_iterate,  # pyright: ignore[reportArgumentType]
    )
    return Solution(value=sol.value, result=result, aux=None, stats=dict(sol.stats))


def _require(condition, kind, what: str, solver):
    if not isinstance(condition, kind):
        raise TypeError(
            f"`{type(solver).__name__}` needs {what}, but got the condition "
            f"`{type(condition).__name__}`."
        )


class OptimistixMinimiser(AbstractSolver):
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

    def solve(
        self,
        condition: AbstractCondition,
        theta: PyTree[ArrayLike],
        x0: PyTree[ArrayLike] | None,
        *,
        while_loop: WhileLoop = lax_while_loop,
    ) -> Solution:
        _require(condition, AbstractObjectiveCondition, "an objective", self)
        assert isinstance(condition, AbstractObjectiveCondition)
        return _run(optx.minimise, condition.objective, self, theta, x0, while_loop)


class OptimistixRootFinder(AbstractSolver):
    """Finds a root of the condition's residual `F(x, theta)` with an optimistix root
    finder (`optimistix.Newton`, `optimistix.Chord`, ...). Works with any condition.

    **Arguments:**

    - `solver`: an `optimistix.AbstractRootFinder`, e.g.
        `optimistix.Newton(rtol=1e-10, atol=1e-10)`.
    - `max_steps`: the maximum number of steps; reaching it is reported as a failure.
    """

    solver: optx.AbstractRootFinder
    max_steps: int = eqx.field(default=256, static=True)

    def solve(
        self,
        condition: AbstractCondition,
        theta: PyTree[ArrayLike],
        x0: PyTree[ArrayLike] | None,
        *,
        while_loop: WhileLoop = lax_while_loop,
    ) -> Solution:
        return _run(optx.root_find, condition, self, theta, x0, while_loop)


class OptimistixFixedPoint(AbstractSolver):
    """Iterates the condition's fixed-point map `T(x, theta)` with an optimistix
    fixed-point solver (`optimistix.FixedPointIteration`, ...). The condition must be a
    fixed point, e.g. [`implicitx.FixedPoint`][] or
    [`implicitx.GradientDescentFixedPoint`][].

    **Arguments:**

    - `solver`: an `optimistix.AbstractFixedPointSolver`, e.g.
        `optimistix.FixedPointIteration(rtol=1e-10, atol=1e-10)`.
    - `max_steps`: the maximum number of steps; reaching it is reported as a failure.
    """

    solver: optx.AbstractFixedPointSolver
    max_steps: int = eqx.field(default=256, static=True)

    def solve(
        self,
        condition: AbstractCondition,
        theta: PyTree[ArrayLike],
        x0: PyTree[ArrayLike] | None,
        *,
        while_loop: WhileLoop = lax_while_loop,
    ) -> Solution:
        _require(condition, AbstractFixedPointCondition, "a fixed-point map", self)
        assert isinstance(condition, AbstractFixedPointCondition)
        return _run(
            optx.fixed_point, condition.fixed_point_map, self, theta, x0, while_loop
        )


class OptimistixLeastSquares(AbstractSolver):
    """Solves a nonlinear least-squares problem with an optimistix least-squares
    solver (`optimistix.GaussNewton`, `optimistix.LevenbergMarquardt`,
    `optimistix.Dogleg`, ...). The condition must be an
    [`implicitx.LeastSquaresStationarity`][].

    **Arguments:**

    - `solver`: an `optimistix.AbstractLeastSquaresSolver`, e.g.
        `optimistix.LevenbergMarquardt(rtol=1e-10, atol=1e-10)`.
    - `max_steps`: the maximum number of steps; reaching it is reported as a failure.
    """

    solver: optx.AbstractLeastSquaresSolver
    max_steps: int = eqx.field(default=256, static=True)

    def solve(
        self,
        condition: AbstractCondition,
        theta: PyTree[ArrayLike],
        x0: PyTree[ArrayLike] | None,
        *,
        while_loop: WhileLoop = lax_while_loop,
    ) -> Solution:
        _require(condition, LeastSquaresStationarity, "least-squares residuals", self)
        assert isinstance(condition, LeastSquaresStationarity)
        return _run(
            optx.least_squares, condition.residuals, self, theta, x0, while_loop
        )
