from collections.abc import Callable

import equinox as eqx
from jaxtyping import Array, ArrayLike, PyTree

from ._base import AbstractCondition, AbstractFixedPointCondition


class Root(AbstractCondition):
    """A user-supplied root condition `F(x, theta) = 0`.

    **Arguments:**

    - `fn`: the function `F(x, theta) -> residual`, with the residual of the same
        PyTree structure as `x`. It may close over arrays (also traced ones): they are
        hoisted into the differentiable inputs, so derivatives reach them.
    - `tags`: lineax tags known to hold for `A = -dF/dx` at a solution, e.g.
        `frozenset({lineax.symmetric_tag})`. They are trusted, not checked, and they
        decide which backward linear solvers are allowed.
    """

    fn: Callable[[PyTree[Array], PyTree[ArrayLike]], PyTree[Array]]
    _tags: frozenset[object] = eqx.field(static=True)

    def __init__(self, fn, tags=frozenset()):
        self.fn = fn
        self._tags = frozenset(tags)

    def __call__(self, x: PyTree[Array], theta: PyTree[ArrayLike]) -> PyTree[Array]:
        return self.fn(x, theta)

    @property
    def tags(self) -> frozenset[object]:
        return self._tags


class FixedPoint(AbstractFixedPointCondition):
    """A user-supplied fixed-point condition `x = T(x, theta)`, with residual
    `T(x, theta) - x`.

    **Arguments:**

    - `fn`: the map `T(x, theta)`, returning a PyTree of the same structure as `x`.
    - `tags`: lineax tags known to hold for `A = I - dT/dx` at the fixed point.
    """

    fn: Callable[[PyTree[Array], PyTree[ArrayLike]], PyTree[Array]]
    _tags: frozenset[object] = eqx.field(static=True)

    def __init__(self, fn, tags=frozenset()):
        self.fn = fn
        self._tags = frozenset(tags)

    def fixed_point_map(
        self, x: PyTree[Array], theta: PyTree[ArrayLike]
    ) -> PyTree[Array]:
        return self.fn(x, theta)

    @property
    def tags(self) -> frozenset[object]:
        return self._tags
