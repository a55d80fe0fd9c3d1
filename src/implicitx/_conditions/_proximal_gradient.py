from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, PyTree, Scalar

from .._failure import nan_unless
from .._operator_base import AbstractProjection, AbstractProx, cast_to, is_traced
from ._base import AbstractActiveSetFixedPoint, AbstractCompositeCondition
from ._operator_at import operator_at


# --------------------------------------------------------------------------------------
# Step sizes: the one place where they are checked (conditions and solvers).
# --------------------------------------------------------------------------------------


def _positive_finite(value):
    return (value > 0) & (value < jnp.inf)


def check_stepsize(owner: object, value: ArrayLike | None, field="stepsize") -> None:
    """Raises a `ValueError` naming `owner`'s class, the field and the value when a
    known (not traced) step size is not positive and finite. Traced step sizes are
    checked when used, by [`stepsize_or_nan`][]."""
    known = isinstance(value, (int, float, np.ndarray, np.generic, jax.Array))
    if not known or is_traced(value):
        return
    if not np.all(_positive_finite(np.asarray(value))):
        name = type(owner).__name__
        raise ValueError(
            f"`{name}` needs a positive, finite `{field}`; got {field}="
            f"{np.asarray(value).tolist()!r}. A negative step climbs (it converges to "
            "a maximiser, and the derivatives are wrong) and a zero step makes every "
            f"point a fixed point: pass `{field}` > 0 (for a gradient step, at most "
            "about `1 / L` with `L` the Lipschitz constant of the gradient)."
        )


def stepsize_or_nan(value: ArrayLike) -> Array:
    """The step size as an array, NaN (each entry) unless it is positive and finite:
    how a traced bad step size is reported. A map using it returns NaN, so solvers
    fail with a non-finite code and derivatives are NaN, for that batch element only.
    """
    value = jnp.asarray(value)
    if not jnp.issubdtype(value.dtype, jnp.inexact):
        value = value.astype(float)
    return jnp.where(_positive_finite(value), value, jnp.nan)


def nan_unless_valid(tree: PyTree[Array], value: ArrayLike) -> PyTree[Array]:
    """`tree`, multiplied by NaN unless every entry of the step size `value` is
    positive and finite (so that the derivatives of an invalid element are NaN too)."""
    if not isinstance(value, jax.Array):
        return tree  # checked at construction
    return nan_unless(tree, jnp.all(_positive_finite(value)))


# --------------------------------------------------------------------------------------
# Conditions
# --------------------------------------------------------------------------------------


class ProximalGradientFixedPoint(
    AbstractActiveSetFixedPoint, AbstractCompositeCondition
):
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
        A known non-positive or non-finite value raises a `ValueError`; a traced one
        makes `T` (hence the solve and the derivatives) NaN.
    - `has_aux`: whether `objective` returns `(value, aux)`: see
        [`implicitx.AbstractObjectiveCondition`][]. Default `False`.
    """

    objective: Callable[[PyTree[Array], PyTree[ArrayLike]], Scalar]
    prox: AbstractProx | Callable[[PyTree[ArrayLike]], AbstractProx]
    stepsize: float | Array = 1.0
    has_aux: bool = eqx.field(default=False, static=True)

    def __check_init__(self):
        check_stepsize(self, self.stepsize)

    def fixed_point_map(self, x: Array, theta: PyTree[ArrayLike]) -> Array:
        prox = operator_at(self.prox, AbstractProx, theta)
        gradient = jax.grad(self.objective_value)(x, theta)
        step = cast_to(stepsize_or_nan(self.stepsize), x)
        return prox(x - step * gradient, step)

    def prox_at(self, theta: PyTree[ArrayLike]) -> Callable:
        prox = operator_at(self.prox, AbstractProx, theta)
        return _checked(self, lambda z, step: prox(z, step))

    def block_prox_at(self, theta: PyTree[ArrayLike]) -> Callable | None:
        """Coordinates of a vector `x`, for a coordinate-separable `g` (L1, elastic
        net, box, non-negativity, ...): the whole prox, read at coordinate `j`."""
        prox = self.prox_at(theta)
        return lambda x, j, z_j, step: prox(x.at[j].set(z_j), step)[j]


class BlockProximalGradientFixedPoint(
    AbstractActiveSetFixedPoint, AbstractCompositeCondition
):
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
    - `stepsize`: a positive scalar, or one step size per block (shape `(blocks,)`);
        checked as for [`implicitx.ProximalGradientFixedPoint`][].
    - `has_aux`: whether `objective` returns `(value, aux)`: see
        [`implicitx.AbstractObjectiveCondition`][]. Default `False`.
    """

    objective: Callable[[PyTree[Array], PyTree[ArrayLike]], Scalar]
    prox: AbstractProx | Callable[[PyTree[ArrayLike]], AbstractProx]
    stepsize: float | Array = 1.0
    has_aux: bool = eqx.field(default=False, static=True)

    def __check_init__(self):
        check_stepsize(self, self.stepsize)

    def fixed_point_map(self, x: Array, theta: PyTree[ArrayLike]) -> Array:
        prox = operator_at(self.prox, AbstractProx, theta)
        gradient = jax.grad(self.objective_value)(x, theta)
        steps = cast_to(stepsize_or_nan(self.stepsize), x)
        steps = jnp.broadcast_to(steps, x.shape[:1])
        step_rows = steps.reshape(steps.shape + (1,) * (x.ndim - 1))
        return jax.vmap(prox)(x - step_rows * gradient, steps)

    def prox_at(self, theta: PyTree[ArrayLike]) -> Callable:
        prox = operator_at(self.prox, AbstractProx, theta)
        rows = lambda z, step: jax.vmap(lambda row: prox(row, step))(z)
        return _checked(self, rows)

    def block_prox_at(self, theta: PyTree[ArrayLike]) -> Callable | None:
        """The rows of `x`: the prox of one row."""
        prox = operator_at(self.prox, AbstractProx, theta)
        one = _checked(self, lambda z, step: prox(z, step))
        return lambda x, j, z_j, step: one(z_j, step)


class ProjectedGradientFixedPoint(
    AbstractActiveSetFixedPoint, AbstractCompositeCondition
):
    """The fixed point of a projected-gradient step for
    `x*(theta) = argmin_{x in C(theta)} f(x, theta)`:

    `T(x, theta) = P_{C(theta)}(x - stepsize * grad_x f(x, theta))`.

    **Arguments:**

    - `objective`: the smooth objective `f(x, theta) -> scalar`.
    - `projection`: the Euclidean projection onto `C`: an
        [`implicitx.projection.AbstractProjection`][], or a function
        `theta -> AbstractProjection` when the set depends on `theta` (e.g.
        `lambda theta: ix.projection.L1Ball(theta["radius"])`).
    - `stepsize`: the step size `eta > 0` (does not change solutions or derivatives);
        checked as for [`implicitx.ProximalGradientFixedPoint`][].
    - `has_aux`: whether `objective` returns `(value, aux)`: see
        [`implicitx.AbstractObjectiveCondition`][]. Default `False`.
    """

    objective: Callable[[PyTree[Array], PyTree[ArrayLike]], Scalar]
    projection: AbstractProjection | Callable[[PyTree[ArrayLike]], AbstractProjection]
    stepsize: float | Array = 1.0
    has_aux: bool = eqx.field(default=False, static=True)

    def __check_init__(self):
        check_stepsize(self, self.stepsize)

    def fixed_point_map(self, x: Array, theta: PyTree[ArrayLike]) -> Array:
        projection = operator_at(self.projection, AbstractProjection, theta)
        gradient = jax.grad(self.objective_value)(x, theta)
        step = cast_to(stepsize_or_nan(self.stepsize), x)
        return projection(x - step * gradient)

    def prox_at(self, theta: PyTree[ArrayLike]) -> Callable:
        projection = operator_at(self.projection, AbstractProjection, theta)
        return _checked(self, lambda z, step: projection(z))

    def block_prox_at(self, theta: PyTree[ArrayLike]) -> Callable | None:
        """`None`: a projection does not separate over coordinates in general."""
        del theta


def _checked(condition, prox: Callable) -> Callable:
    """`prox`, returning NaN when the condition's (traced) step size is invalid: a
    condition that is not well defined fails whichever solver uses it."""
    return lambda z, step: nan_unless_valid(prox(z, step), condition.stepsize)
