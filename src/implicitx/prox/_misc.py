import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from .._operator_base import (
    check_hyperparameters,
    nan_unless,
    nonnegative,
    safe_norm as safe_norm,
)


def check_strengths(owner: str, **strengths: ArrayLike) -> None:
    """Regularisation strengths must be `>= 0` (`inf` allowed) everywhere: raises a
    `ValueError` at construction for known negative (or NaN) values."""
    for name, value in strengths.items():
        check_hyperparameters(
            owner,
            f"`{name} >= 0`",
            nonnegative,
            why="otherwise the penalty is not convex",
            **{name: value},
        )


def nan_unless_nonnegative(x: Array, y: Array, *strengths: ArrayLike) -> Array:
    """`x = prox(y)`, or NaN (with NaN derivatives) where a traced strength is
    negative (or NaN)."""
    for value in strengths:
        x = nan_unless(nonnegative, x, value, point=y)
    return x


def cast_and_broadcast(value: ArrayLike, like: Array) -> Array:
    """Casts a step size or hyperparameter to the dtype of the point `like`, and
    broadcasts it to `like`'s shape unless it is a scalar (scalars broadcast without
    rank promotion). Casting is differentiable, so derivatives still reach `value`."""
    value = jnp.asarray(value, dtype=like.dtype)
    if value.ndim == 0:
        return value
    return jnp.broadcast_to(value, like.shape)


def soft_threshold(y: Float[Array, "..."], threshold: Array) -> Float[Array, "..."]:
    """`sign(y) * max(|y| - threshold, 0)`, elementwise, for `threshold >= 0`.

    Written as `y - clip(y, -threshold, threshold)` (the Moreau decomposition of the
    l1 norm), whose derivatives are exact away from `|y| = threshold`: `1` in `y` and
    `-sign(y)` in `threshold` outside the interval, `0` inside.
    """
    return y - jnp.clip(y, -threshold, threshold)


def block_soft_threshold(
    y: Float[Array, "..."], threshold: Array, axis: int | None = None
) -> Float[Array, "..."]:
    """`max(1 - threshold / ||y||, 0) * y`, the norm taken over `axis` (or the whole
    array), for `threshold >= 0`. Finite derivatives everywhere, including `y = 0`."""
    norm, safe = safe_norm(y, axis=axis, keepdims=axis is not None)
    scale = jnp.where(norm >= threshold, 1 - threshold / safe, 0)
    return scale * y
