import warnings

import equinox as eqx
import jax.numpy as jnp
import jax.tree_util as jtu
import lineax as lx
from jaxtyping import Array, Bool, Int, PyTree

from .._conditions import (
    AbstractFixedPointCondition,
    AbstractMirrorDescentCondition,
)
from .._results import RESULTS
from .._solution import Solution
from .._while_loops import lax_while_loop
from ._base import (
    AbstractIterativeSolver,
    AbstractIterativeState,
    require_x0,
    stats,
)
from ._loop import float_dtype, max_abs, tolerances


def objective_finite(condition, x, theta, result: RESULTS) -> RESULTS:
    """`nonfinite_iterate` if the condition has an objective that is not finite at
    the final iterate `x` (non-finite data can leave a fixed-point map finite, e.g.
    an infinite gradient entry in an exponentiated-gradient step), else `result`."""
    objective = getattr(condition, "objective_value", None)
    if not callable(objective):
        return result
    finite = jnp.all(jnp.isfinite(jnp.asarray(objective(x, theta))))  # pyright: ignore
    return RESULTS.where(
        finite,
        result,
        RESULTS.nonfinite_iterate,  # pyright: ignore[reportArgumentType]
    )


class _AbstractFixedPointSolver(AbstractIterativeSolver):
    """A solver of a fixed-point condition `x = T(x, theta)`: its solution is checked
    against the condition's objective, if it has one (see `objective_finite`)."""

    def postprocess(self, condition, theta, state, result) -> Solution:
        value = self._value(state)
        result = objective_finite(condition, value, theta, result)
        return Solution(value=value, result=result, aux=None, stats=stats(state))

    def _value(self, state) -> PyTree[Array]:
        return state.x

    def _fixed_point(self, condition) -> AbstractFixedPointCondition:
        """The condition, checked to be one that the solver iterates."""
        if not isinstance(condition, AbstractFixedPointCondition):
            raise TypeError(
                f"`{type(self).__name__}` iterates a fixed-point map: it needs a "
                "fixed-point condition (e.g. `FixedPoint`, `MirrorDescentFixedPoint`, "
                f"`ProximalGradientFixedPoint`), got `{type(condition).__name__}`."
            )
        return condition


class _MapState(AbstractIterativeState):
    x: PyTree[Array]
    last: Array  # the last non-zero change, max|x_k - x_k-1|
    num_steps: Int[Array, ""]
    converged: Bool[Array, ""]


# The observed contraction `q` of the steps is taken at most this.
_MAX_CONTRACTION = 0.9


class _AbstractMapIteration(_AbstractFixedPointSolver):
    """Iterates the condition's map `x+ = T(x, theta)` until the estimated distance
    to the fixed point, `max|x_k+1 - x_k| / (1 - q)` with `q` the observed
    contraction, is at most `atol + rtol max|x_k+1|`."""

    def init(self, condition, theta, x0) -> _MapState:
        self._fixed_point(condition)  # checks the condition
        x0 = jtu.tree_map(jnp.asarray, require_x0(x0, self))
        dtype = float_dtype(x0)
        last = jnp.asarray(jnp.finfo(dtype).max, dtype)  # finite: the loop checks
        return _MapState(x0, last, jnp.array(0), jnp.array(False))

    def step(self, condition, theta, state, *, while_loop=lax_while_loop) -> _MapState:
        del while_loop  # no inner loop
        rtol, atol = tolerances(self, state.x)
        x_new = self._fixed_point(condition).fixed_point_map(state.x, theta)
        change = max_abs(jtu.tree_map(lambda a, b: a - b, x_new, state.x))
        # The distance to the fixed point is about `change / (1 - q)` for the
        # observed contraction `q` (taken at most 0.9).
        q = jnp.clip(change / state.last, 0, _MAX_CONTRACTION)
        done = change / (1 - q) <= atol + rtol * max_abs(x_new)
        last = jnp.where(change > 0, change, state.last)
        return _MapState(x_new, last, state.num_steps + 1, done)


class MirrorDescent(_AbstractMapIteration):
    """Mirror descent for `min_{x in C} f(x, theta)`: iterates the step of a
    mirror-descent condition ([`implicitx.MirrorDescentFixedPoint`][], or any
    [`implicitx.AbstractMirrorDescentCondition`][]),
    `x+ = project(grad phi(x) - stepsize * grad f(x))`, with the condition's mirror map
    and step size, until the estimated distance to the fixed point is small,
    `max|x_k+1 - x_k| / (1 - q) <= atol + rtol max|x_k+1|` with `q` the observed
    contraction of the steps (at most 0.9), or the iterate or the objective is
    non-finite (`RESULTS.nonfinite_iterate`). The step size is the condition's (checked
    positive there). It can be run step by step (see
    [`implicitx.solvers.AbstractIterativeSolver`][]).

    With the negative entropy on (products of) simplices this is the
    exponentiated-gradient method.

    **Arguments:**

    - `rtol`, `atol`, `max_steps`: as for every
        [`implicitx.solvers.AbstractIterativeSolver`][] (by default `1e-8` in float64,
        about `1.2e-5` in float32, and `10_000` steps).
    """

    def _fixed_point(self, condition) -> AbstractFixedPointCondition:
        if not isinstance(condition, AbstractMirrorDescentCondition):
            raise TypeError(
                "`MirrorDescent` needs a mirror-descent condition (a "
                "`MirrorDescentFixedPoint`, or your own subclass of "
                f"`AbstractMirrorDescentCondition`), got `{type(condition).__name__}`."
            )
        return condition


class PicardIteration(_AbstractMapIteration):
    """Plain (Picard) iteration `x+ = T(x, theta)` of any fixed-point condition, until
    the estimated distance to the fixed point is small,
    `max|x_k+1 - x_k| / (1 - q) <= atol + rtol max|x_k+1|` with `q` the observed
    contraction of the steps (at most 0.9), or the iterate is non-finite
    (`RESULTS.nonfinite_iterate`); use `OptimistixFixedPoint` for optimistix's
    variants (e.g. `optimistix.FixedPointIteration`). Converges when `T` is a
    contraction. It can be run step by step (see
    [`implicitx.solvers.AbstractIterativeSolver`][]).

    Formerly `implicitx.solvers.FixedPointIteration` (a name that clashed with
    `optimistix.FixedPointIteration`; the old name is deprecated).

    **Arguments:**

    - `rtol`, `atol`, `max_steps`: as for every
        [`implicitx.solvers.AbstractIterativeSolver`][] (by default `1e-8` in float64,
        about `1.2e-5` in float32, and `10_000` steps).
    """


class FixedPointIteration(PicardIteration):
    """Deprecated: the former name of [`implicitx.solvers.PicardIteration`][] (it
    clashed with `optimistix.FixedPointIteration`). Constructing it warns."""

    def __check_init__(self):
        warnings.warn(
            "`implicitx.solvers.FixedPointIteration` is deprecated: use "
            "`implicitx.solvers.PicardIteration` (the same solver; the old name "
            "clashed with `optimistix.FixedPointIteration`).",
            DeprecationWarning,
            stacklevel=3,
        )


class _AndersonState(AbstractIterativeState):
    x: Array  # the last combination of iterates, with the shape of `x0`
    xs: Array  # history of iterates, (memory, n)
    gs: Array  # history of T(iterates), (memory, n)
    count: Array
    num_steps: Int[Array, ""]
    converged: Bool[Array, ""]


class AndersonAcceleration(_AbstractFixedPointSolver):
    """Anderson acceleration of a fixed-point iteration `x+ = T(x, theta)`.

    Keeps the last `memory` iterates and their images, and takes the combination of
    the images whose residuals `T(x) - x` combine to the smallest norm (a small
    regularised least-squares problem, solved with lineax), mixed with the
    combination of iterates by `mixing`. Often converges in far fewer steps than plain
    iteration, also for maps that are only mildly contractive. It can be run step by
    step (see [`implicitx.solvers.AbstractIterativeSolver`][]); its solution is the
    image of the last combination, `T(state.x)`.

    **Arguments:**

    - `memory`: the number of past iterates used. Default `5`.
    - `mixing`: the mixing parameter in `(0, 1]` (`1` uses the images only).
    - `ridge`: the Tikhonov regularisation of the least-squares problem, relative to
        its scale.
    - `rtol`, `atol`, `max_steps`: as for every
        [`implicitx.solvers.AbstractIterativeSolver`][], the tolerances on
        `max|T(x) - x|` (by default `1e-8` in float64, about `1.2e-5` in float32,
        and `1000` steps).
    """

    memory: int = eqx.field(default=5, static=True)
    mixing: float = 1.0
    ridge: float = 1e-10
    max_steps: int = eqx.field(default=1000, static=True)

    def init(self, condition, theta, x0) -> _AndersonState:
        T = _flat_map(condition, theta, self)
        x = jnp.asarray(require_x0(x0, self))
        flat0 = x.reshape(-1)
        g0 = T(flat0, x.shape)
        xs = jnp.zeros((self.memory,) + flat0.shape, flat0.dtype).at[0].set(flat0)
        gs = jnp.zeros((self.memory,) + flat0.shape, flat0.dtype).at[0].set(g0)
        zero = jnp.array(0)
        return _AndersonState(x, xs, gs, jnp.array(1), zero, jnp.array(False))

    def step(self, condition, theta, state, *, while_loop=lax_while_loop):
        del while_loop  # no inner loop
        rtol, atol = tolerances(self, state.x)
        weights = _anderson_weights(self, state)
        x_new = self.mixing * (weights @ state.gs) + (1 - self.mixing) * (
            weights @ state.xs
        )
        g_new = _flat_map(condition, theta, self)(x_new, state.x.shape)
        slot = state.count % self.memory
        xs = state.xs.at[slot].set(x_new)
        gs = state.gs.at[slot].set(g_new)
        error = jnp.max(jnp.abs(g_new - x_new))
        done = error <= atol + rtol * jnp.max(jnp.abs(g_new))
        x = x_new.reshape(state.x.shape)
        return _AndersonState(x, xs, gs, state.count + 1, state.num_steps + 1, done)

    def _value(self, state: _AndersonState) -> Array:
        # The last image is at least as good as the last combination.
        return state.gs[(state.count - 1) % self.memory].reshape(state.x.shape)


def _flat_map(condition, theta, solver):
    """`(flat, shape) -> T(x, theta)` flattened, for `x = flat.reshape(shape)`."""
    condition = solver._fixed_point(condition)
    return lambda flat, shape: condition.fixed_point_map(
        flat.reshape(shape), theta
    ).reshape(-1)


def _anderson_weights(solver: AndersonAcceleration, state: _AndersonState) -> Array:
    """The weights of the past images: those whose residuals combine to the least
    norm, or (on a breakdown) the latest image alone."""
    m = solver.memory
    residuals = state.gs - state.xs  # (m, n)
    valid = jnp.arange(m) < jnp.minimum(state.count, m)
    residuals = jnp.where(valid[:, None], residuals, 0)
    gram = residuals @ residuals.T
    scale = jnp.maximum(jnp.trace(gram), jnp.finfo(gram.dtype).tiny)
    # Invalid (empty) slots get a huge diagonal, hence a zero weight.
    ridge = jnp.maximum(solver.ridge, jnp.finfo(gram.dtype).eps)
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
    return jnp.where(usable, weights, latest.astype(weights.dtype))
