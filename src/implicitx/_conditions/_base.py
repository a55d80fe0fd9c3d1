import abc
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
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


class _AbstractObjective(AbstractCondition):
    """A condition with a smooth objective `f(x, theta)`: see
    [`implicitx.AbstractObjectiveCondition`][]."""

    objective: AbstractVar[Callable[[PyTree[Array], PyTree[ArrayLike]], Any]]

    def objective_value(self, x: PyTree[Array], theta: PyTree[ArrayLike]) -> Scalar:
        """`f(x, theta)`, without its auxiliary output."""
        out = self.objective(x, theta)
        return out[0] if _has_aux(self) else out

    def objective_aux(self, x: PyTree[Array], theta: PyTree[ArrayLike]) -> Any:
        """The auxiliary output of `f` at `(x, theta)`, or `None` without one."""
        if not _has_aux(self):
            return None
        out = self.objective(x, theta)
        if not (isinstance(out, tuple) and len(out) == 2):
            raise ValueError(
                f"`{type(self).__name__}(..., has_aux=True)`: the objective must "
                f"return a pair `(value, aux)`, not {type(out).__name__}."
            )
        return out[1]


def _has_aux(condition) -> bool:
    # A field of the concrete conditions; a user's own condition without it has none.
    return getattr(condition, "has_aux", False)


class AbstractObjectiveCondition(_AbstractObjective):
    """A condition derived from a smooth objective `f(x, theta) -> scalar` that
    `x*(theta)` minimises. Minimisers use `objective` directly.

    With `has_aux=True` (a field of every implicitx condition with an objective) the
    objective returns `(value, aux)`. Conditions and solvers then read the value
    through `objective_value(x, theta)`, and [`implicitx.ImplicitArgmin`][] returns
    `aux` at the solution, `objective_aux(x*, theta)`, as `Solution.aux`:
    differentiable like any function of the solution.

    `convex=True` states that `f` is convex in `x`, which makes `A` definite up to
    sign, so that symmetric definite linear solvers (CG, Cholesky) become valid.
    """

    convex: AbstractVar[bool]


class AbstractActiveSetFixedPoint(AbstractFixedPointCondition):
    """A fixed point of a proximal, projected or mirror step, tagged
    `implicitx.active_set_tag` (what the tag says, and how the default backward solver
    uses it: see the adjoints page, "Choosing the backward solver")."""

    @property
    def tags(self) -> frozenset[object]:
        return _ACTIVE_SET


class AbstractCompositeCondition(AbstractFixedPointCondition, _AbstractObjective):
    """The protocol between a composite problem `min_x f(x, theta) + g(x, theta)` and
    the solvers that split it ([`implicitx.solvers.ProximalGradient`][],
    [`implicitx.solvers.ProjectedGradient`][],
    [`implicitx.solvers.BlockCoordinateDescent`][]): they ask the condition for its
    smooth part and its prox, and never look at its type. Subclass it to make your own
    composite condition work with them.

    - `objective`: the smooth part `f(x, theta) -> scalar` (read through
        `objective_value`; `has_aux` as for
        [`implicitx.AbstractObjectiveCondition`][]).
    - `prox_at(theta)`: the prox of `g` at `theta`, one callable
        `(z, step) -> prox_{step g}(z)` (a projection ignores `step`; `g = 0` is the
        identity).
    - `block_prox_at(theta)`: for block coordinate descent, the prox of one block,
        `(x, j, z_j, step) -> new x[j]` (with `z_j` the gradient step on block `j` of
        `x`), or `None` when `g` does not separate over the blocks of `x`.

    The condition's `stepsize` is the `eta` of its fixed-point map: it shapes `A` but
    not `x*`. Solvers that split the problem choose their own steps and do not use it;
    solvers that iterate the map (`PicardIteration`, `MirrorDescent`) do.
    """

    @abc.abstractmethod
    def prox_at(self, theta: PyTree[ArrayLike]) -> Callable:
        """The map `(z, step) -> prox_{step g(., theta)}(z)`."""

    @abc.abstractmethod
    def block_prox_at(self, theta: PyTree[ArrayLike]) -> Callable | None:
        """The map `(x, j, z_j, step) -> prox of block j`, or `None`."""


class AbstractMirrorDescentCondition(AbstractActiveSetFixedPoint, _AbstractObjective):
    """The protocol between a problem `min_{x in C} f(x, theta)` and
    [`implicitx.solvers.MirrorDescent`][]: the condition gives its smooth objective,
    its mirror map at `theta` and its step size, and its fixed-point map is the
    mirror step `x+ = mirror_map.step(x, grad f(x, theta), stepsize)` built from them
    (see [`implicitx.mirror.AbstractMirrorMap`][]). Subclass it to make your own
    mirror-descent condition work with the solver.

    - `objective`: `f(x, theta) -> scalar` (read through `objective_value`).
    - `mirror_map_at(theta)`: the mirror map, an
        [`implicitx.mirror.AbstractMirrorMap`][].
    - `step_size()`: the step `eta > 0` (the solver iterates the map with it).
    """

    @abc.abstractmethod
    def mirror_map_at(self, theta: PyTree[ArrayLike]) -> Any:
        """The mirror map (an `implicitx.mirror.AbstractMirrorMap`) at `theta`."""

    @abc.abstractmethod
    def step_size(self) -> Any:
        """The step size `eta` of the mirror step, a positive scalar."""

    def fixed_point_map(self, x: Array, theta: PyTree[ArrayLike]) -> Array:
        gradient = jax.grad(self.objective_value)(x, theta)
        step = jnp.asarray(self.step_size(), x.dtype)
        return self.mirror_map_at(theta).step(x, gradient, step)
