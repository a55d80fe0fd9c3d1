from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from jaxtyping import Array, ArrayLike, PyTree, Scalar

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
    """

    residuals: Callable[[PyTree[Array], PyTree[ArrayLike]], PyTree[Array]]
    convex: bool = eqx.field(default=False, static=True)

    def objective(self, x: PyTree[Array], theta: PyTree[ArrayLike]) -> Scalar:
        r = self.residuals(x, theta)
        return 0.5 * jnp.asarray(sum(jnp.sum(leaf**2) for leaf in jtu.tree_leaves(r)))

    def __call__(self, x: PyTree[Array], theta: PyTree[ArrayLike]) -> PyTree[Array]:
        return jax.grad(self.objective)(x, theta)

    @property
    def tags(self) -> frozenset[object]:
        return objective_tags(self.convex, sign=-1)
