import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float, Scalar

from .._operator_base import (
    AbstractProjection,
    cast_to,
    check_hyperparameters,
    hyperparameter,
    nan_unless,
    nonnegative,
)


class LInfBall(AbstractProjection):
    """The projection onto the l-infinity ball `{x : max_i |x_i| <= radius}`:
    `P(y) = clip(y, -radius, radius)`, elementwise.

    Acts on an array of any shape. Derivatives by automatic differentiation, exact
    away from `|y_i| = radius`.

    **Arguments:**

    - `radius`: the radius, `radius >= 0` (`inf` allowed). Default `1.0`.
    """

    radius: float | Float[Array, ""] = eqx.field(default=1.0, converter=hyperparameter)

    def __check_init__(self):
        check_hyperparameters(
            "LInfBall", "`radius >= 0`", nonnegative, radius=self.radius
        )

    def __call__(self, y: Float[Array, "*shape"]) -> Float[Array, "*shape"]:
        radius = cast_to(self.radius, y)
        x = jnp.clip(y, -radius, radius)
        return nan_unless(nonnegative, x, self.radius, point=y)

    def violation(self, x: Float[Array, "*shape"]) -> Scalar:
        """`max(0, max_i |x_i| - radius)`."""
        excess = jnp.max(jnp.abs(x)) - cast_to(self.radius, x)
        return jnp.maximum(excess, jnp.zeros((), x.dtype))
