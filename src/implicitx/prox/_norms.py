import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float, Scalar

from .._operator_base import hyperparameter
from ..projection._l1 import L1Ball
from ._misc import (
    AbstractStrengthProx,
    block_soft_threshold,
    cast_and_broadcast,
    safe_norm,
)


class _AbstractNormProx(AbstractStrengthProx):
    """The prox of `strength * ||x||`, a norm over the whole array: one scalar
    strength."""

    strength: float | Float[Array, ""] = eqx.field(
        converter=hyperparameter, default=1.0
    )

    def __check_init__(self):
        if jnp.ndim(self.strength) != 0:
            raise ValueError(
                "`strength` must be a scalar, got an array of shape "
                f"{jnp.shape(self.strength)}."
            )


class L2Norm(_AbstractNormProx):
    """The prox of the (non-squared) Euclidean norm `g(x) = strength * ||x||_2`,
    the norm taken over the whole array (the Frobenius norm for a matrix): block soft
    thresholding, `prox_{s g}(y) = max(1 - s strength / ||y||_2, 0) y`.

    Its derivatives are finite everywhere, including at `y = 0`. For a sum of norms
    over the rows of a matrix, see [`implicitx.prox.GroupLasso`][].

    **Arguments:**

    - `strength`: the non-negative scalar regularisation strength. Default `1.0`.
    """

    def _shrink(self, y: Array, threshold: Array) -> Array:
        return block_soft_threshold(y, threshold)

    def value(self, x: Float[Array, "..."]) -> Scalar:
        return cast_and_broadcast(self.strength, x) * safe_norm(x)[0]


class LInfNorm(_AbstractNormProx):
    """The prox of the l-infinity norm `g(x) = strength * max_i |x_i|`, the maximum
    taken over all the entries of the array.

    Computed by the Moreau decomposition: the conjugate of `t ||.||_inf` is the
    indicator of the l1 ball of radius `t`, so with `t = s strength`,
    `prox_{s g}(y) = y - t P(y / t)`, where `P` is
    [`implicitx.projection.L1Ball`][] of radius `1`. The result clips the entries of
    largest magnitude to a common level `tau`, `x_i = sign(y_i) min(|y_i|, tau)`,
    with `sum_i max(|y_i| - tau, 0) = t`, and is `0` when `||y||_1 <= t`.

    Its derivatives are those of the projection, exact away from `||y||_1 = t` and
    from `|y_i| = tau`; they are finite at `y = 0`.

    **Arguments:**

    - `strength`: the non-negative scalar regularisation strength. Default `1.0`.
    """

    def _shrink(self, y: Array, threshold: Array) -> Array:
        positive = threshold > 0
        # With a zero threshold the prox is the identity; the division is kept finite.
        safe = jnp.where(positive, threshold, 1)
        flat = jnp.ravel(y)
        shrunk = flat - safe * L1Ball()(flat / safe)
        return jnp.where(positive, shrunk, flat).reshape(y.shape)

    def value(self, x: Float[Array, "..."]) -> Scalar:
        return cast_and_broadcast(self.strength, x) * jnp.max(jnp.abs(x))
