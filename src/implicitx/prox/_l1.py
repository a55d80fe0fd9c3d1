import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Scalar

from .._operator_base import AbstractProx, hyperparameter
from ._misc import (
    AbstractStrengthProx,
    cast_and_broadcast,
    check_strengths,
    nan_unless_nonnegative,
    soft_threshold,
)


class L1(AbstractStrengthProx):
    """The prox of the (weighted) l1 norm `g(x) = sum_i strength_i |x_i|`: soft
    thresholding, `prox_{s g}(y)_i = sign(y_i) max(|y_i| - s strength_i, 0)`.

    Its Jacobian in `y` is diagonal, `1` where `|y_i| > s strength_i` (the support of
    the result) and `0` elsewhere.

    **Arguments:**

    - `strength`: the non-negative regularisation strength; a scalar, or an array
        broadcastable to the shape of the point (one weight per coordinate, as in the
        adaptive lasso). Default `1.0`.
    """

    strength: float | Float[Array, "..."] = eqx.field(
        converter=hyperparameter, default=1.0
    )

    def _shrink(self, y: Array, threshold: Array) -> Array:
        return soft_threshold(y, threshold)

    def value(self, x: Float[Array, "..."]) -> Scalar:
        return jnp.sum(cast_and_broadcast(self.strength, x) * jnp.abs(x))


class NonNegativeL1(AbstractStrengthProx):
    """The prox of the l1 norm restricted to the non-negative orthant,
    `g(x) = sum_i strength_i x_i + indicator(x >= 0)`:
    `prox_{s g}(y)_i = max(y_i - s strength_i, 0)`.

    **Arguments:**

    - `strength`: the non-negative regularisation strength; a scalar, or an array
        broadcastable to the shape of the point. Default `1.0`.
    """

    strength: float | Float[Array, "..."] = eqx.field(
        converter=hyperparameter, default=1.0
    )

    def _shrink(self, y: Array, threshold: Array) -> Array:
        return jnp.maximum(y - threshold, 0)

    def value(self, x: Float[Array, "..."]) -> Scalar:
        penalty = jnp.sum(cast_and_broadcast(self.strength, x) * x)
        return jnp.where(jnp.all(x >= 0), penalty, jnp.inf)


class ElasticNet(AbstractProx):
    """The prox of the elastic-net penalty
    `g(x) = sum_i l1_i |x_i| + l2_i / 2 * x_i^2`:
    `prox_{s g}(y)_i = sign(y_i) max(|y_i| - s l1_i, 0) / (1 + s l2_i)`.

    **Arguments:**

    - `l1`: the non-negative strength of the l1 term; a scalar, or an array
        broadcastable to the shape of the point. Default `1.0`.
    - `l2`: the non-negative strength of the squared l2 term (note the factor `1/2`
        in `g`); a scalar, or an array broadcastable to the shape of the point.
        Default `1.0`.
    """

    l1: float | Float[Array, "..."] = eqx.field(converter=hyperparameter, default=1.0)
    l2: float | Float[Array, "..."] = eqx.field(converter=hyperparameter, default=1.0)

    def __check_init__(self):
        check_strengths("ElasticNet", l1=self.l1, l2=self.l2)

    def __call__(
        self, y: Float[Array, "..."], stepsize: float | Float[ArrayLike, ""] = 1.0
    ) -> Float[Array, "..."]:
        s = cast_and_broadcast(stepsize, y)
        l1, l2 = cast_and_broadcast(self.l1, y), cast_and_broadcast(self.l2, y)
        x = soft_threshold(y, s * l1) / (1 + s * l2)
        return nan_unless_nonnegative(x, y, self.l1, self.l2)

    def value(self, x: Float[Array, "..."]) -> Scalar:
        l1, l2 = cast_and_broadcast(self.l1, x), cast_and_broadcast(self.l2, x)
        return jnp.sum(l1 * jnp.abs(x) + 0.5 * l2 * x * x)
