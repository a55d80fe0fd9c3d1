import abc

import equinox as eqx
from jaxtyping import Array, ArrayLike, Float, Scalar


class AbstractProx(eqx.Module):
    """The proximal operator of a convex function `g`:
    `prox_{s g}(y) = argmin_x 0.5 ||x - y||^2 + s g(x)` for a step size `s > 0`.

    A prox is an `equinox.Module`; the hyperparameters of `g` (regularisation strength,
    ...) are its fields. As for projections (see
    [`implicitx.projection.AbstractProjection`][]), a Python number (and every
    default) stays a fixed Python `float`, not a parameter; pass a JAX array, e.g.
    `L1(jnp.asarray(0.1))`, or build the prox from `theta`, to make it learnable.
    Invalid values (a negative strength) raise a `ValueError` at construction when
    known, and give NaN when traced.
    """

    @abc.abstractmethod
    def __call__(
        self, y: Float[Array, "..."], stepsize: float | Float[ArrayLike, ""] = 1.0
    ) -> Float[Array, "..."]:
        """**Arguments:**

        - `y`: the point.
        - `stepsize`: the scaling `s > 0` of `g`.

        **Returns:**

        `prox_{s g}(y)`, of the same shape and dtype as `y`.
        """

    @abc.abstractmethod
    def value(self, x: Float[Array, "..."]) -> Scalar:
        """The value `g(x)` (`inf` outside the domain of `g`)."""
