import equinox as eqx
import jax
import jax.numpy as jnp
import optimistix as optx
from jaxtyping import Array, Float, Scalar

from .._operator_base import (
    AbstractProjection,
    cast_to,
    check_hyperparameters,
    hyperparameter,
    nan_unless,
)
from ._box import bound_violation, check_bounds, ordered


def _section_residual(tau: Scalar, args) -> Scalar:
    # g(tau) = a . clip(y - tau a, lower, upper) - b: continuous, piecewise linear and
    # non-increasing in tau, with slope -sum(a_i^2 over the unclipped coordinates).
    y, lower, upper, a, b = args
    return jnp.dot(a, jnp.clip(y - tau * a, lower, upper)) - b


def _find_multiplier(y, lower, upper, a, b) -> Scalar:
    """A root `tau` of `g` (see `_section_residual`).

    `g` is linear between consecutive kinks (where a coordinate of `y - tau a` meets
    one of its bounds). Bisection (optimistix) runs over a reparametrisation of `tau`
    that puts the sorted kinks at the integers, so that it locates the linear piece
    holding the root whatever the spacing of the kinks; the root of that piece is
    then computed exactly.
    """
    dtype = y.dtype
    size = 2 * y.shape[0]
    nonzero = a != 0
    safe_a = jnp.where(nonzero, a, 1)
    kinks = jnp.concatenate([(y - lower) / safe_a, (y - upper) / safe_a])
    valid = jnp.concatenate([nonzero, nonzero]) & jnp.isfinite(kinks)
    count = jnp.sum(valid)
    kinks = jnp.sort(jnp.where(valid, kinks, jnp.inf))
    first = jnp.where(count > 0, kinks[0], 0)
    last = jnp.where(count > 0, kinks[jnp.maximum(count - 1, 0)], 0)
    # Nodes: the finite kinks in order, with a point beyond them on each side. Past
    # the last kink (and before the first), g is linear: with infinite bounds it is
    # unbounded and its root may lie there.
    pad = jnp.maximum(
        jnp.maximum(last - first, jnp.maximum(jnp.abs(first), jnp.abs(last))), 1
    )
    inner = jnp.where(jnp.arange(size) < count, kinks, last + pad)
    nodes = jnp.concatenate([(first - pad)[None], inner, (last + pad)[None]])
    positions = jnp.arange(size + 2, dtype=dtype)
    args = (y, lower, upper, a, b)

    def reparametrised(t, _):
        return _section_residual(jnp.interp(t, positions, nodes), args)

    finfo = jnp.finfo(dtype)
    tol = 4 * float(finfo.eps)
    # g is non-increasing, hence `flip=True` (and no evaluation at the ends). With
    # enough steps to shrink the bracket to a few units in the last place, the
    # bracket locates the piece whether or not `|g| < atol` was reached, so the
    # result code is not used.
    solver = optx.Bisection(rtol=tol, atol=tol, flip=True)
    sol = optx.root_find(
        reparametrised,
        solver,
        jnp.asarray(0.5 * (size + 1), dtype),
        options=dict(lower=0.0, upper=float(size + 1)),
        max_steps=int(finfo.nmant) + 16 + size.bit_length(),
        throw=False,
    )
    piece = jnp.clip(jnp.floor(sol.value).astype(count.dtype), 0, size)
    start, stop = nodes[piece], nodes[piece + 1]
    middle = 0.5 * (start + stop)
    # The root of the linear piece: with the unclipped coordinates F of the piece,
    # a . x = b reads sum_F a_i (y_i - tau a_i) + sum_{not F} a_i x_i = b.
    z = y - middle * a
    free = (z > lower) & (z < upper)
    numerator = jnp.sum(jnp.where(free, a * y, a * jnp.clip(z, lower, upper))) - b
    denominator = jnp.sum(jnp.where(free, a * a, 0))
    positive = denominator > 0
    root = jnp.where(positive, numerator / jnp.where(positive, denominator, 1), middle)
    # Within the piece; the two outer pieces extend to infinity.
    start = jnp.where(piece == 0, -jnp.inf, start)
    stop = jnp.where(piece >= count, jnp.inf, stop)
    return jnp.clip(root, start, stop)


def _section_nonempty(lower, upper, a, b):
    """Whether `min a . x <= b <= max a . x` over the box (up to a relative rounding
    slack of a few units in the last place of the terms of the sums)."""
    lower, upper, a = jnp.broadcast_arrays(lower, upper, a)
    zero = jnp.zeros((), a.dtype)
    # The smallest and largest a_i x_i over lower_i <= x_i <= upper_i (0 if a_i = 0,
    # also for infinite bounds).
    at_lower = jnp.where(a == 0, zero, a * lower)
    at_upper = jnp.where(a == 0, zero, a * upper)
    low = jnp.minimum(at_lower, at_upper)
    high = jnp.maximum(at_lower, at_upper)
    magnitude = jnp.where(jnp.isfinite(low), jnp.abs(low), zero) + jnp.where(
        jnp.isfinite(high), jnp.abs(high), zero
    )
    slack = 4 * a.shape[0] * float(jnp.finfo(a.dtype).eps) * jnp.sum(magnitude)
    return (jnp.sum(low) - slack <= b) & (b <= jnp.sum(high) + slack)


def _valid(lower, upper, a, b):
    return jnp.all(ordered(lower, upper)) & _section_nonempty(lower, upper, a, b)


@jax.custom_jvp
def _project_box_section(y, lower, upper, a, b):
    tau = _find_multiplier(y, lower, upper, a, b)
    return jnp.clip(y - tau * a, lower, upper), tau


@_project_box_section.defjvp
def _project_box_section_jvp(primals, tangents):
    # x = clip(y - tau a, lower, upper), with tau defined by a . x = b. Differentiating
    # with the free (F), lower-clipped (L) and upper-clipped (U) sets fixed:
    #   dx_F = dy_F - tau da_F - dtau a_F,  dx_L = dlower_L,  dx_U = dupper_U,
    # and da . x + a . dx = db gives
    #   dtau = (da . x + a_F . (dy_F - tau da_F) + a_L . dlower_L + a_U . dupper_U
    #           - db) / sum_F a_i^2.
    # When sum_F a_i^2 = 0 (a vertex of the set, where tau is not unique), x_i is
    # locally constant in y for every i with a_i != 0, and dtau = 0 is used. The
    # primal is recomputed by the function itself, so that second order stays exact.
    y, lower, upper, a, b = primals
    t_y, t_lower, t_upper, t_a, t_b = tangents
    x, tau = _project_box_section(y, lower, upper, a, b)
    z = y - tau * a
    free = (z > lower) & (z < upper)
    at_lower = jnp.logical_not(free) & (z <= lower)
    at_upper = jnp.logical_not(free | at_lower)
    t_z = t_y - tau * t_a
    zero = jnp.zeros((), y.dtype)
    t_bounds = jnp.where(at_lower, t_lower, jnp.where(at_upper, t_upper, zero))
    numerator = (
        jnp.dot(t_a, x)
        + jnp.dot(a, jnp.where(free, t_z, zero))
        + jnp.dot(a, t_bounds)
        - t_b
    )
    denominator = jnp.sum(jnp.where(free, a * a, zero))
    positive = denominator > 0
    t_tau = jnp.where(positive, numerator / jnp.where(positive, denominator, 1), zero)
    t_x = jnp.where(free, t_z - t_tau * a, t_bounds)
    return (x, tau), (t_x, t_tau)


class BoxSection(AbstractProjection):
    """The projection onto the section of a box by a hyperplane,
    `{x : lower <= x <= upper, a . x = b}` (e.g. the capped simplex, `0 <= x <= 1`,
    `sum(x) = k`).

    By the optimality conditions, `P(y) = clip(y - tau a, lower, upper)` for a scalar
    multiplier `tau` solving `a . clip(y - tau a, lower, upper) = b`, a continuous,
    piecewise linear, non-increasing equation in `tau`. Bisection
    (`optimistix.Bisection`) over the sorted kinks of this equation locates the
    linear piece that holds the root, whatever the spacing of the kinks, and the root
    of that piece is then computed exactly. The cost is `O(n log n)`.

    Derivatives (with respect to `y`, `lower`, `upper`, `a` and `b`) come from a
    custom JVP rule: the implicit derivative of the multiplier equation with the
    active bounds fixed, exact away from kinks; reverse mode by transposition; higher
    order, `jax.vmap` and `jax.jit` work. Where every coordinate with `a_i != 0` is at
    one of its bounds (a vertex of the set, where the multiplier is not unique; this
    happens on open sets of `y`), the projection is locally constant in those
    coordinates of `y`; in the hyperparameters it is not differentiable there, and
    the derivative returned follows the active bounds (`a` and `b` get zero).

    The set must be non-empty: `lower <= upper` and
    `min_{box} a . x <= b <= max_{box} a . x`. Otherwise construction raises a
    `ValueError` (known values) or the projection is NaN (traced values).

    Acts on vectors; use [`implicitx.projection.RowWise`][] or `jax.vmap` for batches.

    **Arguments:**

    - `lower`: the lower bounds: a scalar, or a vector of the shape of the point.
        Entries may be `-inf`.
    - `upper`: the upper bounds: a scalar, or a vector of the shape of the point,
        with `lower <= upper`. Entries may be `inf`.
    - `a`: the normal vector of the hyperplane, of the shape of the point.
    - `b`: the offset of the hyperplane, a scalar.
    """

    lower: float | Float[Array, "*n"] = eqx.field(converter=hyperparameter)
    upper: float | Float[Array, "*n"] = eqx.field(converter=hyperparameter)
    a: Float[Array, " n"] = eqx.field(converter=jnp.asarray)
    b: float | Float[Array, ""] = eqx.field(converter=hyperparameter)

    def __check_init__(self):
        if self.a.ndim != 1 or jnp.ndim(self.b) != 0:
            raise ValueError(
                "`BoxSection` needs a vector `a` and a scalar `b`; got shapes "
                f"{self.a.shape} and {jnp.shape(self.b)}."
            )
        check_bounds("BoxSection", self.lower, self.upper)
        check_hyperparameters(
            "BoxSection",
            "`min a . x <= b <= max a . x` over the box (a non-empty section)",
            _section_nonempty,
            lower=self.lower,
            upper=self.upper,
            a=self.a,
            b=self.b,
        )

    def _bounds(self, y: Array) -> tuple[Array, Array]:
        lower = jnp.broadcast_to(cast_to(self.lower, y), y.shape)
        upper = jnp.broadcast_to(cast_to(self.upper, y), y.shape)
        return lower, upper

    def __call__(self, y: Float[Array, " n"]) -> Float[Array, " n"]:
        lower, upper = self._bounds(y)
        a, b = cast_to(self.a, y), cast_to(self.b, y)
        # The set is the same for `(a, b) / s`: scaling by the largest `|a_i|`
        # (held constant, so derivatives are unchanged) keeps the multiplier search
        # away from under- and overflow when `a` is tiny or huge.
        s = jax.lax.stop_gradient(jnp.max(jnp.abs(a)))
        s = jnp.where(s > 0, s, jnp.ones_like(s))
        x, _ = _project_box_section(y, lower, upper, a / s, b / s)
        return nan_unless(_valid, x, lower, upper, a, b, point=y)

    def violation(self, x: Float[Array, " n"]) -> Scalar:
        """`max(0, max_i lower_i - x_i, max_i x_i - upper_i, |a . x - b|)`."""
        residual = jnp.dot(cast_to(self.a, x), x) - cast_to(self.b, x)
        return jnp.maximum(
            bound_violation(x, self.lower, self.upper), jnp.abs(residual)
        )
