"""The iteration loop shared by implicitx's own solvers."""

from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np

from .._misc import tree_all_finite
from .._results import RESULTS
from .._while_loops import WhileLoop


def tolerance(tol: float | None, dtype) -> float:
    """`tol`, or the dtype-dependent default `max(1e-8, 100 eps)` when it is `None`."""
    if tol is not None:
        return tol
    return max(1e-8, 100 * float(np.finfo(dtype).eps))


def float_dtype(tree) -> Any:
    """The dtype of the first inexact leaf of `tree` (float64 or float32)."""
    for leaf in jtu.tree_leaves(tree):
        dtype = jnp.result_type(leaf)
        if jnp.issubdtype(dtype, jnp.inexact):
            return dtype
    return jnp.result_type(float)


def max_abs(tree) -> jnp.ndarray:
    leaves = [jnp.max(jnp.abs(leaf)) for leaf in jtu.tree_leaves(tree)]
    return jnp.max(jnp.stack(leaves))


def converged(x_new, x_old, rtol, atol) -> jnp.ndarray:
    """Cauchy criterion `max|x_new - x_old| <= atol + rtol * max|x_new|`."""
    diff = max_abs(jtu.tree_map(lambda a, b: a - b, x_new, x_old))
    return diff <= atol + rtol * max_abs(x_new)


def iterate(
    step: Callable[[Any], tuple[Any, jnp.ndarray]],
    state: Any,
    *,
    max_steps: int,
    while_loop: WhileLoop,
) -> tuple[Any, jnp.ndarray, RESULTS]:
    """Runs `state, done = step(state)` until `done`, until the state (iterate,
    objective, gradient, step size: every inexact leaf) is non-finite, or for
    `max_steps` steps.

    The loop is `while_loop`, the one the adjoint handed the solver (see
    `implicitx._while_loops`).

    **Returns:**

    The final state, the number of steps taken, and `successful`,
    `nonfinite_iterate` (the loop stopped at the first non-finite state) or
    `nonlinear_max_steps_reached`.
    """

    def cond(carry):
        _, num_steps, done, finite = carry
        going = jnp.logical_and(jnp.logical_not(done), finite)
        return jnp.logical_and(going, num_steps < max_steps)

    def body(carry):
        state, num_steps, _, _ = carry
        state, done = step(state)
        return state, num_steps + 1, done, _all_finite(state)

    init = (state, jnp.array(0), jnp.array(False), _all_finite(state))
    state, num_steps, done, finite = while_loop(cond, body, init, max_steps=max_steps)
    result = RESULTS.where(
        finite,
        converged_result(done),
        RESULTS.nonfinite_iterate,  # pyright: ignore[reportArgumentType]
    )
    return state, num_steps, result


def _all_finite(state) -> jnp.ndarray:
    leaves = [
        leaf
        for leaf in jtu.tree_leaves(state)
        if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact)
    ]
    return tree_all_finite(leaves)


def converged_result(converged: jnp.ndarray) -> RESULTS:
    """`successful` if `converged`, else `nonlinear_max_steps_reached`."""
    ok, failed = RESULTS.successful, RESULTS.nonlinear_max_steps_reached
    return RESULTS.where(converged, ok, failed)  # pyright: ignore[reportArgumentType]
