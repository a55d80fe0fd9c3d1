"""Bad and extreme input to the operators (issue 9, items 7, 9 and 16).

- Hyperparameters that make the set empty (or the penalty non-convex) raise a
  `ValueError` naming the class, the parameter and its value when they are known, and
  give NaN (values and derivatives, that batch element only) when traced.
- Projections stay accurate at extreme scales.
- Python-number hyperparameters (and defaults) are not parameters; arrays are.
"""

import dataclasses
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import implicitx.mirror as M
import implicitx.projection as P
import implicitx.prox as X


# ---------------------------------------------------------------------------------
# Known bad hyperparameters: an error at construction.


_CONCRETE = [
    ("box", lambda: P.Box(1.0, 0.0), r"`Box` needs `lower <= upper`.*lower=1.0"),
    (
        "box-array",
        lambda: P.Box(jnp.zeros(3), jnp.array([1.0, -1.0, 1.0])),
        r"`Box` needs `lower <= upper`.*upper=\[ 1. -1.  1.\]",
    ),
    ("box-nan", lambda: P.Box(jnp.nan, 1.0), r"`Box` needs.*lower=nan"),
    ("l1-ball", lambda: P.L1Ball(-1), r"`L1Ball` needs `radius >= 0`.*radius=-1.0"),
    ("l1-ball-nan", lambda: P.L1Ball(np.nan), r"`L1Ball`.*radius=nan"),
    ("l1-sphere", lambda: P.L1Sphere(-1.0), r"`L1Sphere`.*radius=-1.0"),
    ("l1-sphere-inf", lambda: P.L1Sphere(np.inf), r"`L1Sphere`.*< inf.*radius=inf"),
    ("l2-ball", lambda: P.L2Ball(-1), r"`L2Ball` needs `radius >= 0`.*radius=-1.0"),
    ("l2-sphere", lambda: P.L2Sphere(-0.5), r"`L2Sphere`.*radius=-0.5"),
    ("linf-ball", lambda: P.LInfBall(-1.0), r"`LInfBall`.*radius=-1.0"),
    ("simplex", lambda: P.Simplex(-1), r"`Simplex` needs `0 <= scale < inf`.*-1.0"),
    ("simplex-inf", lambda: P.Simplex(np.inf), r"`Simplex`.*scale=inf"),
    (
        "simplex-jax-array",
        lambda: P.Simplex(jnp.asarray(-2.0)),
        r"`Simplex`.*scale=-2.0",
    ),
    ("simplex-numpy", lambda: P.Simplex(np.float32(-2.0)), r"`Simplex`.*scale=-2.0"),
    ("sparse-simplex", lambda: P.SparseSimplex(2, -1.0), r"`SparseSimplex`.*-1.0"),
    (
        "box-section-b-too-large",
        lambda: P.BoxSection(0.0, 1.0, jnp.ones(3), 5.0),
        r"`BoxSection` needs `min a . x <= b <= max a . x`.*b=5.0",
    ),
    (
        "box-section-b-too-small",
        lambda: P.BoxSection(0.0, 1.0, jnp.array([1.0, -1.0, 2.0]), -1.5),
        r"`BoxSection`.*b=-1.5",
    ),
    (
        "box-section-bounds",
        lambda: P.BoxSection(1.0, 0.0, jnp.ones(3), 1.5),
        r"`BoxSection` needs `lower <= upper`",
    ),
    (
        "hyperplane",
        lambda: P.Hyperplane(jnp.zeros(3), 1.0),
        r"`Hyperplane` needs a finite, non-zero normal `a`.*a=\[0. 0. 0.\]",
    ),
    (
        "halfspace",
        lambda: P.Halfspace(jnp.zeros(3), 0.0),
        r"`Halfspace` needs a finite, non-zero normal",
    ),
    (
        "halfspace-inf",
        lambda: P.Halfspace(jnp.array([1.0, jnp.inf]), 0.0),
        r"`Halfspace`.*a=\[ 1. inf\]",
    ),
    (
        "transport-sums",
        lambda: P.TransportPolytope(jnp.ones(2), jnp.ones(3)),
        r"`TransportPolytope` needs positive marginals.*sum\(a\) = sum\(b\)",
    ),
    (
        "kl-transport-negative",
        lambda: P.KLTransportPolytope(jnp.ones(2), jnp.array([3.0, -1.0])),
        r"`KLTransportPolytope` needs positive marginals",
    ),
    (
        "kl-birkhoff-epsilon",
        lambda: P.KLBirkhoffPolytope(epsilon=0.0),
        r"`KLBirkhoffPolytope` needs `epsilon > 0`.*epsilon=0.0",
    ),
    ("prox-l1", lambda: X.L1(-1), r"`L1` needs `strength >= 0`.*strength=-1.0"),
    (
        "prox-l1-weights",
        lambda: X.L1(jnp.array([1.0, -0.5])),
        r"`L1` needs `strength >= 0`.*\[ 1.  -0.5\]",
    ),
    ("prox-nonnegative-l1", lambda: X.NonNegativeL1(-1.0), r"`NonNegativeL1`.*-1.0"),
    ("prox-ridge", lambda: X.Ridge(-1), r"`Ridge` needs `strength >= 0`.*-1.0"),
    ("prox-nonnegative-ridge", lambda: X.NonNegativeRidge(-2.0), r"`NonNeg.*-2.0"),
    ("prox-elastic-net-l1", lambda: X.ElasticNet(-1.0, 1.0), r"`ElasticNet`.*l1=-1"),
    ("prox-elastic-net-l2", lambda: X.ElasticNet(1.0, -1.0), r"`ElasticNet`.*l2=-1"),
    ("prox-group-lasso", lambda: X.GroupLasso(-1.0), r"`GroupLasso`.*strength=-1"),
    (
        "prox-group-lasso-groups",
        lambda: X.GroupLasso(jnp.array([1.0, -1.0])),
        r"`GroupLasso`.*\[ 1. -1.\]",
    ),
    ("prox-l2-norm", lambda: X.L2Norm(-1.0), r"`L2Norm` needs `strength >= 0`"),
    ("prox-linf-norm", lambda: X.LInfNorm(-1.0), r"`LInfNorm` needs `strength >= 0`"),
]


@pytest.mark.parametrize(
    "make, match", [c[1:] for c in _CONCRETE], ids=[c[0] for c in _CONCRETE]
)
def test_known_bad_hyperparameter_raises(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_boundary_values_are_accepted():
    # Non-empty limits: a single point, a degenerate box, the whole space.
    y = jnp.array([0.3, -2.0, 0.5])
    np.testing.assert_array_equal(P.Simplex(0.0)(y), np.zeros(3))
    np.testing.assert_array_equal(P.L1Ball(0)(y), np.zeros(3))
    np.testing.assert_array_equal(P.L2Ball(0.0)(y), np.zeros(3))
    np.testing.assert_array_equal(P.L2Ball(np.inf)(y), y)
    np.testing.assert_array_equal(P.L1Ball(np.inf)(y), y)
    np.testing.assert_array_equal(P.LInfBall(np.inf)(y), y)
    np.testing.assert_array_equal(P.Box(0.5, 0.5)(y), np.full(3, 0.5))
    np.testing.assert_array_equal(
        P.BoxSection(0.0, 1.0, jnp.ones(3), 3.0)(y), np.ones(3)
    )
    np.testing.assert_array_equal(X.L1(0.0)(y), y)


# ---------------------------------------------------------------------------------
# Traced bad hyperparameters: NaN for that element (values and derivatives).


@dataclasses.dataclass(frozen=True)
class Traced:
    name: str
    # `p -> (y -> output)`, for a scalar hyperparameter `p`.
    make: Callable
    good: float
    bad: float
    y: tuple
    dtype: type = np.float64
    # Derivatives are checked for the closed forms; the transport rows solve an
    # inner problem whose derivative at these small instances is singular.
    derivatives: bool = True

    def point(self):
        return jnp.asarray(self.y, self.dtype)

    def apply(self, p):
        return self.make(p)(self.point())

    def params(self):
        return jnp.asarray([self.good, self.bad, 0.5 * self.good], self.dtype)


_A = (1.0, -2.0, 0.5)
_Y = (0.9, -0.4, 2.0)

_TRACED = [
    Traced("simplex", lambda s: P.Simplex(s), 1.5, -1.0, _Y),
    Traced("simplex-inf", lambda s: P.Simplex(s), 1.5, np.inf, _Y),
    Traced("simplex-f32", lambda s: P.Simplex(s), 1.5, -1.0, _Y, np.float32),
    Traced("sparse-simplex", lambda s: P.SparseSimplex(2, s), 1.0, -1.0, _Y),
    Traced("l1-ball", lambda r: P.L1Ball(r), 1.0, -1.0, _Y),
    Traced("l1-ball-f32", lambda r: P.L1Ball(r), 1.0, -1.0, _Y, np.float32),
    Traced("l1-sphere", lambda r: P.L1Sphere(r), 1.0, -0.5, _Y),
    Traced("l2-ball", lambda r: P.L2Ball(r), 1.0, -1.0, _Y),
    Traced("l2-ball-nan", lambda r: P.L2Ball(r), 1.0, np.nan, _Y),
    Traced("l2-sphere", lambda r: P.L2Sphere(r), 1.0, -1.0, _Y),
    Traced("linf-ball", lambda r: P.LInfBall(r), 1.0, -1.0, _Y),
    Traced("box", lambda u: P.Box(0.0, u), 1.0, -1.0, _Y),
    Traced("box-f32", lambda u: P.Box(0.0, u), 1.0, -1.0, _Y, np.float32),
    Traced(
        "box-section",
        lambda b: P.BoxSection(0.0, 1.0, jnp.ones(3, jnp.asarray(b).dtype), b),
        1.5,
        5.0,
        _Y,
    ),
    Traced(
        "hyperplane",
        lambda s: P.Hyperplane(s * jnp.asarray(_A, jnp.asarray(s).dtype), 0.5),
        1.0,
        0.0,
        _Y,
    ),
    Traced(
        "halfspace",
        lambda s: P.Halfspace(s * jnp.asarray(_A, jnp.asarray(s).dtype), -0.5),
        1.0,
        0.0,
        _Y,
    ),
    Traced(
        "transport",
        lambda s: (
            lambda y: P.TransportPolytope(
                jnp.stack([jnp.ones_like(s), s]), jnp.stack([(1 + s) / 2, (1 + s) / 2])
            )(jnp.outer(y[:2], y[1:]))
        ),
        2.0,
        -0.5,
        _Y,
        derivatives=False,
    ),
    Traced(
        "kl-birkhoff",
        lambda e: lambda y: P.KLBirkhoffPolytope(e)(jnp.outer(y[:2], y[1:])),
        1.0,
        -1.0,
        _Y,
        derivatives=False,
    ),
    Traced("prox-l1", lambda s: lambda y: X.L1(s)(y, 0.5), 1.0, -1.0, _Y),
    Traced(
        "prox-l1-f32", lambda s: lambda y: X.L1(s)(y, 0.5), 1.0, -1.0, _Y, np.float32
    ),
    Traced("prox-nonnegative-l1", lambda s: X.NonNegativeL1(s), 0.5, -1.0, _Y),
    Traced("prox-ridge", lambda s: X.Ridge(s), 1.0, -0.5, _Y),
    Traced("prox-nonnegative-ridge", lambda s: X.NonNegativeRidge(s), 1.0, -0.5, _Y),
    Traced("prox-elastic-net-l1", lambda s: X.ElasticNet(s, 1.0), 0.5, -1.0, _Y),
    Traced("prox-elastic-net-l2", lambda s: X.ElasticNet(0.5, s), 1.0, -1.0, _Y),
    Traced("prox-group-lasso", lambda s: X.GroupLasso(s), 1.0, -1.0, _Y),
    Traced("prox-l2-norm", lambda s: X.L2Norm(s), 1.0, -1.0, _Y),
    Traced("prox-linf-norm", lambda s: X.LInfNorm(s), 1.0, -1.0, _Y),
    Traced(
        "mirror-euclidean",
        lambda r: lambda y: M.Euclidean(P.L2Ball(r)).project(y),
        1.0,
        -1.0,
        _Y,
    ),
]


def _traced_ids():
    return [case.name for case in _TRACED]


@pytest.mark.parametrize("case", _TRACED, ids=_traced_ids())
def test_traced_bad_hyperparameter_under_jit_is_nan(case):
    dtype = case.dtype
    bad = jax.jit(case.apply)(jnp.asarray(case.bad, dtype))
    assert bad.dtype == dtype
    assert np.all(np.isnan(bad))
    good = jax.jit(case.apply)(jnp.asarray(case.good, dtype))
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    reference = case.apply(jnp.asarray(case.good, dtype))
    np.testing.assert_allclose(good, reference, rtol=rtol, atol=rtol)
    assert np.all(np.isfinite(good))


@pytest.mark.parametrize("case", _TRACED, ids=_traced_ids())
def test_traced_bad_hyperparameter_under_vmap_spoils_only_its_element(case):
    params = case.params()
    batch = jax.jit(jax.vmap(case.apply))(params)
    assert np.all(np.isnan(batch[1]))
    for i in (0, 2):
        reference = case.apply(params[i])  # concrete: checked at construction
        rtol = 1e-5 if case.dtype == np.float32 else 1e-12
        np.testing.assert_allclose(batch[i], reference, rtol=rtol, atol=rtol)


_DIFFERENTIATED = [case for case in _TRACED if case.derivatives]


@pytest.mark.parametrize("case", _DIFFERENTIATED, ids=lambda case: case.name)
def test_traced_bad_hyperparameter_has_nan_derivatives(case):
    def loss(p):
        return jnp.sum(jnp.sin(case.apply(p)))

    params = case.params()
    reverse = jax.jit(jax.vmap(jax.grad(loss)))(params)
    forward = jax.jit(jax.vmap(jax.jacfwd(loss)))(params)
    for derivative in (reverse, forward):
        assert np.isnan(derivative[1])
        assert np.all(np.isfinite(np.asarray(derivative)[[0, 2]]))
    np.testing.assert_allclose(forward, reverse, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------
# Extreme scales.

_EXTREME = [
    ("simplex-f32-2e9", P.Simplex(), [2e9, 0.0], np.float32, [1.0, 0.0]),
    ("simplex-f32-tie", P.Simplex(), [2e9, 2e9, 0.0], np.float32, [0.5, 0.5, 0.0]),
    ("simplex-f64-1e17", P.Simplex(), [1e17, 0.0], np.float64, [1.0, 0.0]),
    (
        "simplex-f64-shifted",
        P.Simplex(),
        [1e17, 1e17 - 16.0, -1e17],
        np.float64,
        [1.0, 0.0, 0.0],
    ),
    ("simplex-f64-scale-2", P.Simplex(2.0), [-1e17, -1e17], np.float64, [1.0, 1.0]),
    ("l1-ball-f32", P.L1Ball(), [-2e9, 0.0], np.float32, [-1.0, 0.0]),
    ("l1-ball-f64", P.L1Ball(2.0), [0.0, 1e17], np.float64, [0.0, 2.0]),
    ("l1-sphere-f32", P.L1Sphere(), [2e9, 0.0, -3.0], np.float32, [1.0, 0.0, 0.0]),
    ("l1-sphere-f64", P.L1Sphere(), [-1e17, 0.0], np.float64, [-1.0, 0.0]),
    ("sparse-simplex-f32", P.SparseSimplex(1), [0.0, 2e9], np.float32, [0.0, 1.0]),
    ("sparse-simplex-f64", P.SparseSimplex(2), [1e17, 5.0], np.float64, [1.0, 0.0]),
    ("l2-ball-1e200", P.L2Ball(), [3e200, -4e200], np.float64, [0.6, -0.8]),
    ("l2-sphere-1e-200", P.L2Sphere(), [3e-200, 4e-200], np.float64, [0.6, 0.8]),
    ("l2-ball-f32-1e30", P.L2Ball(), [3e30, -4e30], np.float32, [0.6, -0.8]),
    ("l2-sphere-f32-1e-30", P.L2Sphere(), [0.0, -5e-30], np.float32, [0.0, -1.0]),
]


@pytest.mark.parametrize(
    "projection, y, dtype, expected",
    [c[1:] for c in _EXTREME],
    ids=[c[0] for c in _EXTREME],
)
def test_extreme_scale_closed_form(projection, y, dtype, expected):
    x = jax.jit(projection)(jnp.asarray(y, dtype))
    assert x.dtype == dtype
    rtol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(x, expected, rtol=rtol, atol=0)


_SOC_POINTS = [
    [0.3, 1.0, -2.0, 0.5],  # boundary case
    [3.0, 1.0, -2.0, 0.5],  # inside
    [-3.0, 1.0, -2.0, 0.5],  # polar
    [0.0, 0.0, 1.0, 0.0],
]


@pytest.mark.parametrize("point", _SOC_POINTS)
@pytest.mark.parametrize(
    "scale, dtype, rtol",
    [
        (1e200, np.float64, 1e-12),
        (1e-200, np.float64, 1e-12),
        (1e300, np.float64, 1e-12),
        (1e30, np.float32, 1e-5),
        (1e-30, np.float32, 1e-5),
    ],
)
def test_second_order_cone_is_homogeneous_at_extreme_scales(point, scale, dtype, rtol):
    cone = P.SecondOrderCone()
    y = jnp.asarray(point, dtype)
    scaled = jnp.asarray(scale, dtype) * y
    reference = np.asarray(cone(y), np.float64)
    x = np.asarray(jax.jit(cone)(scaled), np.float64)
    np.testing.assert_allclose(x / scale, reference, rtol=rtol, atol=rtol)
    # Degree-one homogeneity: the Jacobian does not depend on the scale.
    np.testing.assert_allclose(
        jax.jacfwd(cone)(scaled), jax.jacfwd(cone)(y), rtol=rtol, atol=rtol
    )
    np.testing.assert_allclose(
        jax.jacrev(cone)(scaled), jax.jacfwd(cone)(y), rtol=rtol, atol=rtol
    )


@pytest.mark.parametrize("scale", [1e-200, 1e200])
def test_halfspace_with_extreme_normal(scale):
    a = jnp.array([1.0, -2.0, 0.5])
    y = jnp.array([0.9, -0.4, 2.0])
    reference = P.Halfspace(a, 0.5)(y)
    x = P.Halfspace(scale * a, scale * 0.5)(y)
    np.testing.assert_allclose(x, reference, rtol=1e-14)
    x = P.Hyperplane(scale * a, scale * 0.5)(y)
    np.testing.assert_allclose(x, P.Hyperplane(a, 0.5)(y), rtol=1e-14)


def test_simplex_jacobian_exact_at_extreme_scale():
    # Support {0, 1}: the Jacobian is I - 1 1^T / 2 there, whatever the offset.
    y = jnp.array([1e17, 1e17, -1e17])
    expected = np.array([[0.5, -0.5, 0], [-0.5, 0.5, 0], [0, 0, 0]])
    simplex = P.Simplex()
    np.testing.assert_array_equal(simplex(y), [0.5, 0.5, 0.0])
    np.testing.assert_array_equal(jax.jacfwd(simplex)(y), expected)
    np.testing.assert_array_equal(jax.jacrev(simplex)(y), expected)


# ---------------------------------------------------------------------------------
# Python-number hyperparameters are not parameters; arrays are.


_DEFAULTS = [
    P.Simplex(),
    P.Simplex(2),
    P.SparseSimplex(2),
    P.L1Ball(),
    P.L1Sphere(),
    P.L2Ball(),
    P.L2Sphere(),
    P.LInfBall(),
    P.Box(0.0, 1.0),
    P.Hypercube(),
    P.NonNegative(),
    P.SecondOrderCone(),
    P.PSDCone(),
    P.ExponentialCone(),
    P.BirkhoffPolytope(),
    P.KLBirkhoffPolytope(),
    P.RowWise(P.Simplex()),
    X.Zero(),
    X.L1(),
    X.NonNegativeL1(),
    X.Ridge(),
    X.NonNegativeRidge(),
    X.ElasticNet(),
    X.GroupLasso(),
    X.L2Norm(),
    X.LInfNorm(0.5),
    X.FromProjection(P.Simplex()),
    M.Euclidean(P.L1Ball()),
    M.NegativeEntropySimplex(),
]


@pytest.mark.parametrize("operator", _DEFAULTS, ids=lambda op: type(op).__name__)
def test_python_number_hyperparameters_are_not_parameters(operator):
    assert jax.tree_util.tree_leaves(eqx.filter(operator, eqx.is_inexact_array)) == []
    for leaf in jax.tree_util.tree_leaves(operator):
        assert type(leaf) in (float, int)  # Python numbers, not arrays


def test_simplex_default_scale_is_not_trained_nor_retraced():
    simplex = P.Simplex()
    assert type(simplex.scale) is float
    traces = []

    @eqx.filter_jit
    def apply(projection, y):
        traces.append(None)
        return projection(y)

    y = jnp.array([0.3, 0.2, -0.1])
    for _ in range(3):
        x = apply(simplex, y)
        # An update by the gradient of a loss, on the trainable leaves only.
        params, static = eqx.partition(simplex, eqx.is_inexact_array)

        def loss(p, static=static):
            return jnp.sum(eqx.combine(p, static)(y) ** 2)

        grads = eqx.filter_grad(loss)(params)
        simplex = eqx.combine(jax.tree.map(lambda p, g: p - g, params, grads), static)
    assert len(traces) == 1
    np.testing.assert_allclose(jnp.sum(x), 1.0, rtol=1e-15)
    assert simplex.scale == 1.0


_LEARNABLE = [
    ("simplex", lambda p: P.Simplex(p), "scale", [0.9, -0.4, 2.0]),
    ("l1-ball", lambda p: P.L1Ball(p), "radius", [0.9, -0.4, 2.0]),
    ("l1-sphere", lambda p: P.L1Sphere(p), "radius", [0.9, -0.4, 2.0]),
    ("l2-ball", lambda p: P.L2Ball(p), "radius", [0.9, -0.4, 2.0]),
    ("l2-sphere", lambda p: P.L2Sphere(p), "radius", [0.9, -0.4, 2.0]),
    ("linf-ball", lambda p: P.LInfBall(p), "radius", [0.9, -0.4, 2.5]),
    ("box", lambda p: P.Box(0.0, p), "upper", [0.9, -0.4, 2.5]),
    ("sparse-simplex", lambda p: P.SparseSimplex(2, p), "scale", [0.9, -0.4, 2.0]),
    ("prox-l1", lambda p: X.L1(p), "strength", [0.9, -0.4, 2.5]),
    ("prox-ridge", lambda p: X.Ridge(p), "strength", [0.9, -0.4, 2.0]),
    ("prox-elastic-net", lambda p: X.ElasticNet(0.1, p), "l2", [0.9, -0.4, 2.0]),
    ("prox-group-lasso", lambda p: X.GroupLasso(p), "strength", [0.9, -0.4, 2.0]),
    ("prox-l2-norm", lambda p: X.L2Norm(p), "strength", [0.9, -0.4, 2.0]),
    ("prox-linf-norm", lambda p: X.LInfNorm(p), "strength", [0.9, -0.4, 2.0]),
]


@pytest.mark.parametrize(
    "make, field, y", [c[1:] for c in _LEARNABLE], ids=[c[0] for c in _LEARNABLE]
)
def test_array_hyperparameter_is_a_parameter_that_gradients_reach(make, field, y):
    y = jnp.asarray(y)
    operator = make(jnp.asarray(2.0))
    leaves = jax.tree_util.tree_leaves(eqx.filter(operator, eqx.is_inexact_array))
    assert len(leaves) == 1 and leaves[0] is getattr(operator, field)

    def loss(op):
        return jnp.sum(jnp.sin(op(y)))

    gradient = getattr(eqx.filter_grad(loss)(operator), field)
    eps = 1e-6
    finite_difference = (
        loss(make(jnp.asarray(2.0 + eps))) - loss(make(jnp.asarray(2.0 - eps)))
    ) / (2 * eps)
    assert abs(float(finite_difference)) > 1e-3
    np.testing.assert_allclose(gradient, finite_difference, rtol=1e-6)
    np.testing.assert_allclose(
        jax.grad(lambda p: loss(make(p)))(jnp.asarray(2.0)), gradient, rtol=1e-14
    )


def test_numpy_hyperparameter_is_a_parameter():
    simplex = P.Simplex(np.float64(2.0))
    assert isinstance(simplex.scale, jax.Array)
    assert eqx.filter(simplex, eqx.is_inexact_array).scale is simplex.scale
