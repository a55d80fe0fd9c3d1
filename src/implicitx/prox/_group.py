import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Scalar

from .._operator_base import AbstractProx, hyperparameter
from ._misc import (
    block_soft_threshold,
    check_strengths,
    nan_unless_nonnegative,
    safe_norm,
)


class GroupLasso(AbstractProx):
    """The prox of the group-lasso penalty
    `g(x) = sum_g strength_g ||x_g||_2`, where the groups `x_g` are the slices of `x`
    along its last axis: a vector is one group, the rows of a matrix of shape
    `(groups, size)` are `groups` groups of `size` coordinates each. The prox is block
    soft thresholding of each group:
    `prox_{s g}(y)_g = max(1 - s strength_g / ||y_g||_2, 0) y_g`.

    Its derivatives are finite everywhere, including where a group is zero.

    Groups of unequal sizes can be padded with zeros to a common size: a zero
    coordinate changes neither the norm of its group nor, since the prox scales each
    group, the result. Other layouts are reached with `jax.vmap`.

    **Arguments:**

    - `strength`: the non-negative regularisation strength: a scalar (the same for
        every group) or an array of the shape of the leading axes of the point (one
        strength per group). Default `1.0`.
    """

    strength: float | Float[Array, "*groups"] = eqx.field(
        converter=hyperparameter, default=1.0
    )

    def _strength(self, x: Array) -> Array:
        strength = jnp.asarray(self.strength, dtype=x.dtype)
        return jnp.broadcast_to(strength, x.shape[:-1])

    def __check_init__(self):
        check_strengths("GroupLasso", strength=self.strength)

    def __call__(
        self,
        y: Float[Array, "*groups size"],
        stepsize: float | Float[ArrayLike, ""] = 1.0,
    ) -> Float[Array, "*groups size"]:
        s = jnp.asarray(stepsize, dtype=y.dtype)
        threshold = s * self._strength(y)[..., None]
        x = block_soft_threshold(y, threshold, axis=-1)
        return nan_unless_nonnegative(x, y, self.strength)

    def value(self, x: Float[Array, "*groups size"]) -> Scalar:
        norms, _ = safe_norm(x, axis=-1)
        return jnp.sum(self._strength(x) * norms)
