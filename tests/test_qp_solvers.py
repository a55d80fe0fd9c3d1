"""Every forward solver of the QP layer (issue 11): the interior-point method, the
ADMM, and the external ones (Clarabel, OSQP, CVXPY, DAQP, PIQP, HiGHS) give the
same primal-dual solutions as CVXPY, the exact active-set derivative, the
documented derivative at degenerate points, and per-element infeasibility codes."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import implicitx as ix

from .helpers import finite_difference_jvp, raises_runtime
from .problems import active_set_qp, cvxpy_qp, random_qp


# The solvers in JAX and one on the host: every test.
SOLVERS = {
    "interior point": ix.solvers.InteriorPointQP(),
    "ADMM": ix.solvers.ADMMQP(),
    "Clarabel": ix.solvers.ExternalQP("clarabel"),
}
# The other external solvers (and MPAX's PDHG, in JAX): their primal-dual answers
# (to CVXPY's) and their codes. The derivative is the same rule for every solver,
# given the same triple (host answers are polished in JAX by the same code as
# ADMMQP's): the tests that follow SOLVERS check it, and the MPAX test once.
ALL_SOLVERS = {
    **SOLVERS,
    "OSQP": ix.solvers.ExternalQP("osqp"),
    "CVXPY": ix.solvers.ExternalQP("cvxpy"),
    "DAQP": ix.solvers.ExternalQP("daqp"),
    "PIQP": ix.solvers.ExternalQP("piqp"),
    "HiGHS": ix.solvers.ExternalQP("highs"),
    "MPAX": ix.solvers.MPAXQP(),
}


def _arrays(data, dtype=jnp.float64):
    return {k: jnp.asarray(v, dtype) for k, v in data.items()}


def _layer(name, throw=True):
    return ix.QuadraticProgram(solver=ALL_SOLVERS[name], throw=throw)


def _tangent(shape, seed):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape))


@pytest.mark.parametrize("name", ALL_SOLVERS)
def test_solutions_match_cvxpy(name):
    for seed in (0, 1):
        data = random_qp(8, 3, 12, seed)
        sol = _layer(name).solve(**_arrays(data))
        assert sol.result == ix.RESULTS.successful
        for got, want in zip(sol.value, cvxpy_qp(**data), strict=True):
            np.testing.assert_allclose(got, want, atol=1e-6)


@pytest.mark.parametrize("name", ALL_SOLVERS)
def test_linear_program_matches_cvxpy(name):
    # min c^T z over a polytope (box and random cuts through a known point).
    rng = np.random.default_rng(7)
    n, m = 5, 6
    M = np.vstack([rng.standard_normal((m, n)), np.eye(n), -np.eye(n)])
    h = np.concatenate([M[:m] @ rng.uniform(-0.5, 0.5, n) + 0.3, np.ones(2 * n)])
    data = dict(Q=np.zeros((n, n)), c=rng.standard_normal(n), M=M, h=h)
    # MPAX is told that this is a linear program (it cannot see it under jit).
    solver = ix.solvers.MPAXQP(linear_program=True) if name == "MPAX" else None
    layer = _layer(name) if solver is None else ix.QuadraticProgram(solver=solver)
    sol = layer.solve(**_arrays(data))
    assert sol.result == ix.RESULTS.successful
    np.testing.assert_allclose(sol.value[0], cvxpy_qp(**data)[0], atol=1e-6)


@pytest.mark.parametrize("name", SOLVERS)
def test_derivatives_match_the_active_set_reference(name):
    # One JVP along a random direction of all six data at once, and one VJP (test_qp
    # checks them datum by datum for the default solver).
    data = random_qp(8, 3, 12, 2)
    theta = _arrays(data)
    layer = _layer(name)
    z = layer(**theta).z
    active = np.asarray(theta["h"] - theta["M"] @ z) < 1e-7
    assert 0 < active.sum() < len(active)
    tangent = {k: _tangent(v.shape, i) for i, (k, v) in enumerate(theta.items())}
    _, got = jax.jvp(lambda t: layer(**t).z, (theta,), (tangent,))
    _, want = jax.jvp(lambda t: active_set_qp(t, active), (theta,), (tangent,))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8 * np.abs(want).max())
    weights = _tangent(8, 9)
    grads = jax.grad(lambda t: weights @ layer(**t).z)(theta)
    expected = jax.grad(lambda t: weights @ active_set_qp(t, active))(theta)
    for k in theta:
        np.testing.assert_allclose(grads[k], expected[k], rtol=1e-6, atol=1e-9)


def _weakly_active_qp():
    """A QP with an equality and a row through the minimiser of the equality-
    constrained problem (`lam = 0` and `g = 0` at once); its other rows inactive."""
    data = random_qp(6, 1, 4, 5)
    Q, c, E, d = data["Q"], data["c"], data["E"], data["d"]
    kkt = np.block([[Q, E.T], [E, np.zeros((1, 1))]])
    z_star = np.linalg.solve(kkt, np.concatenate([-c, d]))[:6]
    row = np.random.default_rng(1).standard_normal(6)
    M = np.vstack([data["M"], row])
    h = np.concatenate([data["M"] @ z_star + 0.5, [row @ z_star]])
    return dict(Q=Q, c=c, E=E, d=d, M=M, h=h), z_star


@pytest.mark.parametrize("name", SOLVERS)
def test_weakly_active_constraint_solution_and_documented_derivative(name):
    data, z_star = _weakly_active_qp()
    theta = _arrays(data)
    layer = _layer(name)
    z = layer(**theta).z
    np.testing.assert_allclose(z, z_star, atol=1e-6)
    # The documented derivative: the weakly active row differentiated as active.
    active = np.array([False] * 4 + [True])
    for field in ("c", "h"):
        tangent = _tangent(theta[field].shape, 6)
        _, got = jax.jvp(
            lambda v, f=field: layer(**{**theta, f: v}).z, (theta[field],), (tangent,)
        )
        _, want = jax.jvp(
            lambda v, f=field: active_set_qp({**theta, f: v}, active),
            (theta[field],),
            (tangent,),
        )
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("name", SOLVERS)
def test_dependent_active_constraints_give_the_solution_and_refuse_derivatives(name):
    # A duplicated active row: z* is unique, the multipliers are not (A singular).
    data = random_qp(6, 0, 5, 8)
    z_ref = cvxpy_qp(**data)[0]
    slack = data["h"] - data["M"] @ z_ref
    row = int(np.argmin(slack))
    assert slack[row] < 1e-7  # the duplicated row is active
    data["M"] = np.vstack([data["M"], data["M"][row]])
    data["h"] = np.append(data["h"], data["h"][row])
    theta = _arrays(data)
    layer = _layer(name)
    np.testing.assert_allclose(layer(**theta).z, z_ref, atol=1e-6)
    with raises_runtime("singular"):
        jax.block_until_ready(
            jax.jit(jax.grad(lambda c: jnp.sum(layer(**{**theta, "c": c}).z)))(
                theta["c"]
            )
        )


def _infeasible():
    M = np.array([[1.0, 0.0], [-1.0, 0.0]])
    return dict(Q=np.eye(2), c=np.ones(2), M=M, h=np.array([-1.0, -1.0]))


def _unbounded():  # min -z_0 over z_0 >= 0, |z_1| <= 1
    M = np.array([[-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    return dict(
        Q=np.zeros((2, 2)), c=np.array([-1.0, 0.0]), M=M, h=np.ones(3) - [1, 0, 0]
    )


@pytest.mark.parametrize("name", [k for k in ALL_SOLVERS if k != "MPAX"])
def test_infeasible_and_unbounded_are_reported(name):
    layer = _layer(name, throw=False)
    assert layer.solve(**_arrays(_infeasible())).result == ix.RESULTS.primal_infeasible
    assert layer.solve(**_arrays(_unbounded())).result == ix.RESULTS.dual_infeasible
    with raises_runtime("infeasible"):
        jax.block_until_ready(_layer(name).solve(**_arrays(_infeasible())).value)


@pytest.mark.parametrize("name", ["interior point", "ADMM", "Clarabel"])
def test_batch_of_64_with_an_infeasible_element_keeps_the_others(name):
    # jax.jit(jax.vmap(jax.grad)) over 64 QPs, one infeasible: that element has its
    # code and NaN gradients, the others equal their unbatched values.
    batch_size, bad = 64, 37
    data = [random_qp(4, 1, 5, seed) for seed in range(batch_size)]
    row = data[bad]["M"][0].copy()
    data[bad]["M"][:2] = row, -row  # row . z <= -1 and row . z >= 1
    data[bad]["h"][:2] = -1.0
    batch = {k: jnp.stack([jnp.asarray(d[k]) for d in data]) for k in data[0]}
    layer = _layer(name, throw=False)
    rest = {k: v for k, v in batch.items() if k != "c"}

    def loss(c, rest):
        return jnp.sum(layer(c=c, **rest).z ** 2)

    grads = jax.jit(jax.vmap(jax.grad(loss)))(batch["c"], rest)
    results = jax.vmap(lambda c, r: layer.solve(c=c, **r).result._value)(
        batch["c"], rest
    )
    code = int(ix.RESULTS.primal_infeasible._value)
    want = [code if i == bad else 0 for i in range(batch_size)]
    assert [int(r) for r in results] == want
    assert np.all(np.isnan(grads[bad]))
    single = jax.jit(jax.grad(loss))
    for i in set(range(batch_size)) - {bad}:
        one = single(batch["c"][i], {k: v[i] for k, v in rest.items()})
        np.testing.assert_allclose(grads[i], one, rtol=1e-9, atol=1e-12)


def test_external_qp_reports_nan_data_and_rejects_unknown_backends():
    data = _arrays(random_qp(4, 0, 3, 0))
    data["c"] = data["c"].at[0].set(jnp.nan)
    layer = ix.QuadraticProgram(solver=SOLVERS["Clarabel"], throw=False)
    with pytest.warns(UserWarning, match="contain NaN"):
        sol = layer.solve(**data)
    assert sol.result == ix.RESULTS.external_solver_failed
    with pytest.raises(ValueError, match="`backend` must be one of"):
        ix.solvers.ExternalQP("gurobi")


def test_admm_rejects_bad_settings_and_needs_a_qp_condition():
    with pytest.raises(ValueError, match=r"`alpha` must be in \(0, 2\)"):
        ix.solvers.ADMMQP(alpha=2.0)
    with pytest.raises(ValueError, match="`rho` and `sigma` must be positive"):
        ix.solvers.ADMMQP(rho=-1.0)
    argmin = ix.ImplicitArgmin(
        ix.Stationarity(lambda x, t: jnp.sum((x - t) ** 2)), ix.solvers.ADMMQP()
    )
    with pytest.raises(TypeError, match="needs a condition that gives its data"):
        argmin(jnp.ones(2), jnp.zeros(2))


@pytest.mark.parametrize("condition_number", [1.0, 1e2, 1e4])
def test_float32_interior_point_across_condition_numbers(condition_number):
    # Q with a spectrum spread over [1/cond, 1]: float32 gradients stay finite and
    # within 1e-3 of float64 (relative to their size).
    n = 10
    rng = np.random.default_rng(11)
    U, _ = np.linalg.qr(rng.standard_normal((n, n)))
    data = random_qp(n, 2, 12, 12)
    data["Q"] = (U * np.geomspace(1 / condition_number, 1, n)) @ U.T
    weights = rng.standard_normal(n)
    layer = ix.QuadraticProgram()

    def grad_c(dtype):
        theta = _arrays(data, dtype)

        def loss(c):
            return jnp.asarray(weights, dtype) @ layer(**{**theta, "c": c}).z

        return jax.grad(loss)(theta["c"])

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no precision warnings either
        g32 = grad_c(jnp.float32)
    g64 = grad_c(jnp.float64)
    assert g32.dtype == jnp.float32 and np.all(np.isfinite(g32))
    scale = np.max(np.abs(g64))
    np.testing.assert_allclose(g32, g64, rtol=0, atol=1e-3 * scale)


def test_box_qp_by_block_coordinate_descent_equals_the_layer():
    # JAXopt's BoxCDQP: coordinate descent on a box-constrained QP. Here, block
    # coordinate descent on its projected-gradient fixed point; the same solution
    # and Jacobian as the QP layer with bounds.
    data = random_qp(6, 0, 0, 3)
    Q, c = jnp.asarray(data["Q"]), jnp.asarray(data["c"])
    lower, upper = jnp.full(6, -0.3), jnp.full(6, 0.4)
    box = ix.prox.FromProjection(ix.projection.Box(lower, upper))
    condition = ix.ProximalGradientFixedPoint(lambda z, c: 0.5 * z @ Q @ z + c @ z, box)
    argmin = ix.ImplicitArgmin(
        condition, ix.solvers.BlockCoordinateDescent(), x0=jnp.zeros(6)
    )
    layer = ix.QuadraticProgram()

    def z_layer(c):
        return layer(Q, c, lower=lower, upper=upper).z

    z = argmin(c)
    assert 0 < int(jnp.sum((z == lower) | (z == upper))) < 6  # some bounds bind
    np.testing.assert_allclose(z, z_layer(c), atol=1e-9)
    np.testing.assert_allclose(
        jax.jacobian(argmin)(c), jax.jacobian(z_layer)(c), atol=1e-9
    )


def _entropy_over_an_ellipsoid():
    """`min sum(exp(z)) - a . z s.t. sum(z) = s, z^T diag(w) z <= 1` with `theta =
    (a, s, w)`: nonlinear objective and constraint, an equality, the ellipsoid
    active at the solution."""
    condition = ix.KKT(
        lambda z, t: jnp.sum(jnp.exp(z)) - t[0] @ z,
        equalities=lambda z, t: jnp.array([jnp.sum(z) - t[1]]),
        inequalities=lambda z, t: jnp.array([z @ (t[2] * z) - 1.0]),
    )
    theta = (
        jnp.array([2.0, -1.0, 0.5, 1.5]),
        jnp.asarray(0.3),
        jnp.array([1.0, 2, 3, 4]),
    )
    x0 = (jnp.zeros(4), jnp.zeros(1), jnp.zeros(1))
    return condition, theta, x0


def test_constrained_nonlinear_problem_by_scipy_slsqp_and_kkt_derivatives():
    condition, theta, x0 = _entropy_over_an_ellipsoid()
    argmin = ix.ImplicitArgmin(condition, ix.solvers.ScipyConstrainedMinimize(), x0=x0)
    sol = argmin.solve(theta)
    assert sol.result == ix.RESULTS.successful
    z, nu, lam = sol.value
    assert lam[0] > 1e-3  # the ellipsoid is active, strictly
    np.testing.assert_allclose(z @ (theta[2] * z), 1.0, atol=1e-9)
    # Against SciPy's other constrained method, run independently.
    import scipy.optimize

    a, s, w = (np.asarray(t) for t in theta)
    ref = scipy.optimize.minimize(
        lambda z: np.sum(np.exp(z)) - a @ z,
        np.zeros(4),
        method="trust-constr",
        constraints=[
            scipy.optimize.LinearConstraint(np.ones((1, 4)), s, s),
            scipy.optimize.NonlinearConstraint(lambda z: z @ (w * z), -np.inf, 1.0),
        ],
        options=dict(gtol=1e-12, xtol=1e-14, maxiter=5000),
    )
    np.testing.assert_allclose(z, ref.x, atol=1e-6)
    # Derivatives with respect to every part of theta against finite differences
    # of the SLSQP solution itself.
    for k, seed in zip(range(3), (20, 21, 22), strict=True):
        tangent = tuple(
            _tangent(jnp.shape(t), seed) if i == k else jnp.zeros_like(t)
            for i, t in enumerate(theta)
        )
        _, got = jax.jvp(lambda t: argmin(t)[0], (theta,), (tangent,))
        want = finite_difference_jvp(lambda t: argmin(t)[0], theta, tangent, eps=1e-4)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_scipy_constrained_minimize_needs_a_kkt_condition():
    argmin = ix.ImplicitArgmin(
        ix.Stationarity(lambda x, t: jnp.sum((x - t) ** 2)),
        ix.solvers.ScipyConstrainedMinimize(),
    )
    with pytest.raises(TypeError, match="`objective`, `equalities` and `inequalities`"):
        argmin(jnp.ones(2), jnp.zeros(2))


def test_kkt_systems_above_500_unknowns_stay_dense_by_default():
    # 300 + 60 + 150 = 510 unknowns: above the general dense limit, where GMRES
    # without a preconditioner stalls on KKT matrices; `saddle_point_tag` keeps LU.
    data = random_qp(300, 60, 150, 13)
    theta = _arrays(data)
    layer = ix.QuadraticProgram()
    assert ix.saddle_point_tag in ix.QuadraticKKT().tags
    z = layer(**theta).z
    active = np.asarray(theta["h"] - theta["M"] @ z) < 1e-7
    weights = _tangent(300, 14)
    grad = jax.jit(jax.grad(lambda c: weights @ layer(**{**theta, "c": c}).z))(
        theta["c"]
    )
    want = jax.grad(lambda c: weights @ active_set_qp({**theta, "c": c}, active))(
        theta["c"]
    )
    np.testing.assert_allclose(grad, want, rtol=1e-6, atol=1e-9 * np.abs(want).max())


@pytest.mark.parametrize("name", SOLVERS)
def test_no_constraints_and_equalities_only(name):
    # Empty constraint groups never give NaN: without constraints the layer is
    # z* = -Q^{-1} c; with equalities only, the KKT solve (EqualityConstrainedQP).
    data = random_qp(5, 2, 0, 1)
    Q, c, E, d = (jnp.asarray(data[k]) for k in ("Q", "c", "E", "d"))
    layer = _layer(name)
    np.testing.assert_allclose(layer(Q, c).z, -jnp.linalg.solve(Q, c), atol=1e-9)
    grad = jax.grad(lambda c: jnp.sum(layer(Q, c).z))(c)
    np.testing.assert_allclose(grad, -jnp.linalg.solve(Q, jnp.ones(5)), atol=1e-9)
    direct = ix.QuadraticProgram(solver=ix.solvers.EqualityConstrainedQP())
    sol = layer(Q, c, E, d)
    np.testing.assert_allclose(sol.z, direct(Q, c, E, d).z, atol=1e-7)
    np.testing.assert_allclose(sol.nu, direct(Q, c, E, d).nu, atol=1e-7)
    assert sol.lam.shape == (0,)


def test_mpax_gradient_certificates_and_limits():
    # The exact gradient through MPAX's answer (MPAX has no derivatives of its own).
    theta = _arrays(random_qp(8, 3, 12, 2))
    layer = _layer("MPAX")
    active = np.asarray(theta["h"] - theta["M"] @ layer(**theta).z) < 1e-7
    weights = _tangent(8, 9)
    grads = jax.grad(lambda t: weights @ layer(**t).z)(theta)
    expected = jax.grad(lambda t: weights @ active_set_qp(t, active))(theta)
    for k in theta:
        np.testing.assert_allclose(grads[k], expected[k], rtol=1e-6, atol=1e-9)
    # MPAX looks for certificates only in linear programs (`linear_program=True`);
    # a nonzero Q in that mode is refused.
    lp = ix.QuadraticProgram(solver=ix.solvers.MPAXQP(linear_program=True), throw=False)
    infeasible = {**_infeasible(), "Q": np.zeros((2, 2))}
    assert lp.solve(**_arrays(infeasible)).result == ix.RESULTS.primal_infeasible
    nonzero_q = lp.solve(**_arrays(_infeasible())).result
    assert nonzero_q == ix.RESULTS.external_solver_failed
