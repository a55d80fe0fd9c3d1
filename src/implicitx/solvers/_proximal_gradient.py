from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from jaxtyping import Array, ArrayLike, Bool, Int, PyTree

from .._conditions import (
    AbstractCompositeCondition,
    AbstractObjectiveCondition,
)
from .._conditions._proximal_gradient import check_stepsize, stepsize_or_nan
from .._solution import Solution
from .._while_loops import lax_while_loop, WhileLoop
from ._base import (
    AbstractIterativeState,
    require_x0,
    stats,
)
from ._line_search import (
    AbstractBacktrackingSolver,
    axpy,
    backtrack,
    proximal_trial,
    sub,
    vdot,
)
from ._loop import converged, float_dtype, max_abs, tolerances


def composite_parts(condition, theta, solver) -> tuple[Callable, Callable]:
    """The smooth objective `f(x)` and the map `(z, step) -> prox_{step g}(z)` of a
    composite problem, at `theta`, asked of the condition through
    [`implicitx.AbstractCompositeCondition`][]. A condition that only has a smooth
    objective (e.g. [`implicitx.Stationarity`][]) is the case `g = 0`: the prox is the
    identity."""
    if isinstance(condition, AbstractCompositeCondition):
        return (lambda x: condition.objective_value(x, theta)), condition.prox_at(theta)
    if isinstance(condition, AbstractObjectiveCondition):
        return (lambda x: condition.objective_value(x, theta)), (lambda z, step: z)
    raise TypeError(
        f"`{type(solver).__name__}` solves composite problems `min f + g`: it needs a "
        "condition with a smooth objective (and a prox or projection), such as "
        "`ProximalGradientFixedPoint`, `ProjectedGradientFixedPoint`, "
        "`BlockProximalGradientFixedPoint`, `GradientDescentFixedPoint` or "
        f"`Stationarity`; got `{type(condition).__name__}`."
    )


class _ProximalGradientState(AbstractIterativeState):
    x: PyTree[Array]
    y: PyTree[Array]  # the extrapolated point
    t: Array  # the momentum parameter
    lipschitz: Array  # the estimate of `L`
    objective: Array  # f(y), kept so that a non-finite objective stops the loop
    gradient: Array  # max|grad f(y)|, likewise
    num_steps: Int[Array, ""]
    converged: Bool[Array, ""]


class _AbstractProximalGradient(AbstractBacktrackingSolver[_ProximalGradientState]):
    """The fields and the steps shared by `ProximalGradient` and `ProjectedGradient`."""

    stepsize: float | Array | Callable[[Int[Array, ""]], ArrayLike] | None = None
    acceleration: bool = eqx.field(default=True, static=True)

    def __check_init__(self):
        if not callable(self.stepsize):
            check_stepsize(self, self.stepsize)

    def init(self, condition, theta, x0) -> _ProximalGradientState:
        composite_parts(condition, theta, self)  # checks the condition
        x0 = jtu.tree_map(jnp.asarray, require_x0(x0, self))
        dtype = float_dtype(x0)
        zero = jnp.zeros((), dtype)
        return _ProximalGradientState(
            x=x0,
            y=x0,
            t=jnp.ones((), dtype),
            lipschitz=jnp.asarray(self.initial_lipschitz, dtype),
            objective=zero,
            gradient=zero,
            num_steps=jnp.array(0),
            converged=jnp.array(False),
        )

    def step(self, condition, theta, state, *, while_loop=lax_while_loop):
        f, prox = composite_parts(condition, theta, self)
        rtol, atol = tolerances(self, state.x)
        x_new, lip, f_y, g_y, ok = _line_search(self, f, prox, state, while_loop)
        t_new, y_new = _momentum(self.acceleration, state, x_new)
        return _ProximalGradientState(
            x=x_new,
            y=y_new,
            t=t_new,
            lipschitz=lip,
            objective=f_y,
            gradient=g_y,
            num_steps=state.num_steps + 1,
            converged=ok & converged(x_new, state.y, rtol, atol),
        )

    def postprocess(self, condition, theta, state, result) -> Solution:
        del condition, theta
        stats_ = stats(state) | {"lipschitz": state.lipschitz}
        return Solution(value=state.x, result=result, aux=None, stats=stats_)


class ProximalGradient(_AbstractProximalGradient):
    """Proximal gradient descent for `min_x f(x, theta) + g(x, theta)`, with Nesterov
    acceleration (FISTA), adaptive restart, and a backtracking line search on the
    step size.

    Works with [`implicitx.ProximalGradientFixedPoint`][] (lasso, elastic net, group
    lasso, non-negative least squares, ...),
    [`implicitx.ProjectedGradientFixedPoint`][] (then it is accelerated projected
    gradient), [`implicitx.BlockProximalGradientFixedPoint`][] (the prox applied to
    every row), and smooth problems ([`implicitx.Stationarity`][],
    [`implicitx.GradientDescentFixedPoint`][]: `g = 0`, the prox is the identity); it
    asks the condition for its smooth part and its prox (see
    [`implicitx.AbstractCompositeCondition`][]).
    `x` may be any PyTree of arrays. It can be run step by step (`init`, `step`,
    `terminate`: see [`implicitx.solvers.AbstractIterativeSolver`][]); `state.x` is
    the iterate and `state.lipschitz` the estimate of `L`.

    Each step takes `x+ = prox_{g/L}(y - grad f(y) / L)` from the extrapolated point
    `y`. The line search starts from `L / increase_factor` (by default `0.9 L`, so
    the estimate can decrease again) and doubles `L` until the quadratic upper bound
    `f(x+) <= f(y) + <grad f(y), x+ - y> + L/2 ||x+ - y||^2` holds, or (when rounding
    makes function values unreliable) until `<grad f(x+) - grad f(y), x+ - y> <=
    L/2 ||x+ - y||^2`; a step below the rounding level of `y - grad f(y) / L` is
    accepted as it is. The momentum is reset whenever it points against the last step
    (gradient restart). It stops on the fixed-point residual of the step,
    `max|x+ - y| <= atol + rtol max|x+|` (the gradient mapping `L (y - x+)` times
    the step `1/L`), and as soon as the iterate, the objective or the gradient is
    non-finite (`RESULTS.nonfinite_iterate`).

    **Arguments:**

    - `rtol`, `atol`, `max_steps`: as for every
        [`implicitx.solvers.AbstractIterativeSolver`][] (by default `1e-8` in float64,
        about `1.2e-5` in float32, and `10_000` steps).
    - `stepsize`: a fixed step size `1/L > 0`; or a schedule, a function of the
        iteration number `k = 0, 1, ...` (an integer array) returning the step of
        step `k` (e.g. `lambda k: 0.1 / jnp.sqrt(k + 1)`); or `None` (default) for
        the line search.
    - `acceleration`: use Nesterov momentum (FISTA). Default `True`.
    - `initial_lipschitz`: the first estimate of `L` for the line search (`> 0`); a
        small value is safe.
    - `increase_factor`: how much the line search may grow the step from one step
        to the next (`>= 1`): each search starts from `L / increase_factor`. `1`
        never lowers the estimate of `L`; larger values recover faster from an
        estimate that overshot, at the cost of more trials. `None` (default): start
        from `0.9 L`.
    """


def _line_search(
    solver: _AbstractProximalGradient,
    f: Callable,
    prox: Callable,
    state: _ProximalGradientState,
    while_loop: WhileLoop,
):
    """One proximal-gradient step from `state.y`: `(x+, L, f(y), max|grad f(y)|,
    ok)`, with the fixed step (or the schedule's at `state.num_steps`) if any."""
    y = state.y
    dtype = float_dtype(y)
    f_y, g_y = jax.value_and_grad(f)(y)
    trial = proximal_trial(f, prox, y, f_y, g_y, dtype)
    if solver.stepsize is None:
        shrink = solver.start_factor()
        x, lip, ok = backtrack(trial, state.lipschitz, shrink, while_loop)
        return x, lip, f_y, max_abs(g_y), ok
    lip = 1 / jnp.asarray(stepsize_or_nan(_stepsize_at(solver, state)), dtype)
    x, _, _ = trial(lip)
    return x, lip, f_y, max_abs(g_y), jnp.array(True)


def _stepsize_at(
    solver: _AbstractProximalGradient, state: _ProximalGradientState
) -> ArrayLike:
    """The fixed step, or the schedule's at step `state.num_steps`."""
    stepsize = solver.stepsize
    assert stepsize is not None
    return stepsize(state.num_steps) if callable(stepsize) else stepsize


def _momentum(acceleration: bool, state: _ProximalGradientState, x_new):
    """`(t+, y+)`: Nesterov's extrapolation with gradient restart, or `(t, x+)`."""
    if not acceleration:
        return state.t, x_new
    dtype = float_dtype(x_new)
    t_new = (1 + jnp.sqrt(1 + 4 * state.t**2)) / 2
    # Gradient restart: momentum against the step taken is dropped.
    back, forth = sub(state.y, x_new), sub(x_new, state.x)
    restart = vdot(jtu.tree_leaves(back), jtu.tree_leaves(forth), dtype) > 0
    t_new = jnp.where(restart, jnp.ones_like(t_new), t_new)
    momentum = jnp.where(restart, 0, (state.t - 1) / t_new)
    return t_new, axpy(momentum, forth, x_new)


class ProjectedGradient(_AbstractProximalGradient):
    """Projected gradient descent for `min_{x in C(theta)} f(x, theta)`: the
    [`implicitx.solvers.ProximalGradient`][] method with the projection as the prox,
    accelerated by default. Use it with [`implicitx.ProjectedGradientFixedPoint`][].

    **Arguments:** as [`implicitx.solvers.ProximalGradient`][] (`rtol = atol = None`
    by default: `1e-8` in float64, about `1.2e-5` in float32).
    """
