from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from jaxtyping import Array, ArrayLike, PyTree

from .._conditions import (
    AbstractCompositeCondition,
    AbstractCondition,
    AbstractObjectiveCondition,
)
from .._conditions._proximal_gradient import check_stepsize, stepsize_or_nan
from .._solution import Solution
from .._while_loops import lax_while_loop, WhileLoop
from ._base import AbstractSolver, require_x0
from ._loop import converged, float_dtype, iterate, max_abs, tolerance


# The line search starts each step from `_SHRINK * L` (so the estimate of `L` can
# decrease again) and doubles it until the upper bound holds, at most `_TRIES` times.
_SHRINK = 0.9
_TRIES = 60


def composite_parts(condition, theta, solver) -> tuple[Callable, Callable]:
    """The smooth objective `f(x)` and the map `(z, step) -> prox_{step g}(z)` of a
    composite problem, at `theta`, asked of the condition through
    [`implicitx.AbstractCompositeCondition`][]. A condition that only has a smooth
    objective (e.g. [`implicitx.Stationarity`][]) is the case `g = 0`: the prox is the
    identity."""
    if isinstance(condition, AbstractCompositeCondition):
        return (lambda x: condition.objective(x, theta)), condition.prox_at(theta)
    if isinstance(condition, AbstractObjectiveCondition):
        return (lambda x: condition.objective(x, theta)), (lambda z, step: z)
    raise TypeError(
        f"`{type(solver).__name__}` solves composite problems `min f + g`: it needs a "
        "condition with a smooth objective (and a prox or projection), such as "
        "`ProximalGradientFixedPoint`, `ProjectedGradientFixedPoint`, "
        "`BlockProximalGradientFixedPoint`, `GradientDescentFixedPoint` or "
        f"`Stationarity`; got `{type(condition).__name__}`."
    )


def _vdot(a, b, dtype) -> Array:
    terms = [jnp.sum(u * v).astype(dtype) for u, v in zip(a, b, strict=True)]
    return sum(terms, jnp.zeros((), dtype))


def _leaves(tree) -> list:
    return jtu.tree_leaves(tree)


def _sub(a, b):
    return jtu.tree_map(lambda u, v: u - v, a, b)


def _axpy(alpha: Array, x, y):
    """`alpha * x + y` on PyTrees, `alpha` cast to each leaf's dtype."""
    return jtu.tree_map(lambda u, v: alpha.astype(u.dtype) * u + v, x, y)


class _State(eqx.Module):
    x: PyTree[Array]
    y: PyTree[Array]
    t: Array
    lipschitz: Array
    objective: Array  # f(y), kept so that a non-finite objective stops the loop
    gradient: Array  # max|grad f(y)|, likewise


class _AbstractProximalGradient(AbstractSolver):
    """The fields and the loop shared by `ProximalGradient` and `ProjectedGradient`."""

    rtol: float | None = None
    atol: float | None = None
    max_steps: int = eqx.field(default=10_000, static=True)
    stepsize: float | Array | None = None
    acceleration: bool = eqx.field(default=True, static=True)
    initial_lipschitz: float = 1e-3

    def __check_init__(self):
        check_stepsize(self, self.stepsize)
        check_stepsize(self, self.initial_lipschitz, "initial_lipschitz")

    def solve(
        self,
        condition: AbstractCondition,
        theta: PyTree[ArrayLike],
        x0: PyTree[ArrayLike] | None,
        *,
        while_loop: WhileLoop = lax_while_loop,
    ) -> Solution:
        return _solve_composite(self, condition, theta, x0, while_loop)


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
    `x` may be any PyTree of arrays.

    Each step takes `x+ = prox_{g/L}(y - grad f(y) / L)` from the extrapolated point
    `y`. The line search starts from `0.9 L` (so the estimate can decrease again) and
    doubles `L` until the quadratic upper bound
    `f(x+) <= f(y) + <grad f(y), x+ - y> + L/2 ||x+ - y||^2` holds, or (when rounding
    makes function values unreliable) until `<grad f(x+) - grad f(y), x+ - y> <=
    L/2 ||x+ - y||^2`; a step below the rounding level of `y - grad f(y) / L` is
    accepted as it is. The momentum is reset whenever it points against the last step
    (gradient restart). It stops on the fixed-point residual of the step,
    `max|x+ - y| <= atol + rtol max|x+|` (the gradient mapping `L (y - x+)` times
    the step `1/L`), and as soon as the iterate, the objective or the gradient is
    non-finite (`RESULTS.nonfinite_iterate`).

    **Arguments:**

    - `rtol`, `atol`: the stopping tolerances. `None` (the default) means
        `max(1e-8, 100 eps)` for the machine epsilon `eps` of `x`'s dtype: `1e-8` in
        float64, about `1.2e-5` in float32.
    - `max_steps`: the maximum number of steps; reaching it is reported as a failure.
    - `stepsize`: a fixed step size `1/L > 0`, or `None` (default) for the line
        search.
    - `acceleration`: use Nesterov momentum (FISTA). Default `True`.
    - `initial_lipschitz`: the first estimate of `L` for the line search (`> 0`); a
        small value is safe.
    """


def _line_search(solver, f, prox, y, lipschitz, dtype, while_loop):
    """One proximal-gradient step from `y`: `(x+, L, f(y), max|grad f(y)|, ok)`."""
    value_and_grad = jax.value_and_grad(f)
    f_y, g_y = value_and_grad(y)
    g_l = _leaves(g_y)
    eps = jnp.finfo(dtype).eps
    scale_y, scale_g = max_abs(y), max_abs(g_y)

    def trial(lip):
        inv = 1 / lip
        x = prox(_axpy(-inv, g_y, y), inv)
        d = _leaves(_sub(x, y))
        dd = _vdot(d, d, dtype)
        bound = f_y + _vdot(g_l, d, dtype) + 0.5 * lip * dd
        ok = f(x) <= bound
        # Not finite at `y`: stop searching, the loop reports it.
        ok = ok | jnp.logical_not(jnp.isfinite(f_y) & jnp.isfinite(scale_g))
        # A step at the rounding level of `y` says nothing about `L`.
        tiny = max_abs(d) <= 10 * eps * scale_y

        def curvature_ok():
            g_x = _leaves(jax.grad(f)(x))
            change = _vdot([a - b for a, b in zip(g_x, g_l, strict=True)], d, dtype)
            return change <= 0.5 * lip * dd

        ok = jax.lax.cond(ok | tiny, lambda: jnp.array(True), curvature_ok)
        return x, ok, tiny

    if solver.stepsize is not None:
        lip = 1 / jnp.asarray(stepsize_or_nan(solver.stepsize), dtype)
        x, _, _ = trial(lip)
        return x, lip, f_y, scale_g, jnp.array(True)

    def cond(carry):
        _, _, ok, tries = carry
        return jnp.logical_and(jnp.logical_not(ok), tries < _TRIES)

    def body(carry):
        _, lip, _, tries = carry
        x, ok, _ = trial(2 * lip)
        return x, 2 * lip, ok, tries + 1

    start = _SHRINK * lipschitz
    x, ok, tiny = trial(start)
    init = (x, start, ok, jnp.array(0))
    x, lip, ok, _ = while_loop(cond, body, init, max_steps=_TRIES)
    # A step at the rounding level does not lower the estimate.
    lip = jnp.where(tiny, jnp.maximum(lip, lipschitz), lip)
    return x, lip, f_y, scale_g, ok


def _solve_composite(
    self: _AbstractProximalGradient,
    condition: AbstractCondition,
    theta,
    x0,
    while_loop: WhileLoop,
) -> Solution:
    f, prox = composite_parts(condition, theta, self)
    x0 = jtu.tree_map(jnp.asarray, require_x0(x0, self))
    dtype = float_dtype(x0)
    rtol, atol = tolerance(self.rtol, dtype), tolerance(self.atol, dtype)

    def step(state: _State):
        x_new, lip, f_y, g_y, ok = _line_search(
            self, f, prox, state.y, state.lipschitz, dtype, while_loop
        )
        if self.acceleration:
            t_new = (1 + jnp.sqrt(1 + 4 * state.t**2)) / 2
            # Gradient restart: momentum against the step taken is dropped.
            back, forth = _sub(state.y, x_new), _sub(x_new, state.x)
            restart = _vdot(_leaves(back), _leaves(forth), dtype) > 0
            t_new = jnp.where(restart, jnp.ones_like(t_new), t_new)
            momentum = jnp.where(restart, 0, (state.t - 1) / t_new)
            y_new = _axpy(momentum, forth, x_new)
        else:
            t_new, y_new = state.t, x_new
        done = ok & converged(x_new, state.y, rtol, atol)
        return _State(x_new, y_new, t_new, lip, f_y, g_y), done

    zero = jnp.zeros((), dtype)
    init = _State(
        x=x0,
        y=x0,
        t=jnp.ones((), dtype),
        lipschitz=jnp.asarray(self.initial_lipschitz, dtype),
        objective=zero,
        gradient=zero,
    )
    state, num_steps, result = iterate(
        step, init, max_steps=self.max_steps, while_loop=while_loop
    )
    stats = {"num_steps": num_steps, "lipschitz": state.lipschitz}
    return Solution(value=state.x, result=result, aux=None, stats=stats)


class ProjectedGradient(_AbstractProximalGradient):
    """Projected gradient descent for `min_{x in C(theta)} f(x, theta)`: the
    [`implicitx.solvers.ProximalGradient`][] method with the projection as the prox,
    accelerated by default. Use it with [`implicitx.ProjectedGradientFixedPoint`][].

    **Arguments:** as [`implicitx.solvers.ProximalGradient`][] (`rtol = atol = None`
    by default: `1e-8` in float64, about `1.2e-5` in float32).
    """
