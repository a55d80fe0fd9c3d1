import abc

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
from equinox import AbstractVar
from jaxtyping import Array, ArrayLike, Float, Scalar

from .._operator_base import (
    AbstractProjection,
    cast_to,
    check_hyperparameters,
    hyperparameter,
    nan_unless,
)


def _nonzero(a: Array) -> Array:
    """`a` is finite and not zero."""
    return jnp.any(a != 0) & jnp.all(jnp.isfinite(a))


def _check_hyperplane(name: str, a: Array, b: ArrayLike):
    if a.ndim != 1 or jnp.ndim(b) != 0:
        raise ValueError(
            f"`{name}` needs a vector `a` and a scalar `b`; got shapes {a.shape} and "
            f"{jnp.shape(b)}."
        )
    check_hyperparameters(
        name,
        "a finite, non-zero normal `a`",
        _nonzero,
        why="otherwise the set is not a hyperplane",
        a=a,
    )


def _scaled(a: Array, b: Array) -> tuple[Array, Array, Array]:
    """`(a / m, b / m, ||a / m||^2)` with `m = max |a_i|` (held constant for
    differentiation): the same hyperplane, with a normal whose squared norm neither
    overflows nor underflows."""
    largest = jax.lax.stop_gradient(jnp.max(jnp.abs(a)))
    largest = jnp.where(largest > 0, largest, 1)
    a, b = a / largest, b / largest
    return a, b, jnp.dot(a, a)


class _AbstractHyperplaneSet(AbstractProjection):
    """A set bounded by the hyperplane `a . x = b`: the projection removes the
    `excess` of the residual `a . y - b` along the normal."""

    a: AbstractVar[Float[Array, " n"]]
    b: AbstractVar[float | Float[Array, ""]]

    def __check_init__(self):
        _check_hyperplane(type(self).__name__, self.a, self.b)

    @abc.abstractmethod
    def _excess(self, residual: Array) -> Array:
        """The part of the residual `a . y - b` outside the set."""

    def __call__(self, y: Float[Array, " n"]) -> Float[Array, " n"]:
        a, b, squared = _scaled(cast_to(self.a, y), cast_to(self.b, y))
        x = y - self._excess(jnp.dot(a, y) - b) / squared * a
        return nan_unless(_nonzero, x, self.a, point=y)

    def violation(self, x: Float[Array, " n"]) -> Scalar:
        """The absolute excess of the residual `a . x - b`."""
        residual = jnp.dot(cast_to(self.a, x), x) - cast_to(self.b, x)
        return jnp.abs(self._excess(residual))


class Hyperplane(_AbstractHyperplaneSet):
    """The projection onto the hyperplane `{x : a . x = b}`:
    `P(y) = y - (a . y - b) / ||a||^2 * a`.

    Smooth; derivatives (with respect to `y`, `a` and `b`) by automatic
    differentiation.

    **Arguments:**

    - `a`: the normal vector, non-zero, of the shape of the point.
    - `b`: the offset, a scalar.
    """

    a: Float[Array, " n"] = eqx.field(converter=jnp.asarray)
    b: float | Float[Array, ""] = eqx.field(converter=hyperparameter)

    def _excess(self, residual: Array) -> Array:
        return residual


class Halfspace(_AbstractHyperplaneSet):
    """The projection onto the half-space `{x : a . x <= b}`:
    `P(y) = y - max(a . y - b, 0) / ||a||^2 * a`.

    Derivatives (with respect to `y`, `a` and `b`) by automatic differentiation,
    exact away from the boundary `a . y = b`.

    **Arguments:**

    - `a`: the outward normal vector, non-zero, of the shape of the point.
    - `b`: the offset, a scalar.
    """

    a: Float[Array, " n"] = eqx.field(converter=jnp.asarray)
    b: float | Float[Array, ""] = eqx.field(converter=hyperparameter)

    def _excess(self, residual: Array) -> Array:
        return jnp.maximum(residual, jnp.zeros((), residual.dtype))


class AffineSet(AbstractProjection):
    """The projection onto the affine set `{x : A x = b}`, for `A` of full row rank:
    `P(y) = y - A^+ (A y - b)`, with `A^+ = A^T (A A^T)^{-1}` the pseudo-inverse.

    The correction `A^+ (A y - b)` is the minimum-norm least-squares solution of
    `A d = A y - b`, computed by `lineax.linear_solve` with a QR factorisation (no
    normal equations). Smooth; derivatives (with respect to `y`, `A` and `b`) by
    automatic differentiation through the lineax solve.

    **Arguments:**

    - `A`: the constraint matrix, of shape `(m, n)` with `m <= n` and full row rank
        `m` (this is not checked).
    - `b`: the right-hand side, of shape `(m,)`.
    """

    A: Float[Array, "m n"] = eqx.field(converter=jnp.asarray)
    b: Float[Array, " m"] = eqx.field(converter=jnp.asarray)

    def __check_init__(self):
        A, b = self.A, self.b
        if (
            A.ndim != 2
            or b.ndim != 1
            or A.shape[0] != b.shape[0]
            or A.shape[0] > A.shape[1]
        ):
            raise ValueError(
                "`AffineSet` needs a matrix `A` of shape (m, n) with m <= n and a "
                f"vector `b` of shape (m,); got shapes {A.shape} and {b.shape}."
            )

    def __call__(self, y: Float[Array, " n"]) -> Float[Array, " n"]:
        A, b = cast_to(self.A, y), cast_to(self.b, y)
        operator = lx.MatrixLinearOperator(A)
        correction = lx.linear_solve(operator, A @ y - b, solver=lx.QR()).value
        return y - correction

    def violation(self, x: Float[Array, " n"]) -> Scalar:
        """The largest absolute residual `max_i |(A x - b)_i|`."""
        return jnp.max(jnp.abs(cast_to(self.A, x) @ x - cast_to(self.b, x)))
