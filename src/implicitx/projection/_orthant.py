import jax.numpy as jnp
from jaxtyping import Array, Float, Scalar

from .._operator_base import AbstractProjection, positive_part_max


class NonNegative(AbstractProjection):
    """The projection onto the non-negative orthant `{x : x >= 0}`:
    `P(y) = max(y, 0)`, elementwise.

    Acts on an array of any shape. Its Jacobian is `diag(y > 0)`, obtained by
    automatic differentiation (exact away from `y_i = 0`).
    """

    def __call__(self, y: Float[Array, "*shape"]) -> Float[Array, "*shape"]:
        return jnp.maximum(y, jnp.zeros((), y.dtype))

    def violation(self, x: Float[Array, "*shape"]) -> Scalar:
        """The largest negative part `max(0, max_i -x_i)`."""
        return positive_part_max(-x)
