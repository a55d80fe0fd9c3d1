from collections.abc import Callable

import equinox as eqx
import jax
import jax.tree_util as jtu
import lineax as lx
from jaxtyping import Array, ArrayLike, PyTree, Scalar

from ._base import AbstractFixedPointCondition, AbstractObjectiveCondition


def _gradient(x, args):
    objective, theta = args
    return jax.grad(objective)(x, theta)


class NewtonFixedPoint(AbstractFixedPointCondition, AbstractObjectiveCondition):
    """The fixed point of a Newton step on a smooth objective `f`:
    `T(x, theta) = x - [hessian_x f]^{-1} grad_x f(x, theta)`.

    At a solution `A = I` in exact arithmetic; the derivative equals that of
    [`implicitx.Stationarity`][]. No structure is assumed for `A` away from the exact
    solution.

    **Arguments:**

    - `objective`: the objective `f(x, theta) -> scalar`.
    - `linear_solver`: the lineax solver for the Newton system. Default
        `lineax.AutoLinearSolver(well_posed=True)`.
    - `convex`: whether `f` is convex in `x` (informative only).
    - `has_aux`: whether `objective` returns `(value, aux)`: see
        [`implicitx.AbstractObjectiveCondition`][]. Default `False`.
    """

    objective: Callable[[PyTree[Array], PyTree[ArrayLike]], Scalar]
    linear_solver: lx.AbstractLinearSolver = lx.AutoLinearSolver(well_posed=True)
    convex: bool = eqx.field(default=False, static=True)
    has_aux: bool = eqx.field(default=False, static=True)

    def fixed_point_map(
        self, x: PyTree[Array], theta: PyTree[ArrayLike]
    ) -> PyTree[Array]:
        hessian = lx.JacobianLinearOperator(
            _gradient,
            x,
            (self.objective_value, theta),
            tags=frozenset({lx.symmetric_tag}),
        )
        gradient = _gradient(x, (self.objective_value, theta))
        step = lx.linear_solve(hessian, gradient, self.linear_solver).value
        return jtu.tree_map(lambda xi, si: xi - si, x, step)
