"""Proximal operators: the definition, Moreau decomposition, firm non-expansiveness,
derivatives in every argument, vmap and float32.

Each prox is a `Case`: how to build it from its hyperparameters, and, written
independently of the library (NumPy or CVXPY), the function `g`, the prox of the
conjugate `g*` and the kinks of the prox (where it is not differentiable).
"""

import dataclasses
import functools
from collections.abc import Callable

import cvxpy as cp
import equinox as eqx
import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import jaxtyping
import numpy as np
import pytest
from hypothesis import assume, given, settings
from jaxtyping import Array, Float, Scalar

import implicitx as ix

from .helpers import finite_difference_jacobian


SETTINGS = settings(max_examples=25, deadline=None, derandomize=True)
SIZES = (4, 7)
# The tests whose compilation dominates the run time of this file (Jacobians, vmap,
# float32) run at one size; the cheaper property tests run at every size.
ONE_SIZE = 7


# Sets used through `FromProjection`: written here, so that these tests do not depend
# on the projection library.


class _Box(ix.projection.AbstractProjection):
    lower: Float[Array, "..."]
    upper: Float[Array, "..."]

    def __call__(self, y: Float[Array, "..."]) -> Float[Array, "..."]:
        return jnp.clip(y, self.lower, self.upper)

    def violation(self, x: Float[Array, "..."]) -> Scalar:
        return jnp.maximum(
            jnp.maximum(jnp.max(self.lower - x), jnp.max(x - self.upper)), 0
        )


class _L2Ball(ix.projection.AbstractProjection):
    radius: Float[Array, ""]

    def __call__(self, y: Float[Array, "..."]) -> Float[Array, "..."]:
        squared = jnp.sum(y * y)
        outside = squared > self.radius**2
        safe = jnp.sqrt(jnp.where(outside, squared, 1))
        return y * jnp.where(outside, self.radius / safe, 1)

    def violation(self, x: Float[Array, "..."]) -> Scalar:
        return jnp.maximum(jnp.sqrt(jnp.sum(x * x)) - self.radius, 0)


# Independent NumPy references.


def _l2_ball_np(v, radius, axis=None):
    norm = np.sqrt(np.sum(v * v, axis=axis, keepdims=axis is not None))
    return v * np.minimum(1, radius / np.maximum(norm, 1e-300))


def _l1_ball_threshold_np(v, radius):
    """The threshold `theta` with `sum(max(|v| - theta, 0)) = radius`, or `0` if
    `v` is in the ball (sort-based, exact)."""
    a = np.abs(v).ravel()
    if a.sum() <= radius:
        return 0.0
    u = np.sort(a)[::-1]
    cumulative = np.cumsum(u) - radius
    k = np.arange(1, a.size + 1)
    rho = np.nonzero(u * k > cumulative)[0][-1]
    return cumulative[rho] / (rho + 1)


def _l1_ball_np(v, radius):
    theta = _l1_ball_threshold_np(v, radius)
    return np.sign(v) * np.maximum(np.abs(v) - theta, 0)


def _indicator(feasible, value):
    return value if feasible else np.inf


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    # hyperparameters (a tuple of arrays) -> the prox
    make: Callable
    # (rng, shape of the point) -> hyperparameters, as float64 NumPy arrays
    sample: Callable
    # (x, *hyper) -> g(x), NumPy
    g: Callable
    # (v, t, *hyper) -> prox_{t g*}(v), NumPy
    conjugate_prox: Callable
    # (y, s, *hyper) -> distance of (y, s, hyper) to a kink of the prox
    kink_distance: Callable
    # (cvxpy variable, *hyper) -> (expression for g, constraints)
    cvxpy_g: Callable
    # (rng, shape, *hyper) -> a random point of the domain of g
    domain: Callable = lambda rng, shape, *hyper: 3 * rng.standard_normal(shape)
    # the shape of the point, from a size n
    shape: Callable = lambda n: (n,)

    def __repr__(self):
        return self.name


def _positive(rng, shape):
    return rng.uniform(0.2, 1.5, size=shape)


def _scalar(rng, shape):
    del shape
    return np.asarray(rng.uniform(0.2, 1.5))


def _box_bounds(rng, shape):
    centre = rng.uniform(-1, 1, size=shape)
    half_width = rng.uniform(0.05, 1.5, size=shape)
    return centre - half_width, centre + half_width


def _elastic_net_conjugate_prox(v, t, l1, l2):
    # g*(z) = sum_i max(|z_i| - l1_i, 0)^2 / (2 l2_i).
    outside = np.sign(v) * (np.abs(v) * l2 + t * l1) / (l2 + t)
    return np.where(np.abs(v) <= l1, v, outside)


def _box_support_prox(v, t, lower, upper):
    # g* is the support function sum_i max(lower_i z_i, upper_i z_i).
    return np.where(
        v > t * upper, v - t * upper, np.where(v < t * lower, v - t * lower, 0)
    )


def _nonnegative_point(rng, shape, *hyper):
    return np.abs(3 * rng.standard_normal(shape))


def _ball_point(rng, shape, radius):
    direction = rng.standard_normal(shape)
    return radius * rng.uniform() * direction / np.linalg.norm(direction)


def _linf_kink_distance(y, s, strength):
    t = s * strength
    theta = _l1_ball_threshold_np(y / t, 1.0) * t
    distances = [abs(np.abs(y).sum() - t)]
    if theta > 0:
        distances.append(np.min(np.abs(np.abs(y) - theta)))
    return min(distances)


CASES = [
    Case(
        "Zero",
        make=lambda: ix.prox.Zero(),
        sample=lambda rng, shape: (),
        g=lambda x: 0.0,
        conjugate_prox=lambda v, t: np.zeros_like(v),
        kink_distance=lambda y, s: np.inf,
        cvxpy_g=lambda x: (0, []),
    ),
    Case(
        "L1",
        make=lambda strength: ix.prox.L1(strength),
        sample=lambda rng, shape: (_scalar(rng, shape),),
        g=lambda x, lam: np.sum(lam * np.abs(x)),
        conjugate_prox=lambda v, t, lam: np.clip(v, -lam, lam),
        kink_distance=lambda y, s, lam: np.min(np.abs(np.abs(y) - s * lam)),
        cvxpy_g=lambda x, lam: (lam * cp.norm1(x), []),
    ),
    Case(
        "L1-weighted",
        make=lambda strength: ix.prox.L1(strength),
        sample=lambda rng, shape: (_positive(rng, shape),),
        g=lambda x, lam: np.sum(lam * np.abs(x)),
        conjugate_prox=lambda v, t, lam: np.clip(v, -lam, lam),
        kink_distance=lambda y, s, lam: np.min(np.abs(np.abs(y) - s * lam)),
        cvxpy_g=lambda x, lam: (cp.sum(cp.multiply(lam, cp.abs(x))), []),
    ),
    Case(
        "NonNegativeL1",
        make=lambda strength: ix.prox.NonNegativeL1(strength),
        sample=lambda rng, shape: (_positive(rng, shape),),
        g=lambda x, lam: _indicator(np.all(x >= 0), np.sum(lam * x)),
        conjugate_prox=lambda v, t, lam: np.minimum(v, lam),
        kink_distance=lambda y, s, lam: np.min(np.abs(y - s * lam)),
        cvxpy_g=lambda x, lam: (cp.sum(cp.multiply(lam, x)), [x >= 0]),
        domain=_nonnegative_point,
    ),
    Case(
        "ElasticNet",
        make=lambda l1, l2: ix.prox.ElasticNet(l1, l2),
        sample=lambda rng, shape: (_positive(rng, shape), _scalar(rng, shape)),
        g=lambda x, l1, l2: np.sum(l1 * np.abs(x) + 0.5 * l2 * x * x),
        conjugate_prox=_elastic_net_conjugate_prox,
        kink_distance=lambda y, s, l1, l2: np.min(np.abs(np.abs(y) - s * l1)),
        cvxpy_g=lambda x, l1, l2: (
            cp.sum(cp.multiply(l1, cp.abs(x))) + 0.5 * l2 * cp.sum_squares(x),
            [],
        ),
    ),
    Case(
        "Ridge",
        make=lambda strength: ix.prox.Ridge(strength),
        sample=lambda rng, shape: (_positive(rng, shape),),
        g=lambda x, lam: 0.5 * np.sum(lam * x * x),
        conjugate_prox=lambda v, t, lam: v * lam / (lam + t),
        kink_distance=lambda y, s, lam: np.inf,
        cvxpy_g=lambda x, lam: (0.5 * cp.sum(cp.multiply(lam, cp.square(x))), []),
    ),
    Case(
        "NonNegativeRidge",
        make=lambda strength: ix.prox.NonNegativeRidge(strength),
        sample=lambda rng, shape: (_scalar(rng, shape),),
        g=lambda x, lam: _indicator(np.all(x >= 0), 0.5 * lam * np.sum(x * x)),
        conjugate_prox=lambda v, t, lam: np.where(v <= 0, v, v * lam / (lam + t)),
        kink_distance=lambda y, s, lam: np.min(np.abs(y)),
        cvxpy_g=lambda x, lam: (0.5 * lam * cp.sum_squares(x), [x >= 0]),
        domain=_nonnegative_point,
    ),
    Case(
        "L2Norm",
        make=lambda strength: ix.prox.L2Norm(strength),
        sample=lambda rng, shape: (_scalar(rng, shape),),
        g=lambda x, lam: lam * np.linalg.norm(x),
        conjugate_prox=lambda v, t, lam: _l2_ball_np(v, lam),
        kink_distance=lambda y, s, lam: abs(np.linalg.norm(y) - s * lam),
        cvxpy_g=lambda x, lam: (lam * cp.norm2(x), []),
    ),
    Case(
        "GroupLasso",
        make=lambda strength: ix.prox.GroupLasso(strength),
        sample=lambda rng, shape: (_positive(rng, shape[:-1]),),
        g=lambda x, lam: np.sum(lam * np.linalg.norm(x, axis=-1)),
        conjugate_prox=lambda v, t, lam: _l2_ball_np(v, lam[:, None], axis=-1),
        kink_distance=lambda y, s, lam: np.min(
            np.abs(np.linalg.norm(y, axis=-1) - s * lam)
        ),
        cvxpy_g=lambda x, lam: (
            sum(lam[i] * cp.norm2(x[i]) for i in range(lam.shape[0])),
            [],
        ),
        shape=lambda n: (3, n),
    ),
    Case(
        "LInfNorm",
        make=lambda strength: ix.prox.LInfNorm(strength),
        sample=lambda rng, shape: (_scalar(rng, shape),),
        g=lambda x, lam: lam * np.max(np.abs(x)),
        conjugate_prox=lambda v, t, lam: _l1_ball_np(v, lam),
        kink_distance=_linf_kink_distance,
        cvxpy_g=lambda x, lam: (lam * cp.norm_inf(x), []),
    ),
    Case(
        "FromProjection-box",
        make=lambda lower, upper: ix.prox.FromProjection(_Box(lower, upper)),
        sample=lambda rng, shape: _box_bounds(rng, shape),
        g=lambda x, lower, upper: _indicator(
            np.all((lower - 1e-8 <= x) & (x <= upper + 1e-8)), 0.0
        ),
        conjugate_prox=_box_support_prox,
        kink_distance=lambda y, s, lower, upper: min(
            np.min(np.abs(y - lower)), np.min(np.abs(y - upper))
        ),
        cvxpy_g=lambda x, lower, upper: (0, [x >= lower, x <= upper]),
        domain=lambda rng, shape, lower, upper: rng.uniform(lower, upper),
    ),
    Case(
        "FromProjection-ball",
        make=lambda radius: ix.prox.FromProjection(_L2Ball(radius)),
        sample=lambda rng, shape: (_scalar(rng, shape),),
        g=lambda x, r: _indicator(np.linalg.norm(x) <= r + 1e-8, 0.0),
        # The support function of the ball of radius r is r ||.||_2.
        conjugate_prox=lambda v, t, r: (
            v * max(0, 1 - t * r / np.linalg.norm(v)) if np.linalg.norm(v) > 0 else v
        ),
        kink_distance=lambda y, s, r: abs(np.linalg.norm(y) - r),
        cvxpy_g=lambda x, r: (0, [cp.norm2(x) <= r]),
        domain=_ball_point,
    ),
]
CASE_IDS = [case.name for case in CASES]
NORM_CASES = [c for c in CASES if c.name in ("L2Norm", "GroupLasso", "LInfNorm")]


@functools.cache
def _apply(case: Case):
    """`(y, s, *hyper) -> prox_{s g}(y)`, jitted once per case: hyperparameters are
    traced arguments, so nothing recompiles when their values change."""
    return jax.jit(lambda y, s, *hyper: case.make(*hyper)(y, s))


@functools.cache
def _value(case: Case):
    return jax.jit(lambda x, *hyper: case.make(*hyper).value(x))


def _hyper(case, seed, shape):
    return tuple(np.asarray(h) for h in case.sample(np.random.default_rng(seed), shape))


def _points(shape, count=1):
    return hnp.arrays(
        np.float64,
        (count, *shape) if count > 1 else shape,
        # XLA flushes subnormals to zero on CPU: keep them out of the comparisons.
        elements=st.floats(-3, 3, allow_nan=False, allow_subnormal=False),
    )


STEPSIZES = st.floats(0.1, 3.0)
SEEDS = st.integers(0, 2**31 - 1)


def _prox_np(case, y, s, hyper):
    return np.asarray(_apply(case)(y, np.float64(s), *hyper))


# (a) The definition: prox_{s g}(y) minimises 0.5 ||x - y||^2 + s g(x).


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("seed", range(3))
def test_matches_cvxpy(case, seed):
    rng = np.random.default_rng(seed)
    shape = case.shape(7)
    y = 1.5 * rng.standard_normal(shape)
    s = float(rng.uniform(0.3, 2.0))
    hyper = _hyper(case, seed, shape)
    x = cp.Variable(shape)
    g, constraints = case.cvxpy_g(x, *hyper)
    problem = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(x - y) + s * g), constraints)
    problem.solve(solver=cp.CLARABEL, tol_gap_abs=1e-11, tol_gap_rel=1e-11)
    assert problem.status == cp.OPTIMAL
    np.testing.assert_allclose(_prox_np(case, y, s, hyper), x.value, atol=2e-6)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("n", SIZES)
@SETTINGS
@given(data=st.data(), s=STEPSIZES, seed=SEEDS)
def test_objective_is_minimal(case, n, data, s, seed):
    shape = case.shape(n)
    y = data.draw(_points(shape))
    hyper = _hyper(case, seed, shape)
    p = _prox_np(case, y, s, hyper)

    def objective(x):
        return 0.5 * np.sum((x - y) ** 2) + s * case.g(x, *hyper)

    best = objective(p)
    assert np.isfinite(best)
    # Points of the segments from p to random points of the domain of g (convex,
    # so they are in it): near p they probe the optimality condition, far from it
    # the global minimality.
    rng = np.random.default_rng(seed)
    for _ in range(10):
        other = case.domain(rng, shape, *hyper)
        for step in (1e-4, 1e-2, 0.3, 1.0):
            candidate = objective(p + step * (other - p))
            assert np.isfinite(candidate)
            assert best <= candidate + 1e-12 * (1 + abs(best))


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("n", SIZES)
@SETTINGS
@given(data=st.data(), seed=SEEDS)
def test_value(case, n, data, seed):
    shape = case.shape(n)
    x = data.draw(_points(shape))
    hyper = _hyper(case, seed, shape)
    value = _value(case)(x, *hyper)
    assert value.shape == () and value.dtype == jnp.float64
    np.testing.assert_allclose(value, case.g(x, *hyper), rtol=1e-12, atol=1e-12)
    p = _prox_np(case, x, 1.0, hyper)
    np.testing.assert_allclose(_value(case)(p, *hyper), case.g(p, *hyper), rtol=1e-12)


# (b) Moreau decomposition: y = prox_{s g}(y) + s prox_{g*/s}(y/s).


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("n", SIZES)
@SETTINGS
@given(data=st.data(), s=STEPSIZES, seed=SEEDS)
def test_moreau_decomposition(case, n, data, s, seed):
    shape = case.shape(n)
    y = data.draw(_points(shape))
    hyper = _hyper(case, seed, shape)
    p = _prox_np(case, y, s, hyper)
    q = case.conjugate_prox(y / s, 1 / s, *hyper)
    np.testing.assert_allclose(p + s * q, y, rtol=1e-12, atol=1e-12)


def test_moreau_between_library_proxes():
    # Conjugate pairs within the library: a norm of strength lam and the indicator
    # of the dual-norm ball of radius lam.
    y = jnp.linspace(-2.0, 2.5, 7)
    s, lam = 0.7, 0.9
    pairs = (
        (ix.prox.L1(lam), ix.projection.LInfBall(lam)),
        (ix.prox.L1(lam), _Box(jnp.full(7, -lam), jnp.full(7, lam))),
        (ix.prox.L2Norm(lam), ix.projection.L2Ball(lam)),
        (ix.prox.L2Norm(lam), _L2Ball(jnp.array(lam))),
        (ix.prox.LInfNorm(lam), ix.projection.L1Ball(lam)),
    )

    @jax.jit
    def decompose(pairs):
        return [
            (prox(y, s), s * ix.prox.FromProjection(projection)(y / s, 1 / s))
            for prox, projection in pairs
        ]

    for p, q in decompose(pairs):
        np.testing.assert_allclose(p + q, y, rtol=1e-14)
        assert not np.allclose(p, 0) and not np.allclose(q, 0)


# (c) Firm non-expansiveness: ||p1 - p2||^2 <= <p1 - p2, y1 - y2>.


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("n", SIZES)
@SETTINGS
@given(data=st.data(), s=STEPSIZES, seed=SEEDS)
def test_firmly_nonexpansive(case, n, data, s, seed):
    shape = case.shape(n)
    y1, y2 = data.draw(_points(shape, count=2))
    hyper = _hyper(case, seed, shape)
    p1, p2 = _prox_np(case, y1, s, hyper), _prox_np(case, y2, s, hyper)
    lhs = np.sum((p1 - p2) ** 2)
    rhs = np.sum((p1 - p2) * (y1 - y2))
    assert lhs <= rhs + 1e-12 * (1 + np.sum((y1 - y2) ** 2))


# (d) Derivatives in y, the step size and every hyperparameter.


@functools.cache
def _jacobians(case: Case):
    """`(y, s, *hyper) -> (jacfwd, jacrev)` of `(y, s, *hyper) -> prox_{s g}(y)` in
    every argument, in one compiled function."""
    num_args = 2 + len(case.sample(np.random.default_rng(0), (4,)))
    fn = lambda y, s, *hyper: case.make(*hyper)(y, s)
    argnums = tuple(range(num_args))
    jacfwd = jax.jacfwd(fn, argnums=argnums)
    jacrev = jax.jacrev(fn, argnums=argnums)
    return jax.jit(lambda *args: (jacfwd(*args), jacrev(*args)))


def _finite_differences(case, args, eps=1e-6):
    """Central differences with respect to each argument in turn, through the jitted
    prox (compiled once for the shapes, reused by the property tests)."""
    apply = _apply(case)
    args = [jnp.asarray(a, dtype=jnp.float64) for a in args]

    def along(i):
        return lambda a: apply(*args[:i], a, *args[i + 1 :])

    return [
        finite_difference_jacobian(along(i), arg, eps=eps) for i, arg in enumerate(args)
    ]


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@SETTINGS
@given(s=STEPSIZES, seed=SEEDS)
def test_jacobians(case, s, seed):
    shape = case.shape(ONE_SIZE)
    rng = np.random.default_rng(seed)
    y = 1.5 * rng.standard_normal(shape)
    hyper = _hyper(case, seed + 1, shape)
    assume(case.kink_distance(y, s, *hyper) > 1e-3)
    args = (jnp.asarray(y), jnp.asarray(np.float64(s)), *map(jnp.asarray, hyper))
    forward, reverse = _jacobians(case)(*args)
    expected = _finite_differences(case, args)
    assert len(forward) == len(reverse) == len(expected) == len(args)
    for f, r, e in zip(forward, reverse, expected, strict=True):
        np.testing.assert_allclose(f, r, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(f, e, rtol=1e-6, atol=1e-7)


def _value_gradient(case, y, s, *hyper):
    return jax.grad(lambda y: case.make(*hyper).value(y))(y)


def _hessian(case, y, s, *hyper):
    squared = lambda y: jnp.sum(case.make(*hyper)(y, s) ** 2)
    return jax.hessian(squared)(y)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_derivatives_at_zero_are_finite(case):
    shape = case.shape(ONE_SIZE)
    hyper = tuple(map(jnp.asarray, _hyper(case, 0, shape)))
    args = (jnp.zeros(shape), jnp.asarray(np.float64(0.8)), *hyper)
    for jacobians in _jacobians(case)(*args):
        for jacobian in jacobians:
            assert np.all(np.isfinite(jacobian))
    value_gradient = jax.jit(functools.partial(_value_gradient, case))(*args)
    assert np.all(np.isfinite(value_gradient))


@pytest.mark.parametrize("case", NORM_CASES, ids=lambda c: c.name)
def test_norm_proxes_at_zero(case):
    # y = 0 lies strictly inside the region that the prox sends to zero: every
    # derivative vanishes there (a safe norm, not a NaN or a spurious identity).
    shape = case.shape(ONE_SIZE)
    hyper = tuple(map(jnp.asarray, _hyper(case, 0, shape)))
    args = (jnp.zeros(shape), jnp.asarray(np.float64(0.8)), *hyper)
    for jacobians in _jacobians(case)(*args):
        for jacobian in jacobians:
            np.testing.assert_array_equal(jacobian, 0)
    # Second order too (as `jax.hessian` through an argmin layer needs).
    hessian = jax.jit(functools.partial(_hessian, case))(*args)
    assert hessian.shape == 2 * shape
    np.testing.assert_array_equal(hessian, 0)
    # With a zero threshold the prox is the identity, also at zero.
    zero_threshold = (args[0], jnp.asarray(np.float64(0.0)), *hyper)
    jacobian = _jacobians(case)(*zero_threshold)[0][0].reshape(
        args[0].size, args[0].size
    )
    np.testing.assert_array_equal(jacobian, np.eye(args[0].size))


def test_gradient_reaches_module_fields():
    y = jnp.array([-2.0, 0.1, 1.5, 3.0])
    # Learnable hyperparameters are passed as arrays (Python numbers stay fixed).
    prox = ix.prox.ElasticNet(jnp.asarray(0.5), jnp.asarray(1.0))
    grads = eqx.filter_grad(lambda p: jnp.sum(p(y, 2.0)))(prox)
    # d/dl1 sum_i sign(y_i)(|y_i| - 2 l1)/(1 + 2 l2) over the support {-2, 1.5, 3}.
    np.testing.assert_allclose(grads.l1, -2 * (-1 + 1 + 1) / 3, rtol=1e-14)
    expected_l2 = -2 * np.sum([-1.0, 0.5, 2.0]) / 9
    np.testing.assert_allclose(grads.l2, expected_l2, rtol=1e-14)


# (e) vmap over a batch of points and hyperparameters.


@functools.cache
def _batched(case: Case):
    return jax.jit(jax.vmap(lambda y, s, *hyper: case.make(*hyper)(y, s)))


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@SETTINGS
@given(data=st.data(), seed=SEEDS)
def test_vmap(case, data, seed):
    shape = case.shape(ONE_SIZE)
    ys = data.draw(_points(shape, count=3))
    ss = np.random.default_rng(seed).uniform(0.1, 3.0, size=3)
    hypers = [_hyper(case, seed + i, shape) for i in range(3)]
    stacked = tuple(np.stack(h) for h in zip(*hypers, strict=True))
    batched = _batched(case)(ys, ss, *stacked)
    assert batched.shape == (3, *shape)
    for i in range(3):
        np.testing.assert_allclose(
            batched[i], _prox_np(case, ys[i], ss[i], hypers[i]), rtol=1e-14, atol=1e-14
        )


# (f) float32.


def _everything(case, y, s, *hyper):
    """The prox, its value and its Jacobians in `y` (to be jitted as one)."""
    prox = case.make(*hyper)
    out = prox(y, s)
    return out, prox.value(out), jax.jacfwd(prox)(y, s), jax.jacrev(prox)(y, s)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("strong", [False, True], ids=["weak", "strong-float64"])
def test_float32(case, strong):
    if strong and case.name.startswith("FromProjection"):
        pytest.skip("the dtype policy of a projection is the projection's own")
    shape = case.shape(ONE_SIZE)
    y64 = 1.5 * np.random.default_rng(3).standard_normal(shape)
    hyper64 = _hyper(case, 3, shape)
    # The float64 reference reuses functions compiled for the tests above.
    args64 = (
        jnp.asarray(y64),
        jnp.asarray(np.float64(0.7)),
        *map(jnp.asarray, hyper64),
    )
    out64 = _apply(case)(*args64)
    forward64, reverse64 = _jacobians(case)(*args64)
    expected = (out64, _value(case)(out64, *hyper64), forward64[0], reverse64[0])
    y = jnp.asarray(y64, dtype=jnp.float32)
    if strong:
        # float64 hyperparameters and step size are cast to the dtype of the point.
        hyper, s = tuple(jnp.asarray(h) for h in hyper64), jnp.asarray(np.float64(0.7))
        assert s.dtype == jnp.float64 and not s.weak_type
        results = jax.jit(functools.partial(_everything, case))(y, s, *hyper)[:2]
    else:
        # Python floats stay weakly typed; array hyperparameters are float32.
        hyper = tuple(
            float(h) if h.ndim == 0 else jnp.asarray(h, jnp.float32) for h in hyper64
        )
        results = jax.jit(lambda y: _everything(case, y, 0.7, *hyper))(y)
    # (The strong case checks the prox and its value, the weak one also Jacobians.)
    for result, reference in zip(results, expected[: len(results)], strict=True):
        assert result.dtype == jnp.float32
        assert result.shape == reference.shape
        np.testing.assert_allclose(result, reference, rtol=1e-5, atol=1e-5)


# Details.


def test_from_projection_value_tolerance():
    prox = ix.prox.FromProjection(_Box(jnp.zeros(3), jnp.ones(3)))
    assert prox.value(jnp.array([0.0, 0.5, 1.0])) == 0
    # The default tolerance is sqrt(eps): about 1.5e-8 in float64, 3.5e-4 in float32.
    assert prox.value(jnp.array([0.0, 0.5, 1.0 + 1e-8])) == 0
    assert prox.value(jnp.array([0.0, 0.5, 1.0 + 3e-8])) == np.inf
    prox32 = ix.prox.FromProjection(
        _Box(jnp.zeros(3, "float32"), jnp.ones(3, "float32"))
    )
    assert prox32.value(jnp.array([0.0, 0.5, 1.0 + 2e-4], jnp.float32)) == 0
    assert prox32.value(jnp.array([0.0, 0.5, 1.0 + 6e-4], jnp.float32)) == np.inf
    loose = ix.prox.FromProjection(_Box(jnp.zeros(3), jnp.ones(3)), tol=1e-2)
    assert loose.value(jnp.array([0.0, 0.5, 1.005])) == 0
    assert loose.value(jnp.array([0.0, 0.5, 1.02])) == np.inf
    # The prox is the projection whatever the step size.
    y = jnp.array([-1.0, 0.5, 2.0])
    np.testing.assert_array_equal(prox(y, 5.0), jnp.array([0.0, 0.5, 1.0]))


def test_group_lasso_groups_are_rows():
    y = jnp.array([[3.0, 4.0], [0.3, 0.4], [6.0, 8.0]])
    out = ix.prox.GroupLasso(jnp.array([1.0, 1.0, 20.0]))(y, 0.5)
    np.testing.assert_allclose(out, [[2.7, 3.6], [0.0, 0.0], [0.0, 0.0]], rtol=1e-14)
    # A vector is one group: the same as L2Norm.
    v = jnp.array([3.0, 0.0, -4.0])
    np.testing.assert_allclose(ix.prox.GroupLasso(2.0)(v), ix.prox.L2Norm(2.0)(v))
    np.testing.assert_allclose(ix.prox.L2Norm(2.0)(v), 0.6 * v, rtol=1e-14)
    # Zero padding leaves a group's result unchanged.
    padded = ix.prox.GroupLasso(2.0)(jnp.array([3.0, 0.0, -4.0, 0.0, 0.0]))
    np.testing.assert_allclose(padded, jnp.array([1.8, 0.0, -2.4, 0.0, 0.0]))


def test_shapes_are_checked():
    for cls in (ix.prox.L2Norm, ix.prox.LInfNorm):
        with pytest.raises(ValueError, match="scalar"):
            cls(jnp.ones(3))
    # The annotations are checked (jaxtyping + beartype): a group is at least a vector.
    with pytest.raises(jaxtyping.TypeCheckError, match="parameter 'y'"):
        ix.prox.GroupLasso(1.0)(jnp.array(1.0))


def test_arrays_of_any_shape():
    Y = jnp.arange(-6.0, 6.0).reshape(3, 4) / 2
    weights = jnp.array([0.1, 0.5, 1.0, 2.0])
    # Per-coordinate strengths broadcast against the point.
    l1 = ix.prox.L1(weights)
    with pytest.raises(ValueError, match="Incompatible types for broadcasting"):
        ix.prox.L1(jnp.ones(3))(Y)
    norms = (ix.prox.L2Norm(2.0), ix.prox.LInfNorm(2.0))

    @jax.jit
    def results(l1, norms):
        rows = (jax.vmap(lambda y: l1(y, 0.5))(Y), jnp.sum(jax.vmap(l1.value)(Y)))
        whole = [
            (p(Y, 0.5), p(Y.ravel(), 0.5), p.value(Y), p.value(Y.ravel()))
            for p in norms
        ]
        return (l1(Y, 0.5), l1.value(Y)), rows, whole

    matrix, rows, whole = results(l1, norms)
    np.testing.assert_allclose(matrix[0], rows[0], rtol=1e-14)
    np.testing.assert_allclose(matrix[1], rows[1], rtol=1e-14)
    # The norms take every entry of the array.
    for out, flat, value, flat_value in whole:
        assert not np.allclose(flat, 0) and not np.allclose(flat, Y.ravel())
        np.testing.assert_allclose(out, flat.reshape(3, 4), rtol=1e-14)
        np.testing.assert_allclose(value, flat_value, rtol=1e-14)
