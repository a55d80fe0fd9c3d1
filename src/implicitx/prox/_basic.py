import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Scalar

from .._operator_base import AbstractProx, hyperparameter
from ._misc import (
    AbstractStrengthProx,
    cast_and_broadcast,
)


class Zero(AbstractProx):
    """The prox of the zero function `g(x) = 0`: the identity,
    `prox_{s g}(y) = y`.

    Useful as the "no regulariser" case of proximal methods (proximal gradient then
    reduces to gradient descent).
    """

    def __call__(
        self, y: Float[Array, "..."], stepsize: float | Float[ArrayLike, ""] = 1.0
    ) -> Float[Array, "..."]:
        del stepsize
        return jnp.asarray(y)

    def value(self, x: Float[Array, "..."]) -> Scalar:
        return jnp.zeros((), dtype=x.dtype)


class Ridge(AbstractStrengthProx):
    """The prox of the squared Euclidean norm
    `g(x) = strength / 2 * sum_i x_i^2` (a weighted sum when `strength` is an array):
    `prox_{s g}(y) = y / (1 + s * strength)`.

    **Arguments:**

    - `strength`: the non-negative regularisation strength; a scalar, or an array
        broadcastable to the shape of the point (one strength per coordinate).
        Default `1.0`.
    """

    strength: float | Float[Array, "..."] = eqx.field(
        converter=hyperparameter, default=1.0
    )

    def _shrink(self, y: Array, threshold: Array) -> Array:
        return y / (1 + threshold)

    def value(self, x: Float[Array, "..."]) -> Scalar:
        return 0.5 * jnp.sum(cast_and_broadcast(self.strength, x) * x * x)


class NonNegativeRidge(AbstractStrengthProx):
    """The prox of the squared Euclidean norm restricted to the non-negative orthant,
    `g(x) = strength / 2 * sum_i x_i^2 + indicator(x >= 0)` (a weighted sum when
    `strength` is an array): `prox_{s g}(y) = max(y, 0) / (1 + s * strength)`.

    **Arguments:**

    - `strength`: the non-negative regularisation strength; a scalar, or an array
        broadcastable to the shape of the point. Default `1.0`.
    """

    strength: float | Float[Array, "..."] = eqx.field(
        converter=hyperparameter, default=1.0
    )

    def _shrink(self, y: Array, threshold: Array) -> Array:
        return jnp.maximum(y, 0) / (1 + threshold)

    def value(self, x: Float[Array, "..."]) -> Scalar:
        penalty = 0.5 * jnp.sum(cast_and_broadcast(self.strength, x) * x * x)
        return jnp.where(jnp.all(x >= 0), penalty, jnp.inf)
