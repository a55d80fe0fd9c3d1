import abc

import jax
import jax.numpy as jnp
from equinox import AbstractVar
from jaxtyping import Array, Float, Scalar

from .._operator_base import (
    AbstractProjection,
    cast_to,
    check_hyperparameters,
    nan_unless,
    nonnegative,
)


class RowWise(AbstractProjection):
    """Applies a projection to every row of a matrix (every slice along the first axis),
    i.e. the projection onto the product set `C x C x ... x C`.

    **Arguments:**

    - `projection`: the projection applied to each row.
    """

    projection: AbstractProjection

    def __call__(self, y: Float[Array, "rows ..."]) -> Float[Array, "rows ..."]:
        return jax.vmap(self.projection)(y)

    def violation(self, x: Float[Array, "rows ..."]) -> Scalar:
        return jax.numpy.max(jax.vmap(self.projection.violation)(x))


class AbstractNormBall(AbstractProjection):
    """The projection onto the ball `{x : ||x|| <= radius}` of a norm: the radius,
    `radius >= 0` (`inf` allowed), is checked at construction when known, and gives
    NaN when it is traced and negative."""

    radius: AbstractVar[float | Float[Array, ""]]

    def __check_init__(self):
        check_hyperparameters(
            type(self).__name__, "`radius >= 0`", nonnegative, radius=self.radius
        )

    @abc.abstractmethod
    def _norm(self, x: Array) -> Scalar:
        """`||x||`."""

    @abc.abstractmethod
    def _project(self, y: Array, radius: Array) -> Array:
        """The projection, for `radius >= 0` of the dtype of `y`."""

    def __call__(self, y: Float[Array, "*shape"]) -> Float[Array, "*shape"]:
        x = self._project(y, cast_to(self.radius, y))
        return nan_unless(nonnegative, x, self.radius, point=y)

    def violation(self, x: Float[Array, "*shape"]) -> Scalar:
        """`max(0, ||x|| - radius)`."""
        excess = self._norm(x) - cast_to(self.radius, x)
        return jnp.maximum(excess, jnp.zeros((), x.dtype))
