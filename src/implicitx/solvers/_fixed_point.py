import equinox as eqx
import jax.numpy as jnp
import jax.tree_util as jtu
import lineax as lx
from jaxtyping import Array, ArrayLike, PyTree

from .._conditions import (
    AbstractCondition,
    AbstractFixedPointCondition,
    MirrorDescentFixedPoint,
)
from .._results import RESULTS
from .._solution import Solution
from .._while_loops import lax_while_loop, WhileLoop
from ._base import AbstractSolver, require_x0
from ._loop import float_dtype, iterate, max_abs, tolerance


def _require_fixed_point(condition, solver) -> AbstractFixedPointCondition:
    if not isinstance(condition, AbstractFixedPointCondition):
        raise TypeError(
            f"`{type(solver).__name__}` iterates a fixed-point map: it needs a "
            "fixed-point condition (e.g. `FixedPoint`, `MirrorDescentFixedPoint`, "
            f"`ProximalGradientFixedPoint`), got `{type(condition).__name__}`."
        )
    return condition


class MirrorDescent(AbstractSolver):
    """Mirror descent for `min_{x in C} f(x, theta)`: iterates the step of an
    [`implicitx.MirrorDescentFixedPoint`][] condition,
    `x+ = project(grad phi(x) - stepsize * grad f(x))`, with the condition's mirror map
    and step size, until the estimated distance to the fixed point is small,
    `max|x_k+1 - x_k| / (1 - q) <= atol + rtol max|x_k+1|` with `q` the observed
    contraction of the steps (at most 0.9), or the iterate or the objective is
    non-finite (`RESULTS.nonfinite_iterate`). The step size is the condition's (checked
    positive there).

    With the negative entropy on (products of) simplices this is the
    exponentiated-gradient method.

    **Arguments:**

    - `rtol`, `atol`: the stopping tolerances. `None` (the default) means
        `max(1e-8, 100 eps)` for the machine epsilon `eps` of `x`'s dtype: `1e-8` in
        float64, about `1.2e-5` in float32.
    - `max_steps`: the maximum number of steps; reaching it is reported as a failure.
    """

    rtol: float | None = None
    atol: float | None = None
    max_steps: int = eqx.field(default=10_000, static=True)

    def solve(
        self,
        condition: AbstractCondition,
        theta: PyTree[ArrayLike],
        x0: PyTree[ArrayLike] | None,
        *,
        while_loop: WhileLoop = lax_while_loop,
    ) -> Solution:
        if not isinstance(condition, MirrorDescentFixedPoint):
            raise TypeError(
                "`MirrorDescent` needs a `MirrorDescentFixedPoint` condition, got "
                f"`{type(condition).__name__}`."
            )
        return _iterate_map(self, condition, theta, x0, while_loop)


class FixedPointIteration(AbstractSolver):
    """Plain iteration `x+ = T(x, theta)` of any fixed-point condition, until the
    estimated distance to the fixed point is small,
    `max|x_k+1 - x_k| / (1 - q) <= atol + rtol max|x_k+1|` with `q` the observed
    contraction of the steps (at most 0.9), or the iterate is non-finite
    (`RESULTS.nonfinite_iterate`); use `OptimistixFixedPoint` for optimistix's
    variants. Converges when `T` is a
    contraction.

    **Arguments:**

    - `rtol`, `atol`: the stopping tolerances. `None` (the default) means
        `max(1e-8, 100 eps)` for the machine epsilon `eps` of `x`'s dtype: `1e-8` in
        float64, about `1.2e-5` in float32.
    - `max_steps`: the maximum number of steps; reaching it is reported as a failure.
    """

    rtol: float | None = None
    atol: float | None = None
    max_steps: int = eqx.field(default=10_000, static=True)

    def solve(
        self,
        condition: AbstractCondition,
        theta: PyTree[ArrayLike],
        x0: PyTree[ArrayLike] | None,
        *,
        while_loop: WhileLoop = lax_while_loop,
    ) -> Solution:
        return _iterate_map(self, condition, theta, x0, while_loop)


def _iterate_map(solver, condition, theta, x0, while_loop) -> Solution:
    condition = _require_fixed_point(condition, solver)
    x0 = jtu.tree_map(jnp.asarray, require_x0(x0, solver))
    dtype = float_dtype(x0)
    rtol, atol = tolerance(solver.rtol, dtype), tolerance(solver.atol, dtype)

    def step(state):
        x, last = state
        x_new = condition.fixed_point_map(x, theta)
        change = max_abs(jtu.tree_map(lambda a, b: a - b, x_new, x))
        # The distance to the fixed point is about `change / (1 - q)` for the
        # observed contraction `q` (taken at most 0.9).
        q = jnp.clip(change / last, 0, _MAX_CONTRACTION)
        done = change / (1 - q) <= atol + rtol * max_abs(x_new)
        return (x_new, jnp.where(change > 0, change, last)), done

    init = (x0, jnp.asarray(jnp.finfo(dtype).max, dtype))  # finite: the loop checks
    (x, _), num_steps, result = iterate(
        step, init, max_steps=solver.max_steps, while_loop=while_loop
    )
    result = objective_finite(condition, x, theta, result)
    return Solution(value=x, result=result, aux=None, stats={"num_steps": num_steps})


_MAX_CONTRACTION = 0.9


def objective_finite(condition, x, theta, result: RESULTS) -> RESULTS:
    """`nonfinite_iterate` if the condition has an objective that is not finite at
    the final iterate `x` (non-finite data can leave a fixed-point map finite, e.g.
    an infinite gradient entry in an exponentiated-gradient step), else `result`."""
    objective = getattr(condition, "objective", None)
    if not callable(objective):
        return result
    finite = jnp.all(jnp.isfinite(jnp.asarray(objective(x, theta))))  # pyright: ignore
    return RESULTS.where(
        finite,
        result,
        RESULTS.nonfinite_iterate,  # pyright: ignore[reportArgumentType]
    )


class _AndersonState(eqx.Module):
    x: Array
    xs: Array  # history of iterates, (memory, n)
    gs: Array  # history of T(iterates), (memory, n)
    count: Array


class AndersonAcceleration(AbstractSolver):
    """Anderson acceleration of a fixed-point iteration `x+ = T(x, theta)`.

    Keeps the last `memory` iterates and their images, and takes the combination of
    the images whose residuals `T(x) - x` combine to the smallest norm (a small
    regularised least-squares problem, solved with lineax), mixed with the
    combination of iterates by `mixing`. Often converges in far fewer steps than plain
    iteration, also for maps that are only mildly contractive.

    **Arguments:**

    - `memory`: the number of past iterates used. Default `5`.
    - `mixing`: the mixing parameter in `(0, 1]` (`1` uses the images only).
    - `ridge`: the Tikhonov regularisation of the least-squares problem, relative to
        its scale.
    - `rtol`, `atol`: the stopping tolerances on `max|T(x) - x|`. `None` (the
        default) means `max(1e-8, 100 eps)` for the machine epsilon `eps` of `x`'s
        dtype: `1e-8` in float64, about `1.2e-5` in float32.
    - `max_steps`: the maximum number of steps; reaching it is reported as a failure.
    """

    memory: int = eqx.field(default=5, static=True)
    mixing: float = 1.0
    ridge: float = 1e-10
    rtol: float | None = None
    atol: float | None = None
    max_steps: int = eqx.field(default=1000, static=True)

    def solve(
        self,
        condition: AbstractCondition,
        theta: PyTree[ArrayLike],
        x0: PyTree[ArrayLike] | None,
        *,
        while_loop: WhileLoop = lax_while_loop,
    ) -> Solution:
        condition = _require_fixed_point(condition, self)
        x_init = jnp.asarray(require_x0(x0, self))
        shape, m = x_init.shape, self.memory
        rtol = tolerance(self.rtol, x_init.dtype)
        atol = tolerance(self.atol, x_init.dtype)

        def T(flat):
            return condition.fixed_point_map(flat.reshape(shape), theta).reshape(-1)

        def step(state: _AndersonState):
            residuals = state.gs - state.xs  # (m, n)
            valid = jnp.arange(m) < jnp.minimum(state.count, m)
            residuals = jnp.where(valid[:, None], residuals, 0)
            gram = residuals @ residuals.T
            scale = jnp.maximum(jnp.trace(gram), jnp.finfo(gram.dtype).tiny)
            # Invalid (empty) slots get a huge diagonal, hence a zero weight.
            ridge = jnp.maximum(self.ridge, jnp.finfo(gram.dtype).eps)
            diag = jnp.where(valid, ridge * scale, 1e30 * scale)
            operator = lx.MatrixLinearOperator(
                gram + jnp.diag(diag), lx.positive_semidefinite_tag
            )
            weights = lx.linear_solve(
                operator, jnp.ones(m, gram.dtype), lx.Cholesky(), throw=False
            ).value
            weights = weights / jnp.sum(weights)
            # A breakdown (e.g. residuals at the rounding level) falls back to plain
            # iteration from the latest image.
            latest = jnp.arange(m) == (state.count - 1) % m
            usable = jnp.all(jnp.isfinite(weights))
            weights = jnp.where(usable, weights, latest.astype(weights.dtype))
            x_new = self.mixing * (weights @ state.gs) + (1 - self.mixing) * (
                weights @ state.xs
            )
            g_new = T(x_new)
            slot = state.count % m
            xs = state.xs.at[slot].set(x_new)
            gs = state.gs.at[slot].set(g_new)
            error = jnp.max(jnp.abs(g_new - x_new))
            done = error <= atol + rtol * jnp.max(jnp.abs(g_new))
            return _AndersonState(x_new, xs, gs, state.count + 1), done

        flat0 = x_init.reshape(-1)
        g0 = T(flat0)
        xs = jnp.zeros((m,) + flat0.shape, flat0.dtype).at[0].set(flat0)
        gs = jnp.zeros((m,) + flat0.shape, flat0.dtype).at[0].set(g0)
        init = _AndersonState(flat0, xs, gs, jnp.array(1))
        state, num_steps, result = iterate(
            step, init, max_steps=self.max_steps, while_loop=while_loop
        )
        # The last image is at least as good as the last combination.
        last = state.gs[(state.count - 1) % m]
        value = last.reshape(shape)
        result = objective_finite(condition, value, theta, result)
        stats = {"num_steps": num_steps}
        return Solution(value=value, result=result, aux=None, stats=stats)
