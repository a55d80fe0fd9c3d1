from collections.abc import Callable

import equinox as eqx
from jaxtyping import Array, ArrayLike, PyTree, Scalar

from .._operator_base import AbstractMirrorMap
from ._base import AbstractMirrorDescentCondition
from ._operator_at import operator_at
from ._proximal_gradient import check_stepsize, stepsize_or_nan


class MirrorDescentFixedPoint(AbstractMirrorDescentCondition):
    """The fixed point of a mirror-descent step for
    `x*(theta) = argmin_{x in C} f(x, theta)`:

    `T(x, theta) = project(grad phi(x) - stepsize * grad_x f(x, theta))`,

    with the mirror map `phi` and its mirror projection onto `C` (see
    [`implicitx.mirror.AbstractMirrorMap`][]). With the negative entropy on the simplex
    this is the exponentiated-gradient method, natural for problems over (products of)
    simplices such as the multiclass SVM dual.

    **Arguments:**

    - `objective`: the smooth objective `f(x, theta) -> scalar`.
    - `mirror_map`: an [`implicitx.mirror.AbstractMirrorMap`][], or a function
        `theta -> AbstractMirrorMap`.
    - `stepsize`: the step size `eta > 0`. A known non-positive or non-finite value
        raises a `ValueError` (a negative step would converge to a maximiser, a zero
        step would make every point a fixed point); a traced one makes `T` (hence the
        solve and the derivatives) NaN.
    - `has_aux`: whether `objective` returns `(value, aux)`: see
        [`implicitx.AbstractObjectiveCondition`][]. Default `False`.
    """

    objective: Callable[[PyTree[Array], PyTree[ArrayLike]], Scalar]
    mirror_map: AbstractMirrorMap | Callable[[PyTree[ArrayLike]], AbstractMirrorMap]
    stepsize: float | Array = 1.0
    has_aux: bool = eqx.field(default=False, static=True)

    def __check_init__(self):
        check_stepsize(self, self.stepsize)

    def mirror_map_at(self, theta: PyTree[ArrayLike]) -> AbstractMirrorMap:
        return operator_at(self.mirror_map, AbstractMirrorMap, theta)

    def step_size(self) -> Array:
        return stepsize_or_nan(self.stepsize)
