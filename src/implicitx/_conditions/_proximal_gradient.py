from collections.abc import Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, PyTree, Scalar

from ..projection._base import AbstractProjection
from ..prox._base import AbstractProx
from ._base import AbstractActiveSetFixedPoint
from ._operators import resolve


class ProximalGradientFixedPoint(AbstractActiveSetFixedPoint):
    """The fixed point of a proximal-gradient step for a composite problem
    `x*(theta) = argmin_x f(x, theta) + g(x, theta)` with `f` smooth and `g` convex with
    a proximal operator:

    `T(x, theta) = prox_{stepsize * g}(x - stepsize * grad_x f(x, theta))`.

    Lasso, elastic net, group lasso and non-negative least squares are of this form.
    `A = I - dT/dx` is not symmetric in general; no structure is assumed.

    **Arguments:**

    - `objective`: the smooth part `f(x, theta) -> scalar`.
    - `prox`: the proximal operator of `g`: an [`implicitx.prox.AbstractProx`][]
        (whose array fields are then parameters of the condition), or a function
        `theta -> AbstractProx` when the hyperparameters of `g` are part of `theta`
        (e.g. `lambda theta: ix.prox.L1(theta["l1"])`).
    - `stepsize`: the step size `eta > 0`. The solutions do not depend on it; any
        positive value gives the same derivatives (it only scales `A` on the support).
    """

    objective: Callable[[PyTree[Array], PyTree[ArrayLike]], Scalar]
    prox: AbstractProx | Callable[[PyTree[ArrayLike]], AbstractProx]
    stepsize: float | Array = 1.0

    def fixed_point_map(self, x: Array, theta: PyTree[ArrayLike]) -> Array:
        prox = resolve(self.prox, AbstractProx, theta)
        gradient = jax.grad(self.objective)(x, theta)
        return prox(x - self.stepsize * gradient, self.stepsize)


class BlockProximalGradientFixedPoint(AbstractActiveSetFixedPoint):
    """The fixed point of a block proximal-gradient step, for `g` separable over the
    rows (blocks) of `x`: `g(x) = sum_j g_j(x[j])`.

    `T(x, theta)[j] = prox_{stepsize_j * g}(x[j] - stepsize_j * grad_x f(x, theta)[j])`,

    the prox applied to every row. This is the condition solved by block coordinate
    descent (e.g. the multiclass SVM dual with one simplex per row, or a group lasso
    with one group per row). Its solutions are those of
    [`implicitx.ProximalGradientFixedPoint`][] with the row-separable prox.

    **Arguments:**

    - `objective`: the smooth part `f(x, theta) -> scalar`, `x` of shape
        `(blocks, ...)`.
    - `prox`: the prox of one block (applied to every row with `jax.vmap`), or a
        function `theta -> AbstractProx`.
    - `stepsize`: a positive scalar, or one step size per block (shape `(blocks,)`).
    """

    objective: Callable[[PyTree[Array], PyTree[ArrayLike]], Scalar]
    prox: AbstractProx | Callable[[PyTree[ArrayLike]], AbstractProx]
    stepsize: float | Array = 1.0

    def fixed_point_map(self, x: Array, theta: PyTree[ArrayLike]) -> Array:
        prox = resolve(self.prox, AbstractProx, theta)
        gradient = jax.grad(self.objective)(x, theta)
        steps = jnp.broadcast_to(jnp.asarray(self.stepsize), x.shape[:1])
        step_rows = steps.reshape(steps.shape + (1,) * (x.ndim - 1))
        return jax.vmap(prox)(x - step_rows * gradient, steps)


class ProjectedGradientFixedPoint(AbstractActiveSetFixedPoint):
    """The fixed point of a projected-gradient step for
    `x*(theta) = argmin_{x in C(theta)} f(x, theta)`:

    `T(x, theta) = P_{C(theta)}(x - stepsize * grad_x f(x, theta))`.

    **Arguments:**

    - `objective`: the smooth objective `f(x, theta) -> scalar`.
    - `projection`: the Euclidean projection onto `C`: an
        [`implicitx.projection.AbstractProjection`][], or a function
        `theta -> AbstractProjection` when the set depends on `theta` (e.g.
        `lambda theta: ix.projection.L1Ball(theta["radius"])`).
    - `stepsize`: the step size `eta > 0` (does not change solutions or derivatives).
    """

    objective: Callable[[PyTree[Array], PyTree[ArrayLike]], Scalar]
    projection: AbstractProjection | Callable[[PyTree[ArrayLike]], AbstractProjection]
    stepsize: float | Array = 1.0

    def fixed_point_map(self, x: Array, theta: PyTree[ArrayLike]) -> Array:
        projection = resolve(self.projection, AbstractProjection, theta)
        gradient = jax.grad(self.objective)(x, theta)
        return projection(x - self.stepsize * gradient)
