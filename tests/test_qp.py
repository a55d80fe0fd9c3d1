"""The KKT condition and the quadratic programming layer (issue 11, first part):
solutions against CVXPY (Clarabel), derivatives with respect to every datum against
an exact active-set reference and finite differences, forward and reverse mode,
infinite bounds, infeasible and unbounded problems. Every forward solver, batches and
float32: test_qp_solvers.py."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

import implicitx as ix

from .helpers import finite_difference_jvp, raises_runtime
from .problems import active_set_qp, cvxpy_qp, random_qp


FIELDS = ("Q", "c", "E", "d", "M", "h")


def _arrays(data, dtype=jnp.float64):
    return {k: jnp.asarray(v, dtype) for k, v in data.items()}


def _active(data, z, tol=1e-7):
    slack = np.asarray(data["h"]) - np.asarray(data["M"]) @ np.asarray(z)
    return slack < tol


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_interior_point_solution_matches_cvxpy(seed):
    data = random_qp(8, 3, 12, seed)
    sol = ix.QuadraticProgram().solve(**_arrays(data))
    assert sol.result == ix.RESULTS.successful
    z, nu, lam = sol.value
    z_ref, nu_ref, lam_ref = cvxpy_qp(**data)
    np.testing.assert_allclose(z, z_ref, atol=1e-6)
    np.testing.assert_allclose(nu, nu_ref, atol=1e-6)
    np.testing.assert_allclose(lam, lam_ref, atol=1e-6)
    active = _active(data, z)
    assert 0 < active.sum() < len(active)  # active and inactive rows both present


def test_equality_constrained_qp_matches_cvxpy_and_its_derivative():
    data = random_qp(6, 2, 0, 3)
    data.pop("M"), data.pop("h")
    layer = ix.QuadraticProgram(solver=ix.solvers.EqualityConstrainedQP())
    theta = _arrays(data)
    np.testing.assert_allclose(
        layer(**theta).z, cvxpy_qp(**data)[0], atol=1e-8
    )  # fmt: skip
    no_rows = np.zeros(0, bool)
    for name in ("Q", "c", "E", "d"):
        tangent = jnp.asarray(
            np.random.default_rng(4).standard_normal(data[name].shape)
        )

        def z_of(v, name=name):
            return layer(**{**theta, name: v}).z

        def reference(v, name=name):
            arrays = {**theta, name: v, "M": jnp.zeros((0, 6)), "h": jnp.zeros(0)}
            return active_set_qp(arrays, no_rows)

        _, jvp = jax.jvp(z_of, (theta[name],), (tangent,))
        _, expected = jax.jvp(reference, (theta[name],), (tangent,))
        np.testing.assert_allclose(jvp, expected, rtol=1e-9, atol=1e-10)


def test_gradients_wrt_every_datum_match_the_active_set_reference():
    # One gradient with respect to all six data at once (one compilation), checked
    # datum by datum; then one directional derivative along all of them.
    data = random_qp(8, 3, 12, 0)
    theta = _arrays(data)
    layer = ix.QuadraticProgram()
    active = _active(data, layer(**theta).z)
    weights = jnp.asarray(np.random.default_rng(5).standard_normal(8))

    def loss(theta):
        return weights @ layer(**theta).z

    def reference(theta):
        return weights @ active_set_qp(theta, active)

    grads = jax.grad(loss)(theta)
    expected = jax.grad(reference)(theta)
    for name in FIELDS:
        scale = np.max(np.abs(expected[name]))
        np.testing.assert_allclose(
            grads[name], expected[name], rtol=1e-6, atol=1e-6 * scale, err_msg=name
        )
    # Forward mode gives the same directional derivative; finite differences too.
    rng = np.random.default_rng(6)
    tangent = {k: jnp.asarray(rng.standard_normal(v.shape)) for k, v in theta.items()}
    _, jvp = jax.jvp(loss, (theta,), (tangent,))
    directional = sum(jnp.sum(expected[k] * tangent[k]) for k in FIELDS)
    np.testing.assert_allclose(jvp, directional, rtol=1e-6)
    fd = finite_difference_jvp(loss, theta, tangent, eps=1e-6)
    np.testing.assert_allclose(jvp, fd, rtol=1e-5)


def test_multipliers_are_differentiable_and_second_order_works():
    data = random_qp(5, 1, 6, 1)
    theta = _arrays(data)
    layer = ix.QuadraticProgram()

    def first_multiplier_sum(c):
        return jnp.sum(layer(**{**theta, "c": c}).lam)

    c = theta["c"]
    tangent = jnp.ones_like(c)
    _, jvp = jax.jvp(first_multiplier_sum, (c,), (tangent,))
    fd = finite_difference_jvp(first_multiplier_sum, c, tangent, eps=1e-6)
    np.testing.assert_allclose(jvp, fd, rtol=1e-5)
    # The QP solution is piecewise linear in c: its Hessian is zero off the kinks.
    hessian = jax.hessian(lambda c: jnp.sum(layer(**{**theta, "c": c}).z ** 2))(c)
    z_jac = jax.jacobian(lambda c: layer(**{**theta, "c": c}).z)(c)
    np.testing.assert_allclose(hessian, 2 * z_jac.T @ z_jac, atol=1e-8)


def test_box_bounds_with_infinite_entries_match_scipy_and_never_nan():
    rng = np.random.default_rng(7)
    n = 6
    L = rng.standard_normal((n, n))
    Q, c = L @ L.T + np.eye(n), 3 * rng.standard_normal(n)
    lower = np.array([-np.inf, -0.1, -0.2, -np.inf, -1.0, -0.3])
    upper = np.array([0.1, np.inf, 0.2, np.inf, 1.0, 0.3])
    layer = ix.QuadraticProgram()
    theta = dict(Q=jnp.asarray(Q), c=jnp.asarray(c))
    bounds = dict(lower=jnp.asarray(lower), upper=jnp.asarray(upper))
    z = layer(**theta, **bounds).z
    ref = scipy.optimize.minimize(
        lambda z: 0.5 * z @ Q @ z + c @ z,
        np.zeros(n),
        jac=lambda z: Q @ z + c,
        bounds=list(zip(lower, upper, strict=True)),
        method="L-BFGS-B",
        options=dict(ftol=1e-15, gtol=1e-12),
    ).x
    np.testing.assert_allclose(z, ref, atol=1e-6)
    grads = jax.grad(
        lambda lo, up: jnp.sum(layer(**theta, lower=lo, upper=up).z), argnums=(0, 1)
    )(bounds["lower"], bounds["upper"])
    for g, b in zip(grads, (lower, upper), strict=True):
        assert np.all(np.isfinite(g))
        assert np.all(np.asarray(g)[np.isinf(b)] == 0)  # a bound that never binds


def test_linear_program_matches_scipy_linprog():
    rng = np.random.default_rng(8)
    n, m = 5, 8
    M = rng.standard_normal((m, n))
    h = M @ rng.standard_normal(n) + rng.random(m)
    c = rng.standard_normal(n)
    lower, upper = -np.ones(n), np.ones(n)
    ref = scipy.optimize.linprog(c, A_ub=M, b_ub=h, bounds=(-1, 1), method="highs")
    layer = ix.QuadraticProgram()
    sol = layer.solve(
        jnp.zeros((n, n)), jnp.asarray(c), M=jnp.asarray(M), h=jnp.asarray(h),
        lower=jnp.asarray(lower), upper=jnp.asarray(upper),
    )  # fmt: skip
    assert sol.result == ix.RESULTS.successful
    np.testing.assert_allclose(sol.value[0], ref.x, atol=1e-6)


def _infeasible_qp():
    # z_0 <= -1 and -z_0 <= -1 (z_0 >= 1): no point satisfies both.
    n = 3
    M = np.zeros((2, n))
    M[0, 0], M[1, 0] = 1.0, -1.0
    return dict(Q=np.eye(n), c=np.ones(n), M=M, h=np.array([-1.0, -1.0]))


def test_infeasible_and_unbounded_problems_are_reported():
    layer = ix.QuadraticProgram(throw=False)
    sol = layer.solve(**_arrays(_infeasible_qp()))
    assert sol.result == ix.RESULTS.primal_infeasible
    # min -z_0 over z_0 >= 0 (a linear objective, unbounded above 0).
    unbounded = dict(
        Q=jnp.zeros((2, 2)), c=jnp.array([-1.0, 0.0]),
        M=jnp.array([[-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]]), h=jnp.array([0.0, 1, 1]),
    )  # fmt: skip
    assert layer.solve(**unbounded).result == ix.RESULTS.dual_infeasible
    with raises_runtime("infeasible"):
        ix.QuadraticProgram().solve(**_arrays(_infeasible_qp()))


def test_general_kkt_condition_of_a_nonlinear_problem():
    # min ||z - theta||^2 over the unit disc: z* = theta / ||theta|| outside it.
    condition = ix.KKT(
        lambda z, theta: jnp.sum((z - theta) ** 2),
        inequalities=lambda z, theta: jnp.array([jnp.sum(z**2) - 1.0]),
    )

    def solve(theta, x0):
        del x0
        r = jnp.linalg.norm(theta)
        return theta / r, jnp.zeros(0), jnp.array([r - 1.0])  # lam = ||theta|| - 1

    argmin = ix.ImplicitArgmin(condition, ix.solvers.FunctionSolver(solve))
    theta = jnp.array([1.5, -2.0])
    z = argmin(theta)[0]
    np.testing.assert_allclose(z, theta / jnp.linalg.norm(theta), rtol=1e-12)
    r = jnp.linalg.norm(theta)
    expected = (jnp.eye(2) - jnp.outer(theta, theta) / r**2) / r
    np.testing.assert_allclose(
        jax.jacobian(lambda t: argmin(t)[0])(theta), expected, rtol=1e-10
    )


def test_qp_layer_inside_an_equinox_model_trains():
    import equinox as eqx
    import optax

    class Projector(eqx.Module):
        """Projects onto {z : M z <= h} in a learned metric, then reads out."""

        L: jax.Array
        readout: jax.Array
        layer: ix.QuadraticProgram = ix.QuadraticProgram()

        def __call__(self, y):
            M = jnp.eye(3)
            Q = self.L @ self.L.T + 0.1 * jnp.eye(3)
            return self.readout @ self.layer(Q, -Q @ y, M=M, h=jnp.ones(3) * 0.5).z

    rng = np.random.default_rng(11)
    ys = jnp.asarray(rng.standard_normal((16, 3)))
    targets = jnp.asarray(np.minimum(np.asarray(ys), 0.5) @ np.array([1.0, -2.0, 0.5]))
    model = Projector(jnp.asarray(rng.standard_normal((3, 3))), jnp.zeros(3))

    def loss(model):
        return jnp.mean((jax.vmap(model)(ys) - targets) ** 2)

    optimiser = optax.adam(0.1)
    state = optimiser.init(eqx.filter(model, eqx.is_inexact_array))
    step = eqx.filter_jit(eqx.filter_value_and_grad(loss))
    first = None
    for _ in range(15):
        value, grads = step(model)
        first = value if first is None else first
        with jax.numpy_dtype_promotion("standard"):  # optax is not strict
            updates, state = optimiser.update(grads, state)
        model = eqx.apply_updates(model, updates)
    assert loss(model) < 0.5 * first


def test_the_docs_example_runs_and_its_derivative_is_the_active_set_one():
    import re
    from pathlib import Path

    page = Path(__file__).parent.parent / "docs" / "api" / "constrained.md"
    (block,) = re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)
    namespace: dict = {}
    exec(compile(block, str(page), "exec"), namespace)
    sol, dz_dh = namespace["sol"], namespace["dz_dh"]
    # z0 + z1 <= 0.5 is active at the solution: dz/dh moves z along the constraint
    # (its components sum to 1).
    np.testing.assert_allclose(jnp.sum(sol.z), 0.5, atol=1e-8)
    np.testing.assert_allclose(jnp.sum(dz_dh), 1.0, atol=1e-8)
