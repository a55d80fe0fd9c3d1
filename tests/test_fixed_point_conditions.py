"""The fixed-point conditions built on the operator library: proximal gradient
(lasso, against scikit-learn and the active-set closed form), projected gradient and
mirror descent (multiclass SVM dual, against finite differences), block proximal
gradient, and the linear solvers each condition accepts or refuses."""

import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import optimistix as optx
import pytest

import implicitx as ix

from . import problems
from .helpers import assert_tree_allclose, finite_difference_jvp


# --- Lasso: proximal-gradient fixed point ------------------------------------------

N, D = 40, 8
W_TRUE = np.array([2.0, -1.5, 0.0, 0.0, 1.0, 0.0, 0.0, 0.5])
X_LASSO, Y_LASSO = problems.lasso_data(W_TRUE, N, np.random.default_rng(0))
ALPHA = 0.1
STEP = N / np.linalg.norm(X_LASSO, 2) ** 2  # 1 / Lipschitz constant


def lasso_smooth(x, theta):
    # scikit-learn's scaling: (1 / 2n) ||y - X x||^2 + alpha ||x||_1
    return problems.least_squares(x, jnp.asarray(X_LASSO), theta["y"])


def lasso_argmin(linear_solver=None):
    condition = ix.ProximalGradientFixedPoint(
        lasso_smooth, lambda theta: ix.prox.L1(theta["alpha"]), stepsize=STEP
    )
    solver = ix.solvers.OptimistixFixedPoint(
        optx.FixedPointIteration(rtol=1e-14, atol=1e-14), max_steps=100_000
    )
    return ix.ImplicitArgmin(
        condition,
        solver,
        adjoint=ix.ImplicitAdjoint(linear_solver=linear_solver),
        x0=jnp.zeros(D),
    )


def sklearn_lasso(alpha, y):
    return problems.sklearn_lasso(X_LASSO, y, alpha)


THETA_LASSO = {"alpha": jnp.array(ALPHA), "y": jnp.asarray(Y_LASSO)}


def test_lasso_solution_matches_sklearn():
    x = lasso_argmin()(THETA_LASSO)
    np.testing.assert_allclose(x, sklearn_lasso(ALPHA, Y_LASSO), atol=1e-9)
    support = np.abs(np.asarray(x)) > 0
    assert 0 < support.sum() < D  # a genuinely sparse solution


@pytest.mark.parametrize("jac", [jax.jacfwd, jax.jacrev])
def test_lasso_jacobian_closed_form_on_active_set(jac):
    x = np.asarray(lasso_argmin()(THETA_LASSO))
    support = np.abs(x) > 0
    XS = X_LASSO[:, support]
    gram_inv = np.linalg.inv(XS.T @ XS)
    d_alpha = np.zeros(D)
    d_alpha[support] = -N * gram_inv @ np.sign(x[support])
    d_y = np.zeros((D, N))
    d_y[support] = gram_inv @ XS.T
    J = jac(lasso_argmin())(THETA_LASSO)
    np.testing.assert_allclose(J["alpha"], d_alpha, atol=1e-8)
    np.testing.assert_allclose(J["y"], d_y, atol=1e-8)


@pytest.mark.parametrize("mode", ["jvp", "vjp"])
def test_lasso_derivatives_match_sklearn_finite_differences(mode):
    # The lasso path is piecewise linear, so central differences are exact inside a
    # piece: the error is only scikit-learn's own tolerance divided by eps.
    eps = 1e-6
    direction = np.random.default_rng(1).standard_normal(N)
    fd_alpha = finite_difference_jvp(
        lambda alpha: sklearn_lasso(alpha, Y_LASSO), ALPHA, 1.0, eps=eps
    )
    fd_y = finite_difference_jvp(
        lambda y: sklearn_lasso(ALPHA, y), Y_LASSO, direction, eps=eps
    )
    argmin = lasso_argmin()
    tangent = {"alpha": jnp.array(1.0), "y": jnp.asarray(direction)}
    if mode == "jvp":
        only_alpha = {"alpha": jnp.array(1.0), "y": jnp.zeros(N)}
        only_y = {"alpha": jnp.array(0.0), "y": jnp.asarray(direction)}
        got_alpha = jax.jvp(argmin, (THETA_LASSO,), (only_alpha,))[1]
        got_y = jax.jvp(argmin, (THETA_LASSO,), (only_y,))[1]
    else:
        _, vjp = jax.vjp(argmin, THETA_LASSO)
        rows = [vjp(jnp.eye(D)[i])[0] for i in range(D)]
        got_alpha = jnp.stack([r["alpha"] for r in rows])
        got_y = jnp.stack([r["y"] @ tangent["y"] for r in rows])
    np.testing.assert_allclose(got_alpha, fd_alpha, atol=1e-6)
    np.testing.assert_allclose(got_y, fd_y, atol=1e-6)


def test_gradient_reaches_the_prox_stored_in_the_condition():
    # The prox as a fixed module of the condition: its `strength` is a parameter, and
    # eqx.filter_grad reaches it (same value as when alpha comes through theta).
    import equinox as eqx

    fixed = ix.ImplicitArgmin(
        ix.ProximalGradientFixedPoint(
            lasso_smooth, ix.prox.L1(jnp.asarray(ALPHA)), stepsize=STEP
        ),
        lasso_argmin().solver,
        x0=jnp.zeros(D),
    )
    target = jnp.linspace(-1.0, 1.0, D)

    def loss(argmin):
        return jnp.sum((argmin(THETA_LASSO) - target) ** 2)

    grads = eqx.filter_grad(loss)(fixed)
    via_theta = jax.grad(lambda t: jnp.sum((lasso_argmin()(t) - target) ** 2))(
        THETA_LASSO
    )
    np.testing.assert_allclose(
        grads.condition.prox.strength, via_theta["alpha"], rtol=1e-8
    )
    assert abs(via_theta["alpha"]) > 1e-3


# --- Multiclass SVM dual: projected gradient and mirror descent ---------------------

# More features than samples: a unique dual solution. lambda = 20 is in the soft-margin
# regime (below about 5 the solution is the hard-margin one, constant in lambda).
N_TR, P, K, N_VAL = 10, 20, 3, 15
X_TR, Y_TR, X_VAL, Y_VAL = problems.svm_data(
    N_TR, P, K, np.random.default_rng(2), n_val=N_VAL
)


def svm_dual(beta, lam):
    # Crammer-Singer dual, as a minimisation over one simplex per sample.
    return problems.svm_dual(beta, lam, X_TR, Y_TR)


def svm_step(lam):
    return lam / jnp.linalg.norm(X_TR, 2) ** 2


def _pg_solve(lam, x0):
    # Reference forward solver: projected gradient run to machine precision.
    condition = ix.ProjectedGradientFixedPoint(
        svm_dual, ix.projection.RowWise(ix.projection.Simplex()), svm_step(lam)
    )
    sol = optx.fixed_point(
        condition.fixed_point_map,
        optx.FixedPointIteration(rtol=1e-14, atol=1e-14),
        jnp.full((N_TR, K), 1.0 / K),
        args=lam,
        max_steps=200_000,
        adjoint=optx.RecursiveCheckpointAdjoint(),
    )
    return sol.value


def svm_argmin(kind):
    if kind == "projected_gradient":
        condition = ix.ProjectedGradientFixedPoint(
            svm_dual, ix.projection.RowWise(ix.projection.Simplex()), stepsize=0.5
        )
    else:
        condition = ix.MirrorDescentFixedPoint(
            svm_dual, ix.mirror.NegativeEntropySimplex(), stepsize=0.5
        )
    return ix.ImplicitArgmin(condition, ix.solvers.FunctionSolver(_pg_solve))


def validation_loss(beta, lam):
    return problems.svm_validation_loss(beta, lam, X_TR, Y_TR, X_VAL, Y_VAL)


def test_svm_dual_solution_matches_cvxpy():
    lam = 20.0
    reference = problems.svm_dual_cvxpy(X_TR, Y_TR, lam)
    ours = _pg_solve(jnp.array(lam), None)
    np.testing.assert_allclose(ours, reference, atol=1e-6)
    assert np.sum(np.asarray(ours) < 1e-12) > 0  # some dual variables sit at zero


@pytest.mark.parametrize("kind", ["projected_gradient", "mirror_descent"])
def test_svm_hypergradient_against_finite_differences(kind):
    argmin = svm_argmin(kind)

    def outer(log_lam):
        lam = jnp.exp(log_lam)
        return validation_loss(argmin(lam), lam)

    def outer_reference(log_lam):
        lam = jnp.exp(log_lam)
        return validation_loss(_pg_solve(lam, None), lam)

    log_lam = jnp.log(20.0)
    grad = jax.grad(outer)(log_lam)
    eps = 1e-4
    fd = finite_difference_jvp(outer_reference, log_lam, 1.0, eps=eps)
    assert abs(fd) > 1e-4
    np.testing.assert_allclose(grad, fd, rtol=1e-5)
    _, forward = jax.jvp(outer, (log_lam,), (jnp.array(1.0),))
    np.testing.assert_allclose(forward, fd, rtol=1e-5)


def test_projected_and_mirror_descent_derivatives_agree():
    lam = jnp.array(20.0)
    J_pg = jax.jacrev(svm_argmin("projected_gradient"))(lam)
    J_md = jax.jacfwd(svm_argmin("mirror_descent"))(lam)
    assert_tree_allclose(J_pg, J_md, rtol=1e-7, atol=1e-9)


def test_block_proximal_gradient_matches_proximal_gradient():
    # The SVM dual again: one simplex per row, with per-block step sizes.
    lam = jnp.array(20.0)
    steps = jnp.linspace(0.3, 0.6, N_TR)
    block = ix.BlockProximalGradientFixedPoint(
        svm_dual, ix.prox.FromProjection(ix.projection.Simplex()), stepsize=steps
    )
    argmin = ix.ImplicitArgmin(block, ix.solvers.FunctionSolver(_pg_solve))
    J_block = jax.jacfwd(argmin)(lam)
    J_pg = jax.jacfwd(svm_argmin("projected_gradient"))(lam)
    assert_tree_allclose(J_block, J_pg, rtol=1e-7, atol=1e-9)
    beta = argmin(lam)
    assert_tree_allclose(block.fixed_point_map(beta, lam), beta, atol=1e-12)


# --- Theta-dependent sets -----------------------------------------------------------


def test_projection_hyperparameter_from_theta():
    # x*(r) = argmin_{||x||_1 <= r} 0.5 ||x - c||^2 = P_{L1 ball(r)}(c): the derivative
    # w.r.t. the radius through the fixed point equals that of the projection itself.
    c = jnp.array([1.0, -0.5, 0.25, 2.0])
    condition = ix.ProjectedGradientFixedPoint(
        lambda x, theta: 0.5 * jnp.sum((x - c) ** 2),
        lambda theta: ix.projection.L1Ball(theta),
    )
    argmin = ix.ImplicitArgmin(
        condition,
        ix.solvers.FunctionSolver(lambda r, x0: ix.projection.L1Ball(r)(c)),
    )
    r = jnp.array(1.5)
    expected = jax.jacfwd(lambda r: ix.projection.L1Ball(r)(c))(r)
    assert jnp.linalg.norm(expected) > 0.1
    assert_tree_allclose(jax.jacrev(argmin)(r), expected, atol=1e-10)
    assert_tree_allclose(jax.jacfwd(argmin)(r), expected, atol=1e-10)


# --- Linear solvers: accepted where valid, refused where not ------------------------

VALID = [lx.LU(), lx.QR(), lx.SVD(), lx.GMRES(rtol=1e-12, atol=1e-12)]
INVALID = [lx.CG(rtol=1e-10, atol=1e-10), lx.Cholesky()]


@pytest.mark.parametrize("solver", VALID, ids=lambda s: type(s).__name__)
def test_fixed_point_conditions_accept_general_solvers(solver):
    J = jax.jacfwd(lasso_argmin(solver))(THETA_LASSO)["alpha"]
    J_ref = jax.jacfwd(lasso_argmin())(THETA_LASSO)["alpha"]
    assert_tree_allclose(J, J_ref, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("solver", INVALID, ids=lambda s: type(s).__name__)
def test_fixed_point_conditions_refuse_symmetric_only_solvers(solver):
    for condition in (
        ix.ProximalGradientFixedPoint(lasso_smooth, ix.prox.L1(0.1)),
        ix.ProjectedGradientFixedPoint(
            svm_dual, ix.projection.RowWise(ix.projection.Simplex())
        ),
        ix.MirrorDescentFixedPoint(svm_dual, ix.mirror.NegativeEntropySimplex()),
        ix.BlockProximalGradientFixedPoint(
            svm_dual, ix.prox.FromProjection(ix.projection.Simplex())
        ),
    ):
        argmin = ix.ImplicitArgmin(
            condition,
            ix.solvers.FunctionSolver(lambda theta, x0: jnp.zeros_like(x0)),
            adjoint=ix.ImplicitAdjoint(linear_solver=solver),
        )
        x0 = (
            jnp.zeros(D)
            if isinstance(condition, ix.ProximalGradientFixedPoint)
            else (jnp.full((N_TR, K), 1.0 / K))
        )
        theta = {"y": jnp.asarray(Y_LASSO)} if x0.ndim == 1 else jnp.array(20.0)
        with pytest.raises(ValueError, match="definite"):
            argmin(theta, x0)
