from collections.abc import Callable

import equinox as eqx
import jax
import lineax as lx
from jaxtyping import Array, ArrayLike, PyTree, Scalar

from ._base import AbstractObjectiveCondition


def objective_tags(convex: bool, sign: int) -> frozenset[object]:
    """Tags of `sign * (Hessian of f)`: symmetric, and semidefinite when convex."""
    if not convex:
        return frozenset({lx.symmetric_tag})
    definite = (
        lx.positive_semidefinite_tag if sign > 0 else lx.negative_semidefinite_tag
    )
    return frozenset({lx.symmetric_tag, definite})


class Stationarity(AbstractObjectiveCondition):
    """The stationarity condition of an unconstrained smooth problem
    `x*(theta) = argmin_x f(x, theta)`: `F(x, theta) = grad_x f(x, theta) = 0`.

    `A = -hessian_x f` is symmetric; it is also (negative) semidefinite when the user
    states `convex=True`, which allows CG and Cholesky as backward solvers.

    **Arguments:**

    - `objective`: the objective `f(x, theta) -> scalar`.
    - `convex`: whether `f` is convex in `x`. Default `False` (only symmetry is
        assumed).
    - `has_aux`: whether `objective` returns `(value, aux)`: see
        [`implicitx.AbstractObjectiveCondition`][]. Default `False`.
    """

    objective: Callable[[PyTree[Array], PyTree[ArrayLike]], Scalar]
    convex: bool = eqx.field(default=False, static=True)
    has_aux: bool = eqx.field(default=False, static=True)

    def __call__(self, x: PyTree[Array], theta: PyTree[ArrayLike]) -> PyTree[Array]:
        return jax.grad(self.objective_value)(x, theta)

    @property
    def tags(self) -> frozenset[object]:
        return objective_tags(self.convex, sign=-1)
