import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Scalar

from .._operator_base import (
    AbstractProjection,
    cast_to,
    check_hyperparameters,
    hyperparameter,
    nan_unless,
    positive_part_max,
)


def ordered(lower, upper):
    """`lower <= upper` (false for NaN)."""
    return lower <= upper


def bound_violation(x: Array, lower: ArrayLike, upper: ArrayLike) -> Scalar:
    """`max(0, max_i lower_i - x_i, x_i - upper_i)`, the bounds cast to `x`."""
    return positive_part_max(cast_to(lower, x) - x, x - cast_to(upper, x))


def check_bounds(owner: str, lower, upper):
    """The box `lower <= x <= upper` must be non-empty."""
    check_hyperparameters(
        owner, "`lower <= upper` everywhere", ordered, lower=lower, upper=upper
    )


class Box(AbstractProjection):
    """The projection onto the box `{x : lower <= x <= upper}`:
    `P(y) = clip(y, lower, upper)`, elementwise.

    Acts on an array of any shape. Derivatives (with respect to `y`, `lower` and
    `upper`) are obtained by automatic differentiation: each coordinate of `P(y)`
    follows `y`, `lower` or `upper`, whichever is active; they are exact away from
    `y_i = lower_i` and `y_i = upper_i`.

    **Arguments:**

    - `lower`: the lower bounds: a scalar, or an array of the shape of the point.
        Entries may be `-inf`.
    - `upper`: the upper bounds: a scalar, or an array of the shape of the point,
        with `lower <= upper`. Entries may be `inf`.
    """

    lower: float | Float[Array, "*shape"] = eqx.field(converter=hyperparameter)
    upper: float | Float[Array, "*shape"] = eqx.field(converter=hyperparameter)

    def __check_init__(self):
        check_bounds("Box", self.lower, self.upper)

    def __call__(self, y: Float[Array, "*shape"]) -> Float[Array, "*shape"]:
        x = jnp.clip(y, cast_to(self.lower, y), cast_to(self.upper, y))
        return nan_unless(ordered, x, self.lower, self.upper, point=y)

    def violation(self, x: Float[Array, "*shape"]) -> Scalar:
        """The largest bound violation `max(0, max_i lower_i - x_i, x_i - upper_i)`."""
        return bound_violation(x, self.lower, self.upper)


class Hypercube(AbstractProjection):
    """The projection onto the unit hypercube `[0, 1]^n`: `P(y) = clip(y, 0, 1)`,
    elementwise. The same as `Box(0.0, 1.0)`, without parameters.

    Acts on an array of any shape. Its Jacobian is `diag(0 < y < 1)`, obtained by
    automatic differentiation (exact away from `y_i = 0` and `y_i = 1`).
    """

    def __call__(self, y: Float[Array, "*shape"]) -> Float[Array, "*shape"]:
        return jnp.clip(y, jnp.zeros((), y.dtype), jnp.ones((), y.dtype))

    def violation(self, x: Float[Array, "*shape"]) -> Scalar:
        """The largest bound violation `max(0, max_i -x_i, x_i - 1)`."""
        return positive_part_max(-x, x - 1)
