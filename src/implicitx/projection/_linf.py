import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float, Scalar

from .._operator_base import hyperparameter
from ._base import AbstractNormBall


class LInfBall(AbstractNormBall):
    """The projection onto the l-infinity ball `{x : max_i |x_i| <= radius}`:
    `P(y) = clip(y, -radius, radius)`, elementwise.

    Acts on an array of any shape. Derivatives by automatic differentiation, exact
    away from `|y_i| = radius`.

    **Arguments:**

    - `radius`: the radius, `radius >= 0` (`inf` allowed). Default `1.0`.
    """

    radius: float | Float[Array, ""] = eqx.field(default=1.0, converter=hyperparameter)

    def _norm(self, x: Array) -> Scalar:
        return jnp.max(jnp.abs(x))

    def _project(self, y: Array, radius: Array) -> Array:
        return jnp.clip(y, -radius, radius)
