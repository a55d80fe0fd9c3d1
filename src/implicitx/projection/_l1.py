import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float, Scalar

from .._operator_base import (
    AbstractProjection,
    cast_to,
    hyperparameter,
    nan_unless,
    nonnegative_finite,
)
from ._base import AbstractNormBall
from ._simplex import check_scale, project_simplex


def _signs(y: Float[Array, " n"]) -> Float[Array, " n"]:
    # +1 for y_i >= 0 (zero included), -1 otherwise: `|y| = signs * y`, and
    # `signs * project_simplex(signs * y)` puts the projected magnitudes back in the
    # orthant of `y`.
    return jnp.where(y >= 0, 1, -1).astype(y.dtype)


class L1Ball(AbstractNormBall):
    """The projection onto the l1 ball `{x : ||x||_1 <= radius}`.

    `P(y) = y` inside the ball; outside, `P(y) = sign(y) * Q(|y|)` with `Q` the
    projection onto the simplex of sum `radius` (soft thresholding of `y` at the
    level that puts it on the sphere).

    Derivatives are those of [`implicitx.projection.Simplex`][] (closed form) composed
    with the signs: exact away from `||y||_1 = radius` and from the thresholding kinks.

    Acts on vectors; use [`implicitx.projection.RowWise`][] or `jax.vmap` for batches.

    **Arguments:**

    - `radius`: the radius, `radius >= 0` (`inf` allowed). Default `1.0`.
    """

    radius: float | Float[Array, ""] = eqx.field(default=1.0, converter=hyperparameter)

    def _norm(self, x: Array) -> Scalar:
        return jnp.sum(jnp.abs(x))

    def _project(self, y: Float[Array, " n"], radius: Array) -> Float[Array, " n"]:
        signs = _signs(y)
        # An infinite radius is the whole space; the simplex then gets a finite sum.
        finite = jnp.where(radius < jnp.inf, radius, 0)
        outside = signs * project_simplex(signs * y, finite)
        return jnp.where(self._norm(y) <= radius, y, outside)


class L1Sphere(AbstractProjection):
    """A Euclidean projection onto the l1 sphere `{x : ||x||_1 = radius}`.

    Flipping the signs of a point of the sphere into the orthant of `y` keeps it on
    the sphere and brings it closer to `y`, so a closest point is
    `P(y) = sign(y) * Q(|y|)`, with `Q` the projection onto the simplex of sum
    `radius`: outside the ball this is the l1-ball projection; inside, every
    magnitude is increased by the same amount.

    The set is **not convex**: where some `y_i = 0` and `||y||_1 < radius`, the sign of
    `P(y)_i` is arbitrary (every choice is a closest point); `+` is returned. In
    particular `P(0) = (radius / n) * ones`, one of the `2^n` closest points. The
    projection is not non-expansive there. Feasibility, idempotence and the
    closest-point property hold; the convex-only properties (non-expansiveness, the
    variational inequality) do not.

    Derivatives are those of [`implicitx.projection.Simplex`][] (closed form) composed
    with the signs, exact away from `y_i = 0` and from the thresholding kinks.

    **Arguments:**

    - `radius`: the radius, `0 <= radius < inf`. Default `1.0`.
    """

    radius: float | Float[Array, ""] = eqx.field(default=1.0, converter=hyperparameter)

    def __check_init__(self):
        check_scale("L1Sphere", self.radius, name="radius")

    def __call__(self, y: Float[Array, " n"]) -> Float[Array, " n"]:
        signs = _signs(y)
        x = signs * project_simplex(signs * y, cast_to(self.radius, y))
        return nan_unless(nonnegative_finite, x, self.radius, point=y)

    def violation(self, x: Float[Array, " n"]) -> Scalar:
        """`| ||x||_1 - radius |`."""
        return jnp.abs(jnp.sum(jnp.abs(x)) - cast_to(self.radius, x))
