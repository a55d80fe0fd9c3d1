"""The loops that forward solvers run, chosen by the adjoint (see
[`implicitx.AbstractAdjoint.while_loop`][]): a solver runs its iterations through the
`while_loop` it is given and never asks how it will be differentiated.

Both have the signature of `equinox.internal.while_loop`:
`while_loop(cond_fun, body_fun, init_val, *, max_steps)`.
"""

from collections.abc import Callable
from typing import Any, TypeAlias

import equinox.internal as eqxi


WhileLoop: TypeAlias = Callable[..., Any]


def lax_while_loop(cond_fun, body_fun, init_val, *, max_steps: int | None):
    """A plain `lax.while_loop` (stopping after `max_steps`): the loop of a solve that
    JAX never differentiates through (implicit differentiation)."""
    return eqxi.while_loop(
        cond_fun, body_fun, init_val, max_steps=max_steps, kind="lax"
    )


def checkpointed_while_loop(cond_fun, body_fun, init_val, *, max_steps: int):
    """A bounded loop, differentiable in forward and reverse mode, with nested
    checkpointing to bound the memory of reverse mode: the loop of an unrolled solve."""
    return eqxi.while_loop(
        cond_fun, body_fun, init_val, max_steps=max_steps, kind="bounded"
    )
