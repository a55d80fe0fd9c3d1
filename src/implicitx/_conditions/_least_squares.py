from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from jaxtyping import Array, ArrayLike, PyTree

from ._base import AbstractObjectiveCondition
from ._stationarity import objective_tags


class LeastSquaresStationarity(AbstractObjectiveCondition):
    """The stationarity condition of a nonlinear least-squares problem
    `x*(theta) = argmin_x 0.5 ||r(x, theta)||^2`: `F = J^T r = 0` with `J = dr/dx`.

    Least-squares solvers (Gauss-Newton, Levenberg-Marquardt) use the residuals
    directly; minimisers use the objective. `A = -(J^T J + sum_i r_i hessian r_i)` is
    symmetric.

    **Arguments:**

    - `residuals`: the residual function `r(x, theta) -> PyTree of arrays`.
    - `convex`: whether the objective is convex in `x` (true for linear `r`).
    - `has_aux`: whether `residuals` returns `(r, aux)`; the objective then returns
        `(0.5 ||r||^2, aux)`: see [`implicitx.AbstractObjectiveCondition`][]. Default
        `False`.
    """

    residuals: Callable[[PyTree[Array], PyTree[ArrayLike]], Any]
    convex: bool = eqx.field(default=False, static=True)
    has_aux: bool = eqx.field(default=False, static=True)

    def residuals_value(
        self, x: PyTree[Array], theta: PyTree[ArrayLike]
    ) -> PyTree[Array]:
        """`r(x, theta)`, without its auxiliary output."""
        out = self.residuals(x, theta)
        return out[0] if self.has_aux else out

    def objective(self, x: PyTree[Array], theta: PyTree[ArrayLike]) -> Any:
        out = self.residuals(x, theta)
        r = out[0] if self.has_aux else out
        leaves = jtu.tree_leaves(r)
        value = 0.5 * jnp.asarray(sum(jnp.sum(leaf**2) for leaf in leaves))
        return (value, out[1]) if self.has_aux else value

    def __call__(self, x: PyTree[Array], theta: PyTree[ArrayLike]) -> PyTree[Array]:
        return jax.grad(self.objective_value)(x, theta)

    @property
    def tags(self) -> frozenset[object]:
        return objective_tags(self.convex, sign=-1)
