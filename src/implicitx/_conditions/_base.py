import abc
from collections.abc import Callable

import equinox as eqx
import jax.tree_util as jtu
from equinox import AbstractVar
from jaxtyping import Array, ArrayLike, PyTree, Scalar

from .._tags import active_set_tag


_ACTIVE_SET = frozenset({active_set_tag})


class AbstractCondition(eqx.Module):
    """An optimality condition `F(x, theta) = 0` characterising a solution `x*(theta)`.

    Implicit differentiation needs nothing else: with `A = -dF/dx` and `B = dF/dtheta`
    evaluated at the solution, `A (dx*/dtheta) = B`.

    Subclasses implement `__call__(x, theta) -> residual`, where the residual has the
    same PyTree structure, shapes and dtypes as `x`, and may override `tags` to state
    what is known about the structure of `A` (a `frozenset` of lineax tags such as
    `lineax.symmetric_tag`). Array-valued fields of a condition are parameters:
    derivatives of `x*` with respect to them are computed as for `theta`.
    """

    @abc.abstractmethod
    def __call__(self, x: PyTree[Array], theta: PyTree[ArrayLike]) -> PyTree[Array]:
        """**Arguments:**

        - `x`: a candidate solution.
        - `theta`: the parameters of the problem.

        **Returns:**

        The residual `F(x, theta)`, a PyTree of the same structure as `x`; zero at a
        solution.
        """

    @property
    def tags(self) -> frozenset[object]:
        """The lineax tags of `A = -dF/dx` at a solution (default: none known)."""
        return frozenset()


class AbstractFixedPointCondition(AbstractCondition):
    """A condition written as a fixed point `x = T(x, theta)`; its residual is
    `T(x, theta) - x`. Fixed-point solvers iterate `T` directly.
    """

    @abc.abstractmethod
    def fixed_point_map(
        self, x: PyTree[Array], theta: PyTree[ArrayLike]
    ) -> PyTree[Array]:
        """The map `T(x, theta)` whose fixed point is the solution."""

    def __call__(self, x: PyTree[Array], theta: PyTree[ArrayLike]) -> PyTree[Array]:
        image = self.fixed_point_map(x, theta)
        if jtu.tree_structure(image) != jtu.tree_structure(x):
            raise ValueError(
                f"The fixed-point map of `{type(self).__name__}` must return the "
                f"structure of `x`: `x` is {jtu.tree_structure(x)}, `T(x, theta)` is "
                f"{jtu.tree_structure(image)}. (`T` must return the structure of `x`.)"
            )
        return jtu.tree_map(lambda t, xi: t - xi, image, x)


class AbstractObjectiveCondition(AbstractCondition):
    """A condition derived from a smooth objective `f(x, theta) -> scalar` that
    `x*(theta)` minimises. Minimisers use `objective` directly.

    `convex=True` states that `f` is convex in `x`, which makes `A` definite up to
    sign, so that symmetric definite linear solvers (CG, Cholesky) become valid.
    """

    objective: AbstractVar[Callable[[PyTree[Array], PyTree[ArrayLike]], Scalar]]
    convex: AbstractVar[bool]


class AbstractActiveSetFixedPoint(AbstractFixedPointCondition):
    """A fixed point of a proximal, projected or mirror step. The Jacobian of the step
    vanishes on coordinates held at the boundary, so `A = I - dT/dx` is the identity
    plus a part of the rank of the free set: tagged `implicitx.active_set_tag`, which
    the default backward solver uses."""

    @property
    def tags(self) -> frozenset[object]:
        return _ACTIVE_SET
