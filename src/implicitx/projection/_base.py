import abc

import equinox as eqx
import jax
from jaxtyping import Array, Float, Scalar


class AbstractProjection(eqx.Module):
    """The Euclidean projection onto a closed convex set `C`:
    `P(y) = argmin_{x in C} 0.5 ||x - y||^2`.

    A projection is an `equinox.Module`; its hyperparameters (radius, bounds,
    hyperplane, polytope data, ...) are its fields.

    **Fixed or learnable hyperparameters.** A hyperparameter given as a Python number
    (and every default) stays a Python `float`: a fixed setting, not a parameter.
    `equinox.is_inexact_array` does not select it, so the usual
    `optax.init(eqx.filter(model, eqx.is_inexact_array))` does not train it, and
    `equinox.filter_jit` treats it as static. To make a hyperparameter learnable,
    pass it as a JAX array, e.g. `Simplex(jnp.asarray(1.0))`, or build the operator
    from `theta` inside a function `theta -> projection`: derivatives (forward and
    reverse mode) then reach it, including through an optimality condition that uses
    the operator.

    **Invalid hyperparameters.** Values that make the set empty (or the operator
    undefined), such as a negative radius or `lower > upper`, raise a `ValueError`
    at construction when they are known. When they are traced (the operator is built
    inside `jax.jit`, `jax.vmap` or `jax.grad`), the operator returns NaN instead, for
    that batch element only, with NaN derivatives.

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
