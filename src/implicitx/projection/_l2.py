import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float, Scalar

from .._operator_base import (
    AbstractProjection,
    cast_to,
    hyperparameter,
    nan_unless,
    nonnegative_finite,
    safe_norm,
)
from ._base import AbstractNormBall
from ._simplex import check_scale


class L2Ball(AbstractNormBall):
    """The projection onto the Euclidean ball `{x : ||x||_2 <= radius}`:
    `P(y) = y * min(1, radius / ||y||_2)`.

    Acts on an array of any shape (the norm is over all its entries, i.e. the
    Frobenius norm of a matrix). Derivatives by automatic differentiation, exact away
    from `||y||_2 = radius` and finite everywhere (including `y = 0`).

    **Arguments:**

    - `radius`: the radius, `radius >= 0` (`inf` allowed). Default `1.0`.
    """

    radius: float | Float[Array, ""] = eqx.field(default=1.0, converter=hyperparameter)

    def _norm(self, x: Array) -> Scalar:
        return safe_norm(x)[0]

    def _project(self, y: Array, radius: Array) -> Array:
        norm, safe = safe_norm(y)
        return jnp.where(norm > radius, radius / safe, 1) * y


class L2Sphere(AbstractProjection):
    """A Euclidean projection onto the Euclidean sphere `{x : ||x||_2 = radius}`:
    `P(y) = radius * y / ||y||_2`.

    The set is **not convex**. At `y = 0` every point of the sphere is a closest
    point; `radius` times the first standard basis vector is returned (and the
    derivative there is not meaningful). The projection is not non-expansive.
    Feasibility, idempotence and the closest-point property hold; the convex-only
    properties (non-expansiveness, the variational inequality) do not.

    Acts on an array of any shape (the norm is over all its entries). Derivatives by
    automatic differentiation, exact for `y != 0`.

    **Arguments:**

    - `radius`: the radius, `0 <= radius < inf`. Default `1.0`.
    """

    radius: float | Float[Array, ""] = eqx.field(default=1.0, converter=hyperparameter)

    def __check_init__(self):
        check_scale("L2Sphere", self.radius, name="radius")

    def __call__(self, y: Float[Array, "*shape"]) -> Float[Array, "*shape"]:
        radius = cast_to(self.radius, y)
        norm, safe = safe_norm(y)
        first = jnp.zeros(y.size, y.dtype).at[0].set(1).reshape(y.shape)
        x = jnp.where(norm > 0, y / safe, first) * radius
        return nan_unless(nonnegative_finite, x, self.radius, point=y)

    def violation(self, x: Float[Array, "*shape"]) -> Scalar:
        """`| ||x||_2 - radius |`."""
        norm, _ = safe_norm(x)
        return jnp.abs(norm - cast_to(self.radius, x))
