"""Forward solvers on a table of problems: each reaches an independent reference
(scikit-learn, SciPy, CVXPY, closed forms) and its implicit hypergradient matches
finite differences of the solution map."""

import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
import pytest

import implicitx as ix

from . import problems
from .helpers import finite_difference_jvp, raises_runtime


TOL = 1e-12
FD_TOL = 1e-14  # the solver giving the finite differences, where they need it
_rng = np.random.default_rng(0)
N, D = 40, 6
W_TRUE = np.array([1.5, -2.0, 0.0, 0.0, 0.7, 0.0])
X, Y = problems.lasso_data(W_TRUE, N, _rng)
LABELS = np.where(X @ W_TRUE + _rng.standard_normal(N) > 0, 1.0, -1.0)
XJ, YJ, LJ = jnp.asarray(X), jnp.asarray(Y), jnp.asarray(LABELS)


class Problem:
    def __init__(self, condition, theta, x0, reference, solvers):
        # The first solver is the most accurate: it gives the finite differences.
        self.condition = condition
        self.theta = theta
        self.x0 = x0
        self.reference = reference  # theta -> numpy solution, independent of implicitx
        self.solvers = solvers


# The problems are those of `problems.py`, bound here to this file's data.

# -- Least squares (ridge), as residuals -------------------------------------------


def ridge_residuals(x, theta):
    return problems.ridge_residuals(x, theta, XJ, YJ)


def ridge_reference(theta):
    return problems.ridge_closed_form(XJ, YJ, theta)


# -- Logistic regression ------------------------------------------------------------


def logistic(x, theta):
    return problems.logistic_objective(x, theta, XJ, LJ)


def logistic_reference(theta):
    return problems.sklearn_logistic(X, LABELS, theta)


# -- Lasso, elastic net, non-negative least squares ------------------------------------


def smooth_ls(x, theta):
    return problems.least_squares(x, XJ, YJ)


def lasso_reference(theta):
    return problems.sklearn_lasso(X, Y, float(theta))


L1_RATIO = 0.7


def enet_reference(theta):
    return problems.sklearn_elastic_net(X, Y, float(theta), L1_RATIO)


def nnls_smooth(x, theta):
    return problems.nnls_objective(x, XJ, theta)


def nnls_reference(theta):
    return problems.scipy_nnls(X, theta)


def _lasso_cvxpy():
    return ix.solvers.CvxpySolver(
        *problems.lasso_cvxpy(X, Y),
        {
            "solver": "CLARABEL",
            "tol_gap_abs": 1e-12,
            "tol_gap_rel": 1e-12,
            "tol_feas": 1e-12,
        },
    )


# -- Multiclass SVM dual (one simplex per row) ---------------------------------------

NS, PS, KS = 8, 16, 3
XS, YS = problems.svm_data(NS, PS, KS, _rng)


def svm_dual(beta, lam):
    return problems.svm_dual(beta, lam, XS, YS)


def svm_reference(lam):
    return problems.svm_dual_cvxpy(
        XS, YS, lam, tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12
    )


# -- A smooth root problem -----------------------------------------------------------

M = jnp.asarray(0.4 * _rng.standard_normal((D, D)) / np.sqrt(D))


def root_F(x, theta):
    return problems.tanh_root(x, theta, M)


def root_T(x, theta):
    return problems.tanh_fixed_point_map(x, theta, M)


def root_reference(theta):
    return problems.scipy_tanh_root(theta, M)


PROBLEMS = {
    "least_squares": Problem(
        ix.LeastSquaresStationarity(ridge_residuals, convex=True),
        jnp.array(2.0),
        jnp.zeros(D),
        ridge_reference,
        {
            "bfgs": ix.solvers.OptimistixMinimiser(optx.BFGS(rtol=TOL, atol=TOL), 1000),
            "lbfgs": ix.solvers.OptimistixMinimiser(
                optx.LBFGS(rtol=TOL, atol=TOL), 1000
            ),
            "newton": ix.solvers.OptimistixRootFinder(optx.Newton(rtol=TOL, atol=TOL)),
            "gauss_newton": ix.solvers.OptimistixLeastSquares(
                optx.GaussNewton(rtol=TOL, atol=TOL)
            ),
            "levenberg_marquardt": ix.solvers.OptimistixLeastSquares(
                optx.LevenbergMarquardt(rtol=TOL, atol=TOL)
            ),
            "scipy_lbfgsb": ix.solvers.ScipyMinimize(
                "L-BFGS-B", 1e-14, {"maxiter": 10_000}
            ),
        },
    ),
    "logistic": Problem(
        ix.Stationarity(logistic, convex=True),
        jnp.array(0.5),
        jnp.zeros(D),
        logistic_reference,
        {
            "newton": ix.solvers.OptimistixRootFinder(optx.Newton(rtol=TOL, atol=TOL)),
            "bfgs": ix.solvers.OptimistixMinimiser(optx.BFGS(rtol=TOL, atol=TOL), 1000),
            "nonlinear_cg": ix.solvers.OptimistixMinimiser(
                optx.NonlinearCG(rtol=TOL, atol=TOL), 5000
            ),
            "scipy_bfgs": ix.solvers.ScipyMinimize("BFGS", 1e-9),
            "sklearn": ix.solvers.ExternalSolver(
                lambda theta, x0: logistic_reference(theta)
            ),
        },
    ),
    "lasso": Problem(
        ix.ProximalGradientFixedPoint(smooth_ls, lambda theta: ix.prox.L1(theta)),
        jnp.array(0.1),
        jnp.zeros(D),
        lasso_reference,
        {
            "proximal_gradient": ix.solvers.ProximalGradient(rtol=TOL, atol=TOL),
            "block_coordinate": ix.solvers.BlockCoordinateDescent(rtol=TOL, atol=TOL),
            "sklearn": ix.solvers.ExternalSolver(
                lambda theta, x0: lasso_reference(theta)
            ),
            "cvxpy": _lasso_cvxpy(),
        },
    ),
    "elastic_net": Problem(
        ix.ProximalGradientFixedPoint(
            smooth_ls,
            lambda theta: ix.prox.ElasticNet(theta * L1_RATIO, theta * (1 - L1_RATIO)),
        ),
        jnp.array(0.2),
        jnp.zeros(D),
        enet_reference,
        {
            "proximal_gradient": ix.solvers.ProximalGradient(rtol=TOL, atol=TOL),
            "block_coordinate": ix.solvers.BlockCoordinateDescent(rtol=TOL, atol=TOL),
            "sklearn": ix.solvers.ExternalSolver(
                lambda theta, x0: enet_reference(theta)
            ),
        },
    ),
    "nnls": Problem(
        ix.ProximalGradientFixedPoint(
            nnls_smooth, ix.prox.FromProjection(ix.projection.NonNegative())
        ),
        jnp.asarray(Y),
        jnp.zeros(D),
        nnls_reference,
        {
            "proximal_gradient": ix.solvers.ProximalGradient(rtol=TOL, atol=TOL),
            "block_coordinate": ix.solvers.BlockCoordinateDescent(rtol=TOL, atol=TOL),
            "scipy_nnls": ix.solvers.ExternalSolver(
                lambda theta, x0: nnls_reference(theta)
            ),
        },
    ),
    "svm_dual": Problem(
        ix.ProjectedGradientFixedPoint(
            svm_dual, ix.projection.RowWise(ix.projection.Simplex())
        ),
        jnp.array(20.0),
        jnp.full((NS, KS), 1.0 / KS),
        svm_reference,
        {
            # Finite differences need the solution to ~1e-14 (error / eps).
            "projected_gradient": ix.solvers.ProjectedGradient(
                rtol=FD_TOL, atol=FD_TOL
            ),
            "proximal_gradient": ix.solvers.ProximalGradient(rtol=TOL, atol=TOL),
        },
    ),
    "svm_dual_blocks": Problem(
        ix.BlockProximalGradientFixedPoint(
            svm_dual, ix.prox.FromProjection(ix.projection.Simplex())
        ),
        jnp.array(20.0),
        jnp.full((NS, KS), 1.0 / KS),
        svm_reference,
        {
            "block_coordinate": ix.solvers.BlockCoordinateDescent(
                rtol=FD_TOL, atol=FD_TOL
            )
        },
    ),
    "svm_dual_mirror": Problem(
        ix.MirrorDescentFixedPoint(svm_dual, ix.mirror.NegativeEntropySimplex(), 0.5),
        jnp.array(20.0),
        jnp.full((NS, KS), 1.0 / KS),
        svm_reference,
        {
            "mirror_descent": ix.solvers.MirrorDescent(
                rtol=TOL, atol=TOL, max_steps=100_000
            )
        },
    ),
    "root": Problem(
        ix.Root(root_F),
        jnp.linspace(-1.0, 1.0, D),
        jnp.zeros(D),
        root_reference,
        {
            "newton": ix.solvers.OptimistixRootFinder(optx.Newton(rtol=TOL, atol=TOL)),
            "chord": ix.solvers.OptimistixRootFinder(optx.Chord(rtol=TOL, atol=TOL)),
            "scipy_hybr": ix.solvers.ScipyRoot(),
        },
    ),
    "root_fixed_point": Problem(
        ix.FixedPoint(root_T),
        jnp.linspace(-1.0, 1.0, D),
        jnp.zeros(D),
        root_reference,
        {
            "anderson": ix.solvers.AndersonAcceleration(rtol=TOL, atol=TOL),
            "iteration": ix.solvers.PicardIteration(rtol=TOL, atol=TOL),
            "optimistix": ix.solvers.OptimistixFixedPoint(
                optx.FixedPointIteration(rtol=TOL, atol=TOL), 10_000
            ),
        },
    ),
}

CASES = [(p, s) for p in PROBLEMS for s in PROBLEMS[p].solvers]


def _argmin(problem, solver):
    return ix.ImplicitArgmin(problem.condition, problem.solvers[solver], x0=problem.x0)


def _outer(x):
    weights = jnp.cos(jnp.arange(x.size, dtype=x.dtype)).reshape(x.shape)
    return jnp.sum(weights * x) + 0.5 * jnp.sum(x**2)


@pytest.mark.parametrize("problem,solver", CASES, ids=[f"{p}-{s}" for p, s in CASES])
def test_solution_and_hypergradient(problem, solver):
    prob = PROBLEMS[problem]
    argmin = _argmin(prob, solver)
    sol = argmin.solve(prob.theta)
    assert sol.result == ix.RESULTS.successful
    np.testing.assert_allclose(sol.value, prob.reference(prob.theta), atol=1e-6)

    # Hypergradient of an outer loss vs central differences of the solution map.
    grad = jax.grad(lambda t: _outer(argmin(t)))(prob.theta)
    direction = jnp.cos(jnp.arange(prob.theta.size, dtype=jnp.float64) + 1.0).reshape(
        prob.theta.shape
    )
    eps = 1e-5
    accurate = _argmin(prob, next(iter(prob.solvers)))
    primal = jax.jit(lambda t: _outer(accurate(t)))
    fd = finite_difference_jvp(primal, prob.theta, direction, eps=eps)
    assert abs(fd) > 1e-6
    np.testing.assert_allclose(jnp.sum(grad * direction), fd, rtol=1e-5, atol=1e-8)


def test_three_solvers_give_the_same_lasso_hypergradient():
    prob = PROBLEMS["lasso"]
    grads = {
        name: jax.grad(lambda t, n=name: _outer(_argmin(prob, n)(t)))(prob.theta)
        for name in ("proximal_gradient", "block_coordinate", "sklearn")
    }
    for name in ("block_coordinate", "sklearn"):
        np.testing.assert_allclose(grads[name], grads["proximal_gradient"], rtol=1e-6)
    assert abs(grads["sklearn"]) > 1e-3


@pytest.mark.parametrize(
    "solver",
    [
        ix.solvers.ProximalGradient(rtol=TOL, atol=TOL, max_steps=2000),
        ix.solvers.BlockCoordinateDescent(rtol=TOL, atol=TOL, max_steps=500),
    ],
    ids=["proximal_gradient", "block_coordinate"],
)
def test_unrolled_and_implicit_agree_at_convergence_and_differ_early(solver):
    prob = PROBLEMS["lasso"]

    def grads(solver, adjoint, mode):
        argmin = ix.ImplicitArgmin(
            prob.condition, solver, adjoint=adjoint, x0=prob.x0, throw=False
        )
        fn = lambda t: _outer(argmin(t))
        return jax.grad(fn)(prob.theta) if mode == "rev" else jax.jacfwd(fn)(prob.theta)

    implicit = grads(solver, ix.ImplicitAdjoint(), "rev")
    for mode in ("rev", "fwd"):
        unrolled = grads(solver, ix.UnrolledAdjoint(), mode)
        np.testing.assert_allclose(unrolled, implicit, rtol=1e-7)
    early = (
        ix.solvers.ProximalGradient(max_steps=3)
        if isinstance(solver, ix.solvers.ProximalGradient)
        else ix.solvers.BlockCoordinateDescent(max_steps=1)
    )
    unrolled_early = grads(early, ix.UnrolledAdjoint(), "rev")
    assert jnp.isfinite(unrolled_early)
    assert abs(unrolled_early - implicit) > 1e-3 * abs(implicit)
    # The implicit derivative at an unconverged point is refused (NaN), not faked.
    assert jnp.isnan(grads(early, ix.ImplicitAdjoint(), "rev"))


def test_vmap_over_a_batch_of_64_thetas_matches_a_loop():
    prob = PROBLEMS["lasso"]
    argmin = _argmin(prob, "proximal_gradient")
    thetas = jnp.linspace(0.01, 0.5, 64)
    hypergrad = jax.grad(lambda t: _outer(argmin(t)))
    batched_x = jax.jit(jax.vmap(lambda t: argmin(t)))(thetas)
    batched_g = jax.jit(jax.vmap(hypergrad))(thetas)
    single_x = jax.jit(lambda t: argmin(t))
    single_g = jax.jit(hypergrad)
    for i, t in enumerate(thetas):
        # Both stop at tolerance 1e-12 (a residual): they may differ by a few 1e-12.
        np.testing.assert_allclose(batched_x[i], single_x(t), rtol=1e-9, atol=1e-11)
        np.testing.assert_allclose(batched_g[i], single_g(t), rtol=1e-8, atol=1e-12)


def test_vmap_over_an_external_solver():
    prob = PROBLEMS["lasso"]
    argmin = _argmin(prob, "sklearn")
    thetas = jnp.array([0.05, 0.1, 0.3])
    batched = jax.vmap(argmin)(thetas)
    for i, t in enumerate(thetas):
        np.testing.assert_allclose(batched[i], lasso_reference(t), atol=1e-10)


def _failing(theta, x0):
    if float(theta) > 1.0:
        raise RuntimeError("solver exploded")
    if float(theta) < 0.0:
        return np.full(D, np.nan)
    return lasso_reference(theta)


def test_external_solver_failures_are_reported():
    prob = PROBLEMS["lasso"]
    argmin = ix.ImplicitArgmin(
        prob.condition, ix.solvers.ExternalSolver(_failing), x0=prob.x0, throw=False
    )
    with pytest.warns(UserWarning, match="solver exploded"):
        sol = argmin.solve(jnp.array(2.0))
    assert sol.result == ix.RESULTS.external_solver_failed
    with pytest.warns(UserWarning, match="non-finite"):
        assert argmin.solve(jnp.array(-1.0)).result == ix.RESULTS.external_solver_failed
    assert argmin.solve(jnp.array(0.1)).result == ix.RESULTS.successful
    # A batch in which one instance fails says which.
    with pytest.warns(UserWarning, match="solver exploded"):
        batch = jax.vmap(argmin.solve)(jnp.array([0.1, 2.0, 0.2]))
    failed = np.asarray(batch.result._value) == np.asarray(
        ix.RESULTS.external_solver_failed._value
    )
    np.testing.assert_array_equal(failed, [False, True, False])
    # With throw=True (the default) the failure is an error.
    throwing = ix.ImplicitArgmin(
        prob.condition, ix.solvers.ExternalSolver(_failing), x0=prob.x0
    )
    with (
        pytest.warns(UserWarning),
        raises_runtime("external forward solver"),
    ):
        jax.block_until_ready(throwing(jnp.array(2.0)))


def test_missing_optional_dependency_gives_an_install_hint():
    from implicitx.solvers._external import require

    with pytest.raises(ImportError, match="pip install"):
        require("a_package_that_is_not_installed")


def test_external_solvers_cannot_be_unrolled():
    prob = PROBLEMS["lasso"]
    argmin = ix.ImplicitArgmin(
        prob.condition,
        prob.solvers["sklearn"],
        adjoint=ix.UnrolledAdjoint(),
        x0=prob.x0,
    )
    with pytest.raises(ValueError, match="cannot be differentiated through"):
        argmin(prob.theta)


def test_solvers_refuse_conditions_they_cannot_solve():
    # A smooth condition is accepted (g = 0); one without an objective is not.
    with pytest.raises(TypeError, match="composite"):
        ix.ImplicitArgmin(
            ix.Root(root_F), ix.solvers.ProximalGradient(), x0=jnp.zeros(D)
        )(jnp.linspace(-1.0, 1.0, D))
    with pytest.raises(TypeError, match="MirrorDescentFixedPoint"):
        ix.ImplicitArgmin(
            PROBLEMS["svm_dual"].condition,
            ix.solvers.MirrorDescent(),
            x0=jnp.zeros((NS, KS)),
        )(jnp.array(1.0))
    with pytest.raises(TypeError, match="least-squares residuals"):
        ix.ImplicitArgmin(
            ix.Stationarity(logistic),
            ix.solvers.OptimistixLeastSquares(optx.GaussNewton(rtol=1e-8, atol=1e-8)),
            x0=jnp.zeros(D),
        )(jnp.array(1.0))


def test_one_step_adjoint_is_the_derivative_of_one_map_application():
    # For x = T(x, theta) with T(x, theta) = theta - 0.5 tanh(M x), one-step gives
    # dT/dtheta = I (it ignores dT/dx), whereas the exact Jacobian is (I + 0.5 D M)^-1.
    prob = PROBLEMS["root_fixed_point"]
    one_step = ix.ImplicitArgmin(
        prob.condition,
        prob.solvers["anderson"],
        adjoint=ix.OneStepAdjoint(),
        x0=prob.x0,
    )
    exact = _argmin(prob, "anderson")
    J1 = jax.jacrev(one_step)(prob.theta)
    np.testing.assert_allclose(J1, np.eye(D), atol=1e-12)
    J = jax.jacfwd(exact)(prob.theta)
    x = exact(prob.theta)
    expected = np.linalg.inv(np.eye(D) + 0.5 * np.diag(1 - np.tanh(M @ x) ** 2) @ M)
    np.testing.assert_allclose(J, expected, atol=1e-10)


def test_linear_program_with_scipy_linprog():
    # min c^T x over {G x <= h}: the solution is the vertex where constraints 0 and 1
    # are active, x* = G_act^{-1} h_act, an affine function of h.
    G = np.array([[1.0, 2.0], [3.0, -1.0], [-1.0, 0.0], [0.0, -1.0], [1.0, 1.0]])
    h_np = np.array([4.0, 3.0, 0.5, 0.5, 10.0])
    h = jnp.asarray(h_np)
    c = np.array([-1.0, -1.0])
    condition = ix.ProjectedGradientFixedPoint(
        lambda x, theta: jnp.asarray(c) @ x,
        lambda theta: ix.projection.Polyhedron(G=jnp.asarray(G), h=theta),
    )
    solver = ix.solvers.ScipyLinprog(lambda theta: {"c": c, "A_ub": G, "b_ub": theta})
    argmin = ix.ImplicitArgmin(condition, solver, x0=jnp.zeros(2))
    active = [0, 1]
    vertex = np.linalg.solve(G[active], h_np[active])
    np.testing.assert_allclose(argmin(h), vertex, atol=1e-9)
    expected = np.zeros((2, 5))
    expected[:, active] = np.linalg.inv(G[active])
    np.testing.assert_allclose(jax.jacrev(argmin)(h), expected, atol=1e-8)
    np.testing.assert_allclose(jax.jacfwd(argmin)(h), expected, atol=1e-8)


def test_root_finder_options_depend_on_theta_bisection_bracket():
    # x^3 = theta has the root theta^(1/3), bracketed by [0, max(1, theta)] for
    # theta > 0: the bracket is computed from theta by the `options` callable.
    condition = ix.Root(lambda x, theta: x**3 - theta)
    solver = ix.solvers.OptimistixRootFinder(
        optx.Bisection(rtol=1e-12, atol=1e-12, flip=False),
        max_steps=200,
        options=lambda theta: dict(lower=0.0, upper=jnp.maximum(1.0, theta)),
    )
    argmin = ix.ImplicitArgmin(condition, solver)
    for theta in (0.3, 8.0, 1e3):
        theta = jnp.asarray(theta)
        x0 = jnp.maximum(1.0, theta) / 2  # bisection starts inside its bracket
        sol = argmin.solve(theta, x0)
        assert sol.result == ix.RESULTS.successful
        np.testing.assert_allclose(sol.value, theta ** (1 / 3), rtol=1e-10)
        grad = jax.grad(lambda t, x0=x0: argmin(t, x0))(theta)
        np.testing.assert_allclose(grad, theta ** (-2 / 3) / 3, rtol=1e-8)


def test_polished_without_max_error_takes_the_coarse_result():
    condition = ix.Root(lambda x, theta: x**3 - theta)
    error = lambda x, theta: jnp.abs(x**3 - theta)
    newton = ix.solvers.OptimistixRootFinder(optx.Newton(rtol=1e-12, atol=1e-12))
    short = ix.solvers.OptimistixRootFinder(
        optx.Newton(rtol=1e-12, atol=1e-12), max_steps=2
    )
    theta, x0 = jnp.asarray(8.0), jnp.asarray(1.0)
    # The coarse solve converges: success, polished value at least as good.
    sol = ix.solvers.Polished(newton, short, error, max_error=None).solve(
        condition, theta, x0
    )
    assert sol.result == ix.RESULTS.successful
    np.testing.assert_allclose(sol.value, 2.0, rtol=1e-12)
    # The coarse solve stops short: its failure is reported, even though the polish
    # (a converging Newton run) found the root.
    sol = ix.solvers.Polished(short, newton, error, max_error=None).solve(
        condition, theta, x0
    )
    assert sol.result == ix.RESULTS.nonlinear_max_steps_reached
    np.testing.assert_allclose(sol.value, 2.0, rtol=1e-12)
