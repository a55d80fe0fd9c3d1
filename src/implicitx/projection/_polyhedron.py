"""Projection onto a polyhedron `{x : A x = b, G x <= h}` by a dual FISTA solve."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PyTree, Scalar

from .._argmin import ImplicitArgmin
from .._conditions import AbstractCondition, FixedPoint
from .._operator_base import AbstractProjection, cast_to, default_tolerance
from .._solution import Solution
from .._while_loops import lax_while_loop, WhileLoop
from ..solvers import AbstractSolver
from ..solvers._loop import converged_result


def optional_array(x: ArrayLike | None) -> Array | None:
    """Converter for optional hyperparameter fields: `None` stays `None`."""
    return None if x is None else jnp.asarray(x)


# The dual of `min 0.5 ||x - y||^2 s.t. M x (=, <=) d`, with `M = [A; G]`, `d = [b; h]`
# and multipliers `z = [nu; lam]`, `lam >= 0`, is the minimisation of
# `0.5 ||M^T z||^2 - z^T (M y - d)` over `lam >= 0`. Its gradient is `d - M x(z)`, with
# the primal point `x(z) = y - M^T z`.


def _stack(theta):
    y, A, b, G, h = theta
    rows = [m for m in (A, G) if m is not None]
    rhs = [v for v in (b, h) if v is not None]
    return y, jnp.concatenate(rows, axis=0), jnp.concatenate(rhs)


def _inequality_mask(theta) -> np.ndarray:
    _, A, _, G, _ = theta
    p = 0 if A is None else A.shape[0]
    m = 0 if G is None else G.shape[0]
    return np.arange(p + m) >= p


def _project_multipliers(z, inequality):
    # `where` (not `maximum`): the derivative at `z = 0` is 0, the same choice for every
    # component, rather than `maximum`'s 1/2.
    return jnp.where(inequality & (z <= 0), jnp.zeros_like(z), z)


def _dual_gradient(z, y, M, d):
    return d - M @ (y - M.T @ z)


def _dual_fixed_point_map(z: Array, theta) -> Array:
    """One projected-gradient step on the dual; its fixed points are the optimal
    multipliers. The step `1 / ||M||_F^2` (a bound on `1 / L`) is any positive number
    as far as the solution and its derivatives are concerned."""
    y, M, d = _stack(theta)
    inequality = _inequality_mask(theta)
    step = jax.lax.stop_gradient(1 / jnp.sum(M**2))
    return _project_multipliers(z - step * _dual_gradient(z, y, M, d), inequality)


class _DualFISTA(AbstractSolver):
    """Accelerated projected gradient (FISTA) with adaptive restart on the dual."""

    tol: float | None = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)

    def solve(
        self,
        condition: AbstractCondition,
        theta: PyTree[ArrayLike],
        x0: PyTree[ArrayLike] | None,
        *,
        while_loop: WhileLoop = lax_while_loop,
    ) -> Solution:
        del condition, x0
        y, M, d = _stack(theta)
        inequality = _inequality_mask(theta)
        tol = default_tolerance(y.dtype) if self.tol is None else self.tol
        step = 1 / jnp.linalg.norm(M, ord=2) ** 2
        scale = 1 + jnp.max(jnp.abs(d)) + jnp.max(jnp.abs(M @ y))

        def gradient_step(z):
            return _project_multipliers(
                z - step * _dual_gradient(z, y, M, d), inequality
            )

        def residual(z):
            # The gradient mapping: zero exactly at a solution; in the units of the
            # constraints (its equality part is `b - A x`).
            return jnp.max(jnp.abs(z - gradient_step(z))) / step

        def cond(carry):
            _, _, _, k, res = carry
            return (k < self.max_steps) & (res > tol * scale)

        def body(carry):
            z, w, t, k, _ = carry
            z_new = gradient_step(w)
            t_new = (1 + jnp.sqrt(1 + 4 * t**2)) / 2
            # Restart the momentum when it points uphill (O'Donoghue and Candes).
            restart = jnp.vdot(w - z_new, z_new - z) > 0
            w_new = z_new + ((t - 1) / t_new) * (z_new - z)
            w_new = jnp.where(restart, z_new, w_new)
            t_new = jnp.where(restart, jnp.ones_like(t_new), t_new)
            return z_new, w_new, t_new, k + 1, residual(z_new)

        z0 = jnp.zeros(M.shape[0], y.dtype)
        init = (z0, z0, jnp.ones((), y.dtype), jnp.array(0), residual(z0))
        z, _, _, num_steps, res = jax.lax.while_loop(cond, body, init)
        converged = res <= tol * scale
        result = converged_result(converged)
        return Solution(
            value=z, result=result, aux=None, stats={"num_steps": num_steps}
        )


class Polyhedron(AbstractProjection):
    """The projection onto the polyhedron `{x : A x = b, G x <= h}`,
    `P(y) = argmin 0.5 ||x - y||^2` over it.

    Either group of constraints may be omitted (`A = b = None` or `G = h = None`), not
    both.

    **Algorithm.** The dual problem, a concave quadratic in the multipliers
    `(nu, lam)` with `lam >= 0`, is solved by accelerated projected gradient (FISTA
    with adaptive restart) inside a `jax.lax.while_loop`, until the gradient mapping
    (the violation of the optimality conditions, in the units of `b` and `h`) is at
    most `tol * (1 + max|[b; h]| + max|[A; G] y|)`. Then
    `P(y) = y - A^T nu - G^T lam`.

    **Derivatives** with respect to `y`, `A`, `b`, `G` and `h` come from implicit
    differentiation ([`implicitx.ImplicitArgmin`][]) of the fixed-point condition of
    projected gradient on the dual, in forward and reverse mode. They require unique
    multipliers and strict complementarity: the active constraints (equalities and
    inequalities with `lam > 0`) must have linearly independent rows, and no inequality
    may be active with a zero multiplier. With linearly dependent active constraints
    (for example a repeated or redundant constraint) the multipliers are not unique,
    the linear system of implicit differentiation is singular and differentiating
    raises an error (the projection itself is still computed). At weakly active
    constraints a one-sided derivative is returned.

    **Failure.** If the solver does not converge in `max_steps` (in particular when the
    polyhedron is empty, which makes the dual unbounded), an error is raised
    (`throw=True`, the default); with `throw=False` nothing raises and derivatives are
    NaN.

    **Arguments:**

    - `A`: the equality constraint matrix, shape `(p, n)`, or `None`.
    - `b`: the equality right-hand side, shape `(p,)`, or `None`.
    - `G`: the inequality constraint matrix, shape `(m, n)`, or `None`.
    - `h`: the inequality right-hand side, shape `(m,)`, or `None`.
    - `tol`: the relative tolerance of the dual solver. Default `eps^(2/3)` of the
        dtype of `y`.
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
        theta = (y, *self._data(y))
        argmin = ImplicitArgmin(
            FixedPoint(_dual_fixed_point_map),
            _DualFISTA(self.tol, self.max_steps),
            throw=self.throw,
        )
        z = argmin(theta)
        _, M, _ = _stack(theta)
        return y - M.T @ z

    def violation(self, x: Float[Array, " n"]) -> Scalar:
        """The largest of `|A x - b|` and `G x - h` (zero if none is positive)."""
        A, b, G, h = self._data(x)
        parts = [jnp.zeros((), x.dtype)]
        if A is not None and b is not None:
            parts.append(jnp.max(jnp.abs(A @ x - b)))
        if G is not None and h is not None:
            parts.append(jnp.max(G @ x - h))
        return jnp.max(jnp.stack(parts))
