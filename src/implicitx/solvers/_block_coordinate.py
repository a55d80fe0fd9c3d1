import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import ArrayLike, PyTree

from .._conditions import AbstractCompositeCondition, AbstractCondition
from .._conditions._proximal_gradient import check_stepsize
from .._solution import Solution
from .._while_loops import lax_while_loop, WhileLoop
from ._base import AbstractSolver, require_x0
from ._loop import converged, iterate, tolerance


_SHRINK, _TRIES = 0.9, 60  # as in `ProximalGradient`


class BlockCoordinateDescent(AbstractSolver):
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
    by backtracking (from `0.9 L_j`, so that the estimate can decrease again, `L_j` is
    doubled until `f` satisfies the quadratic upper bound along the block, or its
    gradient-based form when rounding makes function values unreliable) and
    remembered across sweeps. It stops when a sweep changes `x` by at most
    `atol + rtol max|x|` (each block's change is its proximal-gradient residual at
    the step `1 / L_j`), and as soon as `x` is non-finite
    (`RESULTS.nonfinite_iterate`).

    **Arguments:**

    - `rtol`, `atol`: the stopping tolerances. `None` (the default) means
        `max(1e-8, 100 eps)` for the machine epsilon `eps` of `x`'s dtype: `1e-8` in
        float64, about `1.2e-5` in float32.
    - `max_steps`: the maximum number of sweeps; reaching it is reported as a failure.
    - `initial_lipschitz`: the first estimate of every block's `L_j` (`> 0`).
    """

    rtol: float | None = None
    atol: float | None = None
    max_steps: int = eqx.field(default=1000, static=True)
    initial_lipschitz: float = 1e-3

    def __check_init__(self):
        check_stepsize(self, self.initial_lipschitz, "initial_lipschitz")

    def solve(
        self,
        condition: AbstractCondition,
        theta: PyTree[ArrayLike],
        x0: PyTree[ArrayLike] | None,
        *,
        while_loop: WhileLoop = lax_while_loop,
    ) -> Solution:
        x_init = jnp.asarray(require_x0(x0, self))
        separable = isinstance(condition, AbstractCompositeCondition)
        block_prox = condition.block_prox_at(theta) if separable else None
        if not separable or block_prox is None:
            raise TypeError(
                "`BlockCoordinateDescent` needs a composite condition whose prox "
                "separates over blocks (`AbstractCompositeCondition.block_prox_at`), "
                "such as a `BlockProximalGradientFixedPoint`, or a "
                "`ProximalGradientFixedPoint` on a vector with a coordinate-separable "
                f"prox; got `{type(condition).__name__}`."
            )
        f = lambda x: condition.objective(x, theta)
        value_and_grad = jax.value_and_grad(f)
        dtype = x_init.dtype
        rtol, atol = tolerance(self.rtol, dtype), tolerance(self.atol, dtype)
        eps = jnp.finfo(dtype).eps

        def update_block(j, carry):
            x, lipschitz = carry
            f_x, g = value_and_grad(x)
            x_j, g_j = x[j], g[j]
            scale = jnp.max(jnp.abs(x_j))

            def attempt(l_j):
                new_j = block_prox(x, j, x_j - g_j / l_j, 1 / l_j)
                diff = new_j - x_j
                squared = jnp.sum(diff**2)
                bound = f_x + jnp.sum(g_j * diff) + 0.5 * l_j * squared
                moved = x.at[j].set(new_j)
                ok = f(moved) <= bound
                # A change at the rounding level says nothing about `L_j`.
                tiny = jnp.max(jnp.abs(diff)) <= 10 * eps * scale
                ok = ok | tiny
                # Not finite: stop searching, the loop reports it.
                ok = ok | jnp.logical_not(jnp.isfinite(f_x))

                def curvature_ok():
                    change = jnp.sum((jax.grad(f)(moved)[j] - g_j) * diff)
                    return change <= 0.5 * l_j * squared

                ok = jax.lax.cond(ok, lambda: jnp.array(True), curvature_ok)
                return new_j, ok, tiny

            def cond(c):
                return jnp.logical_and(jnp.logical_not(c[2]), c[3] < _TRIES)

            def body(c):
                _, l_j, _, tries = c
                new_j, ok, _ = attempt(2 * l_j)
                return new_j, 2 * l_j, ok, tries + 1

            l_j = _SHRINK * lipschitz[j]
            new_j, ok, tiny = attempt(l_j)
            new_j, l_j, _, _ = while_loop(
                cond, body, (new_j, l_j, ok, jnp.array(0)), max_steps=_TRIES
            )
            # A change at the rounding level does not lower the estimate.
            l_j = jnp.where(tiny, jnp.maximum(l_j, lipschitz[j]), l_j)
            return x.at[j].set(new_j), lipschitz.at[j].set(l_j)

        def sweep(state):
            x, lipschitz = state
            x_new, lipschitz = jax.lax.fori_loop(
                0, x.shape[0], update_block, (x, lipschitz)
            )
            return (x_new, lipschitz), converged(x_new, x, rtol, atol)

        lipschitz0 = jnp.full(x_init.shape[:1], self.initial_lipschitz, dtype)
        (x, lipschitz), num_steps, result = iterate(
            sweep,
            (x_init, lipschitz0),
            max_steps=self.max_steps,
            while_loop=while_loop,
        )
        stats = {"num_steps": num_steps}
        return Solution(value=x, result=result, aux=None, stats=stats)
