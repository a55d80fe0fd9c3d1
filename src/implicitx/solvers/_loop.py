"""The iteration loop shared by implicitx's own solvers."""

from collections.abc import Callable
from typing import Any

import equinox.internal as eqxi
import jax.numpy as jnp
import jax.tree_util as jtu

from .._results import RESULTS


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
    differentiable: bool,
) -> tuple[Any, jnp.ndarray, RESULTS]:
    """Runs `state, done = step(state)` until `done` or `max_steps` steps.

    The loop is a plain `lax.while_loop` when not differentiated, and a bounded loop
    (forward- and reverse-mode differentiable, with nested checkpointing to bound
    memory) when the solver is unrolled.

    **Returns:**

    The final state, the number of steps taken, and `successful` or
    `nonlinear_max_steps_reached`.
    """

    def cond(carry):
        _, num_steps, done = carry
        return jnp.logical_and(jnp.logical_not(done), num_steps < max_steps)

    def body(carry):
        state, num_steps, _ = carry
        state, done = step(state)
        return state, num_steps + 1, done

    init = (state, jnp.array(0), jnp.array(False))
    kind = "bounded" if differentiable else "lax"
    state, num_steps, done = eqxi.while_loop(
        cond, body, init, max_steps=max_steps, kind=kind
    )
    return state, num_steps, converged_result(done)


def converged_result(converged: jnp.ndarray) -> RESULTS:
    """`successful` if `converged`, else `nonlinear_max_steps_reached`."""
    ok, failed = RESULTS.successful, RESULTS.nonlinear_max_steps_reached
    return RESULTS.where(converged, ok, failed)  # pyright: ignore[reportArgumentType]
