"""The modular API: ImplicitArgmin with conditions, optimistix forward solvers and
parameters stored in the condition."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import optimistix as optx
import pytest

import implicitx as ix

from .helpers import assert_tree_allclose, finite_difference_jvp
from .problems import (
    logistic_data,
    logistic_loss,
    logistic_objective,
    ridge_closed_form,
    ridge_closed_form_jacobian,
    ridge_data,
    ridge_objective,
)


X, y = ridge_data()
d = X.shape[1]
THETA = jnp.array(3.0)
TOL = 1e-12


def f(x, theta):
    return ridge_objective(x, theta, X, y)


def closed_form_jacobian(theta):
    return ridge_closed_form_jacobian(X, y, theta)


SOLVERS = {
    "bfgs": ix.solvers.OptimistixMinimiser(optx.BFGS(rtol=TOL, atol=TOL)),
    "nonlinear_cg": ix.solvers.OptimistixMinimiser(
        optx.NonlinearCG(rtol=TOL, atol=TOL), max_steps=2000
    ),
    "newton_root": ix.solvers.OptimistixRootFinder(optx.Newton(rtol=TOL, atol=TOL)),
}


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_stationarity_with_optimistix_solvers(name):
    argmin = ix.ImplicitArgmin(
        ix.Stationarity(f, convex=True), SOLVERS[name], x0=jnp.zeros(d)
    )
    sol = argmin.solve(THETA)
    assert sol.result == ix.RESULTS.successful
    assert int(sol.stats["num_steps"]) > 0
    # Accuracy is limited by the forward solver's stopping rule (~1e-9 here).
    assert_tree_allclose(
        sol.value, ridge_closed_form(X, y, THETA), rtol=1e-7, atol=1e-8
    )
    J = closed_form_jacobian(THETA)
    assert_tree_allclose(jax.jacrev(argmin)(THETA), J, rtol=1e-6, atol=1e-8)
    assert_tree_allclose(jax.jacfwd(argmin)(THETA), J, rtol=1e-6, atol=1e-8)


def test_gradient_descent_fixed_point_with_fixed_point_iteration():
    condition = ix.GradientDescentFixedPoint(f, stepsize=0.02, convex=True)
    solver = ix.solvers.OptimistixFixedPoint(
        optx.FixedPointIteration(rtol=TOL, atol=TOL), max_steps=20_000
    )
    argmin = ix.ImplicitArgmin(condition, solver, x0=jnp.zeros(d))
    assert_tree_allclose(argmin(THETA), ridge_closed_form(X, y, THETA), rtol=1e-8)
    assert_tree_allclose(
        jax.jacrev(argmin)(THETA), closed_form_jacobian(THETA), rtol=1e-7
    )


def test_warm_start_and_default_x0():
    argmin = ix.ImplicitArgmin(ix.Stationarity(f), SOLVERS["bfgs"], x0=jnp.zeros(d))
    cold = argmin.solve(THETA)
    warm = argmin.solve(THETA, cold.value)
    assert_tree_allclose(warm.value, cold.value, rtol=1e-9)
    assert int(warm.stats["num_steps"]) < int(cold.stats["num_steps"])
    no_x0 = ix.ImplicitArgmin(ix.Stationarity(f), SOLVERS["bfgs"])
    with pytest.raises(ValueError, match="needs an initial guess"):
        no_x0(THETA)
    assert_tree_allclose(no_x0(THETA, jnp.zeros(d)), cold.value)


class Ridge(eqx.Module):
    """A condition that stores its training data as parameters."""

    X: jax.Array
    y: jax.Array

    def objective(self, x, theta):
        return ridge_objective(x, theta, self.X, self.y)


def test_filter_grad_reaches_data_stored_in_the_condition():
    data = Ridge(X, y)
    argmin = ix.ImplicitArgmin(
        ix.Stationarity(data.objective, convex=True),
        ix.solvers.FunctionSolver(
            lambda theta, x0: ridge_closed_form(data.X, data.y, theta)
        ),
    )
    target = jnp.linspace(-1.0, 1.0, d)

    def loss(argmin, theta):
        return jnp.sum((argmin(theta) - target) ** 2)

    grads = eqx.filter_grad(loss)(argmin, THETA)
    grad_X = grads.condition.objective.__self__.X
    grad_y = grads.condition.objective.__self__.y

    def loss_of_data(X_, y_):
        return jnp.sum((ridge_closed_form(X_, y_, THETA) - target) ** 2)

    direction = jax.random.normal(jax.random.key(0), X.shape)
    fd = finite_difference_jvp(lambda X_: loss_of_data(X_, y), X, direction)
    np.testing.assert_allclose(jnp.sum(grad_X * direction), fd, rtol=1e-7)
    assert_tree_allclose(grad_X, jax.grad(loss_of_data)(X, y), rtol=1e-9)
    assert_tree_allclose(grad_y, jax.grad(loss_of_data, argnums=1)(X, y), rtol=1e-9)
    assert jnp.max(jnp.abs(grad_X)) > 1e-3  # a real gradient, not a silent zero


def test_solution_record_and_jit():
    argmin = ix.ImplicitArgmin(ix.Stationarity(f), SOLVERS["bfgs"], x0=jnp.zeros(d))

    @eqx.filter_jit
    def run(argmin, theta):
        sol = argmin.solve(theta)
        return sol, jax.grad(lambda t: jnp.sum(argmin(t)))(theta)

    sol, grad = run(argmin, THETA)
    assert isinstance(sol, ix.Solution)
    assert sol.result == ix.RESULTS.successful
    assert sol.aux is None
    assert_tree_allclose(grad, jnp.sum(closed_form_jacobian(THETA)), rtol=1e-7)


def test_python_float_parameters_compile_once():
    # Called eagerly with Python floats, the solve is compiled for the first value
    # only (a float is an input of the compiled program, not a constant of it).
    traces = []

    def solver(theta, x0):
        traces.append(theta)  # runs when traced, not when the compiled code runs
        return ridge_closed_form(X, y, theta)

    argmin = ix.ImplicitArgmin(ix.Stationarity(f), ix.solvers.FunctionSolver(solver))
    for theta in (1.0, 2.0, 3.0):
        np.testing.assert_allclose(argmin(theta), ridge_closed_form(X, y, theta))
    assert len(traces) == 1


def test_logistic_regression_hypergradient_against_finite_differences():
    Xl, yl = logistic_data()
    objective = lambda x, theta: logistic_objective(x, theta, Xl, yl)
    argmin = ix.ImplicitArgmin(
        ix.Stationarity(objective, convex=True),
        ix.solvers.OptimistixRootFinder(optx.Newton(rtol=1e-13, atol=1e-13)),
        x0=jnp.zeros(Xl.shape[1]),
    )

    def val_loss(theta):
        return logistic_loss(argmin(theta), Xl, yl)

    theta = jnp.array(0.7)
    grad = jax.grad(val_loss)(theta)
    fd = finite_difference_jvp(val_loss, theta, jnp.array(1.0), eps=1e-4)
    np.testing.assert_allclose(grad, fd, rtol=1e-7)
    hess = jax.hessian(val_loss)(theta)
    fd2 = finite_difference_jvp(jax.grad(val_loss), theta, jnp.array(1.0), eps=1e-4)
    np.testing.assert_allclose(hess, fd2, rtol=1e-6)


class QuadraticLayer(eqx.Module):
    """x*(z) = argmin_x 0.5 x^T (L L^T + I) x - (W z)^T x, a learned quadratic."""

    argmin: ix.ImplicitArgmin

    def __init__(self, dim, in_dim, key):
        k1, k2 = jax.random.split(key)
        params = _QuadraticParams(
            L=0.1 * jax.random.normal(k1, (dim, dim)),
            W=0.1 * jax.random.normal(k2, (dim, in_dim)),
        )
        self.argmin = ix.ImplicitArgmin(
            ix.Stationarity(params.objective, convex=True),
            ix.solvers.OptimistixMinimiser(optx.BFGS(rtol=1e-10, atol=1e-10)),
            x0=jnp.zeros(dim),
        )

    def __call__(self, z):
        return self.argmin(z)


class _QuadraticParams(eqx.Module):
    L: jax.Array
    W: jax.Array

    def objective(self, x, z):
        Q = self.L @ self.L.T + jnp.eye(x.shape[0])
        return 0.5 * x @ Q @ x - (self.W @ z) @ x


def test_equinox_model_with_argmin_layer_trains():
    key = jax.random.key(0)
    dim, in_dim, batch = 3, 4, 16
    model = QuadraticLayer(dim, in_dim, key)
    k1, k2 = jax.random.split(jax.random.key(1))
    Z = jax.random.normal(k1, (batch, in_dim))
    true_map = jax.random.normal(k2, (dim, in_dim))
    targets = 0.5 * Z @ true_map.T

    def loss_fn(model, Z, targets):
        preds = jax.vmap(model)(Z)
        return jnp.mean((preds - targets) ** 2)

    optimiser = optax.adam(3e-2)
    params = eqx.filter(model, eqx.is_inexact_array)
    opt_state = optimiser.init(params)

    @eqx.filter_jit
    def step(model, opt_state):
        loss, grads = eqx.filter_value_and_grad(loss_fn)(model, Z, targets)
        # optax itself is not written for strict dtype promotion.
        with jax.numpy_dtype_promotion("standard"):
            params = eqx.filter(model, eqx.is_inexact_array)
            updates, opt_state = optimiser.update(grads, opt_state, params)
        return eqx.apply_updates(model, updates), opt_state, loss

    losses = []
    for _ in range(30):
        model, opt_state, loss = step(model, opt_state)
        losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0]
    # The gradient of the layer's parameters matches the gradient of the closed form
    # x*(z) = (L L^T + I)^{-1} W z, differentiated directly by JAX.
    grads = eqx.filter_grad(loss_fn)(model, Z, targets)
    params = model.argmin.condition.objective.__self__
    g = grads.argmin.condition.objective.__self__

    def closed_loss(L, W):
        Q = L @ L.T + jnp.eye(dim)
        preds = jnp.linalg.solve(Q, W @ Z.T).T
        return jnp.mean((preds - targets) ** 2)

    g_L, g_W = jax.grad(closed_loss, argnums=(0, 1))(params.L, params.W)
    assert_tree_allclose((g.L, g.W), (g_L, g_W), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("mode", ["jacfwd", "jacrev", "hessian"])
def test_a_block_of_x_that_no_parameter_reaches(mode):
    # x = (x0, x1) with x0* = theta^2 and x1* = 1 whatever theta: the block of
    # `B u` for x1 is a constant zero, which `lax.custom_linear_solve` could neither
    # transpose (reverse mode) nor take as a symbolic-zero tangent (second order).
    condition = ix.Root(lambda x, t: (x[0] - t**2, x[1] - jnp.ones(3)))
    solver = ix.solvers.FunctionSolver(lambda t, x0: (t**2, jnp.ones(3)))
    argmin = ix.ImplicitArgmin(condition, solver)
    theta = jnp.array([1.0, 2.0])
    if mode == "hessian":
        hessian = jax.hessian(lambda t: jnp.sum(argmin(t)[0] ** 2))(theta)
        np.testing.assert_allclose(hessian, np.diag(12 * np.asarray(theta) ** 2))
    else:
        jac = getattr(jax, mode)(argmin)(theta)
        np.testing.assert_allclose(jac[0], np.diag(2 * np.asarray(theta)))
        np.testing.assert_allclose(jac[1], np.zeros((3, 2)))
