"""The backtracking line search on the Lipschitz estimate `L` of a proximal-gradient
step, shared by `ProximalGradient`, `ProjectedGradient` and `BlockCoordinateDescent`.
"""

from collections.abc import Callable
from typing import Generic, TypeVar

import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
from jaxtyping import Array

from .._conditions._proximal_gradient import check_stepsize
from .._while_loops import WhileLoop
from ._base import AbstractIterativeSolver, AbstractIterativeState
from ._loop import max_abs


# Each search starts from `_SHRINK * L` by default (so the estimate of `L` can
# decrease again) and doubles it until the upper bound holds, at most `_TRIES` times.
_SHRINK = 0.9
_TRIES = 60


_S = TypeVar("_S", bound=AbstractIterativeState)


class AbstractBacktrackingSolver(AbstractIterativeSolver[_S], Generic[_S]):
    """A solver whose steps search for the Lipschitz constant `L` of the gradient by
    backtracking (see [`backtrack`][]), from `initial_lipschitz`; the search may grow
    the step by `increase_factor` per step (see `ProximalGradient`)."""

    initial_lipschitz: float = 1e-3
    increase_factor: float | None = None

    def __check_init__(self):
        check_stepsize(self, self.initial_lipschitz, "initial_lipschitz")
        _check_increase_factor(self, self.increase_factor)

    def start_factor(self) -> float:
        """The factor on `L` where a search starts: `0.9` by default (`None`), else
        `1 / increase_factor` (the step may grow by `increase_factor`)."""
        factor = self.increase_factor
        return _SHRINK if factor is None else 1 / factor


def _check_increase_factor(owner: object, value: float | None) -> None:
    """Raises a `ValueError` naming `owner`'s class when a known `increase_factor` is
    not finite and at least 1."""
    if value is None or not isinstance(value, (int, float, np.ndarray, np.generic)):
        return
    if not np.all((np.asarray(value) >= 1) & np.isfinite(np.asarray(value))):
        raise ValueError(
            f"`{type(owner).__name__}` needs a finite `increase_factor` >= 1; got "
            f"increase_factor={np.asarray(value).tolist()!r} (below 1 the estimate of "
            "the Lipschitz constant could only grow)."
        )


def vdot(a: list, b: list, dtype) -> Array:
    """`<a, b>` for two lists of leaves, accumulated in `dtype`."""
    terms = [jnp.sum(u * v).astype(dtype) for u, v in zip(a, b, strict=True)]
    return sum(terms, jnp.zeros((), dtype))


def sub(a, b):
    return jtu.tree_map(lambda u, v: u - v, a, b)


def axpy(alpha: Array, x, y):
    """`alpha * x + y` on PyTrees, `alpha` cast to each leaf's dtype."""
    return jtu.tree_map(lambda u, v: alpha.astype(u.dtype) * u + v, x, y)


def proximal_trial(f: Callable, prox: Callable, y, f_y: Array, g_y, dtype):
    """The trial of a proximal-gradient step from `y` (with `f(y) = f_y` and
    `grad f(y) = g_y`): `lip -> (x+, ok, tiny)` with `x+ = prox(y - g_y / lip,
    1 / lip)`, `ok` when `L = lip` passes the test of the line search, `tiny` when the
    step is at the rounding level of `y` (it says nothing about `L`)."""
    g_l = jtu.tree_leaves(g_y)
    eps = jnp.finfo(dtype).eps
    scale_y, scale_g = max_abs(y), max_abs(g_y)
    # Not finite at `y`: stop searching, the loop reports it.
    nonfinite = jnp.logical_not(jnp.isfinite(f_y) & jnp.isfinite(scale_g))

    def trial(lip):
        inv = 1 / lip
        x = prox(axpy(-inv, g_y, y), inv)
        d = jtu.tree_leaves(sub(x, y))
        dd = vdot(d, d, dtype)
        ok = f(x) <= f_y + vdot(g_l, d, dtype) + 0.5 * lip * dd
        tiny = max_abs(d) <= 10 * eps * scale_y

        def curvature_ok():
            g_x = jtu.tree_leaves(jax.grad(f)(x))
            change = vdot([a - b for a, b in zip(g_x, g_l, strict=True)], d, dtype)
            return change <= 0.5 * lip * dd

        ok = jax.lax.cond(ok | tiny | nonfinite, lambda: jnp.array(True), curvature_ok)
        return x, ok, tiny

    return trial


def backtrack(
    trial: Callable, lipschitz: Array, shrink: float, while_loop: WhileLoop
) -> tuple:
    """Backtracking from `shrink * lipschitz`: doubles `L` until `trial(L)` passes,
    at most 60 times. A step at the rounding level does not lower the estimate.

    **Returns:**

    `(x+, L, ok)`: the last trial point, its `L`, and whether it passed.
    """

    def cond(carry):
        _, _, ok, tries = carry
        return jnp.logical_and(jnp.logical_not(ok), tries < _TRIES)

    def body(carry):
        _, lip, _, tries = carry
        x, ok, _ = trial(2 * lip)
        return x, 2 * lip, ok, tries + 1

    start = jnp.asarray(shrink, lipschitz.dtype) * lipschitz
    x, ok, tiny = trial(start)
    init = (x, start, ok, jnp.array(0))
    x, lip, ok, _ = while_loop(cond, body, init, max_steps=_TRIES)
    lip = jnp.where(tiny, jnp.maximum(lip, lipschitz), lip)
    return x, lip, ok
