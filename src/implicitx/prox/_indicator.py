import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Scalar

from .._operator_base import AbstractProjection, AbstractProx


class FromProjection(AbstractProx):
    """The prox of the indicator function of a closed convex set `C`,
    `g(x) = 0` if `x` is in `C` and `+inf` otherwise: the Euclidean projection onto
    `C`, whatever the step size, `prox_{s g}(y) = P_C(y)`.

    Derivatives (in `y` and in the projection's own array parameters) are those of
    the projection.

    **Arguments:**

    - `projection`: the projection onto `C`, any
        [`implicitx.projection.AbstractProjection`][].
    - `tol`: `value(x)` is `0` when `projection.violation(x) <= tol` and `inf`
        otherwise. Default `None`: the square root of the machine epsilon of the
        dtype of `x` (about `1.5e-8` in float64, `3.5e-4` in float32).
    """

    projection: AbstractProjection
    tol: float | None = eqx.field(default=None, static=True)

    def __call__(
        self, y: Float[Array, "..."], stepsize: float | Float[ArrayLike, ""] = 1.0
    ) -> Float[Array, "..."]:
        del stepsize
        return self.projection(y)

    def value(self, x: Float[Array, "..."]) -> Scalar:
        if self.tol is None:
            tol = float(np.sqrt(np.finfo(x.dtype).eps))
        else:
            tol = self.tol
        feasible = self.projection.violation(x) <= tol
        return jnp.where(feasible, jnp.zeros((), x.dtype), jnp.inf)
