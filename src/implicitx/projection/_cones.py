"""Projections onto the second-order, positive semidefinite and exponential cones."""

import math

import jax
import jax.numpy as jnp
import optimistix as optx
from jaxtyping import Array, Float, Scalar

from .._argmin import ImplicitArgmin
from .._conditions import Root
from .._operator_base import AbstractProjection, safe_norm
from ..solvers import OptimistixRootFinder, Polished


# --------------------------------------------------------------------------------------
# Second-order cone
# --------------------------------------------------------------------------------------


class SecondOrderCone(AbstractProjection):
    """The projection onto the second-order (Lorentz, ice-cream) cone
    `K = {(t, x) : ||x||_2 <= t}`, acting on vectors `y = (t, x) = (y[0], y[1:])`.

    Closed form: `y` itself if `y` is in `K`, zero if `y` is in the polar cone
    `-K` (`||x|| <= -t`), and otherwise `(t + ||x||) / 2 * (1, x / ||x||)`.

    The point is scaled by its largest entry before the arithmetic, so the
    projection and its derivatives are accurate for entries of any magnitude the
    dtype represents.

    Derivatives are those of the closed form. They exist everywhere except on the
    boundaries of `K` and `-K`, where the projection has a kink; there a one-sided
    derivative is returned.

    The cone has no parameters.
    """

    def __call__(self, y: Float[Array, " n"]) -> Float[Array, " n"]:
        # The projection is positively homogeneous, `P(y) = m P(y / m)`: with
        # `m = max |y_i|` (held constant for differentiation, which leaves every
        # derivative exact), the arithmetic is done on entries of order one, so
        # neither the values nor the derivatives overflow or underflow.
        largest = jax.lax.stop_gradient(jnp.max(jnp.abs(y)))
        largest = jnp.where((largest > 0) & (largest < jnp.inf), largest, 1)
        z = y / largest
        t, x = z[0], z[1:]
        norm, safe = safe_norm(x)
        inside = norm <= t
        polar = norm <= -t
        coefficient = (t + norm) / 2
        unit = x / safe
        boundary = jnp.concatenate([coefficient[None], coefficient * unit])
        projected = jnp.where(inside, z, jnp.where(polar, jnp.zeros_like(z), boundary))
        return largest * projected

    def violation(self, x: Float[Array, " n"]) -> Scalar:
        """`max(||x[1:]|| - x[0], 0)`."""
        return jnp.maximum(safe_norm(x[1:])[0] - x[0], 0)


# --------------------------------------------------------------------------------------
# Positive semidefinite cone
# --------------------------------------------------------------------------------------


def _symmetrise(y: Array) -> Array:
    return (y + y.T) / 2


@jax.custom_jvp
def _psd_projection(y: Array) -> Array:
    eigenvalues, vectors = jnp.linalg.eigh(_symmetrise(y))
    return (vectors * jnp.maximum(eigenvalues, 0)[None, :]) @ vectors.T


@_psd_projection.defjvp
def _psd_projection_jvp(primals, tangents):
    # The derivative of the spectral function `V diag(max(w, 0)) V^T` (Daleckii-Krein /
    # Loewner): `V (Gamma o (V^T dY V)) V^T`, with `Gamma_ij` the divided difference of
    # `max(., 0)` at `(w_i, w_j)`. Written by sign pattern, it needs no division by
    # `w_i - w_j` for equal eigenvalues, so repeated eigenvalues are fine. The tangent
    # is linear in `dY`, so JAX transposes it for reverse mode.
    (y,), (dy,) = primals, tangents
    eigenvalues, vectors = jnp.linalg.eigh(_symmetrise(y))
    clipped = jnp.maximum(eigenvalues, 0)
    out = (vectors * clipped[None, :]) @ vectors.T
    positive = eigenvalues > 0
    pos_i, pos_j = positive[:, None], positive[None, :]
    both = pos_i & pos_j
    mixed = pos_i != pos_j
    # Only pairs of different signs are divided: there `w_i - w_j != 0`.
    difference = eigenvalues[:, None] - eigenvalues[None, :]
    ratio = (clipped[:, None] - clipped[None, :]) / jnp.where(mixed, difference, 1)
    gamma = jnp.where(both, 1, jnp.where(mixed, ratio, 0)).astype(y.dtype)
    rotated = vectors.T @ _symmetrise(dy) @ vectors
    d_out = vectors @ (gamma * rotated) @ vectors.T
    return out, d_out


class PSDCone(AbstractProjection):
    """The projection onto the cone of symmetric positive semidefinite matrices,
    `S^n_+ = {X : X = X^T, X >= 0}`, in the Frobenius norm.

    A (not necessarily symmetric) square matrix `Y` is first symmetrised, since
    `S^n_+` lies in the symmetric matrices: `P(Y) = V diag(max(w, 0)) V^T` with
    `(Y + Y^T) / 2 = V diag(w) V^T` (`jax.numpy.linalg.eigh`).

    **Derivatives.** First derivatives (forward and reverse mode) use the closed-form
    derivative of a spectral function (divided differences of `max(., 0)` over pairs of
    eigenvalues), not autodiff of `eigh`; they are exact also for repeated eigenvalues,
    and are defined except where an eigenvalue is exactly zero (the kink of the
    projection, where a one-sided derivative is returned). Second and higher
    derivatives differentiate `eigh` and need distinct eigenvalues.

    The cone has no parameters.
    """

    def __call__(self, y: Float[Array, "n n"]) -> Float[Array, "n n"]:
        return _psd_projection(y)

    def violation(self, x: Float[Array, "n n"]) -> Scalar:
        """The larger of the asymmetry `max |x - x^T|` and the most negative eigenvalue
        of `(x + x^T) / 2` (zero if there is none)."""
        asymmetry = jnp.max(jnp.abs(x - x.T))
        negative = -jnp.min(jnp.linalg.eigvalsh(_symmetrise(x)))
        return jnp.maximum(jnp.maximum(asymmetry, negative), 0)


# --------------------------------------------------------------------------------------
# Exponential cone
# --------------------------------------------------------------------------------------
#
# Off the cone, its polar cone and the quadrant `r <= 0, s <= 0`, the projection of
# `v = (r0, s0, t0)` lies on the boundary ray `s (rho, 1, exp(rho))`, `s > 0`, and the
# rest `v - P(v)` on the polar boundary ray `mu (1, 1 - rho, -exp(-rho))`, `mu > 0`
# (Moreau decomposition). The two rays are orthogonal, so `v` lies in their span: the
# component of `v` along their cross product vanishes, which is the scalar equation
#
#     h(rho) = ((rho - 1) r0 + s0) e^rho - (r0 - rho s0) e^-rho - (rho^2 - rho + 1) t0
#
# (Friberg, "Projection onto the exponential cone: a univariate root-finding problem",
# 2021). Then `s = ((rho - 1) r0 + s0) / q` and `mu = (r0 - rho s0) / q`,
# `q = rho^2 - rho + 1 > 0`. Both must be positive, which brackets the root:
# `rho > 1 - s0 / r0` if `r0 > 0`, and `rho < r0 / s0` if `s0 > 0` (at least one holds
# in this case). At these ends `h` has the signs `h(lower) < 0 < h(upper)` exactly
# because `v` is in neither cone; a missing end is found by expanding a step that
# doubles. The root is unique (the decomposition is).
#
# `h` is evaluated as `h(rho) exp(-|rho|)`, which has the same sign and root and does
# not overflow.

# A point in the root-finding case, substituted for inputs in the other cases so that
# the (discarded) root-finding branch stays finite.
_SAFE_POINT = (1.0, 1.0, 0.0)


def _exp_residual(rho: Array, v: Array) -> Array:
    """`h(rho) exp(-|rho|)`: same sign and root as Friberg's `h`, no overflow."""
    r0, s0, t0 = v[0], v[1], v[2]
    decay = jnp.exp(-jnp.abs(rho))
    q = rho * rho - rho + 1
    primal = (rho - 1) * r0 + s0
    polar = r0 - rho * s0
    nonnegative = primal - polar * decay**2 - q * t0 * decay
    negative = primal * decay**2 - polar - q * t0 * decay
    return jnp.where(rho >= 0, nonnegative, negative)


def _newton_scaled_residual(rho: Array, v: Array) -> Array:
    """`f / |f'| / (1 + |rho|)`, with `f` the residual above: the relative Newton step.
    It has the sign of `h`, so bisection can use it, and its size estimates the
    (relative) distance to the root, which makes the stopping rule of the bisection
    independent of the scale of `v`. The factor multiplying `f` is held constant
    under differentiation: the root and its derivatives of every order are those of
    `f`, and no second derivative of `f` is formed (a Newton step on it is one on
    `f`)."""
    value, derivative = jax.jvp(
        lambda r: _exp_residual(r, v), (rho,), (jnp.ones_like(rho),)
    )
    tiny = jnp.finfo(rho.dtype).tiny
    scale = 1 / (jnp.abs(derivative) + tiny) / (1 + jnp.abs(rho))
    return value * jax.lax.stop_gradient(scale)


def _expand(v: Array, base: Array, direction: int) -> Array:
    """The first `base + direction * 2^k` (k = 0, 1, ...) at which `h` has the sign of
    `direction` (the missing end of the bracket)."""

    def wrong_sign(step):
        return direction * _exp_residual(base + direction * step, v) <= 0

    def cond(carry):
        step, k = carry
        return wrong_sign(step) & (k < 64)

    def body(carry):
        step, k = carry
        return 2 * step, k + 1

    step, _ = jax.lax.while_loop(cond, body, (jnp.ones_like(base), 0))
    return base + direction * step


def _exp_bracket(v: Array) -> tuple[Array, Array]:
    r0, s0 = v[0], v[1]
    has_lower, has_upper = r0 > 0, s0 > 0
    lower = 1 - s0 / jnp.where(has_lower, r0, 1)
    upper = r0 / jnp.where(has_upper, s0, 1)
    # Only one end can be missing (the case r0 <= 0, s0 <= 0 is handled separately).
    expanded_upper = _expand(v, lower, +1)
    expanded_lower = _expand(v, upper, -1)
    lower = jnp.where(has_lower, lower, expanded_lower)
    upper = jnp.where(has_upper, upper, expanded_upper)
    return lower, upper


# The root problem's `theta` is `(v, lower, upper)`: the point and the bracket of the
# root (computed once, and not differentiated).


def _bracket_options(theta) -> dict[str, Array]:
    _, lower, upper = theta
    return dict(lower=lower, upper=upper)


def _residual_size(rho: Array, theta) -> Array:
    return jnp.abs(_exp_residual(rho, theta[0]))


def _root_residual(rho: Array, theta) -> Array:
    return _newton_scaled_residual(rho, theta[0])


def bracketed_root_solver(dtype, max_steps: int, options, error) -> Polished:
    """The forward solver of a scalar root in a bracket (`options(theta)` gives its
    `lower` and `upper` ends): bisection (optimistix) on the relative Newton step (its
    stopping rule tests the size of the function), then a few Newton steps (kept in
    the bracket), accepted only if they reduce `error`, as bisection stops at a
    tolerance above rounding. Bisection needs log2(width / tolerance) steps; it stops
    early as usual. Shared by the exponential and power cones."""
    tol = float(jnp.finfo(dtype).eps) ** 0.75
    return Polished(
        coarse=OptimistixRootFinder(
            optx.Bisection(rtol=tol, atol=tol, flip=False),
            max_steps=max_steps,
            options=options,
        ),
        polish=OptimistixRootFinder(
            optx.Newton(rtol=tol, atol=tol), max_steps=3, options=options
        ),
        error=error,
        max_error=None,
    )


def _exp_root_solver(dtype) -> Polished:
    """The bracket can be as wide as `r0 / s0` (up to ~1e308 in float64): at most
    about 1024 + 60 bisection steps."""
    return bracketed_root_solver(dtype, 1100, _bracket_options, _residual_size)


# The root `rho` of the relative Newton step: that of `h`, with its derivatives.
_EXP_CONDITION = Root(_root_residual)


class ExponentialCone(AbstractProjection):
    """The projection onto the exponential cone, acting on vectors `v = (r, s, t)`:

    `K_exp = closure{(r, s, t) : s > 0, s exp(r / s) <= t}`
    `      = {s > 0, s exp(r / s) <= t}  U  {r <= 0, s = 0, t >= 0}`.

    This is the convention of CVXPY (`cvxpy.constraints.ExpCone(r, s, t)`), SCS and
    Clarabel: the perspective of `exp` is taken in the first coordinate, divided by the
    second, and bounded by the third.

    **Algorithm.** If `v` is in `K_exp` it is returned; if it is in the polar cone
    `-K_exp^*` the projection is zero; if `r <= 0` and `s <= 0` it is
    `(r, 0, max(t, 0))`. Otherwise the projection is `s (rho, 1, exp(rho))` on the
    boundary, where `rho` is the unique root of a scalar equation (Friberg, 2021),
    found by bisection (`optimistix.Bisection`) in an interval that provably contains
    it, then polished by a few `optimistix.Newton` steps.

    **Derivatives.** The root `rho(v)` gets its derivative by implicit
    differentiation of the scalar equation (through [`implicitx.ImplicitArgmin`][],
    so forward and reverse mode, any order); the rest is autodiff of closed forms.
    Derivatives are defined off the boundaries between the four cases (where the
    projection has kinks). A root search that does not converge raises an error.

    The cone has no parameters.
    """

    def __call__(self, y: Float[Array, " 3"]) -> Float[Array, " 3"]:
        # Entries below eps * max|y| are set to zero (which moves the projection by
        # at most that much, as it is non-expansive): otherwise ratios such as
        # `r0 / s0` reach 1e300 and the arithmetic below overflows. Derivatives are
        # still taken with respect to every entry.
        negligible = jnp.abs(y) <= jnp.finfo(y.dtype).eps * jnp.max(jnp.abs(y))
        y = y + jax.lax.stop_gradient(jnp.where(negligible, -y, 0))
        r0, s0, t0 = y[0], y[1], y[2]
        # Membership tests (no derivative flows through them).
        safe_s = jnp.where(s0 > 0, s0, 1)
        in_cone = ((s0 > 0) & (s0 * jnp.exp(r0 / safe_s) <= t0)) | (
            (r0 <= 0) & (s0 == 0) & (t0 >= 0)
        )
        safe_r = jnp.where(r0 > 0, r0, 1)
        in_polar = ((r0 > 0) & (r0 * jnp.exp(s0 / safe_r) <= -math.e * t0)) | (
            (r0 == 0) & (s0 <= 0) & (t0 <= 0)
        )
        quadrant = (r0 <= 0) & (s0 <= 0)
        root_case = ~(in_cone | in_polar | quadrant)

        quadrant_value = jnp.stack([r0, jnp.zeros_like(s0), jnp.maximum(t0, 0)])

        v = jnp.where(root_case, y, jnp.asarray(_SAFE_POINT, y.dtype))
        lower, upper = jax.lax.stop_gradient(_exp_bracket(v))
        root = ImplicitArgmin(_EXP_CONDITION, _exp_root_solver(y.dtype))
        rho = root((v, lower, upper), (lower + upper) / 2)
        vr, vs, vt = v[0], v[1], v[2]
        q = rho * rho - rho + 1
        s = ((rho - 1) * vr + vs) / q
        mu = (vr - rho * vs) / q
        # `s exp(rho)` for rho <= 0, and the equal `t0 + mu exp(-rho)` (Moreau) for
        # rho > 0: neither overflows.
        decay = jnp.exp(-jnp.abs(rho))
        t = jnp.where(rho > 0, vt + mu * decay, s * decay)
        root_value = jnp.stack([s * rho, s, t])

        zero = jnp.zeros_like(y)
        return jnp.where(
            in_cone,
            y,
            jnp.where(in_polar, zero, jnp.where(quadrant, quadrant_value, root_value)),
        )

    def violation(self, x: Float[Array, " 3"]) -> Scalar:
        """The smallest of three amounts by which `x` must move to enter the cone,
        each zero exactly in the cone and at least the distance to it divided by
        `sqrt(3)`:

        - `max(|s|, r, -t, 0)` (onto the face `s = 0`, `r <= 0`, `t >= 0`);
        - for `s > 0`, `max(s exp(r / s) - t, 0)` (raising `t`);
        - for `s > 0` and `t > 0`, `max(r - s log(t / s), 0)` (lowering `r`).

        (Each of the last two alone overflows or misleads near `s = 0` or `t = 0`.)
        """
        r, s, t = x[0], x[1], x[2]
        face = jnp.maximum(jnp.maximum(jnp.abs(s), r), jnp.maximum(-t, 0))
        s_positive = s > 0
        both_positive = s_positive & (t > 0)
        safe_s = jnp.where(s_positive, s, 1)
        safe_t = jnp.where(both_positive, t, 1)
        raise_t = jnp.where(
            s_positive, jnp.maximum(safe_s * jnp.exp(r / safe_s) - t, 0), jnp.inf
        )
        lower_r = jnp.where(
            both_positive,
            jnp.maximum(r - safe_s * jnp.log(safe_t / safe_s), 0),
            jnp.inf,
        )
        return jnp.minimum(face, jnp.minimum(raise_t, lower_r))
