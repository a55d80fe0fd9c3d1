import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Int

from .._conditions import AbstractCompositeCondition
from .._while_loops import lax_while_loop
from ._base import AbstractIterativeState, require_x0
from ._line_search import AbstractBacktrackingSolver, backtrack, proximal_trial
from ._loop import converged, tolerances


class _BlockCoordinateState(AbstractIterativeState):
    x: Array
    lipschitz: Array  # one estimate of `L_j` per block
    num_steps: Int[Array, ""]
    converged: Bool[Array, ""]


class BlockCoordinateDescent(AbstractBacktrackingSolver[_BlockCoordinateState]):
    """Block coordinate descent for `min_x f(x, theta) + sum_j g(x[j], theta)` with
    `g` separable over blocks.

    - With a [`implicitx.BlockProximalGradientFixedPoint`][] condition, the blocks are
        the rows of `x` (e.g. one simplex per row for the multiclass SVM dual, one
        group per row for a group lasso).
    - With a [`implicitx.ProximalGradientFixedPoint`][] condition on a vector `x`, the
        blocks are its coordinates, and the prox must be coordinate-separable (L1,
        elastic net, non-negativity, box, ...), as for the lasso.

    One step is a sweep over the blocks in order; each block takes a proximal-gradient
    step `x[j] <- prox_{g/L_j}(x[j] - grad_j f(x) / L_j)` with its own step size found
    by the line search of [`implicitx.solvers.ProximalGradient`][] along the block
    (from `L_j / increase_factor`, by default `0.9 L_j`, `L_j` is doubled until `f`
    satisfies the quadratic upper bound along the block, or its gradient-based form
    when rounding makes function values unreliable) and remembered across sweeps. It
    stops when a sweep changes `x` by at most `atol + rtol max|x|` (each block's
    change is its proximal-gradient residual at the step `1 / L_j`), and as soon as
    `x` is non-finite (`RESULTS.nonfinite_iterate`). It can be run step by step
    (see [`implicitx.solvers.AbstractIterativeSolver`][]).

    **Arguments:**

    - `rtol`, `atol`, `max_steps`: as for every
        [`implicitx.solvers.AbstractIterativeSolver`][] (by default `1e-8` in float64,
        about `1.2e-5` in float32, and `1000` sweeps).
    - `initial_lipschitz`: the first estimate of every block's `L_j` (`> 0`).
    - `increase_factor`: as for [`implicitx.solvers.ProximalGradient`][], per block.
    """

    max_steps: int = eqx.field(default=1000, static=True)

    def init(self, condition, theta, x0) -> _BlockCoordinateState:
        _block_prox(condition, theta)  # checks the condition
        x = jnp.asarray(require_x0(x0, self))
        lipschitz = jnp.full(x.shape[:1], self.initial_lipschitz, x.dtype)
        return _BlockCoordinateState(x, lipschitz, jnp.array(0), jnp.array(False))

    def step(self, condition, theta, state, *, while_loop=lax_while_loop):
        update = _block_update(self, condition, theta, while_loop)
        x, lipschitz = jax.lax.fori_loop(
            0, state.x.shape[0], update, (state.x, state.lipschitz)
        )
        rtol, atol = tolerances(self, x)
        done = converged(x, state.x, rtol, atol)
        return _BlockCoordinateState(x, lipschitz, state.num_steps + 1, done)


def _block_prox(condition, theta):
    separable = isinstance(condition, AbstractCompositeCondition)
    block_prox = condition.block_prox_at(theta) if separable else None
    if block_prox is None:
        raise TypeError(
            "`BlockCoordinateDescent` needs a composite condition whose prox "
            "separates over blocks (`AbstractCompositeCondition.block_prox_at`), "
            "such as a `BlockProximalGradientFixedPoint`, or a "
            "`ProximalGradientFixedPoint` on a vector with a coordinate-separable "
            f"prox; got `{type(condition).__name__}`."
        )
    return block_prox


def _block_update(solver, condition, theta, while_loop):
    """`(j, (x, L)) -> (x, L)`: the proximal-gradient step of block `j`, with the
    line search along the block."""
    block_prox = _block_prox(condition, theta)
    f = lambda x: condition.objective_value(x, theta)
    shrink = solver.start_factor()

    def update(j, carry):
        x, lipschitz = carry
        f_x, g = jax.value_and_grad(f)(x)
        f_j = lambda z: f(x.at[j].set(z))
        prox_j = lambda z, step: block_prox(x, j, z, step)
        trial = proximal_trial(f_j, prox_j, x[j], f_x, g[j], x.dtype)
        new_j, l_j, _ = backtrack(trial, lipschitz[j], shrink, while_loop)
        return x.at[j].set(new_j), lipschitz.at[j].set(l_j)

    return update
