import abc

import equinox as eqx
from jaxtyping import Array, ArrayLike, Float, Scalar


class AbstractProx(eqx.Module):
    """The proximal operator of a convex function `g`:
    `prox_{s g}(y) = argmin_x 0.5 ||x - y||^2 + s g(x)` for a step size `s > 0`.

    A prox is an `equinox.Module`; the hyperparameters of `g` (regularisation strength,
    ...) are array fields, differentiable like any other parameter.
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
