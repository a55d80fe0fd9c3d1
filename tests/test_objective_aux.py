"""Objectives with auxiliary output (`has_aux=True`): the solvers read the value
alone, and `Solution.aux` is the auxiliary output at the solution, differentiable
through the implicit derivative of the solution."""

import jax
import jax.numpy as jnp
import optimistix as optx
import pytest

import implicitx as ix

from .helpers import assert_tree_allclose, finite_difference_jvp
from .problems import (
    ridge_closed_form,
    ridge_closed_form_jacobian,
    ridge_data,
    ridge_objective,
    ridge_residuals,
)


X, Y = ridge_data()


def _ridge_with_aux(x, theta):
    residual = X @ x - Y
    value = ridge_objective(x, theta, X, Y)
    return value, {"predictions": X @ x, "residual_norm": jnp.linalg.norm(residual)}


def _stationarity_argmin(has_aux):
    objective = _ridge_with_aux if has_aux else (lambda x, t: _ridge_with_aux(x, t)[0])
    return ix.ImplicitArgmin(
        ix.Stationarity(objective, convex=True, has_aux=has_aux),
        ix.solvers.OptimistixMinimiser(optx.BFGS(rtol=1e-12, atol=1e-12)),
        x0=jnp.zeros(X.shape[1]),
    )


def test_stationarity_aux_at_the_solution():
    sol = _stationarity_argmin(True).solve(2.0)
    x = ridge_closed_form(X, Y, 2.0)
    assert_tree_allclose(sol.value, x, rtol=1e-7, atol=1e-8)
    assert_tree_allclose(sol.aux["predictions"], X @ x, rtol=1e-7, atol=1e-8)
    plain = _stationarity_argmin(False).solve(2.0)
    assert plain.aux is None
    assert_tree_allclose(sol.value, plain.value, rtol=1e-12, atol=1e-12)


def test_aux_is_differentiable_through_the_solution():
    argmin = _stationarity_argmin(True)

    def mean_prediction(theta):
        return jnp.mean(argmin.solve(theta).aux["predictions"])

    expected = jnp.mean(X @ ridge_closed_form_jacobian(X, Y, 2.0))
    assert_tree_allclose(jax.grad(mean_prediction)(2.0), expected, rtol=1e-7)
    assert_tree_allclose(jax.jacfwd(mean_prediction)(2.0), expected, rtol=1e-7)
    # Differences of BFGS solutions carry its error (~1e-9) over the step (1e-5).
    fd = finite_difference_jvp(mean_prediction, 2.0, 1.0)
    assert_tree_allclose(jax.grad(mean_prediction)(2.0), fd, rtol=1e-3)


def _lasso_with_aux(x, theta):
    residual = X @ x - Y
    return 0.5 * jnp.sum(residual**2), residual


@pytest.mark.parametrize(
    "solver",
    [
        ix.solvers.ProximalGradient(rtol=1e-12, atol=1e-12),
        ix.solvers.BlockCoordinateDescent(rtol=1e-12, atol=1e-12),
    ],
    ids=["proximal_gradient", "block_coordinate_descent"],
)
def test_composite_solvers_read_the_value(solver):
    prox = lambda theta: ix.prox.L1(theta)

    def argmin(has_aux):
        objective = (
            _lasso_with_aux if has_aux else (lambda x, t: _lasso_with_aux(x, t)[0])
        )
        condition = ix.ProximalGradientFixedPoint(objective, prox, has_aux=has_aux)
        return ix.ImplicitArgmin(condition, solver, x0=jnp.zeros(X.shape[1]))

    with_aux, plain = argmin(True).solve(3.0), argmin(False).solve(3.0)
    assert_tree_allclose(with_aux.value, plain.value, rtol=0, atol=0)
    assert_tree_allclose(with_aux.aux, X @ plain.value - Y, rtol=1e-12)
    assert with_aux.result == ix.RESULTS.successful


def test_mirror_descent_reads_the_value():
    target = jnp.array([0.2, 0.5, 0.3])

    def objective(x, theta):
        return 0.5 * theta * jnp.sum((x - target) ** 2), jnp.argmax(x)

    condition = ix.MirrorDescentFixedPoint(
        objective, ix.mirror.NegativeEntropySimplex(), stepsize=0.5, has_aux=True
    )
    argmin = ix.ImplicitArgmin(
        condition, ix.solvers.MirrorDescent(rtol=1e-12, atol=1e-12), x0=jnp.ones(3) / 3
    )
    sol = argmin.solve(1.0)
    assert_tree_allclose(sol.value, target, rtol=1e-8)
    assert int(sol.aux) == 1


def test_has_aux_without_a_pair_is_an_error():
    condition = ix.Stationarity(lambda x, t: jnp.sum(x**2) - t, has_aux=True)
    with pytest.raises(ValueError, match=r"must return a pair `\(value, aux\)`"):
        condition.objective_aux(jnp.ones(2), 1.0)


def test_aux_from_both_objective_and_solver_is_an_error():
    solver = ix.solvers.FunctionSolver(
        lambda theta, x0: (ridge_closed_form(X, Y, theta), 0.0), has_aux=True
    )
    argmin = ix.ImplicitArgmin(ix.Stationarity(_ridge_with_aux, has_aux=True), solver)
    with pytest.raises(ValueError, match="Both the objective of `Stationarity`"):
        argmin.solve(2.0)


def _ridge_residuals_with_aux(x, theta):
    # 0.5 ||r||^2 with r = (X x - Y, sqrt(theta) x) is the ridge objective.
    return ridge_residuals(x, theta, X, Y), {"predictions": X @ x}


@pytest.mark.parametrize(
    "solver",
    [
        ix.solvers.OptimistixLeastSquares(optx.GaussNewton(rtol=1e-12, atol=1e-12)),
        ix.solvers.OptimistixMinimiser(optx.BFGS(rtol=1e-12, atol=1e-12)),
    ],
    ids=["gauss_newton", "bfgs"],
)
def test_least_squares_aux_at_the_solution_and_its_derivative(solver):
    condition = ix.LeastSquaresStationarity(
        _ridge_residuals_with_aux, convex=True, has_aux=True
    )
    argmin = ix.ImplicitArgmin(condition, solver, x0=jnp.zeros(X.shape[1]))
    theta = 2.0
    sol = argmin.solve(theta)
    x = ridge_closed_form(X, Y, theta)
    assert_tree_allclose(sol.value, x, rtol=1e-7, atol=1e-8)
    assert_tree_allclose(sol.aux["predictions"], X @ x, rtol=1e-7, atol=1e-8)
    # d(predictions)/d(theta) = X dx*/dtheta, in closed form.
    _, tangent = jax.jvp(lambda t: argmin.solve(t).aux["predictions"], (theta,), (1.0,))
    expected = X @ ridge_closed_form_jacobian(X, Y, theta)
    assert_tree_allclose(tangent, expected, rtol=1e-6, atol=1e-8)
