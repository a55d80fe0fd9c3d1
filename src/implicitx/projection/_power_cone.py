"""Projection onto the three-dimensional power cone."""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, Scalar

from .._argmin import ImplicitArgmin
from .._conditions import Root
from .._operator_base import (
    AbstractProjection,
    cast_to,
    check_hyperparameters,
    hyperparameter,
    nan_unless,
)
from ..solvers import Polished
from ._cones import bracketed_root_solver


# --------------------------------------------------------------------------------------
# Power cone
# --------------------------------------------------------------------------------------
#
# Off the cone `K`, its polar cone `-K^*` and the plane `z0 = 0`, the projection of
# `v = (x0, y0, z0)` is `(phix(r), phiy(r), sign(z0) r)` with
#
#     phix(r) = (x0 + sqrt(x0^2 + 4 alpha r (|z0| - r))) / 2,
#     phiy(r) = (y0 + sqrt(y0^2 + 4 (1 - alpha) r (|z0| - r))) / 2,
#
# and `r` the unique root in `(0, |z0|)` of
#
#     Phi(r) = phix(r)^alpha phiy(r)^(1 - alpha) - r
#
# (Hien, "Differential properties of Euclidean projection onto power cone", 2015).
# `Phi > 0` below the root and `Phi < 0` above it: `Phi(|z0|) < 0` because `v` is not
# in `K`, and `Phi > 0` just above zero because `v` is not in `-K^*`, so `[0, |z0|]`
# brackets the root.
#
# The root is found on `log(phix^alpha phiy^(1 - alpha) / r)`, which has the same sign
# and root, is defined with no underflow of the power, and has no second root at
# `r = 0` (where `Phi(0) = 0` when `x0 <= 0` or `y0 <= 0`). Its slope at the root
# stays away from zero as `v` approaches `-K^*` (that of `Phi` tends to zero there,
# and the root to zero). For a negative `x0`, `phix` is evaluated as
# `2 q / (sqrt(x0^2 + 4 q) - x0)`, `q = alpha r (|z0| - r)` (and likewise `phiy`),
# which is free of cancellation, and the factor `r` of `q` is cancelled against the
# `1 / r` of the logarithm, so that for `x0, y0 < 0` the residual is finite down to
# `r = 0`.

# A point in the root-finding case, substituted for inputs in the other cases (and an
# `alpha` substituted for an invalid traced one) so that the (discarded)
# root-finding branch stays finite.
_SAFE_POINT = (0.0, 0.0, 1.0)
_SAFE_ALPHA = 0.5


def _phi(coordinate: Array, weight: Array, r: Array, width: Array) -> Array:
    """`(c + sqrt(c^2 + 4 weight r (width - r))) / 2` for the coordinate `c`, without
    cancellation when `c < 0`."""
    q = weight * r * (width - r)
    root = jnp.sqrt(coordinate * coordinate + 4 * q)
    negative = coordinate < 0
    rationalised = 2 * q / jnp.where(negative, root - coordinate, 1)
    return jnp.where(negative, rationalised, (coordinate + root) / 2)


def _phis(r: Array, v: Array, alpha: Array) -> tuple[Array, Array]:
    width = jnp.abs(v[2])
    return _phi(v[0], alpha, r, width), _phi(v[1], 1 - alpha, r, width)


def _log_phi_over_r(coordinate: Array, weight: Array, r: Array, width: Array) -> Array:
    """`log(phi / r)` for the `phi` of the coordinate `c` above. For `c < 0` it is
    `log(2 weight (width - r) / (sqrt(c^2 + 4 q) - c))`, with `log r` cancelled
    exactly: finite at `r = 0`, where the root lies as `v` approaches `-K^*`."""
    q = weight * r * (width - r)
    root = jnp.sqrt(coordinate * coordinate + 4 * q)
    negative = coordinate < 0
    denominator = jnp.where(negative, root - coordinate, 1)
    cancelled = jnp.log(2 * weight * (width - r)) - jnp.log(denominator)
    plain = jnp.log(jnp.where(negative, 1, (coordinate + root) / 2)) - jnp.log(r)
    return jnp.where(negative, cancelled, plain)


def _log_residual(r: Array, v: Array, alpha: Array) -> Array:
    """`log(phix^alpha phiy^(1 - alpha) / r)`: the sign and the root of `Phi`."""
    width = jnp.abs(v[2])
    x = _log_phi_over_r(v[0], alpha, r, width)
    y = _log_phi_over_r(v[1], 1 - alpha, r, width)
    return alpha * x + (1 - alpha) * y


def _newton_scaled_residual(r: Array, v: Array, alpha: Array) -> Array:
    """`f / |f'| / |z0|`, with `f` the residual above: the Newton step relative to the
    width of the bracket. It has the sign of `f`, so bisection can use it, and its
    size estimates the (relative) distance to the root, which makes the stopping rule
    of the bisection independent of the scale of `z0`. The factor multiplying `f` is
    held constant under differentiation: the root and its derivatives of every order
    are those of `f`, and no second derivative of `f` is formed (a Newton step on it
    is one on `f`)."""
    value, derivative = jax.jvp(
        lambda s: _log_residual(s, v, alpha), (r,), (jnp.ones_like(r),)
    )
    tiny = jnp.finfo(r.dtype).tiny
    scale = 1 / (jnp.abs(derivative) + tiny) / jnp.abs(v[2])
    return value * jax.lax.stop_gradient(scale)


# The root problem's `theta` is `(v, alpha)`; the bracket `[0, |z0|]` follows from `v`
# (and is not differentiated: only the forward solver uses it).


def _bracket_options(theta) -> dict[str, Array]:
    v, _ = theta
    upper = jnp.abs(v[2])
    return dict(lower=jnp.zeros_like(upper), upper=upper)


def _residual_size(r: Array, theta) -> Array:
    return jnp.abs(_log_residual(r, *theta))


def _root_residual(r: Array, theta) -> Array:
    return _newton_scaled_residual(r, *theta)


def _power_root_solver(dtype) -> Polished:
    """The point is scaled to entries of order one and `|z0| >= eps` relative to
    them, so bisection needs about log2(1 / tolerance) steps (40 in float64)."""
    return bracketed_root_solver(dtype, 256, _bracket_options, _residual_size)


def _increasing_residual(r: Array, theta) -> Array:
    """Minus the relative Newton step: negative below the root and positive above it,
    as `optimistix.Bisection(flip=False)` expects."""
    return -_root_residual(r, theta)


# The root `r` of the relative Newton step: that of `Phi`, with its derivatives.
_POWER_CONDITION = Root(_increasing_residual)


def _valid_alpha(alpha: Array | float) -> Bool[ArrayLike, "..."]:
    """`0 < alpha < 1` (false for NaN)."""
    return (alpha > 0) & (alpha < 1)


def _weighted_geometric_mean(x: Array, y: Array, alpha: Array) -> Array:
    """`x^alpha y^(1 - alpha)` for `x, y >= 0` (zero if either is), with no NaN in
    its derivatives at zero. It lies between `x` and `y`, so it neither overflows nor
    underflows."""
    positive = (x > 0) & (y > 0)
    safe_x = jnp.where(positive, x, 1)
    safe_y = jnp.where(positive, y, 1)
    mean = safe_x**alpha * safe_y ** (1 - alpha)
    return jnp.where(positive, mean, 0)


class PowerCone(AbstractProjection):
    """The projection onto the three-dimensional power cone with parameter `alpha`,
    acting on vectors `v = (x, y, z)`:

    `K_alpha = {(x, y, z) : x >= 0, y >= 0, x^alpha y^(1 - alpha) >= |z|}`.

    This is the convention of CVXPY (`cvxpy.constraints.PowCone3D(x, y, z, alpha)`),
    SCS and Clarabel: the first coordinate carries the exponent `alpha`, the second
    `1 - alpha`, and the third is bounded in absolute value. The dual cone is
    `K_alpha^* = {(u, v, w) : u, v >= 0, (u / alpha)^alpha (v / (1 - alpha))^(1 - alpha)
    >= |w|}`.

    **Algorithm.** If `v` is in `K_alpha` it is returned; if it is in the polar cone
    `-K_alpha^*` the projection is zero; if `z = 0` it is `(max(x, 0), max(y, 0), 0)`.
    Otherwise the projection lies on the boundary, at
    `(phix(r), phiy(r), sign(z) r)` with
    `phix(r) = (x + sqrt(x^2 + 4 alpha r (|z| - r))) / 2`,
    `phiy(r) = (y + sqrt(y^2 + 4 (1 - alpha) r (|z| - r))) / 2`, and `r` the unique
    root in `(0, |z|)` of `phix(r)^alpha phiy(r)^(1 - alpha) = r` (Hien, 2015), found
    by bisection (`optimistix.Bisection`) in `[0, |z|]`, then polished by a few
    `optimistix.Newton` steps.

    The point is scaled by its largest entry before the arithmetic, and entries below
    `eps` times the largest are set to zero (which moves the projection by at most
    that much, as it is non-expansive), so the projection and its derivatives are
    accurate for entries of any magnitude the dtype represents.

    **Derivatives.** The root `r(v, alpha)` gets its derivative by implicit
    differentiation of the scalar equation (through [`implicitx.ImplicitArgmin`][],
    so forward and reverse mode, any order); the rest is autodiff of closed forms.
    Derivatives (also with respect to a learnable `alpha`) are defined off the
    boundaries between the cases: the boundaries of `K_alpha` and `-K_alpha^*`, and
    the plane `z = 0` outside both (where the projection has kinks, and a one-sided
    derivative is returned; on `z = 0` the one of the flat case). A root search that
    does not converge raises an error.

    **Arguments:**

    - `alpha`: the exponent, `0 < alpha < 1`.
    """

    alpha: float | Float[Array, ""] = eqx.field(converter=hyperparameter)

    def __check_init__(self):
        check_hyperparameters(
            "PowerCone",
            "`0 < alpha < 1`",
            _valid_alpha,
            why="the power cone is defined for these exponents only",
            alpha=self.alpha,
        )

    def __call__(self, y: Float[Array, " 3"]) -> Float[Array, " 3"]:
        # Entries below eps * max|y| are set to zero: a tiny `z0` would otherwise put
        # the root below the underflow threshold. Derivatives are still taken with
        # respect to every entry.
        magnitude = jnp.abs(y)
        negligible = magnitude <= jnp.finfo(y.dtype).eps * jnp.max(magnitude)
        y = y + jax.lax.stop_gradient(jnp.where(negligible, -y, 0))
        # The projection is positively homogeneous, `P(y) = m P(y / m)`: with
        # `m = max |y_i|` (held constant for differentiation, which leaves every
        # derivative exact), the arithmetic is done on entries of order one.
        largest = jax.lax.stop_gradient(jnp.max(jnp.abs(y)))
        largest = jnp.where((largest > 0) & (largest < jnp.inf), largest, 1)
        u = y / largest
        x0, y0, z0 = u[0], u[1], u[2]

        given = cast_to(self.alpha, y)
        valid = _valid_alpha(given)
        alpha = jnp.where(valid, given, _SAFE_ALPHA)
        # Membership tests (no derivative flows through them).
        width = jnp.abs(z0)
        in_cone = (
            (x0 >= 0) & (y0 >= 0) & (_weighted_geometric_mean(x0, y0, alpha) >= width)
        )
        polar_mean = _weighted_geometric_mean(-x0 / alpha, -y0 / (1 - alpha), alpha)
        in_polar = (x0 <= 0) & (y0 <= 0) & (polar_mean >= width)
        flat = z0 == 0
        root_case = ~(in_cone | in_polar | flat)

        # The cases in closed form are evaluated on `y` itself (exact, with exact
        # derivatives); the root case on `u`.
        zero = jnp.zeros_like(z0)
        flat_value = jnp.stack([jnp.maximum(y[0], 0), jnp.maximum(y[1], 0), zero])

        v = jnp.where(root_case, u, jnp.asarray(_SAFE_POINT, u.dtype))
        root = ImplicitArgmin(_POWER_CONDITION, _power_root_solver(y.dtype))
        r = root((v, alpha), jnp.abs(v[2]) / 2)
        px, py = _phis(r, v, alpha)
        root_value = largest * jnp.stack([px, py, jnp.sign(v[2]) * r])

        projected = jnp.where(
            in_cone,
            y,
            jnp.where(
                in_polar,
                jnp.zeros_like(y),
                jnp.where(flat, flat_value, root_value),
            ),
        )
        # For an invalid (traced) `alpha`, no cotangent reaches the root (its backward
        # solve would refuse a NaN one): `nan_unless` makes the value and the
        # derivatives NaN.
        projected = jnp.where(valid, projected, 0)
        return nan_unless(_valid_alpha, projected, self.alpha, point=y)

    def violation(self, x: Float[Array, " 3"]) -> Scalar:
        """`max(|z| - x^alpha y^(1 - alpha), -x, -y, 0)` (the power taken as zero
        where `x` or `y` is not positive): zero exactly in the cone."""
        alpha = cast_to(self.alpha, x)
        a, b, c = x[0], x[1], x[2]
        mean = _weighted_geometric_mean(a, b, alpha)
        excess = jnp.maximum(jnp.abs(c) - mean, jnp.maximum(-a, -b))
        return jnp.maximum(excess, jnp.zeros((), x.dtype))
