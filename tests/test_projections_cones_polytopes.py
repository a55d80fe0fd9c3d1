"""Projections onto cones (second-order, PSD, exponential), polyhedra and
transportation polytopes (Euclidean and KL).

Every projection is checked against its defining properties (hypothesis), against
CVXPY references, for derivatives against central finite differences in forward and
reverse mode (also with respect to hyperparameters), under `vmap`, and the cones also
in float32. Shapes are fixed and all functions are jitted once per projection type, so
that hypothesis examples do not recompile.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
import pytest
from hypothesis import given, HealthCheck, settings, strategies as st
from hypothesis.extra import numpy as hnp

import implicitx as ix
from implicitx.projection import (
    BirkhoffPolytope,
    ExponentialCone,
    KLBirkhoffPolytope,
    KLTransportPolytope,
    Polyhedron,
    PSDCone,
    SecondOrderCone,
    TransportPolytope,
)

from .helpers import (
    assert_tree_allclose,
    finite_difference_jvp,
    raises_runtime,
    random_like,
    tree_dot,
)


cp = pytest.importorskip("cvxpy")

SETTINGS = settings(
    max_examples=20,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)


def _points(shape, scale=3.0):
    return hnp.arrays(
        np.float64,
        shape,
        elements=st.floats(-scale, scale, allow_nan=False, allow_infinity=False),
    ).map(jnp.asarray)


# One jitted function each, shared by all projections: the projection is an argument,
# so a new instance of the same type and shapes does not recompile.


@eqx.filter_jit
def _project(projection, y):
    return projection(y)


@eqx.filter_jit
def _batch(projection, ys):
    """`vmap` of the projection and of the violations of its inputs and outputs. Used
    with batches of 3 throughout, so that it compiles once per projection."""
    out = jax.vmap(projection)(ys)
    violation = jax.vmap(projection.violation)
    return out, violation(ys), violation(out)


@eqx.filter_jit
def _jvp_vjp(projection, y, t_projection, t_y, cotangent):
    """Forward and reverse mode of `(projection, y) -> projection(y)`: the JVP along
    `(t_projection, t_y)`, and the VJP of `cotangent` paired with the same tangent.
    (Linearised once and transposed, so the program holds a single forward solve.)"""
    _, jvp_fn = jax.linearize(lambda p, x: p(x), projection, y)
    jvp = jvp_fn(t_projection, t_y)
    ct_projection, ct_y = jax.linear_transpose(jvp_fn, projection, y)(cotangent)
    paired = tree_dot(ct_projection, t_projection) + jnp.vdot(ct_y, t_y)
    return jvp, paired


def _check_properties(projection, y1, y2, z, tol):
    """Feasibility, idempotence, non-expansiveness and the variational inequality
    `<y - P(y), z - P(y)> <= 0` for a feasible `z`."""
    (p1, p2, pz), (_, _, z_violation), violations = _batch(
        projection, jnp.stack([y1, y2, z])
    )
    assert float(z_violation) <= tol  # the sampled `z` is feasible...
    np.testing.assert_allclose(pz, z, atol=tol)  # ...so it is its own projection
    assert float(jnp.max(violations)) <= tol
    again, _, _ = _batch(projection, jnp.stack([p1, p2, z]))
    np.testing.assert_allclose(again[0], p1, atol=tol)
    np.testing.assert_allclose(again[1], p2, atol=tol)
    assert jnp.linalg.norm(p1 - p2) <= jnp.linalg.norm(y1 - y2) + tol
    assert float(jnp.vdot(y1 - p1, z - p1)) <= tol * (1 + jnp.linalg.norm(y1 - z))


def _zero_tangent(projection):
    return jtu.tree_map(jnp.zeros_like, projection)


def _check_derivatives(projection, y, key, *, t_projection=None, eps=1e-6, tol=1e-6):
    """JVP and VJP of `(projection, y) -> P(y)` against a central finite difference
    along a random tangent (of `y` and of the hyperparameters)."""
    k1, k2 = jax.random.split(key)
    t_y = random_like(k1, y)
    if t_projection is None:
        t_projection = _zero_tangent(projection)
    cotangent = random_like(k2, y)
    jvp, paired = _jvp_vjp(projection, y, t_projection, t_y, cotangent)
    fd = finite_difference_jvp(
        lambda args: _project(*args), (projection, y), (t_projection, t_y), eps=eps
    )
    scale = 1 + float(jnp.max(jnp.abs(fd)))
    np.testing.assert_allclose(jvp, fd, atol=tol * scale, rtol=0)
    np.testing.assert_allclose(paired, jnp.vdot(cotangent, fd), atol=tol * scale)
    # The check must be able to fail: the derivative is not trivially zero.
    assert float(jnp.max(jnp.abs(fd))) > 1e-3


def _check_vmap(projection, ys, tol=1e-10):
    assert ys.shape[0] == 3
    batched, _, _ = _batch(projection, ys)
    looped = jnp.stack([_project(projection, y) for y in ys])
    np.testing.assert_allclose(batched, looped, atol=tol, rtol=0)


def _clarabel(problem):
    problem.solve(
        solver="CLARABEL",
        max_iter=500,
        tol_gap_abs=1e-10,
        tol_gap_rel=1e-10,
        tol_feas=1e-10,
        tol_ktratio=1e-8,
    )
    assert problem.status == "optimal"


# --------------------------------------------------------------------------------------
# Second-order cone
# --------------------------------------------------------------------------------------


def _soc_feasible(u):
    """A point of the cone from any vector: `(||x|| + |t|, x)`."""
    return u.at[0].set(jnp.linalg.norm(u[1:]) + jnp.abs(u[0]))


@SETTINGS
@given(_points((4,)), _points((4,)), _points((4,)))
def test_second_order_cone_properties(y1, y2, u):
    _check_properties(
        SecondOrderCone(), jnp.asarray(y1), jnp.asarray(y2), _soc_feasible(u), 1e-12
    )


@pytest.mark.parametrize("seed", range(3))
def test_second_order_cone_against_cvxpy(seed):
    rng = np.random.default_rng(seed)
    cone = SecondOrderCone()
    # One point in each case: inside, in the polar cone, projected onto the boundary.
    for y in (
        rng.standard_normal(4) + [5, 0, 0, 0],
        [-5, 0.3, -0.2, 1],
        rng.normal(size=4) * 3,
    ):
        y = np.asarray(y, float)
        x = cp.Variable(4)
        _clarabel(cp.Problem(cp.Minimize(cp.sum_squares(x - y)), [cp.SOC(x[0], x[1:])]))
        np.testing.assert_allclose(_project(cone, jnp.asarray(y)), x.value, atol=1e-6)


def test_second_order_cone_derivatives_and_vmap():
    y = jnp.array([0.3, 1.0, -2.0, 0.5])  # projected onto the boundary
    _check_derivatives(SecondOrderCone(), y, jax.random.key(0))
    ys = jax.random.normal(jax.random.key(1), (3, 4)) * 2
    _check_vmap(SecondOrderCone(), ys)


# --------------------------------------------------------------------------------------
# PSD cone
# --------------------------------------------------------------------------------------


@SETTINGS
@given(_points((3, 3)), _points((3, 3)), _points((3, 3)))
def test_psd_cone_properties(y1, y2, u):
    z = jnp.asarray(u @ u.T)
    _check_properties(PSDCone(), jnp.asarray(y1), jnp.asarray(y2), z, 1e-10)


@pytest.mark.parametrize("seed", range(3))
def test_psd_cone_against_cvxpy(seed):
    y = np.random.default_rng(seed).standard_normal((4, 4))  # not symmetric
    x = cp.Variable((4, 4), symmetric=True)
    _clarabel(cp.Problem(cp.Minimize(cp.sum_squares(x - y)), [x >> 0]))
    np.testing.assert_allclose(_project(PSDCone(), jnp.asarray(y)), x.value, atol=1e-6)


def _rotated(eigenvalues, seed):
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((4, 4)))
    return jnp.asarray(q @ np.diag(eigenvalues) @ q.T)


@pytest.mark.parametrize(
    "eigenvalues",
    [
        (2.0, 0.7, -0.4, -1.5),
        # Repeated eigenvalues, of both signs: autodiff of `eigh` would give NaN here.
        (1.5, 1.5, -1.0, -1.0),
    ],
)
def test_psd_cone_derivatives(eigenvalues):
    # A non-symmetric input whose symmetric part has exactly these eigenvalues.
    noise = 0.3 * jax.random.normal(jax.random.key(2), (4, 4))
    y = _rotated(eigenvalues, 0) + noise - noise.T
    _check_derivatives(PSDCone(), y, jax.random.key(3))


def test_psd_cone_vmap():
    ys = jax.random.normal(jax.random.key(4), (3, 4, 4))
    _check_vmap(PSDCone(), ys)


# --------------------------------------------------------------------------------------
# Exponential cone
# --------------------------------------------------------------------------------------


def _exp_feasible(u):
    """A point of the cone: `s > 0`, `t >= s exp(r / s)`."""
    s = jnp.abs(u[1]) + 0.2
    r = jnp.clip(u[0], -2, 2)
    return jnp.stack([r, s, s * jnp.exp(r / s) + jnp.abs(u[2])])


@SETTINGS
@given(_points((3,)), _points((3,)), _points((3,)))
def test_exponential_cone_properties(y1, y2, u):
    _check_properties(
        ExponentialCone(), jnp.asarray(y1), jnp.asarray(y2), _exp_feasible(u), 1e-9
    )


# One point per case of the algorithm.
EXP_POINTS = {
    "inside": [0.5, 1.0, 3.0],
    "polar": [1.0, -1.0, -2.0],
    "quadrant": [-1.0, -0.5, 0.7],
    "bracket_both_ends": [1.0, 0.5, -0.3],
    "bracket_lower_end": [2.0, -1.0, 0.5],  # r > 0, s <= 0
    "bracket_upper_end": [-2.0, 1.0, -0.5],  # r <= 0, s > 0
    "steep": [5.0, 0.1, 1.0],
}


def _scs(problem):
    # Tighter than Clarabel on the exponential cone (whose interior-point solution is
    # accurate to only ~1e-5 here).
    problem.solve(solver="SCS", eps_abs=1e-12, eps_rel=1e-12, max_iters=100_000)
    assert problem.status == "optimal"


@pytest.mark.parametrize("name", sorted(EXP_POINTS))
def test_exponential_cone_against_cvxpy(name):
    cone = ExponentialCone()
    y = np.asarray(EXP_POINTS[name])
    x = cp.Variable(3)
    constraint = cp.constraints.ExpCone(x[0], x[1], x[2])
    _scs(cp.Problem(cp.Minimize(cp.sum_squares(x - y)), [constraint]))
    # The projection onto a cone is positively homogeneous: check across scales.
    for scale in (1e-3, 1.0, 1e3):
        got = _project(cone, jnp.asarray(scale * y))
        np.testing.assert_allclose(got, scale * x.value, atol=1e-7 * scale, rtol=0)


@pytest.mark.parametrize(
    "name", ["bracket_both_ends", "bracket_lower_end", "bracket_upper_end"]
)
def test_exponential_cone_derivatives(name):
    _check_derivatives(
        ExponentialCone(), jnp.asarray(EXP_POINTS[name]), jax.random.key(5)
    )


def test_exponential_cone_second_derivatives():
    # Through the implicit root (differentiating the rule again) and the closed forms.
    projection, y = ExponentialCone(), jnp.array([1.0, 0.5, -0.3])
    weights = jnp.asarray(np.random.default_rng(13).standard_normal(y.shape))
    loss = lambda x: jnp.sum(jnp.sin(weights * projection(x)))
    gradient = jax.grad(loss)
    tangent = jnp.asarray(np.random.default_rng(14).standard_normal(y.shape))
    # Forward over reverse (Hessian-vector product) against finite differences of the
    # gradient.
    hvp = jax.jit(lambda x, t: jax.jvp(gradient, (x,), (t,))[1])(y, tangent)
    fd = finite_difference_jvp(jax.jit(gradient), y, tangent)
    assert float(jnp.max(jnp.abs(fd))) > 1e-3
    np.testing.assert_allclose(hvp, fd, atol=1e-7, rtol=0)


def test_exponential_cone_vmap():
    ys = jnp.asarray([EXP_POINTS[k] for k in ("polar", "bracket_lower_end", "steep")])
    _check_vmap(ExponentialCone(), ys)


# --------------------------------------------------------------------------------------
# Cones in float32
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cone, y",
    [
        (SecondOrderCone(), [0.3, 1.0, -2.0, 0.5]),
        (PSDCone(), [[1.0, 2.0, 0.0], [0.5, -1.0, 0.3], [0.0, 0.3, 0.2]]),
        (ExponentialCone(), [1.0, 0.5, -0.3]),
    ],
    ids=["soc", "psd", "exp"],
)
def test_cones_float32(cone, y):
    y32, y64 = jnp.asarray(y, jnp.float32), jnp.asarray(y, jnp.float64)
    p32 = _project(cone, y32)
    assert p32.dtype == jnp.float32
    np.testing.assert_allclose(p32, _project(cone, y64), rtol=1e-5, atol=1e-5)
    # Forward and reverse mode in float32 against finite differences in float64.
    tangent = jnp.asarray(np.linspace(-1, 1, y32.size).reshape(y32.shape), jnp.float32)
    cotangent = jnp.ones_like(y32)
    jvp32, vjp32 = _jvp_vjp(cone, y32, cone, tangent, cotangent)
    assert jvp32.dtype == jnp.float32 and vjp32.dtype == jnp.float32
    fd64 = finite_difference_jvp(
        lambda x: _project(cone, x), y64, tangent.astype(jnp.float64)
    )
    np.testing.assert_allclose(jvp32, fd64, rtol=1e-3, atol=1e-4)
    expected = jnp.vdot(cotangent.astype(jnp.float64), fd64)
    np.testing.assert_allclose(vjp32, expected, rtol=1e-3, atol=1e-4)


# --------------------------------------------------------------------------------------
# Polyhedron
# --------------------------------------------------------------------------------------

N, P_EQ, M_INEQ = 5, 2, 6


def _polyhedron_data(seed):
    """A random polyhedron with a known strictly feasible point `x0` (slack >= 0.1
    in every inequality), and a basis of the null space of `A`."""
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((P_EQ, N))
    G = rng.standard_normal((M_INEQ, N))
    x0 = rng.standard_normal(N)
    b = A @ x0
    h = G @ x0 + rng.uniform(0.1, 1.0, M_INEQ)
    null = np.linalg.svd(A)[2][P_EQ:].T
    return A, b, G, h, x0, null


def _polyhedron_feasible(data, w):
    A, b, G, h, x0, null = data
    direction = null @ np.asarray(w)[: null.shape[1]]
    reach = np.max(np.abs(G @ direction))
    return jnp.asarray(x0 + direction * min(1.0, 0.09 / max(reach, 1e-12)))


POLYHEDRON_DATA = _polyhedron_data(0)
POLYHEDRON = Polyhedron(*map(jnp.asarray, POLYHEDRON_DATA[:4]))


@SETTINGS
@given(_points((N,)), _points((N,)), _points((N,)))
def test_polyhedron_properties(y1, y2, w):
    z = _polyhedron_feasible(POLYHEDRON_DATA, w)
    _check_properties(POLYHEDRON, jnp.asarray(y1), jnp.asarray(y2), z, 1e-8)


def _constraints(kind, data):
    A, b, G, h = data[:4]
    if kind == "equality":
        return dict(A=A, b=b)
    if kind == "inequality":
        return dict(G=G, h=h)
    return dict(A=A, b=b, G=G, h=h)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("kind", ["both", "equality", "inequality"])
def test_polyhedron_against_cvxpy(seed, kind):
    data = _polyhedron_data(seed)
    constraints = _constraints(kind, data)
    y = 2 * np.random.default_rng(100 + seed).standard_normal(N)
    x = cp.Variable(N)
    cvx_constraints = []
    if "A" in constraints:
        cvx_constraints.append(constraints["A"] @ x == constraints["b"])
    if "G" in constraints:
        cvx_constraints.append(constraints["G"] @ x <= constraints["h"])
    _clarabel(cp.Problem(cp.Minimize(cp.sum_squares(x - y)), cvx_constraints))
    projection = Polyhedron(**{k: jnp.asarray(v) for k, v in constraints.items()})
    np.testing.assert_allclose(_project(projection, jnp.asarray(y)), x.value, atol=1e-6)


def _active_set_is_nondegenerate(data, y):
    """Strict complementarity, checked on the projection: every inequality is either
    clearly active (multiplier positive) or clearly inactive."""
    A, b, G, h = data[:4]
    x = np.asarray(
        _project(Polyhedron(*map(jnp.asarray, (A, b, G, h))), jnp.asarray(y))
    )
    slack = h - G @ x
    return np.all((slack > 1e-4) | (slack < 1e-9))


@pytest.mark.parametrize("seed", range(3))
def test_polyhedron_derivatives(seed):
    data = _polyhedron_data(seed)
    y = 2 * np.random.default_rng(100 + seed).standard_normal(N)
    assert _active_set_is_nondegenerate(data, y)
    projection = Polyhedron(*map(jnp.asarray, data[:4]))
    # Every hyperparameter and the point at once.
    t_projection = random_like(jax.random.key(seed), projection)
    _check_derivatives(
        projection, jnp.asarray(y), jax.random.key(10 + seed), t_projection=t_projection
    )


def test_polyhedron_vmap():
    ys = 2 * jax.random.normal(jax.random.key(6), (3, N))
    _check_vmap(POLYHEDRON, ys, tol=1e-8)


def test_polyhedron_infeasible_raises():
    # g.x <= -1 and -g.x <= -1: the polyhedron is empty, so the dual is unbounded and
    # the solver cannot converge. (Same shapes as above: no new compilation.)
    G, h = POLYHEDRON_DATA[2].copy(), POLYHEDRON_DATA[3].copy()
    G[1] = -G[0]
    h[:2] = -1.0
    projection = Polyhedron(G=jnp.asarray(G), h=jnp.asarray(h))
    with raises_runtime("maximum number of steps"):
        jax.block_until_ready(_project(projection, jnp.zeros(N)))


def test_polyhedron_degenerate_multipliers_raise_on_differentiation():
    # The same constraint twice, active: the projection is well defined, but the
    # multipliers are not unique, so the derivative is refused rather than silently
    # wrong.
    A, b, G, h, x0, _ = POLYHEDRON_DATA
    G, h = G.copy(), h.copy()
    G[1], h[1] = G[0], h[0]
    projection = Polyhedron(*map(jnp.asarray, (A, b, G, h)))
    y = jnp.asarray(x0 + 5 * G[0])
    x = _project(projection, y)
    assert float(projection.violation(x)) <= 1e-8
    assert abs(float(G[0] @ x - h[0])) <= 1e-8  # the repeated constraint is active
    tangent = _zero_tangent(projection)
    with raises_runtime("singular"):
        jax.block_until_ready(_jvp_vjp(projection, y, tangent, y, y))


# --------------------------------------------------------------------------------------
# Transportation polytopes (Euclidean)
# --------------------------------------------------------------------------------------

ROWS, COLS = 3, 4


def _marginals(seed):
    rng = np.random.default_rng(seed)
    a = rng.uniform(0.5, 1.5, ROWS)
    b = rng.uniform(0.5, 1.5, COLS)
    return jnp.asarray(a), jnp.asarray(b * a.sum() / b.sum())


TRANSPORT = TransportPolytope(*_marginals(0))


@SETTINGS
@given(_points((ROWS, COLS)), _points((ROWS, COLS)), _points((ROWS, COLS)))
def test_transport_polytope_properties(y1, y2, scores):
    z = _project(KLTransportPolytope(TRANSPORT.a, TRANSPORT.b), jnp.asarray(scores))
    _check_properties(TRANSPORT, jnp.asarray(y1), jnp.asarray(y2), z, 1e-9)


@pytest.mark.parametrize("seed", range(3))
def test_transport_polytope_against_cvxpy(seed):
    a, b = _marginals(seed)
    y = np.random.default_rng(50 + seed).standard_normal((ROWS, COLS))
    x = cp.Variable((ROWS, COLS))
    constraints = [
        x >= 0,
        cp.sum(x, axis=1) == np.asarray(a),
        cp.sum(x, axis=0) == np.asarray(b),
    ]
    _clarabel(cp.Problem(cp.Minimize(cp.sum_squares(x - y)), constraints))
    got = _project(TransportPolytope(a, b), jnp.asarray(y))
    np.testing.assert_allclose(got, x.value, atol=1e-6)


def test_birkhoff_polytope_against_cvxpy():
    y = np.random.default_rng(7).standard_normal((4, 4))
    x = cp.Variable((4, 4))
    constraints = [x >= 0, cp.sum(x, axis=1) == 1, cp.sum(x, axis=0) == 1]
    _clarabel(cp.Problem(cp.Minimize(cp.sum_squares(x - y)), constraints))
    birkhoff = BirkhoffPolytope()
    got = _project(birkhoff, jnp.asarray(y))
    np.testing.assert_allclose(got, x.value, atol=1e-6)
    assert float(birkhoff.violation(got)) <= 1e-10


def _support_is_connected(plan):
    """Whether the bipartite graph of the positive entries is connected (unique
    potentials, hence a nonsingular implicit system)."""
    support = np.asarray(plan) > 1e-9
    rows, cols = support.shape
    seen_rows, seen_cols, frontier = {0}, set(), [("r", 0)]
    while frontier:
        side, i = frontier.pop()
        if side == "r":
            new = {j for j in range(cols) if support[i, j]} - seen_cols
            seen_cols |= new
            frontier += [("c", j) for j in new]
        else:
            new = {k for k in range(rows) if support[k, i]} - seen_rows
            seen_rows |= new
            frontier += [("r", k) for k in new]
    return len(seen_rows) == rows and len(seen_cols) == cols


@pytest.mark.parametrize("seed", range(2))
def test_transport_polytope_derivatives(seed):
    a, b = _marginals(seed)
    projection = TransportPolytope(a, b)
    y = jnp.asarray(np.random.default_rng(50 + seed).standard_normal((ROWS, COLS)))
    assert _support_is_connected(_project(projection, y))
    # Tangents of the marginals keep sum(a) = sum(b).
    da = jax.random.normal(jax.random.key(seed), (ROWS,))
    db = jax.random.normal(jax.random.key(seed + 1), (COLS,))
    db = db + (jnp.sum(da) - jnp.sum(db)) / COLS
    # A tangent is not a valid set (marginals of any sign): built by `tree_at`,
    # which skips the construction checks.
    t_projection = eqx.tree_at(lambda p: (p.a, p.b), projection, (da, db))
    _check_derivatives(
        projection, y, jax.random.key(20 + seed), t_projection=t_projection
    )


def test_transport_polytope_vmap():
    ys = jax.random.normal(jax.random.key(8), (3, ROWS, COLS))
    _check_vmap(TRANSPORT, ys, tol=1e-9)


# --------------------------------------------------------------------------------------
# KL (Sinkhorn) projections: checked against their own optimality conditions
# --------------------------------------------------------------------------------------


def _check_kl_optimality(projection, y, a, b, epsilon, tol):
    """KKT of `min KL(P || exp(Y / eps))` over the polytope: `P` is feasible (and
    positive) and `eps log P - Y = -(f 1^T + 1 g^T)` for some potentials `f`, `g`, i.e.
    its double centring vanishes."""
    plan = _project(projection, y)
    assert float(jnp.min(plan)) > 0
    np.testing.assert_allclose(jnp.sum(plan, axis=1), a, atol=tol)
    np.testing.assert_allclose(jnp.sum(plan, axis=0), b, atol=tol)
    assert float(projection.violation(plan)) <= tol
    m = epsilon * jnp.log(plan) - y
    centred = (
        m - m.mean(axis=0, keepdims=True) - m.mean(axis=1, keepdims=True) + m.mean()
    )
    np.testing.assert_allclose(centred, 0, atol=tol)
    return plan


@SETTINGS
@given(_points((ROWS, COLS), scale=5.0), st.sampled_from([0.3, 1.0, 2.0]))
def test_kl_transport_polytope_optimality(y, epsilon):
    a, b = _marginals(1)
    projection = KLTransportPolytope(a, b, jnp.asarray(epsilon))
    _check_kl_optimality(projection, jnp.asarray(y), a, b, epsilon, 1e-9)


def test_kl_transport_polytope_is_not_the_euclidean_projection():
    # Guards the KKT check above: a Euclidean projection (with zero entries) fails it.
    a, b = _marginals(1)
    y = jnp.asarray(np.random.default_rng(3).standard_normal((ROWS, COLS)))
    with pytest.raises(AssertionError):
        _check_kl_optimality(TransportPolytope(a, b), y, a, b, 1.0, 1e-6)


def test_kl_transport_polytope_against_cvxpy():
    a, b = _marginals(2)
    y = np.random.default_rng(9).standard_normal((ROWS, COLS))
    epsilon = 0.7
    x = cp.Variable((ROWS, COLS))
    objective = cp.Maximize(cp.sum(cp.multiply(x, y)) + epsilon * cp.sum(cp.entr(x)))
    constraints = [
        cp.sum(x, axis=1) == np.asarray(a),
        cp.sum(x, axis=0) == np.asarray(b),
    ]
    _scs(cp.Problem(objective, constraints))
    got = _project(KLTransportPolytope(a, b, epsilon), jnp.asarray(y))
    np.testing.assert_allclose(got, x.value, atol=1e-7)


@pytest.mark.parametrize("seed", range(2))
def test_kl_transport_polytope_derivatives(seed):
    a, b = _marginals(seed)
    projection = KLTransportPolytope(a, b, jnp.asarray(0.7))
    y = jnp.asarray(np.random.default_rng(60 + seed).standard_normal((ROWS, COLS)))
    da = jax.random.normal(jax.random.key(seed), (ROWS,))
    db = jax.random.normal(jax.random.key(seed + 1), (COLS,))
    db = db + (jnp.sum(da) - jnp.sum(db)) / COLS
    t_projection = eqx.tree_at(
        lambda p: (p.a, p.b, p.epsilon), projection, (da, db, jnp.asarray(0.5))
    )
    _check_derivatives(
        projection, y, jax.random.key(30 + seed), t_projection=t_projection
    )


def test_kl_birkhoff_polytope():
    y = jnp.asarray(np.random.default_rng(11).standard_normal((4, 4)))
    ones = jnp.ones(4)
    projection = KLBirkhoffPolytope(jnp.asarray(0.5))
    _check_kl_optimality(projection, y, ones, ones, 0.5, 1e-9)
    # The KL projection of a positive matrix `K` is its Sinkhorn scaling: with
    # `Y = log K` and `epsilon = 1`, `P = diag(u) K diag(v)`.
    k = jnp.exp(y)
    plan = _project(KLBirkhoffPolytope(), jnp.log(k))
    ratio = plan / k
    np.testing.assert_allclose(
        ratio, ratio[:, :1] * ratio[:1, :] / ratio[0, 0], rtol=1e-8
    )


def test_kl_transport_polytope_vmap():
    a, b = _marginals(0)
    ys = jax.random.normal(jax.random.key(9), (3, ROWS, COLS))
    _check_vmap(KLTransportPolytope(a, b), ys, tol=1e-9)


def test_polytopes_reach_the_top_level_namespace():
    for name in (
        "SecondOrderCone",
        "PSDCone",
        "ExponentialCone",
        "Polyhedron",
        "TransportPolytope",
        "BirkhoffPolytope",
        "KLTransportPolytope",
        "KLBirkhoffPolytope",
    ):
        assert issubclass(
            getattr(ix.projection, name), ix.projection.AbstractProjection
        )


@pytest.mark.parametrize("tiny", [1e-20, 1e-67, 1e-207, 1e-300])
def test_exponential_cone_root_bracket_as_wide_as_float64(tiny):
    # (1, tiny, tiny): the bisection bracket for the root is ~1/tiny wide, so the
    # solve needs ~log2(1/tiny) steps (it once stopped at 256). The projection tends
    # to that of (1, 0, 0).
    projection = ix.projection.ExponentialCone()
    expected = projection(jnp.array([1.0, 0.0, 0.0]))
    assert_tree_allclose(
        projection(jnp.array([1.0, tiny, tiny])), expected, rtol=1e-12, atol=1e-12
    )
    assert float(projection.violation(expected)) <= 1e-15
