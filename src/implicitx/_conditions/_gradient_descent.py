from collections.abc import Callable

import equinox as eqx
import jax
import jax.tree_util as jtu
from jaxtyping import Array, ArrayLike, PyTree, Scalar

from ._base import AbstractCompositeCondition, AbstractObjectiveCondition
from ._proximal_gradient import (
    check_stepsize,
    nan_unless_valid,
    stepsize_or_nan,
)
from ._stationarity import objective_tags


class GradientDescentFixedPoint(AbstractCompositeCondition, AbstractObjectiveCondition):
    """The fixed point of a gradient step on a smooth objective `f`:
    `T(x, theta) = x - stepsize * grad_x f(x, theta)`.

    Its residual is `-stepsize * grad_x f`, so it has the same solutions and
    derivatives as [`implicitx.Stationarity`][]; `A = stepsize * hessian_x f`.

    **Arguments:**

    - `objective`: the objective `f(x, theta) -> scalar`.
    - `stepsize`: the (positive) step size `eta`. Default `1.0`. A known
        non-positive or non-finite value raises a `ValueError`; a traced one makes `T`
        (hence the solve and the derivatives) NaN.
    - `convex`: whether `f` is convex in `x` (makes `A` positive semidefinite).
    - `has_aux`: whether `objective` returns `(value, aux)`: see
        [`implicitx.AbstractObjectiveCondition`][]. Default `False`.
    """

    objective: Callable[[PyTree[Array], PyTree[ArrayLike]], Scalar]
    stepsize: float | Array = 1.0
    convex: bool = eqx.field(default=False, static=True)
    has_aux: bool = eqx.field(default=False, static=True)

    def __check_init__(self):
        check_stepsize(self, self.stepsize)

    def fixed_point_map(
        self, x: PyTree[Array], theta: PyTree[ArrayLike]
    ) -> PyTree[Array]:
        grad = jax.grad(self.objective_value)(x, theta)
        step = stepsize_or_nan(self.stepsize)
        return jtu.tree_map(lambda xi, gi: xi - step.astype(xi.dtype) * gi, x, grad)

    def prox_at(self, theta: PyTree[ArrayLike]) -> Callable:
        """The identity (`g = 0`)."""
        del theta
        stepsize = self.stepsize
        return lambda z, step: nan_unless_valid(z, stepsize)

    def block_prox_at(self, theta: PyTree[ArrayLike]) -> Callable | None:
        """`None` (not offered for block coordinate descent)."""
        del theta

    @property
    def tags(self) -> frozenset[object]:
        return objective_tags(self.convex, sign=+1)
