"""The iteration loop shared by implicitx's own solvers, and its helpers."""

from typing import Any

import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np

from .._misc import tree_all_finite
from .._results import RESULTS


def tolerance(tol: float | None, dtype) -> float:
    """`tol`, or the dtype-dependent default `max(1e-8, 100 eps)` when it is `None`."""
    if tol is not None:
        return tol
    return max(1e-8, 100 * float(np.finfo(dtype).eps))


def tolerances(solver, tree) -> tuple[float, float]:
    """The solver's `(rtol, atol)` for iterates like `tree` (see [`tolerance`][])."""
    dtype = float_dtype(tree)
    return tolerance(solver.rtol, dtype), tolerance(solver.atol, dtype)


def float_dtype(tree) -> Any:
    """The dtype of the first inexact leaf of `tree` (float64 or float32)."""
    for leaf in jtu.tree_leaves(tree):
        dtype = jnp.result_type(leaf)
        if jnp.issubdtype(dtype, jnp.inexact):
            return dtype
    return jnp.result_type(float)


def max_abs(tree) -> jnp.ndarray:
    leaves = [jnp.max(jnp.abs(leaf), initial=0) for leaf in jtu.tree_leaves(tree)]
    return jnp.max(jnp.stack(leaves))


def converged(x_new, x_old, rtol, atol) -> jnp.ndarray:
    """Cauchy criterion `max|x_new - x_old| <= atol + rtol * max|x_new|`."""
    diff = max_abs(jtu.tree_map(lambda a, b: a - b, x_new, x_old))
    return diff <= atol + rtol * max_abs(x_new)


def stop_or_nonfinite(done: jnp.ndarray, state) -> tuple[jnp.ndarray, RESULTS]:
    """`(stop, result)`: stop when `done` (`successful`) or as soon as an inexact
    leaf of `state` is not finite (`nonfinite_iterate`)."""
    finite = _all_finite(state)
    stop = jnp.logical_or(done, jnp.logical_not(finite))
    result = RESULTS.where(
        finite,
        RESULTS.successful,  # pyright: ignore[reportArgumentType]
        RESULTS.nonfinite_iterate,  # pyright: ignore[reportArgumentType]
    )
    return stop, result


def _all_finite(state) -> jnp.ndarray:
    leaves = [
        leaf
        for leaf in jtu.tree_leaves(state)
        if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact)
    ]
    return tree_all_finite(leaves)
