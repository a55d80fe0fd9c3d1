from collections.abc import Callable

import equinox as eqx
import equinox.internal as eqxi
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, PyTree

from .._conditions import (
    AbstractCondition,
    BlockProximalGradientFixedPoint,
    ProjectedGradientFixedPoint,
    ProximalGradientFixedPoint,
)
from .._conditions._operators import resolve
from .._solution import Solution
from ..projection._base import AbstractProjection
from ..prox._base import AbstractProx
from ._base import AbstractSolver, require_x0
from ._loop import converged, iterate


def _vdot(a, b):
    return jnp.sum(a * b)


def _composite_parts(condition, theta, solver) -> tuple[Callable, Callable]:
    """The smooth objective `f(x)` and the map `(z, step) -> prox_{step g}(z)` of a
    composite condition, at `theta`."""
    f = lambda x: condition.objective(x, theta)
    if isinstance(condition, ProximalGradientFixedPoint):
        prox = resolve(condition.prox, AbstractProx, theta)
        return f, lambda z, step: prox(z, step)
    if isinstance(condition, BlockProximalGradientFixedPoint):
        prox = resolve(condition.prox, AbstractProx, theta)
        return f, lambda z, step: jax.vmap(lambda row: prox(row, step))(z)
    if isinstance(condition, ProjectedGradientFixedPoint):
        projection = resolve(condition.projection, AbstractProjection, theta)
        return f, lambda z, step: projection(z)
    raise TypeError(
        f"`{type(solver).__name__}` solves composite problems: it needs a "
        "`ProximalGradientFixedPoint`, `BlockProximalGradientFixedPoint` or "
        f"`ProjectedGradientFixedPoint` condition, got `{type(condition).__name__}`."
    )


class _State(eqx.Module):
    x: Array
    y: Array
    t: Array
    lipschitz: Array


class ProximalGradient(AbstractSolver):
    """Proximal gradient descent for `min_x f(x, theta) + g(x, theta)`, with Nesterov
    acceleration (FISTA), adaptive restart, and a backtracking line search on the
    step size.

    Works with [`implicitx.ProximalGradientFixedPoint`][] (lasso, elastic net, group
    lasso, non-negative least squares, ...),
    [`implicitx.ProjectedGradientFixedPoint`][] (then it is accelerated projected
    gradient) and [`implicitx.BlockProximalGradientFixedPoint`][] (the prox applied to
    every row).

    Each step takes `x+ = prox_{g/L}(y - grad f(y) / L)` from the extrapolated point
    `y`, doubling `L` until the quadratic upper bound
    `f(x+) <= f(y) + <grad f(y), x+ - y> + L/2 ||x+ - y||^2` holds. The momentum is
    reset whenever it points against the last step (gradient restart), which restores
    linear convergence on strongly convex problems. It stops when
    `max|x_k+1 - x_k| <= atol + rtol max|x_k+1|`.

    **Arguments:**

    - `rtol`, `atol`: the stopping tolerances.
    - `max_steps`: the maximum number of steps; reaching it is reported as a failure.
    - `stepsize`: a fixed step size `1/L`, or `None` (default) for the line search.
    - `acceleration`: use Nesterov momentum (FISTA). Default `True`.
    - `initial_lipschitz`: the first estimate of `L` for the line search. The
        estimate only grows (by doubling), so a small value is safe.
    """

    rtol: float = 1e-8
    atol: float = 1e-8
    max_steps: int = eqx.field(default=10_000, static=True)
    stepsize: float | None = None
    acceleration: bool = eqx.field(default=True, static=True)
    initial_lipschitz: float = 1e-3

    def solve(
        self,
        condition: AbstractCondition,
        theta: PyTree[ArrayLike],
        x0: PyTree[ArrayLike] | None,
        *,
        differentiable: bool = False,
    ) -> Solution:
        return _solve_composite(self, condition, theta, x0, differentiable)


def _solve_composite(
    self: "ProximalGradient | ProjectedGradient",
    condition: AbstractCondition,
    theta,
    x0,
    differentiable: bool,
) -> Solution:
    f, prox = _composite_parts(condition, theta, self)
    x0 = jnp.asarray(require_x0(x0, self))
    dtype = x0.dtype
    value_and_grad = jax.value_and_grad(f)

    def prox_step(y, f_y, g_y, lipschitz):
        x = prox(y - g_y / lipschitz, 1 / lipschitz)
        diff = x - y
        bound = f_y + _vdot(g_y, diff) + 0.5 * lipschitz * _vdot(diff, diff)
        return x, f(x) <= bound + 10 * jnp.finfo(dtype).eps * jnp.abs(f_y)

    def line_search(y, lipschitz):
        f_y, g_y = value_and_grad(y)
        if self.stepsize is not None:
            fixed = jnp.asarray(1 / self.stepsize, dtype)
            return prox_step(y, f_y, g_y, fixed)[0], fixed

        def cond(carry):
            _, _, ok, tries = carry
            return jnp.logical_and(jnp.logical_not(ok), tries < 60)

        def body(carry):
            _, lipschitz, _, tries = carry
            lipschitz = 2 * lipschitz
            x, ok = prox_step(y, f_y, g_y, lipschitz)
            return x, lipschitz, ok, tries + 1

        x, ok = prox_step(y, f_y, g_y, lipschitz)
        init = (x, lipschitz, ok, jnp.array(0))
        kind = "bounded" if differentiable else "lax"
        x, lipschitz, _, _ = eqxi.while_loop(cond, body, init, max_steps=60, kind=kind)
        return x, lipschitz

    def step(state: _State):
        x_new, lipschitz = line_search(state.y, state.lipschitz)
        if self.acceleration:
            t_new = (1 + jnp.sqrt(1 + 4 * state.t**2)) / 2
            # Gradient restart: momentum against the step taken is dropped.
            restart = _vdot(state.y - x_new, x_new - state.x) > 0
            t_new = jnp.where(restart, jnp.ones_like(t_new), t_new)
            momentum = jnp.where(restart, 0, (state.t - 1) / t_new)
            y_new = x_new + momentum * (x_new - state.x)
        else:
            t_new, y_new = state.t, x_new
        done = converged(x_new, state.x, self.rtol, self.atol)
        return _State(x_new, y_new, t_new, lipschitz), done

    init = _State(
        x=x0,
        y=x0,
        t=jnp.ones((), dtype),
        lipschitz=jnp.asarray(self.initial_lipschitz, dtype),
    )
    state, num_steps, result = iterate(
        step, init, max_steps=self.max_steps, differentiable=differentiable
    )
    stats = {"num_steps": num_steps, "lipschitz": state.lipschitz}
    return Solution(value=state.x, result=result, aux=None, stats=stats)


class ProjectedGradient(AbstractSolver):
    """Projected gradient descent for `min_{x in C(theta)} f(x, theta)`: the
    [`implicitx.solvers.ProximalGradient`][] method with the projection as the prox,
    accelerated by default. Use it with [`implicitx.ProjectedGradientFixedPoint`][].

    **Arguments:** as [`implicitx.solvers.ProximalGradient`][].
    """

    rtol: float = 1e-8
    atol: float = 1e-8
    max_steps: int = eqx.field(default=10_000, static=True)
    stepsize: float | None = None
    acceleration: bool = eqx.field(default=True, static=True)
    initial_lipschitz: float = 1e-3

    def solve(
        self,
        condition: AbstractCondition,
        theta: PyTree[ArrayLike],
        x0: PyTree[ArrayLike] | None,
        *,
        differentiable: bool = False,
    ) -> Solution:
        if not isinstance(condition, ProjectedGradientFixedPoint):
            raise TypeError(
                "`ProjectedGradient` needs a `ProjectedGradientFixedPoint` condition, "
                f"got `{type(condition).__name__}`."
            )
        return _solve_composite(self, condition, theta, x0, differentiable)
