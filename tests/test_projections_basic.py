"""Euclidean projections: feasibility, idempotence, non-expansiveness and the
variational inequality (convex sets), agreement with independent references (CVXPY for
convex sets, brute force for the others), derivatives in every argument against
finite differences, vmap / RowWise, and float32.

The table of cases and the references are in `projection_helpers.py`.
"""

import equinox as eqx
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
import pytest
from hypothesis import assume, given, settings
from jax.flatten_util import ravel_pytree

import implicitx as ix

from .helpers import finite_difference_jacobian
from .projection_helpers import (
    CASES,
    closest_distance,
    CONVEX_CASES,
    convex_reference,
    HypothesisSource,
    kink_margin,
    NONCONVEX_CASES,
    np_box_section_multiplier,
    np_simplex,
    RandomSource,
)


P = ix.projection
SETTINGS = settings(max_examples=20, deadline=None, derandomize=True)
SIZES = st.sampled_from((3, 6))
ids = lambda case: case.name


# Jitted once per (case, size, dtype): Hypothesis examples reuse the compilation.
@eqx.filter_jit
def _project(projection, y):
    return projection(y)


@eqx.filter_jit
def _check(projection, y):
    x = projection(y)
    return x, projection.violation(x), projection(x), projection.violation(y)


def _as_arrays(projection):
    """The projection with its Python-float hyperparameters as arrays: derivatives
    reach them too, and every Hypothesis example reuses one compilation."""
    to_array = lambda leaf: jnp.asarray(leaf) if isinstance(leaf, float) else leaf
    return jtu.tree_map(to_array, projection)


def _draw_instance(data, case, lo=-4.0, hi=4.0):
    n = data.draw(SIZES)
    source = HypothesisSource(data.draw)
    # Python floats as arrays: one compilation per case, not per example.
    projection = _as_arrays(case.make(source, n))
    y = source.array((n,), lo, hi)
    return projection, y


def _scale(*arrays) -> float:
    return 1.0 + max(float(np.max(np.abs(a))) for a in arrays)


# ---------------------------------------------------------------------------------
# Properties.


@pytest.mark.parametrize("case", CASES, ids=ids)
@SETTINGS
@given(data=st.data())
def test_feasible_and_idempotent(case, data):
    projection, y = _draw_instance(data, case)
    x, violation, x_again, violation_y = _check(projection, jnp.asarray(y))
    tol = 1e-10 * _scale(y)
    assert float(violation) <= tol
    np.testing.assert_allclose(x_again, x, rtol=0, atol=tol)
    # `violation` is zero only on the set: a point that moves is not in it.
    if float(np.linalg.norm(np.asarray(x) - y)) > 1e-6:
        assert float(violation_y) > 0


@pytest.mark.parametrize("case", CONVEX_CASES, ids=ids)
@SETTINGS
@given(data=st.data())
def test_nonexpansive(case, data):
    projection, y1 = _draw_instance(data, case)
    y2 = HypothesisSource(data.draw).array(y1.shape, -4.0, 4.0)
    x1 = np.asarray(_project(projection, jnp.asarray(y1)))
    x2 = np.asarray(_project(projection, jnp.asarray(y2)))
    tol = 1e-10 * _scale(y1, y2)
    assert np.linalg.norm(x1 - x2) <= np.linalg.norm(y1 - y2) + tol


@pytest.mark.parametrize("case", CONVEX_CASES, ids=ids)
@SETTINGS
@given(data=st.data())
def test_variational_inequality(case, data):
    # x = P(y) iff <y - x, z - x> <= 0 for every z in the set; z = P(w) is feasible.
    projection, y = _draw_instance(data, case)
    w = HypothesisSource(data.draw).array(y.shape, -4.0, 4.0)
    x = np.asarray(_project(projection, jnp.asarray(y)))
    z = np.asarray(_project(projection, jnp.asarray(w)))
    assert np.dot(y - x, z - x) <= 1e-9 * _scale(y, w) ** 2


@pytest.mark.parametrize("case", CONVEX_CASES, ids=ids)
@SETTINGS
@given(data=st.data())
def test_convex_reference(case, data):
    # Instances drawn by Hypothesis are often degenerate (coordinates exactly on a
    # bound), where the interior-point reference is accurate in its objective but
    # only to ~1e-5 in x. The projection, feasible by the test above, must be at
    # least as close to y as the reference (which pins it down: by strong convexity,
    # ||x - x*||^2 <= ||x - y||^2 - ||x* - y||^2), and near it.
    projection, y = _draw_instance(data, case)
    x = np.asarray(_project(projection, jnp.asarray(y)))
    expected = convex_reference(projection, y)
    scale = _scale(y)
    assert np.linalg.norm(x - y) <= np.linalg.norm(expected - y) + 1e-8 * scale
    np.testing.assert_allclose(x, expected, rtol=0, atol=1e-4 * scale)


@pytest.mark.parametrize("case", CONVEX_CASES, ids=ids)
def test_convex_reference_generic(case):
    # On generic instances the reference is accurate in x too.
    for seed in range(3):
        for n in (3, 6):
            source = RandomSource(1000 * seed + n)
            projection = case.make(source, n)
            y = source.array((n,), -3.0, 3.0)
            x = np.asarray(_project(projection, jnp.asarray(y)))
            expected = convex_reference(projection, y)
            np.testing.assert_allclose(x, expected, rtol=0, atol=1e-7)


@pytest.mark.parametrize("case", NONCONVEX_CASES, ids=ids)
@SETTINGS
@given(data=st.data())
def test_nonconvex_closest_point(case, data):
    projection, y = _draw_instance(data, case)
    x, violation, _, _ = _check(projection, jnp.asarray(y))
    assert float(violation) <= 1e-10 * _scale(y)
    distance = float(np.linalg.norm(np.asarray(x) - y))
    np.testing.assert_allclose(
        distance, closest_distance(projection, y), rtol=0, atol=1e-9 * _scale(y)
    )


def test_l2_sphere_against_sampled_points():
    # Brute force independent of the closed form: no point among many sampled on the
    # sphere is closer to y than P(y).
    rng = np.random.default_rng(0)
    radius = 1.7
    projection = P.L2Sphere(radius)
    samples = rng.standard_normal((4000, 3))
    samples *= radius / np.linalg.norm(samples, axis=1, keepdims=True)
    for _ in range(5):
        y = 2 * rng.standard_normal(3)
        x = np.asarray(_project(projection, jnp.asarray(y)))
        best = np.min(np.linalg.norm(samples - y, axis=1))
        assert np.linalg.norm(x - y) <= best + 1e-12
        assert np.linalg.norm(x - y) >= best - 0.1


def test_nonconvex_sets_at_their_ambiguous_points():
    zero = jnp.zeros(4)
    np.testing.assert_allclose(_project(P.L2Sphere(2.0), zero), [2.0, 0, 0, 0])
    np.testing.assert_allclose(_project(P.L1Sphere(2.0), zero), [0.5, 0.5, 0.5, 0.5])
    # Inside the l1 ball, a zero coordinate is given a positive value.
    np.testing.assert_allclose(
        _project(P.L1Sphere(3.0), jnp.array([1.0, -1.0, 0.0])), [4 / 3, -4 / 3, 1 / 3]
    )
    # A tie between the k-th and (k+1)-th entries: one of the two is kept.
    x = np.asarray(_project(P.SparseSimplex(2), jnp.array([0.3, 0.3, 0.9])))
    assert np.sum(x != 0) == 2 and x[2] > 0
    np.testing.assert_allclose(np.sort(x), [0.0, 0.2, 0.8])


# ---------------------------------------------------------------------------------
# Derivatives.


def _flat_function(projection, y):
    """`f(v) = P_theta(y)` with `v` the flat vector of `y` and of every floating-point
    hyperparameter `theta` of the projection."""
    params, static = eqx.partition(projection, eqx.is_inexact_array)
    # One dtype for the flat vector (weakly typed scalars adopt that of y).
    params = jtu.tree_map(lambda p: p.astype(y.dtype), params)
    v, unravel = ravel_pytree((y, params))

    def f(v):
        _y, _params = unravel(v)
        return eqx.combine(_params, static)(_y)

    return f, v


@eqx.filter_jit
@eqx.filter_jit
def _jacobians(projection, y, eps=1e-6):
    f, v = _flat_function(projection, y)
    finite_differences = finite_difference_jacobian(f, v, eps=eps)
    return jax.jacfwd(f)(v), jax.jacrev(f)(v), finite_differences


@pytest.mark.parametrize("case", CASES, ids=ids)
@SETTINGS
@given(seed=st.integers(0, 2**32 - 1))
def test_jacobians_against_finite_differences(case, seed):
    n = 6  # one size: one compilation per case
    source = RandomSource(seed)
    projection = case.make(source, n)
    y = source.array((n,), -3.0, 3.0)
    assume(kink_margin(projection, y) > 1e-3)
    jacobians = _jacobians(_as_arrays(projection), jnp.asarray(y))
    forward, reverse, finite_differences = jacobians
    np.testing.assert_allclose(forward, finite_differences, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(reverse, finite_differences, rtol=1e-6, atol=1e-7)


def _random_y(n, seed=0, scale=2.0):
    return jnp.asarray(scale * np.random.default_rng(seed).standard_normal(n))


def test_simplex_closed_form_jacobian():
    y = jnp.array([0.9, -0.4, 0.5, 0.1, 2.0])
    scale = jnp.array(1.3)
    x = P.Simplex(scale)(y)
    support = np.asarray(x) > 0
    # Support {0, 4}: tau = (0.9 + 2.0 - 1.3) / 2 = 0.8 (and 0.5 < tau).
    np.testing.assert_allclose(x, [0.1, 0, 0, 0, 1.2], atol=1e-15)
    np.testing.assert_array_equal(support, [True, False, False, False, True])
    s = support.astype(float)
    expected_y = np.diag(s) - np.outer(s, s) / s.sum()
    expected_scale = s / s.sum()
    simplex = lambda y, scale: P.Simplex(scale)(y)
    for jacobian in (jax.jacfwd, jax.jacrev):
        d_y, d_scale = jax.jit(jacobian(simplex, argnums=(0, 1)))(y, scale)
        np.testing.assert_allclose(d_y, expected_y, atol=1e-15)
        np.testing.assert_allclose(d_scale, expected_scale, atol=1e-15)
    # The rule is used: the derivative program does not differentiate the sort.
    # (Differentiating a sort sorts an extra permutation operand alongside.)
    jaxpr = str(jax.make_jaxpr(jax.jacrev(P.Simplex(scale)))(y))
    sorts = [line for line in jaxpr.splitlines() if "= sort[" in line]
    assert len(sorts) == 1
    assert len(sorts[0].split("= sort[")[0].split()) == 1  # one sorted output


def test_simplex_transformations():
    projection = P.Simplex(1.5)
    y = _random_y(6)
    w = _random_y(6, seed=1)
    loss = lambda y: jnp.sum(w * projection(y) ** 2)
    # jvp, grad, and hessian of a composition, under jit.
    tangent = _random_y(6, seed=2)
    _, jvp = jax.jit(lambda y, t: jax.jvp(projection, (y,), (t,)))(y, tangent)
    x, J = jax.jit(lambda y: (projection(y), jax.jacfwd(projection)(y)))(y)
    x, J = np.asarray(x), np.asarray(J)
    np.testing.assert_allclose(jvp, J @ tangent, atol=1e-14)
    grad = jax.jit(jax.grad(loss))(y)
    np.testing.assert_allclose(grad, J.T @ (2 * np.asarray(w) * x), atol=1e-14)
    hessian = jax.jit(jax.hessian(loss))(y)
    # P is piecewise linear, so the Hessian of the composition is J^T diag(2w) J.
    np.testing.assert_allclose(
        hessian, J.T @ np.diag(2 * np.asarray(w)) @ J, atol=1e-13
    )
    mixed = jax.jit(jax.jacrev(jax.jacfwd(loss)))(y)
    np.testing.assert_allclose(mixed, hessian, atol=1e-13)


def test_box_section_reduces_to_simplex():
    y = _random_y(6, seed=3)
    scale = 1.7
    section = lambda y, b: P.BoxSection(0.0, jnp.inf, jnp.ones(6), b)(y)
    simplex = lambda y, b: P.Simplex(b)(y)
    for fn in (jax.jacfwd, jax.jacrev):
        jac_section = jax.jit(fn(section, argnums=(0, 1)))(y, jnp.array(scale))
        jac_simplex = jax.jit(fn(simplex, argnums=(0, 1)))(y, jnp.array(scale))
        for got, expected in zip(jac_section, jac_simplex, strict=True):
            np.testing.assert_allclose(got, expected, atol=1e-12)
    np.testing.assert_allclose(
        jax.jit(section)(y, scale), simplex(y, scale), atol=1e-13
    )


def test_box_section_with_infinite_bounds():
    rng = np.random.default_rng(4)
    n = 6
    lower = np.array([-np.inf, -1.0, 0.0, -np.inf, -0.5, -2.0])
    upper = np.array([np.inf, 1.0, np.inf, 0.5, 0.5, 2.0])
    a = rng.uniform(-2, 2, n)
    instances = [
        (0.3, rng.standard_normal(n)),  # the multiplier between the finite kinks,
        (200.0, 3 * rng.standard_normal(n)),  # below all of them,
        (-200.0, rng.standard_normal(n)),  # above all of them.
    ]
    for where, (b, y) in enumerate(instances):
        projection = _as_arrays(
            P.BoxSection(jnp.asarray(lower), jnp.asarray(upper), a, b)
        )
        kinks = np.concatenate([(y - lower) / a, (y - upper) / a])
        kinks = kinks[np.isfinite(kinks)]
        tau = np_box_section_multiplier(y, lower, upper, a, b)
        assert [kinks.min() < tau < kinks.max(), tau < kinks.min(), tau > kinks.max()][
            where
        ]
        x = np.asarray(_project(projection, jnp.asarray(y)))
        assert float(_check(projection, jnp.asarray(y))[1]) <= 1e-12 * abs(b)
        expected = convex_reference(projection, y)
        np.testing.assert_allclose(x, expected, atol=1e-6 * _scale(y, expected))
        assert kink_margin(projection, y) > 1e-3
        # Derivatives in y, a, b and the finite bounds.
        forward, reverse, finite_differences = _jacobians(projection, jnp.asarray(y))
        assert np.all(np.isfinite(forward))
        finite = np.isfinite(finite_differences).all(axis=0)
        assert finite.sum() > n + 6
        np.testing.assert_allclose(
            forward[:, finite], finite_differences[:, finite], rtol=1e-6, atol=1e-7
        )
        np.testing.assert_allclose(reverse, forward, rtol=1e-12, atol=1e-12)


def test_box_section_at_a_vertex_and_second_order():
    # The capped simplex {0 <= x <= 1, sum(x) = 2} has vertices (0/1 vectors); for
    # this y the projection is one, the multiplier is not unique and x is locally
    # constant in y: a zero derivative, no error, no NaN.
    projection = P.BoxSection(0.0, 1.0, jnp.ones(4), 2.0)
    y = jnp.array([5.0, -5.0, 4.0, -3.0])
    np.testing.assert_allclose(_project(projection, y), [1.0, 0.0, 1.0, 0.0])
    forward, reverse, finite_differences = _jacobians(projection, y)
    np.testing.assert_array_equal(forward[:, :4], np.zeros((4, 4)))
    np.testing.assert_array_equal(reverse[:, :4], np.zeros((4, 4)))
    np.testing.assert_array_equal(finite_differences[:, :4], np.zeros((4, 4)))
    assert np.all(np.isfinite(forward)) and np.all(np.isfinite(reverse))
    # Second order through the custom rule: a composition with a smooth function.
    section = P.BoxSection(-1.0, 1.0, jnp.array([1.0, 2.0, -1.0, 0.5]), 0.4)
    y = jnp.array([0.3, -0.2, 0.9, 1.7])
    loss = lambda y: jnp.sum(jnp.sin(section(y)))
    hessian = jax.jit(jax.hessian(loss))(y)
    finite_differences = finite_difference_jacobian(jax.grad(loss), y, eps=1e-6)
    np.testing.assert_allclose(hessian, finite_differences, atol=1e-7)
    assert np.abs(hessian).max() > 1e-2


def test_box_section_empty_set_is_refused():
    # An empty section raises when `b` is known, and gives NaN when it is traced.
    with pytest.raises(ValueError, match="non-empty section"):
        P.BoxSection(0.0, 1.0, jnp.ones(3), 5.0)
    section = lambda b: P.BoxSection(0.0, 1.0, jnp.ones(3), b)(jnp.zeros(3))
    assert np.all(np.isnan(jax.jit(section)(5.0)))


def test_l1_ball_inside_is_identity():
    y = jnp.array([0.2, -0.3, 0.1])
    # The radius as an array, so that the Jacobian has a column for it too.
    projection = P.L1Ball(jnp.asarray(1.0))
    forward, reverse, _ = _jacobians(projection, y)
    np.testing.assert_allclose(_project(projection, y), y)
    np.testing.assert_array_equal(forward, np.c_[np.eye(3), np.zeros(3)])
    np.testing.assert_array_equal(reverse, np.c_[np.eye(3), np.zeros(3)])
    # Outside: soft thresholding at the level that reaches the sphere.
    y = jnp.array([2.0, -1.0, 0.2])
    np.testing.assert_allclose(_project(P.L1Ball(1.0), y), [1.0, 0.0, 0.0], atol=1e-15)


def test_affine_set_with_one_row_is_a_hyperplane():
    a = _random_y(5, seed=5)
    y = _random_y(5, seed=6)
    affine = lambda y, a, b: P.AffineSet(a[None, :], b[None])(y)
    hyperplane = lambda y, a, b: P.Hyperplane(a, b)(y)
    args = (y, a, jnp.array(0.7))
    np.testing.assert_allclose(jax.jit(affine)(*args), hyperplane(*args), atol=1e-14)
    for fn in (jax.jacfwd, jax.jacrev):
        jac_affine = jax.jit(fn(affine, argnums=(0, 1, 2)))(*args)
        jac_hyperplane = jax.jit(fn(hyperplane, argnums=(0, 1, 2)))(*args)
        for got, expected in zip(jac_affine, jac_hyperplane, strict=True):
            np.testing.assert_allclose(got, expected, atol=1e-13)


def test_sparse_simplex_reduces_to_simplex_and_checks_k():
    y = _random_y(5, seed=7)
    simplex = np.asarray(_project(P.Simplex(2.0), y))
    assert np.sum(simplex > 0) > 1
    np.testing.assert_allclose(_project(P.SparseSimplex(5, 2.0), y), simplex)
    np.testing.assert_allclose(_project(P.SparseSimplex(9, 2.0), y), simplex)
    x = _project(P.SparseSimplex(1, 2.0), y)
    expected = np.zeros(5)
    expected[int(np.argmax(y))] = 2.0
    np.testing.assert_allclose(x, expected)
    with pytest.raises(ValueError, match="positive integer"):
        P.SparseSimplex(0)
    # `violation` counts the non-zeros.
    projection = P.SparseSimplex(2)
    assert float(projection.violation(jnp.array([0.5, 0.25, 0.25]))) == 1.0
    assert float(projection.violation(jnp.array([0.5, 0.0, 0.5]))) == 0.0


def test_shapes_are_checked_at_construction():
    with pytest.raises(ValueError, match="vector `a` and a scalar `b`"):
        P.Hyperplane(jnp.ones(3), jnp.ones(3))
    with pytest.raises(ValueError, match="vector `a` and a scalar `b`"):
        P.Halfspace(1.0, 0.0)
    with pytest.raises(ValueError, match="vector `a` and a scalar `b`"):
        P.BoxSection(0.0, 1.0, jnp.ones((2, 3)), 1.0)
    with pytest.raises(ValueError, match="m <= n"):
        P.AffineSet(jnp.ones((3, 2)), jnp.ones(3))
    with pytest.raises(ValueError, match="shape"):
        P.AffineSet(jnp.ones((2, 3)), jnp.ones(3))


def test_simplex_reference_sanity():
    # The NumPy reference itself, on a case worked by hand.
    x, tau = np_simplex(np.array([0.9, -0.4, 0.5, 0.1, 2.0]), 1.3)
    np.testing.assert_allclose(x, [0.1, 0, 0, 0, 1.2], atol=1e-12)
    np.testing.assert_allclose(tau, 0.8, atol=1e-12)


# ---------------------------------------------------------------------------------
# Batches and float32.


def _generic_instances(case, count, n, seed):
    projections, ys = [], []
    for i in range(count):
        source = RandomSource(seed + i)
        projections.append(case.make(source, n))
        ys.append(source.array((n,), -3.0, 3.0))
    return projections, jnp.asarray(np.stack(ys))


@eqx.filter_jit
def _batched(projection, stacked, Y):
    rowwise = P.RowWise(projection)
    return (
        jax.vmap(projection)(Y),
        rowwise(Y),
        rowwise.violation(Y),
        eqx.filter_vmap(lambda p, y: p(y))(stacked, Y),
    )


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_vmap_and_rowwise(case):
    n, count = 6, 4
    projections, Y = _generic_instances(case, count, n, seed=100)
    # A batch of projections (their hyperparameters batched too) and of points.
    stacked = jtu.tree_map(lambda *leaves: jnp.stack(leaves), *projections)
    first = projections[0]
    vmapped, rowwise, rowwise_violation, batched = _batched(first, stacked, Y)
    loop = np.stack([_project(p, y) for p, y in zip(projections, Y, strict=True)])
    np.testing.assert_allclose(batched, loop, rtol=1e-13, atol=1e-13)
    # One projection, a batch of points: vmap and RowWise.
    loop_first = np.stack([_project(first, y) for y in Y])
    np.testing.assert_allclose(vmapped, loop_first, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(rowwise, loop_first, rtol=1e-13, atol=1e-13)
    violations = [float(_check(first, y)[3]) for y in Y]
    assert max(violations) > 0
    np.testing.assert_allclose(rowwise_violation, max(violations), rtol=1e-13)


def _to_float32(tree):
    # Strongly typed float64 arrays become float32; weakly typed (Python) scalars are
    # kept, and must adopt the dtype of the point.
    def _cast(x):
        if eqx.is_inexact_array(x) and not x.weak_type:
            return x.astype(jnp.float32)
        return x

    return jtu.tree_map(_cast, tree)


@eqx.filter_jit
def _float32_outputs(projection, y):
    x = projection(y)
    f, v = _flat_function(projection, y)
    return x, projection.violation(x), jax.jacfwd(f)(v), jax.jacrev(f)(v)


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_float32(case):
    n = 6
    for seed in range(200, 220):
        source = RandomSource(seed)
        projection = case.make(source, n)
        y = source.array((n,), -3.0, 3.0)
        if kink_margin(projection, y) > 1e-2:
            break
    else:
        raise AssertionError("no generic instance found")
    projection32 = _to_float32(projection)
    y32 = jnp.asarray(y, dtype=jnp.float32)
    x32, violation32, forward32, reverse32 = _float32_outputs(projection32, y32)
    assert x32.dtype == violation32.dtype == jnp.float32
    assert forward32.dtype == reverse32.dtype == jnp.float32
    x = _project(projection, jnp.asarray(y))
    np.testing.assert_allclose(x32, x, rtol=1e-5, atol=1e-5)
    forward, reverse, _ = _jacobians(projection, jnp.asarray(y))
    np.testing.assert_allclose(forward32, forward, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(reverse32, reverse, rtol=1e-4, atol=1e-4)
