import jax
from jaxtyping import Array, Float, Scalar

from .._operator_base import AbstractProjection


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
