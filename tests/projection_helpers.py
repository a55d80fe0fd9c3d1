"""The Euclidean projections under test, as a table of `Case`s, with references
written independently of the library: CVXPY (Clarabel) for the convex sets, brute
force over the pieces of the set for the non-convex ones, and NumPy bisection for the
thresholds that locate the kinks (where a projection is not differentiable).

A case builds its projection from a `Source` of numbers, so that the same code makes
Hypothesis instances (which include ties, zeros and bounds hit exactly) and generic
random instances (for derivatives, away from kinks).
"""

import dataclasses
import itertools
from collections.abc import Callable
from typing import Any

import cvxpy as cp
import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import jax.numpy as jnp
import numpy as np

import implicitx as ix


P = ix.projection


class HypothesisSource:
    """Numbers drawn by Hypothesis (`draw` from `st.data()` or `st.composite`)."""

    def __init__(self, draw):
        self.draw = draw

    def scalar(self, lo: float, hi: float) -> float:
        return self.draw(st.floats(lo, hi, allow_subnormal=False))

    def array(self, shape, lo: float, hi: float) -> np.ndarray:
        elements = st.floats(lo, hi, allow_subnormal=False)
        return self.draw(hnp.arrays(np.float64, shape, elements=elements))


class RandomSource:
    """Generic numbers: uniform draws from a NumPy generator (no ties, almost surely
    no kinks)."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)

    def scalar(self, lo: float, hi: float) -> float:
        return float(self.rng.uniform(lo, hi))

    def array(self, shape, lo: float, hi: float) -> np.ndarray:
        return self.rng.uniform(lo, hi, shape)


# ---------------------------------------------------------------------------------
# Independent NumPy references.


def np_simplex(v: np.ndarray, scale: float) -> tuple[np.ndarray, float]:
    """Projection onto `{x >= 0, sum(x) = scale}` by bisection on the threshold
    (not by sorting, as the library does). Returns `(x, tau)`."""
    lo, hi = np.min(v) - scale, np.max(v)
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if np.sum(np.maximum(v - mid, 0)) > scale:
            lo = mid
        else:
            hi = mid
    tau = 0.5 * (lo + hi)
    return np.maximum(v - tau, 0), tau


def np_box_section_multiplier(y, lower, upper, a, b) -> float:
    """The multiplier `tau` of `a . clip(y - tau a, lower, upper) = b` by plain
    bisection."""
    g = lambda tau: a @ np.clip(y - tau * a, lower, upper) - b
    lo, hi = -1.0, 1.0
    for _ in range(1100):  # a non-empty set has g(-inf) >= 0 >= g(inf)
        if g(lo) >= 0 and g(hi) <= 0:
            break
        lo, hi = 2 * lo, 2 * hi
    else:
        raise ValueError("empty set")
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if g(mid) > 0:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def cvxpy_projection(y: np.ndarray, constraints: Callable[[Any], list]) -> np.ndarray:
    """The minimiser of `||x - y||^2` over the constraints, by CVXPY + Clarabel.

    An interior-point solution is accurate to the tolerance in the objective, but
    only to about its square root in `x` on degenerate instances (a coordinate of `y`
    exactly on a bound: no strict complementarity); compare accordingly."""
    x = cp.Variable(y.shape[0])
    problem = cp.Problem(cp.Minimize(cp.sum_squares(x - y)), constraints(x))
    problem.solve(
        solver=cp.CLARABEL, tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10
    )
    assert problem.status == cp.OPTIMAL, problem.status
    return np.asarray(x.value)


def _f(x) -> float:
    return float(np.asarray(x))


def _a(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


# ---------------------------------------------------------------------------------
# Constructors. Each takes a source and the dimension `n`.


def _positive_normal(source, n):
    # A vector with ||a|| >= 0.5: the first entry is bounded away from zero.
    a = source.array((n,), -2.0, 2.0)
    a[0] = 0.5 + abs(a[0])
    return a


def make_box(source, n):
    lower = source.array((n,), -2.0, 1.0)
    upper = lower + source.array((n,), 0.0, 2.0)
    return P.Box(jnp.asarray(lower), jnp.asarray(upper))


def make_sparse_simplex(source, n):
    return P.SparseSimplex(k=2, scale=source.scalar(0.1, 3.0))


def make_affine(source, n):
    # Full row rank: the first two rows of the identity plus a small perturbation
    # (singular values >= 1 - 0.1 * ||M||_2 >= 0.6 for n <= 6).
    A = np.eye(2, n) + 0.1 * source.array((2, n), -1.0, 1.0)
    b = source.array((2,), -2.0, 2.0)
    return P.AffineSet(jnp.asarray(A), jnp.asarray(b))


def make_box_section(source, n):
    lower = source.array((n,), -2.0, 1.0)
    upper = lower + source.array((n,), 0.0, 2.0)
    # |a_i| >= 0.1: with coefficients near 0 the equality is satisfied to the
    # reference solver's feasibility tolerance by points far from the projection, so
    # the interior-point reference is no longer a reference.
    magnitude = source.array((n,), 0.1, 2.0)
    a = np.where(source.array((n,), -1.0, 1.0) < 0, -magnitude, magnitude)
    # b = a . x0 for a point x0 of the box: the set is non-empty.
    x0 = lower + source.array((n,), 0.0, 1.0) * (upper - lower)
    b = float(a @ x0)
    return P.BoxSection(jnp.asarray(lower), jnp.asarray(upper), jnp.asarray(a), b)


# ---------------------------------------------------------------------------------
# References: `reference(projection, y) -> x` for convex sets (the unique closest
# point), `closest_distance(projection, y) -> float` for non-convex ones.


def _constraints(projection) -> Callable[[Any], list]:
    p = projection
    if isinstance(p, P.NonNegative):
        return lambda x: [x >= 0]
    if isinstance(p, P.Box):
        return lambda x: [x >= _a(p.lower), x <= _a(p.upper)]
    if isinstance(p, P.Hypercube):
        return lambda x: [x >= 0, x <= 1]
    if isinstance(p, P.Simplex):
        return lambda x: [x >= 0, cp.sum(x) == _f(p.scale)]
    if isinstance(p, P.L1Ball):
        return lambda x: [cp.norm1(x) <= _f(p.radius)]
    if isinstance(p, P.L2Ball):
        return lambda x: [cp.norm2(x) <= _f(p.radius)]
    if isinstance(p, P.LInfBall):
        return lambda x: [cp.norm_inf(x) <= _f(p.radius)]
    if isinstance(p, P.Hyperplane):
        return lambda x: [_a(p.a) @ x == _f(p.b)]
    if isinstance(p, P.Halfspace):
        return lambda x: [_a(p.a) @ x <= _f(p.b)]
    if isinstance(p, P.AffineSet):
        return lambda x: [_a(p.A) @ x == _a(p.b)]
    if isinstance(p, P.BoxSection):
        lower, upper = _a(p.lower), _a(p.upper)

        # The same set with the equality scaled by max|a|: Clarabel fails on
        # coefficients near the underflow threshold (Hypothesis draws a ~ 1e-274).
        a_max = float(np.max(np.abs(_a(p.a)))) or 1.0

        def _box_section(x):
            out = [(_a(p.a) / a_max) @ x == _f(p.b) / a_max]
            if np.any(np.isfinite(lower)):
                out.append(x[np.isfinite(lower)] >= lower[np.isfinite(lower)])
            if np.any(np.isfinite(upper)):
                out.append(x[np.isfinite(upper)] <= upper[np.isfinite(upper)])
            return out

        return _box_section
    raise TypeError(type(p))


def convex_reference(projection, y: np.ndarray) -> np.ndarray:
    return cvxpy_projection(y, _constraints(projection))


def closest_distance(projection, y: np.ndarray) -> float:
    """The distance from `y` to the (non-convex) set, by brute force over its convex
    pieces (the faces in each orthant, or the supports of size k), each projected
    with the NumPy bisection `np_simplex`."""
    p = projection
    n = y.shape[0]
    if isinstance(p, P.L1Sphere):
        # In the orthant of signs s, the sphere is the face {s x >= 0, sum(s x) = r}.
        best = np.inf
        for signs in itertools.product((-1.0, 1.0), repeat=n):
            s = np.asarray(signs)
            x = s * np_simplex(s * y, _f(p.radius))[0]
            best = min(best, float(np.linalg.norm(x - y)))
        return best
    if isinstance(p, P.SparseSimplex):
        best = np.inf
        for support in itertools.combinations(range(n), min(p.k, n)):
            idx = list(support)
            x = np.zeros(n)
            x[idx] = np_simplex(y[idx], _f(p.scale))[0]
            best = min(best, float(np.linalg.norm(x - y)))
        return best
    if isinstance(p, P.L2Sphere):
        return abs(float(np.linalg.norm(y)) - _f(p.radius))
    raise TypeError(type(p))


# ---------------------------------------------------------------------------------
# Distance from (projection, y) to the nearest kink, where the projection is not
# differentiable in y or in its hyperparameters; finite differences are compared
# with derivatives only when it is large.


def kink_margin(projection, y: np.ndarray) -> float:
    p = projection
    if isinstance(p, P.NonNegative):
        return float(np.min(np.abs(y)))
    if isinstance(p, P.Box):
        return float(np.min(np.abs(np.stack([y - _a(p.lower), y - _a(p.upper)]))))
    if isinstance(p, P.Hypercube):
        return float(np.min(np.abs(np.stack([y, y - 1]))))
    if isinstance(p, P.LInfBall):
        return float(np.min(np.abs(np.abs(y) - _f(p.radius))))
    if isinstance(p, P.Simplex):
        _, tau = np_simplex(y, _f(p.scale))
        return float(np.min(np.abs(y - tau)))
    if isinstance(p, P.SparseSimplex):
        ordered = np.sort(y)[::-1]
        k = min(p.k, y.shape[0])
        top = ordered[:k]
        _, tau = np_simplex(top, _f(p.scale))
        margin = float(np.min(np.abs(top - tau)))
        if k < y.shape[0]:
            margin = min(margin, float(ordered[k - 1] - ordered[k]))
        return margin
    if isinstance(p, P.L1Ball | P.L1Sphere):
        radius = _f(p.radius)
        margin = float(np.min(np.abs(y)))
        _, tau = np_simplex(np.abs(y), radius)
        margin = min(margin, float(np.min(np.abs(np.abs(y) - tau))))
        if isinstance(p, P.L1Ball):
            margin = min(margin, abs(float(np.sum(np.abs(y))) - radius))
        return margin
    if isinstance(p, P.L2Ball):
        return abs(float(np.linalg.norm(y)) - _f(p.radius))
    if isinstance(p, P.L2Sphere):
        return float(np.linalg.norm(y))
    if isinstance(p, P.Halfspace):
        a = _a(p.a)
        return abs(float(a @ y) - _f(p.b)) / float(np.linalg.norm(a))
    if isinstance(p, P.Hyperplane | P.AffineSet):
        return np.inf
    if isinstance(p, P.BoxSection):
        lower, upper, a, b = _a(p.lower), _a(p.upper), _a(p.a), _f(p.b)
        tau = np_box_section_multiplier(y, lower, upper, a, b)
        z = y - tau * a
        free = (z > lower) & (z < upper)
        if not np.any(free & (np.abs(a) > 0.1)):
            return 0.0  # a vertex: not differentiable in the hyperparameters
        return float(np.min(np.abs(np.stack([z - lower, z - upper]))))
    raise TypeError(type(p))


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[Any, int], ix.projection.AbstractProjection]
    convex: bool = True

    def __repr__(self):
        return self.name


CASES = [
    Case("NonNegative", lambda s, n: P.NonNegative()),
    Case("Box", make_box),
    Case("Hypercube", lambda s, n: P.Hypercube()),
    Case("Simplex", lambda s, n: P.Simplex(s.scalar(0.1, 3.0))),
    Case("SparseSimplex", make_sparse_simplex, convex=False),
    Case("L1Ball", lambda s, n: P.L1Ball(s.scalar(0.1, 3.0))),
    Case("L1Sphere", lambda s, n: P.L1Sphere(s.scalar(0.1, 3.0)), convex=False),
    Case("L2Ball", lambda s, n: P.L2Ball(s.scalar(0.1, 3.0))),
    Case("L2Sphere", lambda s, n: P.L2Sphere(s.scalar(0.1, 3.0)), convex=False),
    Case("LInfBall", lambda s, n: P.LInfBall(s.scalar(0.1, 3.0))),
    Case(
        "Hyperplane",
        lambda s, n: P.Hyperplane(jnp.asarray(_positive_normal(s, n)), s.scalar(-2, 2)),
    ),
    Case(
        "Halfspace",
        lambda s, n: P.Halfspace(jnp.asarray(_positive_normal(s, n)), s.scalar(-2, 2)),
    ),
    Case("AffineSet", make_affine),
    Case("BoxSection", make_box_section),
]
CONVEX_CASES = [c for c in CASES if c.convex]
NONCONVEX_CASES = [c for c in CASES if not c.convex]
