import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float


def cast_to(value: ArrayLike, like: Array) -> Array:
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


def safe_norm(
    y: Float[Array, "..."], axis: int | None = None, keepdims: bool = False
) -> tuple[Array, Array]:
    """The Euclidean norm of `y` (over `axis`, or the whole array) as
    `(norm, safe_norm)`: `norm` is exact; `safe_norm` equals `norm` where it is
    positive and `1` where `y` is zero, so that dividing by it, and differentiating
    the division, gives no NaN at `y = 0`."""
    squared = jnp.sum(y * y, axis=axis, keepdims=keepdims)
    positive = squared > 0
    safe = jnp.sqrt(jnp.where(positive, squared, 1))
    norm = jnp.where(positive, safe, 0)
    return norm, safe


def block_soft_threshold(
    y: Float[Array, "..."], threshold: Array, axis: int | None = None
) -> Float[Array, "..."]:
    """`max(1 - threshold / ||y||, 0) * y`, the norm taken over `axis` (or the whole
    array), for `threshold >= 0`. Finite derivatives everywhere, including `y = 0`."""
    norm, safe = safe_norm(y, axis=axis, keepdims=axis is not None)
    scale = jnp.where(norm >= threshold, 1 - threshold / safe, 0)
    return scale * y
