"""The projection onto the power cone
`K_alpha = {(x, y, z) : x, y >= 0, x^alpha y^(1-alpha) >= |z|}`: values against CVXPY
(Clarabel and SCS) and the Moreau decomposition, every case of the
algorithm, derivatives (forward and reverse mode, also with respect to `alpha`)
against central finite differences, extreme scales, `jit`/`vmap`, float32 and invalid
`alpha`.

Everything is batched: each function below is compiled once (with `alpha` an
argument, and batches padded to one size), and points are projected in batches with
`vmap`.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from implicitx.projection import PowerCone

from .helpers import assert_tree_allclose, finite_difference_jvp


cp = pytest.importorskip("cvxpy")

ALPHAS = (0.3, 0.5, 0.8)


def _apply(alpha, v):
    return PowerCone(alpha)(v)


# Compiled once each: `alpha` is an argument (traced, one per point), and every batch
# is padded to `BATCH` points.
BATCH = 64
_PAD_POINT = (1.0, -1.0, 1.0)


@jax.jit
def _compiled_project(alphas, points):
    return jax.vmap(_apply)(alphas, points)


@jax.jit
def _compiled_jvp(alphas, points, t_alphas, t_points):
    return jax.vmap(lambda *a: jax.jvp(_apply, a[:2], a[2:]))(
        alphas, points, t_alphas, t_points
    )


@jax.jit
def _compiled_jacrev(alphas, points):
    return jax.vmap(jax.jacrev(_apply, argnums=(0, 1)))(alphas, points)


def _padded(fn, alpha, points, *tangents):
    """`fn` on the points padded to `BATCH`, with `alpha` a scalar or one per point
    (and tangents of `alpha` and of the points); the padding removed."""
    points = np.asarray(points, np.float64)
    n = len(points)
    assert n <= BATCH
    alphas = np.broadcast_to(np.asarray(alpha, np.float64), (n,))
    rows = np.broadcast_to(np.asarray(_PAD_POINT), (BATCH - n, 3))
    args = [np.concatenate([alphas, np.full(BATCH - n, 0.5)])]
    args.append(np.concatenate([points, rows]))
    for t in tangents:
        t = np.asarray(t, np.float64)
        args.append(np.concatenate([t, np.zeros((BATCH - n,) + t.shape[1:])]))
    out = fn(*(jnp.asarray(a) for a in args))
    return jax.tree.map(lambda x: np.asarray(x[:n]), out)


def _project(alpha, points):
    return _padded(_compiled_project, alpha, points)


def _jvp(alpha, points, t_alpha, t_points):
    return _padded(_compiled_jvp, alpha, points, t_alpha, t_points)


def _jacrev(alpha, points):
    """`(d P / d alpha, d P / d v)` at each point, by reverse mode."""
    return _padded(_compiled_jacrev, alpha, points)


def _violation(alpha, points):
    return jax.vmap(PowerCone(alpha).violation)(jnp.asarray(points))


# --------------------------------------------------------------------------------------
# Points of each case, for a given alpha (NumPy, float64).


def _mean(x, y, alpha):
    return x**alpha * y ** (1 - alpha)


def _inside(rng, n, alpha):
    x, y = rng.uniform(0.1, 2.0, n), rng.uniform(0.1, 2.0, n)
    z = rng.uniform(-0.9, 0.9, n) * _mean(x, y, alpha)
    return np.stack([x, y, z], axis=1)


def _polar(rng, n, alpha):
    u, v = rng.uniform(0.1, 2.0, n), rng.uniform(0.1, 2.0, n)
    w = rng.uniform(-0.9, 0.9, n) * _mean(u / alpha, v / (1 - alpha), alpha)
    return np.stack([-u, -v, w], axis=1)


def _flat(rng, n):
    x, y = rng.uniform(-2.0, 2.0, n), rng.uniform(-2.0, 2.0, n)
    x[: n // 2] = -np.abs(x[: n // 2])  # x0 < 0
    y[n // 2 :] = -np.abs(y[n // 2 :])  # y0 < 0
    return np.stack([x, y, np.zeros(n)], axis=1)


def _outside_cone(rng, n, alpha, factor):
    """Just outside the cone: `|z| = factor * x^alpha y^(1-alpha)`, `factor > 1`."""
    x, y = rng.uniform(0.2, 2.0, n), rng.uniform(0.2, 2.0, n)
    sign = np.where(rng.uniform(size=n) < 0.5, -1.0, 1.0)
    return np.stack([x, y, sign * factor * _mean(x, y, alpha)], axis=1)


def _outside_polar(rng, n, alpha, factor):
    """Just outside the polar cone (`x0, y0 < 0`): the projection is near the
    vertex when `factor` is near 1."""
    u, v = rng.uniform(0.2, 2.0, n), rng.uniform(0.2, 2.0, n)
    sign = np.where(rng.uniform(size=n) < 0.5, -1.0, 1.0)
    w = sign * factor * _mean(u / alpha, v / (1 - alpha), alpha)
    return np.stack([-u, -v, w], axis=1)


def _mixed_signs(rng, n):
    """`x0 > 0 > y0` or `y0 > 0 > x0`, `z0 != 0`: always the root case."""
    a, b = rng.uniform(0.2, 2.0, n), -rng.uniform(0.2, 2.0, n)
    swap = rng.uniform(size=n) < 0.5
    z = rng.uniform(0.2, 2.0, n) * np.where(rng.uniform(size=n) < 0.5, -1.0, 1.0)
    return np.stack([np.where(swap, b, a), np.where(swap, a, b), z], axis=1)


def _negative_large_z(rng, n):
    """`x0 < 0`, `y0 < 0` and a large `|z0|`: the root case, far from both cones."""
    u, v = rng.uniform(0.1, 1.0, n), rng.uniform(0.1, 1.0, n)
    z = rng.uniform(5.0, 20.0, n) * np.where(rng.uniform(size=n) < 0.5, -1.0, 1.0)
    return np.stack([-u, -v, z], axis=1)


def _root_points(rng, alpha, n=4):
    """Root-case points off every kink (the derivatives are defined there)."""
    return np.concatenate(
        [
            _mixed_signs(rng, n),
            _negative_large_z(rng, n),
            _outside_cone(rng, n, alpha, 1.5),
            _outside_cone(rng, n, alpha, 1.01),
            _outside_polar(rng, n, alpha, 1.5),
            _outside_polar(rng, n, alpha, 1.01),
        ]
    )


# --------------------------------------------------------------------------------------
# Values


def _in_dual(w, alpha, tol):
    """`w` within `tol` of the dual cone
    `{u, v >= 0, (u/alpha)^alpha (v/(1-alpha))^(1-alpha) >= |w|}`: `w + tol (1, 1, -1)`
    (`|w| - tol` for the last entry) is in it. (The plain test is ill-conditioned
    where `u` or `v` is near zero: it needs `u` to a relative accuracy that a
    difference `v - P(v)` of nearly equal entries does not have.)"""
    u, v = w[:, 0] + tol, w[:, 1] + tol
    positive = (u >= 0) & (v >= 0)
    mean = _mean(np.maximum(u, 0) / alpha, np.maximum(v, 0) / (1 - alpha), alpha)
    return positive & (np.abs(w[:, 2]) - tol <= mean)


@pytest.mark.parametrize("alpha", ALPHAS)
def test_against_cvxpy(alpha):
    rng = np.random.default_rng(int(10 * alpha))
    points = 2 * rng.standard_normal((20, 3))
    got = _project(alpha, points)
    # One parametrised problem per alpha: CVXPY canonicalises it once.
    p, v = cp.Variable(3), cp.Parameter(3)
    constraint = cp.PowCone3D(p[0], p[1], p[2], alpha)
    problem = cp.Problem(cp.Minimize(cp.sum_squares(p - v)), [constraint])
    for point, value in zip(points, got, strict=True):
        v.value = point
        # Clarabel's interior-point solution is accurate to only ~1e-5 in `p` here
        # (at tighter tolerances it stops "inaccurate" or fails), though to ~1e-10 in
        # the distance (its point may be outside the cone by ~1e-10): the projection
        # must be feasible and no farther from the point, to that accuracy.
        problem.solve(
            solver=cp.CLARABEL, tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10
        )
        assert problem.status == cp.OPTIMAL, problem.status
        np.testing.assert_allclose(value, p.value, rtol=0, atol=3e-5)
        distance = np.linalg.norm(point - value)
        assert distance <= np.linalg.norm(point - p.value) + 1e-8
        # SCS at tight tolerances is accurate to ~1e-8 in `p`.
        problem.solve(solver=cp.SCS, eps_abs=1e-12, eps_rel=1e-12, max_iters=100_000)
        assert problem.status == cp.OPTIMAL, problem.status
        np.testing.assert_allclose(value, p.value, rtol=0, atol=1e-6)
    assert np.all(np.asarray(_violation(alpha, got)) <= 1e-14)


@pytest.mark.parametrize("alpha", ALPHAS)
def test_moreau_decomposition(alpha):
    # `v = P(v) + (v - P(v))` with `P(v)` in `K`, `v - P(v)` in the polar cone and
    # the two orthogonal: this characterises the projection, far more tightly than an
    # interior-point reference does.
    rng = np.random.default_rng(1 + int(10 * alpha))
    points = np.concatenate(
        [
            3 * rng.standard_normal((32, 3)),
            _root_points(rng, alpha),
            _outside_polar(rng, 4, alpha, 1 + 1e-6),
            _outside_cone(rng, 4, alpha, 1 + 1e-6),
        ]
    )
    projected = _project(alpha, points)
    rest = points - projected
    scale = np.linalg.norm(points, axis=1)
    assert np.all(np.asarray(_violation(alpha, projected)) <= 1e-12 * scale)
    assert np.all(_in_dual(-rest, alpha, 1e-12 * scale))
    inner = np.sum(rest * projected, axis=1)
    assert np.all(np.abs(inner) <= 1e-10 * scale**2)


@pytest.mark.parametrize("alpha", ALPHAS)
def test_faces(alpha):
    rng = np.random.default_rng(2 + int(10 * alpha))
    inside = _inside(rng, 6, alpha)
    polar = _polar(rng, 6, alpha)
    flat = _flat(rng, 6)
    boundary = _outside_cone(rng, 3, alpha, 1.0)
    polar_boundary = _outside_polar(rng, 3, alpha, 1.0)
    vertex = np.zeros((1, 3))
    roots = _root_points(rng, alpha)
    near_cone = _outside_cone(rng, 3, alpha, 1 + 1e-8)
    near_vertex = _outside_polar(rng, 3, alpha, 1 + 1e-8)
    groups = [
        inside,
        polar,
        flat,
        boundary,
        polar_boundary,
        vertex,
        roots,
        near_cone,
        near_vertex,
    ]
    out = np.split(
        _project(alpha, np.concatenate(groups)),
        np.cumsum([len(g) for g in groups])[:-1],
    )
    (
        p_inside,
        p_polar,
        p_flat,
        p_boundary,
        p_polar_boundary,
        p_vertex,
        p_roots,
        p_near_cone,
        p_near_vertex,
    ) = out
    # In the cone (and at the vertex): unchanged; on its boundary (in the cone or
    # outside by rounding), unchanged up to rounding.
    np.testing.assert_array_equal(p_inside, inside)
    np.testing.assert_array_equal(p_vertex, vertex)
    np.testing.assert_allclose(p_boundary, boundary, rtol=1e-14, atol=0)
    assert np.all(np.asarray(_violation(alpha, inside)) == 0)
    # In the polar cone (also on its boundary, up to rounding): zero.
    np.testing.assert_array_equal(p_polar, 0)
    np.testing.assert_allclose(p_polar_boundary, 0, atol=1e-15)
    # z0 = 0: the positive parts of x0 and y0.
    np.testing.assert_array_equal(p_flat, np.maximum(flat, 0))
    # Outside both: on the boundary of the cone, with `z` of the sign of `z0` and
    # `|z| < |z0|`, strictly positive `x` and `y`.
    assert np.all(np.asarray(_violation(alpha, roots)) > 0)
    assert np.all((p_roots[:, 0] > 0) & (p_roots[:, 1] > 0))
    assert np.all(np.sign(p_roots[:, 2]) == np.sign(roots[:, 2]))
    assert np.all(np.abs(p_roots[:, 2]) < np.abs(roots[:, 2]))
    on_boundary = _mean(p_roots[:, 0], p_roots[:, 1], alpha)
    np.testing.assert_allclose(on_boundary, np.abs(p_roots[:, 2]), rtol=1e-12)
    # Just outside the cone the projection is near the point; just outside the polar
    # cone it is near the vertex (and not zero).
    np.testing.assert_allclose(p_near_cone, near_cone, rtol=0, atol=1e-7)
    norms = np.linalg.norm(p_near_vertex, axis=1)
    assert np.all((norms > 1e-10) & (norms < 1e-6))


# --------------------------------------------------------------------------------------
# Derivatives


@pytest.mark.parametrize("alpha", ALPHAS)
def test_derivatives_against_finite_differences(alpha):
    # Forward and reverse mode, with respect to the point and to `alpha`.
    rng = np.random.default_rng(3 + int(10 * alpha))
    points = _root_points(rng, alpha, n=3)
    n = len(points)
    t_alpha = rng.standard_normal(n)
    t_v = rng.standard_normal(points.shape)
    _, jvp = _jvp(alpha, points, t_alpha, t_v)
    eps = 1e-6
    plus = _project(alpha + eps * t_alpha, points + eps * t_v)
    minus = _project(alpha - eps * t_alpha, points - eps * t_v)
    fd = (plus - minus) / (2 * eps)
    scale = np.max(np.abs(fd), axis=1, keepdims=True)
    assert np.all(scale > 1e-3)
    np.testing.assert_allclose(jvp / scale, fd / scale, rtol=0, atol=1e-6)
    # Reverse mode: the full Jacobian (in `v` and `alpha`), against the same.
    d_alpha, d_v = _jacrev(alpha, points)
    from_reverse = np.einsum("bij,bj->bi", d_v, t_v) + d_alpha * t_alpha[:, None]
    np.testing.assert_allclose(from_reverse / scale, fd / scale, rtol=0, atol=1e-6)


@pytest.mark.parametrize("alpha", ALPHAS)
def test_derivatives_inside_in_polar_cone_and_flat(alpha):
    rng = np.random.default_rng(4 + int(10 * alpha))
    inside, polar, flat = _inside(rng, 4, alpha), _polar(rng, 4, alpha), _flat(rng, 4)
    points = np.concatenate([inside, polar, flat])
    d_alpha, d_v = _jacrev(alpha, points)
    assert np.all(np.isfinite(d_v)) and np.all(np.isfinite(d_alpha))
    np.testing.assert_array_equal(d_alpha, 0)
    np.testing.assert_array_equal(d_v[:4], np.broadcast_to(np.eye(3), (4, 3, 3)))
    np.testing.assert_array_equal(d_v[4:8], 0)
    # On z0 = 0 (a kink), a finite one-sided derivative: that of the positive parts.
    expected = np.stack([np.diag((f > 0).astype(np.float64)) for f in flat])
    np.testing.assert_array_equal(d_v[8:], expected)
    tangents = rng.standard_normal(points.shape)
    _, jvp = _jvp(alpha, points, np.ones(len(points)), tangents)
    np.testing.assert_array_equal(jvp, np.einsum("bij,bj->bi", d_v, tangents))


def test_second_derivatives():
    # Through the implicit root (differentiating the rule again) and the closed forms.
    y = jnp.array([0.7, -0.4, 1.3])
    weights = jnp.asarray([0.3, -1.1, 0.8])
    gradient = jax.grad(lambda x: jnp.sum(jnp.sin(weights * PowerCone(0.4)(x))))
    tangent = jnp.asarray([0.2, 0.9, -0.5])
    hvp = jax.jit(lambda x, t: jax.jvp(gradient, (x,), (t,))[1])(y, tangent)
    fd = finite_difference_jvp(jax.jit(gradient), y, tangent)
    assert float(jnp.max(jnp.abs(fd))) > 1e-3
    np.testing.assert_allclose(hvp, fd, atol=1e-7, rtol=0)


# --------------------------------------------------------------------------------------
# Scales, jit/vmap, float32, invalid alpha


@pytest.mark.parametrize("alpha", ALPHAS)
def test_extreme_scales(alpha):
    rng = np.random.default_rng(5 + int(10 * alpha))
    points = np.concatenate(
        [
            _inside(rng, 2, alpha),
            _polar(rng, 2, alpha),
            _flat(rng, 2),
            _root_points(rng, alpha, n=1),
        ]
    )
    scales = (1.0, 1e-150, 1e150, 1e-300, 1e300)
    batch = np.concatenate([s * points for s in scales])
    t_v = np.tile(rng.standard_normal(points.shape), (len(scales), 1))
    got, jvp = _jvp(alpha, batch, np.zeros(len(batch)), t_v)
    assert np.all(np.isfinite(got)) and np.all(np.isfinite(jvp))
    got = got.reshape(len(scales), *points.shape)
    jvp = jvp.reshape(len(scales), *points.shape)
    for scale, value, derivative in zip(scales, got, jvp, strict=True):
        np.testing.assert_allclose(value / scale, got[0], rtol=1e-12, atol=1e-12)
        # The derivative is positively homogeneous of degree zero.
        np.testing.assert_allclose(derivative, jvp[0], rtol=1e-9, atol=1e-9)
    # Entries of very different magnitudes in one point.
    mixed = np.asarray([[1e200, -1e-200, 1e100], [-1e-100, 1e-300, 1e-200]])
    d_alpha, d_v = _jacrev(alpha, mixed)
    assert np.all(np.isfinite(_project(alpha, mixed)))
    assert np.all(np.isfinite(d_alpha)) and np.all(np.isfinite(d_v))


def test_jit_and_vmap_agree_with_single_calls():
    rng = np.random.default_rng(6)
    points = 2 * rng.standard_normal((5, 3))
    cone = PowerCone(0.3)
    batched = jax.jit(jax.vmap(cone))(jnp.asarray(points))
    single = jnp.stack([cone(jnp.asarray(p)) for p in points])
    assert_tree_allclose(batched, single, rtol=1e-14, atol=1e-14)
    assert_tree_allclose(_project(0.3, points), single, rtol=1e-14, atol=1e-14)


def test_float32():
    rng = np.random.default_rng(7)
    points = np.concatenate(
        [2 * rng.standard_normal((6, 3)), _root_points(rng, 0.3, n=1)]
    )
    expected = _project(0.3, points)
    # A Python `alpha`, and a float64 array `alpha`, each cast to the point's dtype.
    for alpha in (0.3, jnp.asarray(0.3)):
        got = jax.jit(jax.vmap(PowerCone(alpha)))(jnp.asarray(points, jnp.float32))
        assert got.dtype == jnp.float32
        assert bool(jnp.all(jnp.isfinite(got)))
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("alpha", [0.0, 1.0, 1.5, -0.2])
def test_invalid_alpha(alpha):
    with pytest.raises(ValueError, match="alpha"):
        PowerCone(alpha)
    with pytest.raises(ValueError, match="alpha"):
        PowerCone(jnp.asarray(alpha))
    # Traced, it is not known at construction: NaN instead, for that batch element
    # only (and its derivatives).
    points = np.asarray([[1.0, -1.0, 0.5], [1.0, 1.0, 0.0], [1.0, -1.0, 0.5]])
    alphas = np.asarray([alpha, alpha, 0.5])
    got = _project(alphas, points)
    assert np.all(np.isnan(got[:2])) and np.all(np.isfinite(got[2]))
    d_alpha, d_v = _jacrev(alphas, points)
    assert np.all(np.isnan(d_v[:2])) and np.all(np.isfinite(d_v[2]))
