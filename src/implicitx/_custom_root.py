import functools as ft
from collections.abc import Callable
from typing import Any, TypeVar

import equinox as eqx
import lineax as lx

from ._adjoint import ImplicitAdjoint
from ._argmin import ImplicitArgmin
from ._conditions import AbstractCondition, FixedPoint, Root
from .solvers import FunctionSolver


_F = TypeVar("_F", bound=Callable[..., Any])


class _WithArgs(eqx.Module):
    """Adapts `fn(x, *args, **kwargs)` to the condition signature `(x, theta)` with
    `theta = (args, kwargs)`."""

    fn: Callable[..., Any]

    def __call__(self, x, theta):
        args, kwargs = theta
        return self.fn(x, *args, **kwargs)


class _SolverWithArgs(eqx.Module):
    """Adapts `solver(*args, **kwargs)` to the solver signature `(theta, x0)`."""

    fn: Callable[..., Any]

    def __call__(self, theta, x0):
        del x0
        args, kwargs = theta
        return self.fn(*args, **kwargs)


def _decorate(
    condition: AbstractCondition,
    has_aux: bool,
    linear_solver: lx.AbstractLinearSolver | None,
    throw: bool,
    inexact: bool,
) -> Callable[[_F], _F]:
    def decorator(solver: _F) -> _F:
        argmin = ImplicitArgmin(
            condition,
            FunctionSolver(_SolverWithArgs(solver), has_aux=has_aux),
            ImplicitAdjoint(linear_solver=linear_solver, inexact=inexact),
            throw=throw,
        )

        @ft.wraps(solver)
        def wrapped(*args, **kwargs):
            sol = argmin.solve((args, kwargs))
            return (sol.value, sol.aux) if has_aux else sol.value

        return wrapped  # pyright: ignore[reportReturnType]

    return decorator


def custom_root(
    F: Callable[..., Any],
    *,
    has_aux: bool = False,
    linear_solver: lx.AbstractLinearSolver | None = None,
    tags: frozenset[object] = frozenset(),
    throw: bool = True,
    inexact: bool = False,
) -> Callable[[_F], _F]:
    """Decorator giving a solver function implicit derivatives from a root condition.

    ```python
    F = jax.grad(f)                      # f(x, theta)

    @ix.custom_root(F)
    def ridge_solver(theta):
        return jnp.linalg.solve(X.T @ X + theta * jnp.eye(d), X.T @ y)

    jax.jacobian(ridge_solver)(10.0)     # also jacfwd, hessian, vmap, jit
    ```

    The decorated `solver(*args, **kwargs)` returns `x` with
    `F(x, *args, **kwargs) = 0`. Its derivatives with respect to every floating-point
    array in `args` and `kwargs`, and in arrays that `F` closes over, come from the
    implicit function theorem; the solver itself is never differentiated. It is sugar
    for
    [`implicitx.ImplicitArgmin`][] with an [`implicitx.Root`][] condition and an
    [`implicitx.solvers.FunctionSolver`][].

    **Arguments:**

    - `F`: the optimality condition `F(x, *args, **kwargs) -> residual`, with the
        residual of the same PyTree structure as `x`.
    - `has_aux`: if `True`, the solver returns `(x, aux)`, and so does the decorated
        function. `aux` is passed through and is not differentiated (reverse-mode
        differentiation through it is an error; forward mode gives it NaN tangents).
    - `linear_solver`: the lineax solver of the backward system; default chosen from
        the structure of `A = -dF/dx` (see [`implicitx.ImplicitAdjoint`][]).
    - `tags`: lineax tags known to hold for `A = -dF/dx` at the solution (for example
        `frozenset({lineax.symmetric_tag, lineax.negative_semidefinite_tag})` for the
        gradient of a convex objective). Needed to use CG or Cholesky.
    - `throw`: raise on a failed solve (default), or return NaN derivatives (see
        [`implicitx.ImplicitArgmin`][]).
    - `inexact`: also differentiate a value that is not a root (a solver run for a
        fixed budget of steps), approximately: see [`implicitx.ImplicitAdjoint`][].
        Default `False`: a value that is not a root is a failure (`nonroot`).

    **Returns:**

    A decorator for `solver(*args, **kwargs) -> x`.
    """
    condition = Root(_WithArgs(F), tags=tags)
    return _decorate(condition, has_aux, linear_solver, throw, inexact)


def custom_fixed_point(
    T: Callable[..., Any],
    *,
    has_aux: bool = False,
    linear_solver: lx.AbstractLinearSolver | None = None,
    tags: frozenset[object] = frozenset(),
    throw: bool = True,
    inexact: bool = False,
) -> Callable[[_F], _F]:
    """Decorator giving a solver function implicit derivatives from a fixed-point
    condition `x = T(x, *args, **kwargs)`.

    As [`implicitx.custom_root`][] with the residual `T(x, *args, **kwargs) - x`; see
    there for the arguments. `tags` describe `A = I - dT/dx`.

    **Returns:**

    A decorator for `solver(*args, **kwargs) -> x`.
    """
    condition = FixedPoint(_WithArgs(T), tags=tags)
    return _decorate(condition, has_aux, linear_solver, throw, inexact)
