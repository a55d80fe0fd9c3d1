"""Small helpers shared by the Euclidean projections."""

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Scalar


def cast_to(value: ArrayLike, like: Array) -> Array:
    """Casts a hyperparameter to the dtype of the point `like` (its shape is kept).

    Hyperparameters given as Python scalars are weakly typed and adopt the dtype of
    the point, so a float32 point gives a float32 projection. Casting is
    differentiable: derivatives still reach `value`.
    """
    return jnp.asarray(value, dtype=like.dtype)


def safe_norm(y: Float[Array, "..."]) -> tuple[Scalar, Scalar]:
    """The Euclidean norm of `y` (all its entries) as `(norm, safe)`: `norm` is exact;
    `safe` equals `norm` where it is positive and `1` at `y = 0`, so that dividing by
    it, and differentiating the division, gives no NaN at `y = 0`."""
    squared = jnp.sum(y * y)
    positive = squared > 0
    safe = jnp.sqrt(jnp.where(positive, squared, 1))
    return jnp.where(positive, safe, 0), safe


def positive_part_max(*terms: Array) -> Scalar:
    """`max(0, max(terms))`, the largest entry of all `terms` or zero: the usual
    measure of how much a family of inequality constraints `term <= 0` is violated."""
    dtype = jnp.result_type(*terms)
    largest = [jnp.max(t) if jnp.ndim(t) > 0 else t for t in terms]
    return jnp.maximum(jnp.max(jnp.stack(largest)), jnp.zeros((), dtype))
