"""`jacobian_operators` returns A = -dF/dx and B = dF/dtheta as lineax operators."""

import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import optimistix as optx

import implicitx as ix

from .problems import logistic_data, logistic_objective


Xl, yl = logistic_data()
D = Xl.shape[1]


def objective(x, theta):
    return logistic_objective(x, theta["l2"], Xl, yl) + jnp.sum(theta["shift"] * x)


THETA = {"l2": jnp.array(0.5), "shift": jnp.linspace(-0.2, 0.2, D), "steps": 3}
X_POINT = jnp.linspace(-0.5, 0.5, D)


def test_operators_match_dense_jacobians():
    condition = ix.Stationarity(objective, convex=True)
    A, B = ix.jacobian_operators(condition, X_POINT, THETA)
    assert isinstance(A, lx.AbstractLinearOperator)
    assert lx.is_symmetric(A) and lx.is_negative_semidefinite(A)
    grad = jax.grad(objective)
    hessian = jax.hessian(objective)(X_POINT, THETA)
    np.testing.assert_allclose(A.as_matrix(), -hessian, rtol=1e-12)
    float_theta = {"l2": THETA["l2"], "shift": THETA["shift"]}
    dtheta = jax.jacfwd(lambda t: grad(X_POINT, {**t, "steps": 3}))(float_theta)
    v = {"l2": jnp.array(1.5), "shift": jnp.arange(D, dtype=jnp.float64), "steps": None}
    expected = dtheta["l2"] * 1.5 + dtheta["shift"] @ v["shift"]
    np.testing.assert_allclose(B.mv(v), expected, rtol=1e-12)
    # The integer leaf of theta is not an input of B (it is `None` there).
    assert B.in_structure()["steps"] is None


def test_operators_give_the_solution_jacobian():
    condition = ix.Stationarity(objective, convex=True)
    argmin = ix.ImplicitArgmin(
        condition,
        ix.solvers.OptimistixMinimiser(optx.BFGS(rtol=1e-13, atol=1e-13)),
        x0=jnp.zeros(D),
    )
    x_star = argmin(THETA)
    A, B = ix.jacobian_operators(condition, x_star, THETA)
    # J = A^{-1} B, column for the scalar l2.
    column = lx.linear_solve(
        A, B.mv({"l2": jnp.array(1.0), "shift": jnp.zeros(D), "steps": None})
    ).value
    float_theta = {"l2": THETA["l2"], "shift": THETA["shift"]}
    jac = jax.jacfwd(lambda t: argmin({**t, "steps": 3}))(float_theta)["l2"]
    np.testing.assert_allclose(column, jac, rtol=1e-7)
    # Transposed products (reverse mode of sensitivity analysis).
    w = jnp.arange(1.0, D + 1.0)
    np.testing.assert_allclose(A.transpose().mv(w), A.as_matrix().T @ w, rtol=1e-12)
