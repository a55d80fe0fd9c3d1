import abc

import equinox as eqx
import jax
from jaxtyping import Array, ArrayLike, Float, Scalar


class AbstractProjection(eqx.Module):
    """The Euclidean projection onto a closed convex set `C`:
    `P(y) = argmin_{x in C} 0.5 ||x - y||^2`.

    A projection is an `equinox.Module`. Its hyperparameters (radius, bounds,
    hyperplane, polytope data, ...) are array fields, so derivatives of `P(y)` with
    respect to them are available in forward and reverse mode, and derivatives reach
    them when the projection is part of an optimality condition.

    Projections act on one point (an array of the shape the set is defined for, usually
    a vector); use `jax.vmap` or [`implicitx.projection.RowWise`][] for batches.
    """

    @abc.abstractmethod
    def __call__(self, y: Float[Array, "..."]) -> Float[Array, "..."]:
        """**Arguments:**

        - `y`: the point to project.

        **Returns:**

        The projection `P(y)`, of the same shape and dtype as `y`.
        """

    @abc.abstractmethod
    def violation(self, x: Float[Array, "..."]) -> Scalar:
        """A non-negative measure of how far `x` is from satisfying the constraints of
        `C` (for example the largest constraint violation); zero exactly when `x` is
        in `C`. Used to check feasibility.
        """


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


def as_array(x: ArrayLike) -> Array:
    """Converter for hyperparameter fields: arrays stay arrays, Python scalars become
    weakly typed arrays (so they adopt the dtype of the point being projected)."""
    return jax.numpy.asarray(x)
