import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._operator_base import AbstractMirrorMap, AbstractProjection


class Euclidean(AbstractMirrorMap):
    """`phi(x) = 0.5 ||x||^2`: mirror descent is then projected gradient descent.

    **Arguments:**

    - `projection`: the Euclidean projection onto `C`, or `None` for `C` the whole
        space.
    """

    projection: AbstractProjection | None = None

    def gradient(self, x: Float[Array, "..."]) -> Float[Array, "..."]:
        return x

    def project(self, z: Float[Array, "..."]) -> Float[Array, "..."]:
        return z if self.projection is None else self.projection(z)


class NegativeEntropySimplex(AbstractMirrorMap):
    """`phi(x) = sum x log x` on the probability simplex (along `axis`): the mirror
    projection is the KL projection onto the simplex, `softmax(z)`, and mirror descent
    is the exponentiated-gradient method. On a matrix with `axis=-1` every row lies on
    its own simplex (a product of simplices, as in the multiclass SVM dual).

    The step is computed as the multiplicative update
    `x * exp(-stepsize * direction)`, normalised, which equals
    `softmax(log x - stepsize * direction)` but stays finite and differentiable where a
    coordinate of `x` is (or has underflowed to) zero — as happens at solutions on the
    boundary of the simplex.

    **Arguments:**

    - `axis`: the axis along which entries sum to one. Default `-1`.
    """

    axis: int = -1

    def gradient(self, x: Float[Array, "..."]) -> Float[Array, "..."]:
        return jnp.log(x)

    def project(self, z: Float[Array, "..."]) -> Float[Array, "..."]:
        return jax.nn.softmax(z, axis=self.axis)

    def _move(self, x: Array, displacement: Array) -> Array:
        # Shift by the minimum along `axis` so the exponent is <= 0 (no overflow).
        shift = jax.lax.stop_gradient(
            jnp.min(displacement, axis=self.axis, keepdims=True)
        )
        weights = x * jnp.exp(-(displacement - shift))
        return weights / jnp.sum(weights, axis=self.axis, keepdims=True)
