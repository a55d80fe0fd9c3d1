"""Projection onto a polyhedron `{x : A x = b, G x <= h}` by a dual FISTA solve."""

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Scalar

from .._argmin import ImplicitArgmin
from .._conditions import ProjectedGradientFixedPoint
from .._operator_base import (
    AbstractProjection,
    cast_to,
    default_tolerance,
    positive_part_max,
)
from ..solvers import ProjectedGradient


def optional_array(x: ArrayLike | None) -> Array | None:
    """Converter for optional hyperparameter fields: `None` stays `None`."""
    return None if x is None else jnp.asarray(x)


# The dual of `min 0.5 ||x - y||^2 s.t. M x (=, <=) d`, with `M = [A; G]`, `d = [b; h]`
# and multipliers `z = [nu; lam]`, `lam >= 0`, is the minimisation of
# `0.5 ||M^T z||^2 - z^T (M y - d)` over `lam >= 0`; the primal point is
# `x = y - M^T z`. It is solved in normalised units: with `sigma = ||M||_2` and
# `scale = 1 + max|d| + max|M y|` (constants for differentiation),
# `z = (scale / sigma^2) u` makes it the same problem in `u` with `M / sigma` and
# `(M y - d) / scale`: its gradient is 1-Lipschitz (step 1), and its gradient mapping
# is that of `z` in units of `scale`.


class _Dual(NamedTuple):
    """The normalised dual problem."""

    M: Array  # [A; G] / sigma
    r: Array  # ([A; G] y - [b; h]) / scale


def _dual_objective(u: Array, dual: _Dual) -> Scalar:
    return 0.5 * jnp.sum((dual.M.T @ u) ** 2) - jnp.dot(u, dual.r)


class _Multipliers(AbstractProjection):
    """The projection onto the multipliers `[nu; lam]`, `lam >= 0`: the first
    `equalities` entries are free."""

    equalities: int = eqx.field(static=True)

    def _inequality(self, z: Array) -> Array:
        return jnp.arange(z.shape[0]) >= self.equalities

    def __call__(self, y: Float[Array, " k"]) -> Float[Array, " k"]:
        # `where` (not `maximum`): the derivative at `lam = 0` is 0, the same choice
        # for every component, rather than `maximum`'s 1/2.
        return jnp.where(self._inequality(y) & (y <= 0), jnp.zeros_like(y), y)

    def violation(self, x: Float[Array, " k"]) -> Scalar:
        return positive_part_max(jnp.where(self._inequality(x), -x, 0))


class Polyhedron(AbstractProjection):
    """The projection onto the polyhedron `{x : A x = b, G x <= h}`,
    `P(y) = argmin 0.5 ||x - y||^2` over it.

    Either group of constraints may be omitted (`A = b = None` or `G = h = None`), not
    both.

    **Algorithm.** The dual problem, a concave quadratic in the multipliers
    `(nu, lam)` with `lam >= 0`, is solved by
    [`implicitx.solvers.ProjectedGradient`][] (FISTA with adaptive restart, step
    `1 / ||[A; G]||_2^2`), until the gradient mapping at the extrapolated point (the
    violation of the optimality conditions, in the units of `b` and `h`) is at most
    `tol * (1 + max|[b; h]| + max|[A; G] y|)`. Then `P(y) = y - A^T nu - G^T lam`.

    **Derivatives** with respect to `y`, `A`, `b`, `G` and `h` come from implicit
    differentiation ([`implicitx.ImplicitArgmin`][]) of the fixed-point condition of
    projected gradient on the dual ([`implicitx.ProjectedGradientFixedPoint`][]), in
    forward and reverse mode. They require unique multipliers and strict
    complementarity: the active constraints (equalities and inequalities with
    `lam > 0`) must have linearly independent rows, and no inequality may be active
    with a zero multiplier. With linearly dependent active constraints (for example a
    repeated or redundant constraint) the multipliers are not unique, the linear
    system of implicit differentiation is singular and differentiating raises an
    error (the projection itself is still computed). At weakly active constraints a
    one-sided derivative is returned.

    **Failure.** If the solver does not converge in `max_steps` (in particular when the
    polyhedron is empty, which makes the dual unbounded), an error is raised
    (`throw=True`, the default); with `throw=False` nothing raises and derivatives are
    NaN.

    **Arguments:**

    - `A`: the equality constraint matrix, shape `(p, n)`, or `None`.
    - `b`: the equality right-hand side, shape `(p,)`, or `None`.
    - `G`: the inequality constraint matrix, shape `(m, n)`, or `None`.
    - `h`: the inequality right-hand side, shape `(m,)`, or `None`.
    - `tol`: the relative accuracy of the constraints ([the meaning of
        `tol`](operators-library.md#projections-that-solve-a-problem-tol-max_steps-throw)):
        here the violation of the optimality conditions, in the units of `b` and
        `h`, relative to `1 + max|[b; h]| + max|[A; G] y|`.
    - `max_steps`: the maximum number of FISTA steps.
    - `throw`: whether a solve that does not converge raises an error.
    """

    A: Float[Array, "p n"] | None = eqx.field(default=None, converter=optional_array)
    b: Float[Array, " p"] | None = eqx.field(default=None, converter=optional_array)
    G: Float[Array, "m n"] | None = eqx.field(default=None, converter=optional_array)
    h: Float[Array, " m"] | None = eqx.field(default=None, converter=optional_array)
    tol: float | None = eqx.field(default=None, static=True)
    max_steps: int = eqx.field(default=10_000, static=True)
    throw: bool = eqx.field(default=True, static=True)

    def __check_init__(self):
        if (self.A is None) != (self.b is None):
            raise ValueError("Polyhedron: pass both `A` and `b`, or neither.")
        if (self.G is None) != (self.h is None):
            raise ValueError("Polyhedron: pass both `G` and `h`, or neither.")
        if self.A is None and self.G is None:
            raise ValueError(
                "Polyhedron: pass equality constraints (`A`, `b`), inequality "
                "constraints (`G`, `h`), or both."
            )

    def _data(self, like: Array):
        return tuple(
            None if v is None else cast_to(v, like)
            for v in (self.A, self.b, self.G, self.h)
        )

    def __call__(self, y: Float[Array, " n"]) -> Float[Array, " n"]:
        A, b, G, h = self._data(y)
        M = jnp.concatenate([m for m in (A, G) if m is not None], axis=0)
        d = jnp.concatenate([v for v in (b, h) if v is not None])
        sigma = jax.lax.stop_gradient(jnp.linalg.norm(M, ord=2))
        scale = jax.lax.stop_gradient(1 + jnp.max(jnp.abs(d)) + jnp.max(jnp.abs(M @ y)))
        dual = _Dual(M / sigma, (M @ y - d) / scale)
        tol = default_tolerance(y.dtype) if self.tol is None else self.tol
        argmin = ImplicitArgmin(
            ProjectedGradientFixedPoint(
                _dual_objective, _Multipliers(0 if A is None else A.shape[0])
            ),
            ProjectedGradient(
                rtol=0.0, atol=tol, max_steps=self.max_steps, stepsize=1.0
            ),
            throw=self.throw,
        )
        u = argmin(dual, jnp.zeros(M.shape[0], y.dtype))
        return y - (scale / sigma) * (dual.M.T @ u)

    def violation(self, x: Float[Array, " n"]) -> Scalar:
        """The largest of `|A x - b|` and `G x - h` (zero if none is positive)."""
        A, b, G, h = self._data(x)
        parts = [jnp.zeros((), x.dtype)]
        if A is not None and b is not None:
            parts.append(jnp.max(jnp.abs(A @ x - b)))
        if G is not None and h is not None:
            parts.append(jnp.max(G @ x - h))
        return jnp.max(jnp.stack(parts))
