"""Bad input never gives a silently wrong derivative (issue 9): one row per class of
bad input. Each row asserts the exact behaviour: with `throw=True` an error matched by
type and message, with `throw=False` the result code and NaN derivatives, forward and
reverse mode, under `jit` and `vmap` (one bad element does not spoil the others).

The table has four parts, from the bottom layer up: the core rule (non-roots,
singular, negligible or mis-tagged systems, budgets), the operators, the forward
solvers and the step-based conditions, and the external (host) solvers.
"""

import dataclasses
import warnings
from collections.abc import Callable

import cvxpy as cp
import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import optimistix as optx
import pytest

import implicitx as ix
import implicitx.mirror as MM
import implicitx.projection as P
import implicitx.prox as PX
from implicitx.solvers._external import require

from . import problems
from .helpers import assert_tree_allclose, finite_difference_jvp, raises_runtime
from .problems import ridge_closed_form, ridge_data


# ======================================================================================
# Part 1: the core rule
# ======================================================================================


X, y = ridge_data(n=20, d=5)
d = 5


def _ridge(w, theta):
    return problems.ridge_objective(w, theta, X, y)


def _shift(x, theta):  # root x = theta * (1, ..., 5)
    return x - theta * jnp.arange(1.0, 6.0)


# --- 1. A value that is not a root ---------------------------------------------------


def _not_a_root(throw):
    return ix.custom_root(_shift, throw=throw)(lambda theta: jnp.zeros(5))


@pytest.mark.parametrize("mode", [jax.jacfwd, jax.jacrev])
def test_nonroot_raises(mode):
    with raises_runtime("does not satisfy the optimality condition"):
        jax.block_until_ready(mode(_not_a_root(True))(1.0))


def test_nonroot_result_code_and_nan():
    argmin = ix.ImplicitArgmin(
        ix.Root(_shift),
        ix.solvers.FunctionSolver(lambda t, x0: jnp.zeros(5)),
        throw=False,
    )
    assert argmin.solve(1.0).result == ix.RESULTS.nonroot
    assert np.all(np.isnan(jax.jacfwd(argmin)(1.0)))
    assert np.all(np.isnan(jax.grad(lambda t: jnp.sum(argmin(t)))(1.0)))


def test_nonroot_one_bad_element_in_a_batch():
    # Element 1 of the batch is not solved; the others are, and keep their exact
    # derivative (d x*/d theta = (1, ..., 5)), under jit and vmap.
    def solver(theta):
        x = theta * jnp.arange(1.0, 6.0)
        return jnp.where(theta == 2.0, jnp.zeros(5), x)

    fn = ix.custom_root(_shift, throw=False)(solver)
    thetas = jnp.array([1.0, 2.0, 3.0])
    for mode in (jax.jacfwd, jax.jacrev):
        jac = jax.jit(jax.vmap(mode(fn)))(thetas)
        assert np.all(np.isnan(jac[1]))
        assert_tree_allclose(
            jac[jnp.array([0, 2])], jnp.tile(jnp.arange(1.0, 6.0), (2, 1))
        )


def test_root_check_tolerance_is_scale_free():
    # The same converged solve with F scaled by 1e-12 and by 1e12 is accepted; the
    # check compares F with the size of A times a step of the size of x.
    for scale in (1e-12, 1.0, 1e12):
        fn = ix.custom_root(lambda x, t, s=scale: s * _shift(x, t))(
            lambda t: t * jnp.arange(1.0, 6.0) * (1 + 1e-9)
        )
        assert_tree_allclose(jax.jacfwd(fn)(1.0), jnp.arange(1.0, 6.0))


def test_root_check_can_be_disabled_or_inexact():
    solver = ix.solvers.FunctionSolver(lambda t, x0: jnp.zeros(5))
    loose = ix.ImplicitArgmin(
        ix.Root(_shift), solver, ix.ImplicitAdjoint(root_tol=float("inf"))
    )
    assert loose.solve(1.0).result == ix.RESULTS.successful
    inexact = ix.ImplicitArgmin(
        ix.Root(_shift), solver, ix.ImplicitAdjoint(inexact=True)
    )
    # Reported, not raised: the derivative at the given point, asked for explicitly.
    assert inexact.solve(1.0).result == ix.RESULTS.nonroot
    assert_tree_allclose(jax.jacfwd(inexact)(1.0), jnp.arange(1.0, 6.0))


# --- 2. Singular systems through Krylov solves ----------------------------------------


def _valley(x, t):  # minimisers: the line x0 + ... + x_{n-1} = t (A singular)
    return 0.5 * (jnp.sum(x) - t) ** 2


def _valley_solver(n, linear_solver=None, throw=True):
    return ix.custom_root(jax.grad(_valley), linear_solver=linear_solver, throw=throw)(
        lambda t: jnp.zeros(n).at[0].set(t)
    )


_GMRES = lx.GMRES(rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("n", [2, 8])
@pytest.mark.parametrize("mode", [jax.jacfwd, jax.jacrev])
def test_singular_gmres_raises(n, mode):
    # GMRES finds *a* solution of the consistent singular system ([1/n, ...]) with a
    # zero residual; the uniqueness probe reveals that it is not the derivative.
    with raises_runtime("singular"):
        jax.block_until_ready(mode(_valley_solver(n, _GMRES))(1.0))


@pytest.mark.parametrize("jit", [False, True])
def test_singular_gmres_that_breaks_down_raises(jit):
    # Least squares with 5 samples and 10 unknowns: A = X^T X has rank 5, below
    # GMRES's restart (20), so its Krylov space degenerates: the main solve reports
    # stagnation yet leaves a small residual (one of many solutions), and the probe's
    # final stage does not converge. Neither may pass for a derivative.
    X = jax.random.normal(jax.random.key(0), (5, 10))
    y = jax.random.normal(jax.random.key(1), (5,))
    fn = ix.custom_root(
        jax.grad(lambda w, s: 0.5 * jnp.sum((X @ w - s * y) ** 2)), linear_solver=_GMRES
    )(lambda s: jnp.linalg.pinv(X) @ (s * y))
    jacobian = jax.jacfwd(fn)
    with raises_runtime("singular"):
        jax.block_until_ready((jax.jit(jacobian) if jit else jacobian)(1.0))


@pytest.mark.parametrize("n", [2, 8, 600])
def test_singular_krylov_reverse_mode(n):
    # Reverse mode runs no uniqueness probe when its solve succeeds: a loss that does
    # not change along the valley (a function of sum(x)) has the same gradient for
    # every solution the forward solver could pick (d sum(x*)/dt = 1); a loss that
    # does change along it leaves `A^T s = g` without a solution, which the residual
    # refuses and the probe then names.
    fn = _valley_solver(n, _GMRES if n < 600 else None)
    grad = jax.grad(lambda t: jnp.sum(fn(t)) ** 2)(1.5)
    assert_tree_allclose(grad, 3.0, rtol=1e-8)
    with raises_runtime("singular"):  # (eagerly, JAX re-raises it as a ValueError)
        jax.block_until_ready(jax.jit(jax.grad(lambda t: fn(t)[0]))(1.5))
    nan = jax.grad(lambda t: _valley_solver(n, _GMRES, throw=False)(t)[0])(1.5)
    assert np.isnan(nan)


def test_singular_default_krylov_above_dense_size():
    fn = _valley_solver(600)  # the default is GMRES above 500 unknowns
    with raises_runtime("singular"):
        jax.block_until_ready(jax.jacfwd(fn)(1.0))
    nan = jax.jacfwd(_valley_solver(600, throw=False))(1.0)
    assert np.all(np.isnan(nan))


@pytest.mark.parametrize("singular", [True, False])
def test_krylov_probe_spread_null_vector_and_spread_spectrum(singular):
    # The probe's threshold scales like 1/sqrt(n): a null vector spread over all 600
    # entries is still found, and a nonsingular spectrum spread over [0.01, 1] (the
    # probe's loose solve is least accurate there) is not mistaken for a singular one.
    n = 600
    rng = np.random.default_rng(3)
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    eig = np.geomspace(0.01, 1.0, n)
    if singular:
        eig[0] = 0.0
    M = jnp.asarray((Q * eig) @ Q.T)
    b = M @ jnp.asarray(rng.standard_normal(n))  # in the range of M
    solution = jnp.linalg.pinv(M) @ b
    fn = ix.custom_root(lambda x, t: M @ x - t * b)(lambda t: t * solution)
    if singular:
        with raises_runtime("singular"):
            jax.block_until_ready(jax.jacfwd(fn)(1.0))
    else:
        assert_tree_allclose(jax.jacfwd(fn)(1.0), jnp.linalg.solve(M, b), rtol=1e-6)


@pytest.mark.parametrize("batched", [False, True])
def test_krylov_probe_no_false_alarm_on_an_ill_conditioned_system(batched):
    # cond(M) = 1e3: the loose first stage of the probe cannot recover p to its
    # threshold, the second (at the solver's tolerance) can. The multiclass SVM dual
    # by mirror descent (cond 2e3) was reported singular before the second stage.
    n = 300
    rng = np.random.default_rng(4)
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    M = jnp.asarray((Q * np.geomspace(1e-3, 1.0, n)) @ Q.T)
    b = jnp.asarray(rng.standard_normal(n))
    gmres = lx.GMRES(rtol=1e-12, atol=1e-12)
    solution = jnp.linalg.solve(M, b)
    fn = ix.custom_root(lambda x, t: M @ x - t * b, linear_solver=gmres)(
        lambda t: t * solution
    )
    if batched:
        jac = jax.vmap(jax.jacfwd(fn))(jnp.array([1.0, 2.0]))[1]
    else:
        jac = jax.jacfwd(fn)(1.0)
    assert_tree_allclose(jac, solution, rtol=1e-5)


def test_singular_gmres_vmapped_cotangents_raise():
    # Reverse mode vmaps one cotangent per output: 8 > 6 of them.
    fn = _valley_solver(8, _GMRES)
    with raises_runtime("singular"):
        jax.block_until_ready(jax.jacrev(lambda t: jnp.tile(fn(t), 2))(1.0))


def test_reverse_mode_probe_runs_only_for_a_failed_solve(monkeypatch):
    # Reverse mode names a failed Krylov solve by the uniqueness probe. Under
    # `jax.jacrev` (the cotangents vmapped) the probe must still run only when a
    # solve failed, not once per cotangent whatever the outcome: a batched `lax.cond`
    # runs both branches.
    import implicitx._linear_solve as linear_solve

    runs = []
    probe = linear_solve._krylov_nonsingular

    def counted(*args, **kwargs):
        jax.debug.callback(lambda: runs.append(1))
        return probe(*args, **kwargs)

    monkeypatch.setattr(linear_solve, "_krylov_nonsingular", counted)
    M = jnp.asarray(np.diag(np.arange(1.0, 9.0)))
    fn = ix.custom_root(lambda x, t: M @ x - t, linear_solver=_GMRES)(
        lambda t: t / jnp.diag(M)
    )
    theta = jnp.arange(1.0, 9.0)
    jacobian = jax.block_until_ready(jax.jit(jax.jacrev(fn))(theta))
    assert_tree_allclose(jacobian, jnp.diag(1.0 / jnp.diag(M)), rtol=1e-9)
    assert runs == []
    with raises_runtime("singular"):  # a failed solve is still named under vmap
        jax.block_until_ready(jax.jit(jax.jacrev(_valley_solver(8, _GMRES)))(1.0))
    assert runs


def test_singular_pseudo_inverse_still_on_request():
    fn = _valley_solver(4, lx.SVD())
    assert_tree_allclose(jax.jacfwd(fn)(1.0), jnp.full(4, 0.25))


# --- 3. An operator that is uniformly negligible --------------------------------------


def _quartic(x, t):  # Hessian 3 x^2 -> 0 at the solution of t = 0
    return 0.25 * jnp.sum(x**4) - t * jnp.sum(x)


@pytest.mark.parametrize("throw", [True, False])
def test_negligible_operator_is_singular(throw):
    argmin = ix.ImplicitArgmin(
        ix.Stationarity(_quartic),
        ix.solvers.OptimistixRootFinder(optx.Newton(rtol=1e-10, atol=1e-10)),
        x0=jnp.ones(3),
        throw=throw,
    )
    if throw:
        with raises_runtime("singular"):
            jax.block_until_ready(jax.jacobian(argmin)(0.0))
    else:
        assert np.all(np.isnan(jax.jacobian(argmin)(0.0)))
        # Away from 0 the same problem is regular: x* = t^(1/3), dx*/dt = x*/(3 t).
        x = argmin(0.5)
        assert_tree_allclose(jax.jacobian(argmin)(0.5), x / 1.5, rtol=1e-6)


# --- 4. Tags that do not hold ---------------------------------------------------


def _nonsymmetric(n, seed=0):
    rng = np.random.default_rng(seed)
    G = rng.standard_normal((n, n))
    skew = rng.standard_normal((n, n))
    M = G @ G.T / n + np.eye(n) + 0.3 * (skew - skew.T) / np.sqrt(n)
    return jnp.asarray(M), jnp.asarray(rng.standard_normal(n))


_PSD = frozenset({lx.symmetric_tag, lx.positive_semidefinite_tag})


@pytest.mark.parametrize(
    "linear_solver, tags, message",
    [
        (lx.Cholesky(), _PSD, "does not solve"),
        (None, _PSD, "does not solve"),  # the default picks Cholesky
        # CG on a non-symmetric system: no convergence, or a false one.
        (lx.CG(rtol=1e-10, atol=1e-10, max_steps=200), _PSD, "does not solve|not conv"),
        (lx.LU(), frozenset({lx.symmetric_tag}), "does not solve"),  # transposed
    ],
)
@pytest.mark.parametrize("mode", [jax.jacfwd, jax.jacrev])
def test_lying_tags_are_caught(linear_solver, tags, message, mode):
    M, b = _nonsymmetric(5)

    def make(throw):
        return ix.custom_root(
            lambda x, t: t * b - M @ x,
            linear_solver=linear_solver,
            tags=tags,
            throw=throw,
        )(lambda t: jnp.linalg.solve(M, t * b))

    exact = jnp.linalg.solve(M, b)
    if isinstance(linear_solver, lx.LU) and mode is jax.jacfwd:
        # LU solves `A t = b` itself correctly: only the transpose trusts the tag.
        assert_tree_allclose(mode(make(True))(1.0), exact)
        return
    with raises_runtime(message):
        jax.block_until_ready(mode(make(True))(1.0))
    assert np.all(np.isnan(mode(make(False))(1.0)))


def test_true_tags_still_accepted():
    M, b = _nonsymmetric(5)
    S = M + M.T
    fn = ix.custom_root(lambda x, t: t * b - S @ x, tags=_PSD)(
        lambda t: jnp.linalg.solve(S, t * b)
    )
    for mode in (jax.jacfwd, jax.jacrev):
        assert_tree_allclose(mode(fn)(1.0), jnp.linalg.solve(S, b))


# --- 10. Derivatives through aux ----------------------------------------------------


def _with_aux():
    return ix.custom_root(_shift, has_aux=True)(
        lambda t: (t * jnp.arange(1.0, 6.0), 2.0 * t)
    )


def test_aux_reverse_raises():
    fn = _with_aux()
    with pytest.raises(RuntimeError, match="not differentiable"):
        jax.grad(lambda t: fn(t)[1])(1.0)


def test_aux_forward_is_nan_not_zero():
    fn = _with_aux()
    (x, aux), (tx, taux) = jax.jvp(fn, (1.0,), (1.0,))
    assert_tree_allclose(tx, jnp.arange(1.0, 6.0))
    assert np.isnan(taux)


# --- 13. Errors while tracing the condition -------------------------------------------


def test_condition_trace_error_names_theta_and_x():
    argmin = ix.ImplicitArgmin(
        ix.Stationarity(_ridge),
        ix.solvers.OptimistixMinimiser(optx.BFGS(rtol=1e-8, atol=1e-8)),
        x0=jnp.zeros(d),
    )
    with pytest.raises(TypeError) as info:
        argmin(jnp.ones(3))  # theta should be a scalar: broadcasting fails
    notes = "".join(info.value.__notes__)
    assert "the condition `Stationarity`" in notes
    assert "`theta` of structure float64[3]" in notes
    assert f"float64[{d}]" in notes


def test_fixed_point_map_of_wrong_structure():
    argmin = ix.ImplicitArgmin(
        ix.FixedPoint(lambda x, t: (x, x)),
        ix.solvers.PicardIteration(),
        x0=jnp.zeros(3),
    )
    with pytest.raises(ValueError, match="`T` must return the structure of `x`"):
        argmin(1.0)


# --- 14. jax.jit of an argmin layer ---------------------------------------------------


def test_jax_jit_of_an_argmin_layer():
    argmin = ix.ImplicitArgmin(
        ix.Stationarity(_ridge, convex=True),
        ix.solvers.OptimistixMinimiser(optx.BFGS(rtol=1e-10, atol=1e-10)),
        x0=jnp.zeros(d),
    )
    reference = ridge_closed_form(X, y, 2.0)
    assert_tree_allclose(jax.jit(argmin)(2.0), reference, rtol=1e-7)
    assert_tree_allclose(eqx.filter_jit(argmin)(2.0), reference, rtol=1e-7)
    grad = jax.jit(jax.grad(lambda t: jnp.sum(argmin(t))))(2.0)
    fd = finite_difference_jvp(lambda t: jnp.sum(ridge_closed_form(X, y, t)), 2.0, 1.0)
    assert_tree_allclose(grad, fd, rtol=1e-6)


# --- 18. Budgeted solves and inexact backward solves, asked for explicitly ------------


def _contraction(x, t):  # T(x) = 0.5 x + t c: fixed point 2 t c, error halves a step
    return 0.5 * x + t * jnp.arange(1.0, 4.0)


def _budgeted(max_steps, inexact):
    return ix.ImplicitArgmin(
        ix.FixedPoint(_contraction),
        ix.solvers.PicardIteration(max_steps=max_steps),
        ix.ImplicitAdjoint(inexact=inexact),
        x0=jnp.zeros(3),
    )


def test_budgeted_solve_refused_by_default():
    with raises_runtime("maximum number of steps"):
        jax.block_until_ready(jax.jacfwd(_budgeted(5, inexact=False))(1.0))


def test_budgeted_solve_on_request_obeys_theorem_1():
    # The derivative at the last iterate; its error shrinks with the distance of the
    # iterate to the solution (Theorem 1 of Blondel et al.): here exactly, as the map
    # is affine, and the result code says the solve was budgeted.
    exact = 2 * jnp.arange(1.0, 4.0)
    for steps in (3, 6):
        argmin = _budgeted(steps, inexact=True)
        sol = argmin.solve(1.0)
        assert sol.result == ix.RESULTS.nonlinear_max_steps_reached
        assert_tree_allclose(jax.jacfwd(argmin)(1.0), exact)
        assert_tree_allclose(jax.jacrev(argmin)(1.0), exact)


def test_budgeted_nonlinear_error_proportional_to_distance():
    # A nonlinear map: the derivative error over the distance to the solution stays
    # bounded as the budget grows (Theorem 1), while both go to zero.
    def T(x, t):
        return 0.5 * jnp.tanh(x) + t

    ratios = []
    exact_x = ix.ImplicitArgmin(
        ix.FixedPoint(T), ix.solvers.PicardIteration(), x0=jnp.zeros(2)
    )
    for steps in (2, 4, 6):
        argmin = ix.ImplicitArgmin(
            ix.FixedPoint(T),
            ix.solvers.PicardIteration(max_steps=steps),
            ix.ImplicitAdjoint(inexact=True),
            x0=jnp.zeros(2),
        )
        distance = jnp.max(jnp.abs(argmin(1.0) - exact_x(1.0)))
        error = jnp.max(jnp.abs(jax.jacfwd(argmin)(1.0) - jax.jacfwd(exact_x)(1.0)))
        ratios.append(float(error / distance))
        assert 0 < distance < 1
    assert max(ratios) < 1.0  # bounded by the constant of Theorem 1
    assert ratios[-1] > 0


def test_inexact_backward_solve_only_on_request():
    Xl, yl = ridge_data(n=60, d=40, seed=3)

    def f(w, t):
        return problems.ridge_objective(w, t, Xl, yl)

    def make(inexact):
        return ix.ImplicitArgmin(
            ix.Stationarity(f, convex=True),
            ix.solvers.FunctionSolver(lambda t, x0: ridge_closed_form(Xl, yl, t)),
            ix.ImplicitAdjoint(
                linear_solver=lx.CG(rtol=1e-12, atol=1e-12, max_steps=5),
                inexact=inexact,
            ),
        )

    with raises_runtime("did not converge"):
        jax.block_until_ready(jax.jacfwd(make(False))(1.0))
    approx = jax.jacfwd(make(True))(1.0)
    exact = jax.jacfwd(lambda t: ridge_closed_form(Xl, yl, t))(1.0)
    error = jnp.linalg.norm(approx - exact) / jnp.linalg.norm(exact)
    assert 1e-8 < error < 0.5  # approximate, as asked, and not garbage


# ======================================================================================
# Part 2: the operators
#
# Bad and extreme input to the operators (issue 9, items 7, 9 and 16).
#
# - Hyperparameters that make the set empty (or the penalty non-convex) raise a
#   `ValueError` naming the class, the parameter and its value when they are known, and
#   give NaN (values and derivatives, that batch element only) when traced.
# - Projections stay accurate at extreme scales.
# - Python-number hyperparameters (and defaults) are not parameters; arrays are.
# ======================================================================================


# ---------------------------------------------------------------------------------
# Known bad hyperparameters: an error at construction.


_CONCRETE = [
    ("box", lambda: P.Box(1.0, 0.0), r"`Box` needs `lower <= upper`.*lower=1.0"),
    (
        "box-array",
        lambda: P.Box(jnp.zeros(3), jnp.array([1.0, -1.0, 1.0])),
        r"`Box` needs `lower <= upper`.*upper=\[ 1. -1.  1.\]",
    ),
    ("box-nan", lambda: P.Box(jnp.nan, 1.0), r"`Box` needs.*lower=nan"),
    ("l1-ball", lambda: P.L1Ball(-1), r"`L1Ball` needs `radius >= 0`.*radius=-1.0"),
    ("l1-ball-nan", lambda: P.L1Ball(np.nan), r"`L1Ball`.*radius=nan"),
    ("l1-sphere", lambda: P.L1Sphere(-1.0), r"`L1Sphere`.*radius=-1.0"),
    ("l1-sphere-inf", lambda: P.L1Sphere(np.inf), r"`L1Sphere`.*< inf.*radius=inf"),
    ("l2-ball", lambda: P.L2Ball(-1), r"`L2Ball` needs `radius >= 0`.*radius=-1.0"),
    ("l2-sphere", lambda: P.L2Sphere(-0.5), r"`L2Sphere`.*radius=-0.5"),
    ("linf-ball", lambda: P.LInfBall(-1.0), r"`LInfBall`.*radius=-1.0"),
    ("simplex", lambda: P.Simplex(-1), r"`Simplex` needs `0 <= scale < inf`.*-1.0"),
    ("simplex-inf", lambda: P.Simplex(np.inf), r"`Simplex`.*scale=inf"),
    (
        "simplex-jax-array",
        lambda: P.Simplex(jnp.asarray(-2.0)),
        r"`Simplex`.*scale=-2.0",
    ),
    ("simplex-numpy", lambda: P.Simplex(np.float32(-2.0)), r"`Simplex`.*scale=-2.0"),
    ("sparse-simplex", lambda: P.SparseSimplex(2, -1.0), r"`SparseSimplex`.*-1.0"),
    (
        "box-section-b-too-large",
        lambda: P.BoxSection(0.0, 1.0, jnp.ones(3), 5.0),
        r"`BoxSection` needs `min a . x <= b <= max a . x`.*b=5.0",
    ),
    (
        "box-section-b-too-small",
        lambda: P.BoxSection(0.0, 1.0, jnp.array([1.0, -1.0, 2.0]), -1.5),
        r"`BoxSection`.*b=-1.5",
    ),
    (
        "box-section-bounds",
        lambda: P.BoxSection(1.0, 0.0, jnp.ones(3), 1.5),
        r"`BoxSection` needs `lower <= upper`",
    ),
    (
        "hyperplane",
        lambda: P.Hyperplane(jnp.zeros(3), 1.0),
        r"`Hyperplane` needs a finite, non-zero normal `a`.*a=\[0. 0. 0.\]",
    ),
    (
        "halfspace",
        lambda: P.Halfspace(jnp.zeros(3), 0.0),
        r"`Halfspace` needs a finite, non-zero normal",
    ),
    (
        "halfspace-inf",
        lambda: P.Halfspace(jnp.array([1.0, jnp.inf]), 0.0),
        r"`Halfspace`.*a=\[ 1. inf\]",
    ),
    (
        "transport-sums",
        lambda: P.TransportPolytope(jnp.ones(2), jnp.ones(3)),
        r"`TransportPolytope` needs positive marginals.*sum\(a\) = sum\(b\)",
    ),
    (
        "kl-transport-negative",
        lambda: P.KLTransportPolytope(jnp.ones(2), jnp.array([3.0, -1.0])),
        r"`KLTransportPolytope` needs positive marginals",
    ),
    (
        "kl-birkhoff-epsilon",
        lambda: P.KLBirkhoffPolytope(epsilon=0.0),
        r"`KLBirkhoffPolytope` needs `epsilon > 0`.*epsilon=0.0",
    ),
    ("prox-l1", lambda: PX.L1(-1), r"`L1` needs `strength >= 0`.*strength=-1.0"),
    (
        "prox-l1-weights",
        lambda: PX.L1(jnp.array([1.0, -0.5])),
        r"`L1` needs `strength >= 0`.*\[ 1.  -0.5\]",
    ),
    ("prox-nonnegative-l1", lambda: PX.NonNegativeL1(-1.0), r"`NonNegativeL1`.*-1.0"),
    ("prox-ridge", lambda: PX.Ridge(-1), r"`Ridge` needs `strength >= 0`.*-1.0"),
    ("prox-nonnegative-ridge", lambda: PX.NonNegativeRidge(-2.0), r"`NonNeg.*-2.0"),
    ("prox-elastic-net-l1", lambda: PX.ElasticNet(-1.0, 1.0), r"`ElasticNet`.*l1=-1"),
    ("prox-elastic-net-l2", lambda: PX.ElasticNet(1.0, -1.0), r"`ElasticNet`.*l2=-1"),
    ("prox-group-lasso", lambda: PX.GroupLasso(-1.0), r"`GroupLasso`.*strength=-1"),
    (
        "prox-group-lasso-groups",
        lambda: PX.GroupLasso(jnp.array([1.0, -1.0])),
        r"`GroupLasso`.*\[ 1. -1.\]",
    ),
    ("prox-l2-norm", lambda: PX.L2Norm(-1.0), r"`L2Norm` needs `strength >= 0`"),
    ("prox-linf-norm", lambda: PX.LInfNorm(-1.0), r"`LInfNorm` needs `strength >= 0`"),
]


@pytest.mark.parametrize(
    "make, match", [c[1:] for c in _CONCRETE], ids=[c[0] for c in _CONCRETE]
)
def test_known_bad_hyperparameter_raises(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_boundary_values_are_accepted():
    # Non-empty limits: a single point, a degenerate box, the whole space.
    y = jnp.array([0.3, -2.0, 0.5])
    np.testing.assert_array_equal(P.Simplex(0.0)(y), np.zeros(3))
    np.testing.assert_array_equal(P.L1Ball(0)(y), np.zeros(3))
    np.testing.assert_array_equal(P.L2Ball(0.0)(y), np.zeros(3))
    np.testing.assert_array_equal(P.L2Ball(np.inf)(y), y)
    np.testing.assert_array_equal(P.L1Ball(np.inf)(y), y)
    np.testing.assert_array_equal(P.LInfBall(np.inf)(y), y)
    np.testing.assert_array_equal(P.Box(0.5, 0.5)(y), np.full(3, 0.5))
    np.testing.assert_array_equal(
        P.BoxSection(0.0, 1.0, jnp.ones(3), 3.0)(y), np.ones(3)
    )
    np.testing.assert_array_equal(PX.L1(0.0)(y), y)


# ---------------------------------------------------------------------------------
# Traced bad hyperparameters: NaN for that element (values and derivatives).


@dataclasses.dataclass(frozen=True)
class Traced:
    name: str
    # `p -> (y -> output)`, for a scalar hyperparameter `p`.
    make: Callable
    good: float
    bad: float
    y: tuple
    dtype: type = np.float64
    # Derivatives are checked for the closed forms; the transport rows solve an
    # inner problem whose derivative at these small instances is singular.
    derivatives: bool = True

    def point(self):
        return jnp.asarray(self.y, self.dtype)

    def apply(self, p):
        return self.make(p)(self.point())

    def params(self):
        return jnp.asarray([self.good, self.bad, 0.5 * self.good], self.dtype)


_A = (1.0, -2.0, 0.5)
_Y = (0.9, -0.4, 2.0)

_TRACED = [
    Traced("simplex", lambda s: P.Simplex(s), 1.5, -1.0, _Y),
    Traced("simplex-inf", lambda s: P.Simplex(s), 1.5, np.inf, _Y),
    Traced("simplex-f32", lambda s: P.Simplex(s), 1.5, -1.0, _Y, np.float32),
    Traced("sparse-simplex", lambda s: P.SparseSimplex(2, s), 1.0, -1.0, _Y),
    Traced("l1-ball", lambda r: P.L1Ball(r), 1.0, -1.0, _Y),
    Traced("l1-ball-f32", lambda r: P.L1Ball(r), 1.0, -1.0, _Y, np.float32),
    Traced("l1-sphere", lambda r: P.L1Sphere(r), 1.0, -0.5, _Y),
    Traced("l2-ball", lambda r: P.L2Ball(r), 1.0, -1.0, _Y),
    Traced("l2-ball-nan", lambda r: P.L2Ball(r), 1.0, np.nan, _Y),
    Traced("l2-sphere", lambda r: P.L2Sphere(r), 1.0, -1.0, _Y),
    Traced("linf-ball", lambda r: P.LInfBall(r), 1.0, -1.0, _Y),
    Traced("box", lambda u: P.Box(0.0, u), 1.0, -1.0, _Y),
    Traced("box-f32", lambda u: P.Box(0.0, u), 1.0, -1.0, _Y, np.float32),
    Traced(
        "box-section",
        lambda b: P.BoxSection(0.0, 1.0, jnp.ones(3, jnp.asarray(b).dtype), b),
        1.5,
        5.0,
        _Y,
    ),
    Traced(
        "hyperplane",
        lambda s: P.Hyperplane(s * jnp.asarray(_A, jnp.asarray(s).dtype), 0.5),
        1.0,
        0.0,
        _Y,
    ),
    Traced(
        "halfspace",
        lambda s: P.Halfspace(s * jnp.asarray(_A, jnp.asarray(s).dtype), -0.5),
        1.0,
        0.0,
        _Y,
    ),
    Traced(
        "transport",
        lambda s: (
            lambda y: P.TransportPolytope(
                jnp.stack([jnp.ones_like(s), s]), jnp.stack([(1 + s) / 2, (1 + s) / 2])
            )(jnp.outer(y[:2], y[1:]))
        ),
        2.0,
        -0.5,
        _Y,
        derivatives=False,
    ),
    Traced(
        "kl-birkhoff",
        lambda e: lambda y: P.KLBirkhoffPolytope(e)(jnp.outer(y[:2], y[1:])),
        1.0,
        -1.0,
        _Y,
        derivatives=False,
    ),
    Traced("prox-l1", lambda s: lambda y: PX.L1(s)(y, 0.5), 1.0, -1.0, _Y),
    Traced(
        "prox-l1-f32", lambda s: lambda y: PX.L1(s)(y, 0.5), 1.0, -1.0, _Y, np.float32
    ),
    Traced("prox-nonnegative-l1", lambda s: PX.NonNegativeL1(s), 0.5, -1.0, _Y),
    Traced("prox-ridge", lambda s: PX.Ridge(s), 1.0, -0.5, _Y),
    Traced("prox-nonnegative-ridge", lambda s: PX.NonNegativeRidge(s), 1.0, -0.5, _Y),
    Traced("prox-elastic-net-l1", lambda s: PX.ElasticNet(s, 1.0), 0.5, -1.0, _Y),
    Traced("prox-elastic-net-l2", lambda s: PX.ElasticNet(0.5, s), 1.0, -1.0, _Y),
    Traced("prox-group-lasso", lambda s: PX.GroupLasso(s), 1.0, -1.0, _Y),
    Traced("prox-l2-norm", lambda s: PX.L2Norm(s), 1.0, -1.0, _Y),
    Traced("prox-linf-norm", lambda s: PX.LInfNorm(s), 1.0, -1.0, _Y),
    Traced(
        "mirror-euclidean",
        lambda r: lambda y: MM.Euclidean(P.L2Ball(r)).project(y),
        1.0,
        -1.0,
        _Y,
    ),
]


def _traced_ids():
    return [case.name for case in _TRACED]


@pytest.mark.parametrize("case", _TRACED, ids=_traced_ids())
def test_traced_bad_hyperparameter_under_jit_is_nan(case):
    dtype = case.dtype
    bad = jax.jit(case.apply)(jnp.asarray(case.bad, dtype))
    assert bad.dtype == dtype
    assert np.all(np.isnan(bad))
    good = jax.jit(case.apply)(jnp.asarray(case.good, dtype))
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    reference = case.apply(jnp.asarray(case.good, dtype))
    np.testing.assert_allclose(good, reference, rtol=rtol, atol=rtol)
    assert np.all(np.isfinite(good))


@pytest.mark.parametrize("case", _TRACED, ids=_traced_ids())
def test_traced_bad_hyperparameter_under_vmap_spoils_only_its_element(case):
    params = case.params()
    batch = jax.jit(jax.vmap(case.apply))(params)
    assert np.all(np.isnan(batch[1]))
    for i in (0, 2):
        reference = case.apply(params[i])  # concrete: checked at construction
        rtol = 1e-5 if case.dtype == np.float32 else 1e-12
        np.testing.assert_allclose(batch[i], reference, rtol=rtol, atol=rtol)


_DIFFERENTIATED = [case for case in _TRACED if case.derivatives]


@pytest.mark.parametrize("case", _DIFFERENTIATED, ids=lambda case: case.name)
def test_traced_bad_hyperparameter_has_nan_derivatives(case):
    def loss(p):
        return jnp.sum(jnp.sin(case.apply(p)))

    params = case.params()
    reverse = jax.jit(jax.vmap(jax.grad(loss)))(params)
    forward = jax.jit(jax.vmap(jax.jacfwd(loss)))(params)
    for derivative in (reverse, forward):
        assert np.isnan(derivative[1])
        assert np.all(np.isfinite(np.asarray(derivative)[[0, 2]]))
    np.testing.assert_allclose(forward, reverse, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------
# Extreme scales.

_EXTREME = [
    ("simplex-f32-2e9", P.Simplex(), [2e9, 0.0], np.float32, [1.0, 0.0]),
    ("simplex-f32-tie", P.Simplex(), [2e9, 2e9, 0.0], np.float32, [0.5, 0.5, 0.0]),
    ("simplex-f64-1e17", P.Simplex(), [1e17, 0.0], np.float64, [1.0, 0.0]),
    (
        "simplex-f64-shifted",
        P.Simplex(),
        [1e17, 1e17 - 16.0, -1e17],
        np.float64,
        [1.0, 0.0, 0.0],
    ),
    ("simplex-f64-scale-2", P.Simplex(2.0), [-1e17, -1e17], np.float64, [1.0, 1.0]),
    ("l1-ball-f32", P.L1Ball(), [-2e9, 0.0], np.float32, [-1.0, 0.0]),
    ("l1-ball-f64", P.L1Ball(2.0), [0.0, 1e17], np.float64, [0.0, 2.0]),
    ("l1-sphere-f32", P.L1Sphere(), [2e9, 0.0, -3.0], np.float32, [1.0, 0.0, 0.0]),
    ("l1-sphere-f64", P.L1Sphere(), [-1e17, 0.0], np.float64, [-1.0, 0.0]),
    ("sparse-simplex-f32", P.SparseSimplex(1), [0.0, 2e9], np.float32, [0.0, 1.0]),
    ("sparse-simplex-f64", P.SparseSimplex(2), [1e17, 5.0], np.float64, [1.0, 0.0]),
    ("l2-ball-1e200", P.L2Ball(), [3e200, -4e200], np.float64, [0.6, -0.8]),
    ("l2-sphere-1e-200", P.L2Sphere(), [3e-200, 4e-200], np.float64, [0.6, 0.8]),
    ("l2-ball-f32-1e30", P.L2Ball(), [3e30, -4e30], np.float32, [0.6, -0.8]),
    ("l2-sphere-f32-1e-30", P.L2Sphere(), [0.0, -5e-30], np.float32, [0.0, -1.0]),
]


@pytest.mark.parametrize(
    "projection, y, dtype, expected",
    [c[1:] for c in _EXTREME],
    ids=[c[0] for c in _EXTREME],
)
def test_extreme_scale_closed_form(projection, y, dtype, expected):
    x = jax.jit(projection)(jnp.asarray(y, dtype))
    assert x.dtype == dtype
    rtol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(x, expected, rtol=rtol, atol=0)


_SOC_POINTS = [
    [0.3, 1.0, -2.0, 0.5],  # boundary case
    [3.0, 1.0, -2.0, 0.5],  # inside
    [-3.0, 1.0, -2.0, 0.5],  # polar
    [0.0, 0.0, 1.0, 0.0],
]


@pytest.mark.parametrize("point", _SOC_POINTS)
@pytest.mark.parametrize(
    "scale, dtype, rtol",
    [
        (1e200, np.float64, 1e-12),
        (1e-200, np.float64, 1e-12),
        (1e300, np.float64, 1e-12),
        (1e30, np.float32, 1e-5),
        (1e-30, np.float32, 1e-5),
    ],
)
def test_second_order_cone_is_homogeneous_at_extreme_scales(point, scale, dtype, rtol):
    cone = P.SecondOrderCone()
    y = jnp.asarray(point, dtype)
    scaled = jnp.asarray(scale, dtype) * y
    reference = np.asarray(cone(y), np.float64)
    x = np.asarray(jax.jit(cone)(scaled), np.float64)
    np.testing.assert_allclose(x / scale, reference, rtol=rtol, atol=rtol)
    # Degree-one homogeneity: the Jacobian does not depend on the scale.
    np.testing.assert_allclose(
        jax.jacfwd(cone)(scaled), jax.jacfwd(cone)(y), rtol=rtol, atol=rtol
    )
    np.testing.assert_allclose(
        jax.jacrev(cone)(scaled), jax.jacfwd(cone)(y), rtol=rtol, atol=rtol
    )


@pytest.mark.parametrize("scale", [1e-200, 1e200])
def test_halfspace_with_extreme_normal(scale):
    a = jnp.array([1.0, -2.0, 0.5])
    y = jnp.array([0.9, -0.4, 2.0])
    reference = P.Halfspace(a, 0.5)(y)
    x = P.Halfspace(scale * a, scale * 0.5)(y)
    np.testing.assert_allclose(x, reference, rtol=1e-14)
    x = P.Hyperplane(scale * a, scale * 0.5)(y)
    np.testing.assert_allclose(x, P.Hyperplane(a, 0.5)(y), rtol=1e-14)


def test_simplex_jacobian_exact_at_extreme_scale():
    # Support {0, 1}: the Jacobian is I - 1 1^T / 2 there, whatever the offset.
    y = jnp.array([1e17, 1e17, -1e17])
    expected = np.array([[0.5, -0.5, 0], [-0.5, 0.5, 0], [0, 0, 0]])
    simplex = P.Simplex()
    np.testing.assert_array_equal(simplex(y), [0.5, 0.5, 0.0])
    np.testing.assert_array_equal(jax.jacfwd(simplex)(y), expected)
    np.testing.assert_array_equal(jax.jacrev(simplex)(y), expected)


# ---------------------------------------------------------------------------------
# Python-number hyperparameters are not parameters; arrays are.


_DEFAULTS = [
    P.Simplex(),
    P.Simplex(2),
    P.SparseSimplex(2),
    P.L1Ball(),
    P.L1Sphere(),
    P.L2Ball(),
    P.L2Sphere(),
    P.LInfBall(),
    P.Box(0.0, 1.0),
    P.Hypercube(),
    P.NonNegative(),
    P.SecondOrderCone(),
    P.PSDCone(),
    P.ExponentialCone(),
    P.BirkhoffPolytope(),
    P.KLBirkhoffPolytope(),
    P.RowWise(P.Simplex()),
    PX.Zero(),
    PX.L1(),
    PX.NonNegativeL1(),
    PX.Ridge(),
    PX.NonNegativeRidge(),
    PX.ElasticNet(),
    PX.GroupLasso(),
    PX.L2Norm(),
    PX.LInfNorm(0.5),
    PX.FromProjection(P.Simplex()),
    MM.Euclidean(P.L1Ball()),
    MM.NegativeEntropySimplex(),
]


@pytest.mark.parametrize("operator", _DEFAULTS, ids=lambda op: type(op).__name__)
def test_python_number_hyperparameters_are_not_parameters(operator):
    assert jax.tree_util.tree_leaves(eqx.filter(operator, eqx.is_inexact_array)) == []
    for leaf in jax.tree_util.tree_leaves(operator):
        assert type(leaf) in (float, int)  # Python numbers, not arrays


def test_simplex_default_scale_is_not_trained_nor_retraced():
    simplex = P.Simplex()
    assert type(simplex.scale) is float
    traces = []

    @eqx.filter_jit
    def apply(projection, y):
        traces.append(None)
        return projection(y)

    y = jnp.array([0.3, 0.2, -0.1])
    for _ in range(3):
        x = apply(simplex, y)
        # An update by the gradient of a loss, on the trainable leaves only.
        params, static = eqx.partition(simplex, eqx.is_inexact_array)

        def loss(p, static=static):
            return jnp.sum(eqx.combine(p, static)(y) ** 2)

        grads = eqx.filter_grad(loss)(params)
        simplex = eqx.combine(jax.tree.map(lambda p, g: p - g, params, grads), static)
    assert len(traces) == 1
    np.testing.assert_allclose(jnp.sum(x), 1.0, rtol=1e-15)
    assert simplex.scale == 1.0


_LEARNABLE = [
    ("simplex", lambda p: P.Simplex(p), "scale", [0.9, -0.4, 2.0]),
    ("l1-ball", lambda p: P.L1Ball(p), "radius", [0.9, -0.4, 2.0]),
    ("l1-sphere", lambda p: P.L1Sphere(p), "radius", [0.9, -0.4, 2.0]),
    ("l2-ball", lambda p: P.L2Ball(p), "radius", [0.9, -0.4, 2.0]),
    ("l2-sphere", lambda p: P.L2Sphere(p), "radius", [0.9, -0.4, 2.0]),
    ("linf-ball", lambda p: P.LInfBall(p), "radius", [0.9, -0.4, 2.5]),
    ("box", lambda p: P.Box(0.0, p), "upper", [0.9, -0.4, 2.5]),
    ("sparse-simplex", lambda p: P.SparseSimplex(2, p), "scale", [0.9, -0.4, 2.0]),
    ("prox-l1", lambda p: PX.L1(p), "strength", [0.9, -0.4, 2.5]),
    ("prox-ridge", lambda p: PX.Ridge(p), "strength", [0.9, -0.4, 2.0]),
    ("prox-elastic-net", lambda p: PX.ElasticNet(0.1, p), "l2", [0.9, -0.4, 2.0]),
    ("prox-group-lasso", lambda p: PX.GroupLasso(p), "strength", [0.9, -0.4, 2.0]),
    ("prox-l2-norm", lambda p: PX.L2Norm(p), "strength", [0.9, -0.4, 2.0]),
    ("prox-linf-norm", lambda p: PX.LInfNorm(p), "strength", [0.9, -0.4, 2.0]),
]


@pytest.mark.parametrize(
    "make, field, y", [c[1:] for c in _LEARNABLE], ids=[c[0] for c in _LEARNABLE]
)
def test_array_hyperparameter_is_a_parameter_that_gradients_reach(make, field, y):
    y = jnp.asarray(y)
    operator = make(jnp.asarray(2.0))
    leaves = jax.tree_util.tree_leaves(eqx.filter(operator, eqx.is_inexact_array))
    assert len(leaves) == 1 and leaves[0] is getattr(operator, field)

    def loss(op):
        return jnp.sum(jnp.sin(op(y)))

    gradient = getattr(eqx.filter_grad(loss)(operator), field)
    finite_difference = finite_difference_jvp(
        lambda p: loss(make(p)), jnp.asarray(2.0), jnp.asarray(1.0), eps=1e-6
    )
    assert abs(float(finite_difference)) > 1e-3
    np.testing.assert_allclose(gradient, finite_difference, rtol=1e-6)
    np.testing.assert_allclose(
        jax.grad(lambda p: loss(make(p)))(jnp.asarray(2.0)), gradient, rtol=1e-14
    )


def test_numpy_hyperparameter_is_a_parameter():
    simplex = P.Simplex(np.float64(2.0))
    assert isinstance(simplex.scale, jax.Array)
    assert eqx.filter(simplex, eqx.is_inexact_array).scale is simplex.scale


# ======================================================================================
# Part 3: the forward solvers and the step-based conditions
#
# Bad inputs to the forward solvers and the step-based conditions (issue 9, items 6,
# 8, 12, 17, 19): an error for known bad settings, NaN with a result code for traced
# ones and for non-finite data, honest stopping rules, float32 defaults that converge,
# and smooth or PyTree problems in `ProximalGradient`.
# ======================================================================================


R = ix.RESULTS
LAM = 0.1
Q = jnp.array([1.0, 2.0, 4.0])  # the curvatures of a separable quadratic
T = jnp.array([1.0, -0.05, 0.8])  # theta: lasso solution soft(T, LAM) / Q


def quadratic(x, t):
    return 0.5 * jnp.sum(Q.astype(x.dtype) * x**2) - jnp.sum(t * x)


def lasso_reference(t):
    return np.sign(t) * np.maximum(np.abs(t) - LAM, 0) / np.asarray(Q)


def lasso_jacobian(t):
    return np.diag((np.abs(t) > LAM) / np.asarray(Q))


def simplex_quadratic(x, t):
    return 0.75 * jnp.sum(x**2) + jnp.sum(t * x)  # curvature 1.5


def simplex_reference(t):
    return ix.projection.Simplex()(-t / 1.5)


def smooth_reference(t):
    return np.asarray(t) / np.asarray(Q)


def _code(result):
    return np.asarray(result._value)


def _codes(*names):
    return np.array([np.asarray(getattr(R, n)._value) for n in names])


# -- Item 6: step sizes ---------------------------------------------------------------

L1 = ix.prox.L1(LAM)
SIMPLEX = ix.projection.Simplex()
ENTROPY = ix.mirror.NegativeEntropySimplex()
BLOCK_PROX = ix.prox.FromProjection(SIMPLEX)

CONSTRUCTORS = {
    "prox_grad": lambda s: ix.ProximalGradientFixedPoint(quadratic, L1, stepsize=s),
    "projected": lambda s: ix.ProjectedGradientFixedPoint(
        quadratic, SIMPLEX, stepsize=s
    ),
    "mirror": lambda s: ix.MirrorDescentFixedPoint(quadratic, ENTROPY, stepsize=s),
    "block": lambda s: ix.BlockProximalGradientFixedPoint(
        quadratic, BLOCK_PROX, stepsize=s
    ),
    "gradient_descent": lambda s: ix.GradientDescentFixedPoint(quadratic, stepsize=s),
    "solver_proximal": lambda s: ix.solvers.ProximalGradient(stepsize=s),
    "solver_projected": lambda s: ix.solvers.ProjectedGradient(stepsize=s),
}
NAMES = {
    "prox_grad": "ProximalGradientFixedPoint",
    "projected": "ProjectedGradientFixedPoint",
    "mirror": "MirrorDescentFixedPoint",
    "block": "BlockProximalGradientFixedPoint",
    "gradient_descent": "GradientDescentFixedPoint",
    "solver_proximal": "ProximalGradient",
    "solver_projected": "ProjectedGradient",
}
BAD_STEPS = {
    "negative": (-0.5, r"stepsize=-0\.5"),
    "zero": (0.0, r"stepsize=0\.0"),
    "inf": (float("inf"), r"stepsize=inf"),
    "nan": (float("nan"), r"stepsize=nan"),
    "array_entry": (jnp.array([1.0, -1.0, 1.0]), r"stepsize=\[1\.0, -1\.0, 1\.0\]"),
    "jax_array": (jnp.asarray(-2.0), r"stepsize=-2\.0"),
}
STEP_CASES = [(c, b) for c in CONSTRUCTORS for b in BAD_STEPS]


@pytest.mark.parametrize(
    "constructor,bad", STEP_CASES, ids=[f"{c}-{b}" for c, b in STEP_CASES]
)
def test_known_bad_stepsize_raises_naming_class_field_value(constructor, bad):
    value, shown = BAD_STEPS[bad]
    match = rf"`{NAMES[constructor]}` needs a positive, finite `stepsize`; got {shown}"
    with pytest.raises(ValueError, match=match):
        CONSTRUCTORS[constructor](value)


@pytest.mark.parametrize(
    "make",
    [
        lambda: ix.solvers.ProximalGradient(initial_lipschitz=-1.0),
        lambda: ix.solvers.ProjectedGradient(initial_lipschitz=0.0),
        lambda: ix.solvers.BlockCoordinateDescent(initial_lipschitz=-1.0),
    ],
    ids=["proximal", "projected", "block_coordinate"],
)
def test_known_bad_initial_lipschitz_raises(make):
    with pytest.raises(ValueError, match="positive, finite `initial_lipschitz`"):
        make()


def test_positive_steps_are_accepted():
    for name, make in CONSTRUCTORS.items():
        make(0.5)
        if name != "solver_proximal" and name != "solver_projected":
            make(jnp.asarray(0.5))
    ix.BlockProximalGradientFixedPoint(quadratic, BLOCK_PROX, stepsize=jnp.ones(4))


# Traced step sizes: (condition from a step, solver, reference(theta), jacobian).
TRACED = {
    "prox_grad-proximal_gradient": (
        lambda s: ix.ProximalGradientFixedPoint(quadratic, L1, stepsize=s),
        ix.solvers.ProximalGradient(),
        lasso_reference,
    ),
    "prox_grad-fixed_point_iteration": (
        lambda s: ix.ProximalGradientFixedPoint(quadratic, L1, stepsize=0.2 * s),
        ix.solvers.PicardIteration(),
        lasso_reference,
    ),
    "projected-projected_gradient": (
        lambda s: ix.ProjectedGradientFixedPoint(simplex_quadratic, SIMPLEX, s),
        ix.solvers.ProjectedGradient(),
        simplex_reference,
    ),
    "mirror-mirror_descent": (
        lambda s: ix.MirrorDescentFixedPoint(simplex_quadratic, ENTROPY, s),
        ix.solvers.MirrorDescent(),
        simplex_reference,
    ),
    "gradient_descent-iteration": (
        lambda s: ix.GradientDescentFixedPoint(quadratic, stepsize=0.2 * s),
        ix.solvers.PicardIteration(),
        smooth_reference,
    ),
    "gradient_descent-anderson": (
        lambda s: ix.GradientDescentFixedPoint(quadratic, stepsize=0.2 * s),
        ix.solvers.AndersonAcceleration(),
        smooth_reference,
    ),
    "lasso-solver_stepsize": (
        lambda s: (s, ix.ProximalGradientFixedPoint(quadratic, L1)),
        None,
        lasso_reference,
    ),
}
STEPS = jnp.array([1.0, -1.0, 0.5, 0.0])
GOOD = np.array([True, False, True, False])


def _traced_argmin(case, step):
    make, solver, _ = TRACED[case]
    condition = make(step)
    if solver is None:  # the solver's own step size is traced
        step, condition = condition
        solver = ix.solvers.ProximalGradient(stepsize=0.2 * step)
    x0 = jnp.full(3, 1 / 3)
    return ix.ImplicitArgmin(condition, solver, x0=x0, throw=False)


@pytest.mark.parametrize("case", list(TRACED))
def test_traced_bad_stepsize_gives_nan_and_a_code_per_batch_element(case):
    reference = TRACED[case][2]
    solve = jax.jit(jax.vmap(lambda s: _traced_argmin(case, s).solve(T)))
    sol = solve(STEPS)
    np.testing.assert_array_equal(
        _code(sol.result)[~GOOD], _codes("nonfinite_iterate")[0]
    )
    np.testing.assert_array_equal(_code(sol.result)[GOOD], _codes("successful")[0])
    assert np.all(np.isnan(sol.value[~GOOD]))
    for i in np.flatnonzero(GOOD):
        np.testing.assert_allclose(sol.value[i], reference(T), atol=1e-7)

    def loss(t, s):
        return jnp.sum(jnp.cos(jnp.arange(3.0)) * _traced_argmin(case, s)(t))

    grads = jax.jit(jax.vmap(jax.grad(loss), (None, 0)))(T, STEPS)
    jac = jax.jit(
        jax.vmap(jax.jacfwd(lambda t, s: _traced_argmin(case, s)(t)), (None, 0))
    )(T, STEPS)
    assert np.all(np.isnan(grads[~GOOD])) and np.all(np.isnan(jac[~GOOD]))
    expected = jax.jacfwd(lambda t: _traced_argmin(case, jnp.array(1.0))(t))(T)
    for i in np.flatnonzero(GOOD):
        np.testing.assert_allclose(jac[i], expected, atol=1e-7)
        np.testing.assert_allclose(
            grads[i], jnp.cos(jnp.arange(3.0)) @ expected, atol=1e-7
        )
    if reference is lasso_reference:
        np.testing.assert_allclose(expected, lasso_jacobian(T), atol=1e-7)


def test_traced_bad_block_stepsize_fails_its_element_only():
    condition = lambda s: ix.BlockProximalGradientFixedPoint(
        lambda x, t: 0.5 * jnp.sum(x**2) - jnp.sum(t * x), BLOCK_PROX, stepsize=s
    )
    theta = jnp.array([[0.2, 0.5, 0.1], [1.0, 0.0, 0.3]])

    def solve(s):
        argmin = ix.ImplicitArgmin(
            condition(s),
            ix.solvers.BlockCoordinateDescent(),
            x0=jnp.zeros((2, 3)),
            throw=False,
        )
        return argmin.solve(theta)

    sol = jax.jit(jax.vmap(solve))(jnp.array([[1.0, 1.0], [1.0, -1.0]]))
    np.testing.assert_array_equal(
        _code(sol.result), _codes("successful", "nonfinite_iterate")
    )
    expected = jax.vmap(SIMPLEX)(theta)
    np.testing.assert_allclose(sol.value[0], expected, atol=1e-7)
    assert np.all(np.isnan(sol.value[1]))


# -- Item 12: non-finite data ----------------------------------------------------------

NONFINITE = {
    "bfgs": (
        ix.Stationarity(quadratic),
        ix.solvers.OptimistixMinimiser(optx.BFGS(rtol=1e-10, atol=1e-10)),
        smooth_reference,
    ),
    "lbfgs": (
        ix.Stationarity(quadratic),
        ix.solvers.OptimistixMinimiser(optx.LBFGS(rtol=1e-10, atol=1e-10)),
        smooth_reference,
    ),
    "newton": (
        ix.Stationarity(quadratic),
        ix.solvers.OptimistixRootFinder(optx.Newton(rtol=1e-10, atol=1e-10)),
        smooth_reference,
    ),
    "optimistix_fixed_point": (
        ix.GradientDescentFixedPoint(quadratic, stepsize=0.2),
        ix.solvers.OptimistixFixedPoint(
            optx.FixedPointIteration(rtol=1e-10, atol=1e-10), 1000
        ),
        smooth_reference,
    ),
    "proximal_gradient": (
        ix.ProximalGradientFixedPoint(quadratic, L1),
        ix.solvers.ProximalGradient(),
        lasso_reference,
    ),
    "proximal_gradient_smooth": (
        ix.Stationarity(quadratic),
        ix.solvers.ProximalGradient(),
        smooth_reference,
    ),
    "block_coordinate": (
        ix.ProximalGradientFixedPoint(quadratic, L1),
        ix.solvers.BlockCoordinateDescent(),
        lasso_reference,
    ),
    "projected_gradient": (
        ix.ProjectedGradientFixedPoint(simplex_quadratic, SIMPLEX),
        ix.solvers.ProjectedGradient(),
        simplex_reference,
    ),
    "mirror_descent": (
        ix.MirrorDescentFixedPoint(simplex_quadratic, ENTROPY),
        ix.solvers.MirrorDescent(),
        simplex_reference,
    ),
    "fixed_point_iteration": (
        ix.GradientDescentFixedPoint(quadratic, stepsize=0.2),
        ix.solvers.PicardIteration(),
        smooth_reference,
    ),
    "anderson": (
        ix.GradientDescentFixedPoint(quadratic, stepsize=0.2),
        ix.solvers.AndersonAcceleration(),
        smooth_reference,
    ),
}
BAD_DATA = jnp.stack([T, T.at[0].set(jnp.nan), 0.5 * T, T.at[2].set(jnp.inf)])
GOOD_DATA = np.array([True, False, True, False])


@pytest.mark.parametrize("case", list(NONFINITE))
def test_nonfinite_data_is_reported_as_such_per_batch_element(case):
    condition, solver, reference = NONFINITE[case]
    argmin = ix.ImplicitArgmin(condition, solver, x0=jnp.full(3, 1 / 3), throw=False)
    sol = jax.jit(jax.vmap(argmin.solve))(BAD_DATA)
    np.testing.assert_array_equal(
        _code(sol.result),
        _codes("successful", "nonfinite_iterate", "successful", "nonfinite_iterate"),
    )
    for i in np.flatnonzero(GOOD_DATA):
        np.testing.assert_allclose(sol.value[i], reference(BAD_DATA[i]), atol=1e-7)
    jac = jax.jit(jax.vmap(jax.jacfwd(argmin)))(BAD_DATA)
    assert np.all(np.isnan(jac[~GOOD_DATA]))
    assert np.all(np.isfinite(jac[GOOD_DATA]))
    grads = jax.jit(jax.vmap(jax.grad(lambda t: jnp.sum(argmin(t)))))(BAD_DATA)
    assert np.all(np.isfinite(grads[GOOD_DATA]))
    if isinstance(condition, (ix.Stationarity, ix.GradientDescentFixedPoint)):
        assert np.all(np.isnan(grads[~GOOD_DATA]))
    else:
        # Known (shared mechanism, not the solvers): in reverse mode the NaN of a
        # failed solve is lost where the prox/projection Jacobian is structurally
        # zero, giving 0 there; never a finite non-zero value.
        assert np.all(np.isnan(grads[~GOOD_DATA]) | (grads[~GOOD_DATA] == 0))
    # Unbatched, and the message says what happened (not "increase max_steps").
    single = argmin.solve(BAD_DATA[1])
    assert single.result == R.nonfinite_iterate
    assert "non-finite" in R[single.result]
    if isinstance(solver, ix.solvers.ProximalGradient):
        assert int(single.stats["num_steps"]) <= 1  # it stops at once


def test_nonfinite_data_raises_with_throw():
    argmin = ix.ImplicitArgmin(
        ix.ProximalGradientFixedPoint(quadratic, L1),
        ix.solvers.ProximalGradient(),
        x0=jnp.zeros(3),
    )
    with raises_runtime("non-finite"):
        jax.block_until_ready(argmin(BAD_DATA[1]))


# -- Item 8: stopping rules against known solutions ----------------------------------


def test_projected_gradient_2000_instances_stop_at_the_solution():
    # Formerly: the Lipschitz estimate grew to ~1e15 by rounding, the steps vanished,
    # and the change of iterates passed rtol=1e-10 with errors of 1e-8.
    argmin = ix.ImplicitArgmin(
        ix.ProjectedGradientFixedPoint(simplex_quadratic, SIMPLEX),
        ix.solvers.ProjectedGradient(rtol=1e-10, atol=1e-10),
        x0=jnp.full(3, 1 / 3),
        throw=False,
    )
    thetas = jax.random.normal(jax.random.key(0), (2000, 3))
    sol = jax.jit(jax.vmap(argmin.solve))(thetas)
    assert np.all(_code(sol.result) == _codes("successful")[0])
    error = np.max(np.abs(sol.value - jax.vmap(simplex_reference)(thetas)))
    assert error <= 1e-9
    assert float(jnp.max(sol.stats["lipschitz"])) <= 10 * 1.5  # bounded estimate


def _linear_map(x, t):
    return 0.5 * jnp.roll(x, 1) * jnp.array([1.0, -0.8, 0.6], x.dtype) + t


def linear_map_reference(t):
    M = 0.5 * np.roll(np.eye(3), 1, axis=0) * np.array([1.0, -0.8, 0.6])[:, None]
    return np.linalg.solve(np.eye(3) - M, np.asarray(t))


STOPPING = {
    "proximal_gradient": (
        ix.ProximalGradientFixedPoint(quadratic, L1),
        ix.solvers.ProximalGradient,
        lasso_reference,
    ),
    "proximal_gradient_no_acceleration": (
        ix.ProximalGradientFixedPoint(quadratic, L1),
        lambda **kw: ix.solvers.ProximalGradient(acceleration=False, **kw),
        lasso_reference,
    ),
    "proximal_gradient_smooth": (
        ix.Stationarity(quadratic),
        ix.solvers.ProximalGradient,
        smooth_reference,
    ),
    "proximal_gradient_gradient_descent": (
        ix.GradientDescentFixedPoint(quadratic),
        ix.solvers.ProximalGradient,
        smooth_reference,
    ),
    "projected_gradient": (
        ix.ProjectedGradientFixedPoint(simplex_quadratic, SIMPLEX),
        ix.solvers.ProjectedGradient,
        simplex_reference,
    ),
    "block_coordinate": (
        ix.ProximalGradientFixedPoint(quadratic, L1),
        ix.solvers.BlockCoordinateDescent,
        lasso_reference,
    ),
    "mirror_descent": (
        ix.MirrorDescentFixedPoint(simplex_quadratic, ENTROPY),
        ix.solvers.MirrorDescent,
        simplex_reference,
    ),
    "fixed_point_iteration": (
        ix.FixedPoint(_linear_map),
        ix.solvers.PicardIteration,
        linear_map_reference,
    ),
    "anderson": (
        ix.FixedPoint(_linear_map),
        ix.solvers.AndersonAcceleration,
        linear_map_reference,
    ),
}
THETAS = jax.random.normal(jax.random.key(1), (64, 3))


@pytest.mark.parametrize("case", list(STOPPING))
def test_stopping_rule_reaches_the_known_solution(case):
    condition, make, reference = STOPPING[case]
    solver = make(rtol=1e-10, atol=1e-10)
    argmin = ix.ImplicitArgmin(condition, solver, x0=jnp.full(3, 1 / 3), throw=False)
    sol = jax.jit(jax.vmap(argmin.solve))(THETAS)
    assert np.all(_code(sol.result) == _codes("successful")[0])
    expected = np.stack([reference(t) for t in THETAS])
    # The stopping rules bound a step-normalised residual (at tolerance 1e-10); the
    # distance to the solution is at most the condition number (here 4, times 2
    # for the line search's estimate) times more. Mirror descent contracts more
    # slowly near the boundary of the simplex than the 0.9 per step its rule
    # assumes: a looser bound.
    atol = 1e-7 if case == "mirror_descent" else 1e-8
    np.testing.assert_allclose(sol.value, expected, rtol=0, atol=atol)


# -- Item 17: float32 defaults ---------------------------------------------------------


@pytest.mark.parametrize("case", list(STOPPING))
def test_every_solver_converges_in_float32_with_defaults(case):
    condition, make, reference = STOPPING[case]
    argmin = ix.ImplicitArgmin(
        condition, make(), x0=jnp.full(3, 1 / 3, jnp.float32), throw=False
    )
    thetas = THETAS[:16].astype(jnp.float32)
    sol = jax.jit(jax.vmap(argmin.solve))(thetas)
    assert sol.value.dtype == jnp.float32
    assert np.all(_code(sol.result) == _codes("successful")[0])
    expected = np.stack([reference(t) for t in THETAS[:16]])
    atol = 1e-3 if case == "mirror_descent" else 1e-4  # as above
    np.testing.assert_allclose(sol.value, expected, rtol=atol, atol=atol)
    jac = jax.jacfwd(argmin)(thetas[0])
    assert jac.dtype == jnp.float32 and np.all(np.isfinite(jac))


@pytest.mark.parametrize(
    "make",
    [ix.solvers.ProximalGradient, ix.solvers.BlockCoordinateDescent],
    ids=["fista", "block_coordinate"],
)
def test_sparse_coding_float32_converges_with_defaults(make):
    # Formerly 14 of 15 random float32 cases reached max_steps (tolerance 1e-8). The
    # 15 cases run as one batch (one compilation), each with its own result code.
    keys = jax.vmap(lambda seed: jax.random.split(jax.random.key(seed)))(jnp.arange(15))
    X = jax.vmap(lambda k: jax.random.normal(k, (100, 20), jnp.float32))(keys[:, 0])
    D = jax.vmap(lambda k: jax.random.normal(k, (5, 20), jnp.float32))(keys[:, 1])

    def smooth(C, theta):
        D, X = theta
        return 0.5 * jnp.sum((X - C @ D) ** 2) / X.shape[0]

    condition = ix.ProximalGradientFixedPoint(smooth, ix.prox.ElasticNet(0.1, 0.1))
    if make is ix.solvers.BlockCoordinateDescent:
        condition = ix.BlockProximalGradientFixedPoint(
            smooth, ix.prox.ElasticNet(0.1, 0.1)
        )
    argmin = ix.ImplicitArgmin(
        condition, make(), x0=jnp.zeros((100, 5), jnp.float32), throw=False
    )
    sol = jax.vmap(argmin.solve)((D, X))
    assert sol.value.shape == (15, 100, 5)
    assert np.all(_code(sol.result) == _codes("successful")[0])


def test_default_tolerances_follow_the_dtype():
    from implicitx.solvers._loop import tolerance

    assert tolerance(None, jnp.float64) == 1e-8
    assert tolerance(None, jnp.float32) == pytest.approx(100 * 2.0**-23)
    assert tolerance(1e-3, jnp.float32) == 1e-3


# -- Item 19: smooth problems and PyTrees in ProximalGradient --------------------------


def test_proximal_gradient_solves_a_pytree_smooth_problem():
    def objective(x, t):
        return quadratic(x["a"], t) + jnp.sum((x["b"] - 2 * t[0]) ** 2)

    x0 = {"a": jnp.zeros(3), "b": jnp.zeros(2)}
    for condition in (
        ix.Stationarity(objective),
        ix.GradientDescentFixedPoint(objective),
    ):
        argmin = ix.ImplicitArgmin(condition, ix.solvers.ProximalGradient(), x0=x0)
        sol = argmin.solve(T)
        assert sol.result == R.successful
        np.testing.assert_allclose(sol.value["a"], smooth_reference(T), atol=1e-8)
        np.testing.assert_allclose(sol.value["b"], jnp.full(2, 2 * T[0]), atol=1e-8)


@pytest.mark.parametrize(
    "condition",
    [ix.Stationarity(quadratic), ix.GradientDescentFixedPoint(quadratic, stepsize=0.3)],
    ids=["stationarity", "gradient_descent"],
)
def test_proximal_gradient_smooth_derivatives(condition):
    argmin = ix.ImplicitArgmin(
        condition, ix.solvers.ProximalGradient(), x0=jnp.zeros(3)
    )
    expected = np.diag(1 / np.asarray(Q))
    np.testing.assert_allclose(jax.jacfwd(argmin)(T), expected, atol=1e-8)
    np.testing.assert_allclose(jax.jacrev(argmin)(T), expected, atol=1e-8)


def test_proximal_gradient_refuses_a_condition_without_an_objective():
    argmin = ix.ImplicitArgmin(
        ix.Root(lambda x, t: x - t), ix.solvers.ProximalGradient(), x0=jnp.zeros(3)
    )
    with pytest.raises(TypeError, match="composite problems"):
        argmin(T)


# ======================================================================================
# Part 4: the external (host) solvers
#
# Bad input through the external (host) solvers: NaN in the data must give
# `RESULTS.external_solver_failed` and NaN derivatives (`throw=False`) or an error
# (`throw=True`), never a finite point reported as a solution (issue 9, item 5).
#
# Every row solves the same ridge problem, `x*(y) = (X^T X + I)^{-1} X^T y` (or, for
# `ScipyLinprog`, a vertex that is affine in the right-hand side), with one external
# solver, and puts a NaN in `theta`.
# ======================================================================================


N, D = 10, 3
_rng = np.random.default_rng(0)
X_NP = _rng.normal(size=(N, D))
Y_NP = _rng.normal(size=N)
X_JAX = jnp.asarray(X_NP)
RIDGE_INVERSE = np.linalg.inv(X_NP.T @ X_NP + np.eye(D))
FAILED = ix.RESULTS.external_solver_failed
MESSAGE = "An external forward solver"


def ridge_objective(x, y):
    return problems.ridge_objective(x, 1.0, X_JAX, y)


def ridge_residual(x, y):
    return (X_JAX.T @ X_JAX + jnp.eye(D)) @ x - X_JAX.T @ y


def _external_ridge(theta, x0):
    del x0
    return RIDGE_INVERSE @ X_NP.T @ theta


def ridge_lenient(theta, x0):
    """A host solver that hides bad data: NaN in, finite out."""
    return np.nan_to_num(_external_ridge(theta, x0))


def ridge_none(theta, x0):
    """A host solver that returns `None` on bad data."""
    return None if np.any(np.isnan(theta)) else _external_ridge(theta, x0)


def _ridge_cvxpy():
    x, y = cp.Variable(D), cp.Parameter(N)
    objective = 0.5 * cp.sum_squares(X_NP @ x - y) + 0.5 * cp.sum_squares(x)
    problem = cp.Problem(cp.Minimize(objective))
    return ix.solvers.CvxpySolver(problem, x, y, {"solver": "CLARABEL"})


# A linear program over a box, min c^T x for lower <= x <= theta with c < 0: its
# solution is the upper corner, x* = theta.
LP_C = np.array([-1.0, -2.0])
LP_LOWER = np.zeros(2)
LP_UPPER = np.array([1.0, 3.0])


def ridge_case(solver, condition):
    return {
        "condition": condition,
        "solver": solver,
        "x0": jnp.zeros(D),
        "good": jnp.asarray(Y_NP),
        "bad": jnp.asarray(Y_NP).at[3].set(jnp.nan),
        "solution": lambda t: RIDGE_INVERSE @ X_NP.T @ np.asarray(t),
        "jacobian": RIDGE_INVERSE @ X_NP.T,
    }


def _cases():
    stationarity = ix.Stationarity(ridge_objective)
    return {
        "scipy_minimize_lbfgsb": ridge_case(ix.solvers.ScipyMinimize(), stationarity),
        "scipy_minimize_bfgs": ridge_case(
            ix.solvers.ScipyMinimize("BFGS", 1e-10), stationarity
        ),
        "scipy_root": ridge_case(ix.solvers.ScipyRoot(), ix.Root(ridge_residual)),
        "cvxpy": ridge_case(_ridge_cvxpy(), stationarity),
        "external_lenient": ridge_case(
            ix.solvers.ExternalSolver(ridge_lenient), stationarity
        ),
        "external_none": ridge_case(
            ix.solvers.ExternalSolver(ridge_none), stationarity
        ),
        "scipy_linprog": {
            "condition": ix.ProjectedGradientFixedPoint(
                lambda x, theta: jnp.asarray(LP_C) @ x,
                lambda theta: ix.projection.Box(jnp.asarray(LP_LOWER), theta),
            ),
            "solver": ix.solvers.ScipyLinprog(
                lambda theta: {
                    "c": LP_C,
                    "bounds": list(zip(LP_LOWER, theta, strict=True)),
                }
            ),
            "x0": jnp.zeros(2),
            "good": jnp.asarray(LP_UPPER),
            "bad": jnp.asarray(LP_UPPER).at[1].set(jnp.nan),
            "solution": np.asarray,
            "jacobian": np.eye(2),
        },
    }


CASES = _cases()


def _argmin(case, throw):
    return ix.ImplicitArgmin(
        case["condition"], case["solver"], x0=case["x0"], throw=throw
    )


def _quietly(fn, *args):
    """Calls `fn`, silencing the warnings that report the host solver's failure."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return jax.block_until_ready(fn(*args))


def _external_codes(result):
    return np.asarray(result._value)


@pytest.mark.parametrize("name", sorted(CASES))
def test_nan_data_is_a_failure_with_nan_derivatives(name):
    case = CASES[name]
    argmin = _argmin(case, throw=False)
    good = _quietly(argmin.solve, case["good"])
    assert good.result == ix.RESULTS.successful
    np.testing.assert_allclose(good.value, case["solution"](case["good"]), atol=1e-7)
    with pytest.warns(UserWarning, match="NaN|non-finite|no solution"):
        bad = jax.block_until_ready(argmin.solve(case["bad"]))
    assert bad.result == FAILED
    assert np.all(np.isnan(bad.value))
    for jac in (jax.jacfwd, jax.jacrev):
        derivative = _quietly(jac(argmin), case["bad"])
        assert np.all(np.isnan(derivative)), jac.__name__


@pytest.mark.parametrize("name", sorted(CASES))
def test_one_bad_element_in_a_batch(name):
    case = CASES[name]
    argmin = _argmin(case, throw=False)
    thetas = jnp.stack([case["good"], case["bad"], 1.5 * case["good"]])
    batch = _quietly(jax.vmap(argmin.solve), thetas)
    expected_codes = [ix.RESULTS.successful, FAILED, ix.RESULTS.successful]
    np.testing.assert_array_equal(
        _external_codes(batch.result),
        [_external_codes(c) for c in expected_codes],
    )
    assert np.all(np.isnan(batch.value[1]))
    jacobians = _quietly(jax.vmap(jax.jacfwd(argmin)), thetas)
    assert np.all(np.isnan(jacobians[1]))
    for i in (0, 2):
        np.testing.assert_allclose(
            batch.value[i], case["solution"](thetas[i]), atol=1e-7
        )
        np.testing.assert_allclose(jacobians[i], case["jacobian"], atol=1e-7)


@pytest.mark.parametrize("name", sorted(CASES))
def test_nan_data_raises_with_throw(name):
    case = CASES[name]
    argmin = _argmin(case, throw=True)
    np.testing.assert_allclose(
        _quietly(argmin, case["good"]), case["solution"](case["good"]), atol=1e-7
    )
    with pytest.raises(eqx.EquinoxRuntimeError, match=MESSAGE):
        _quietly(argmin, case["bad"])
    with pytest.raises(eqx.EquinoxRuntimeError, match=MESSAGE):
        _quietly(jax.jacrev(argmin), case["bad"])


def test_nan_in_closed_over_data_is_a_failure():
    # NaN in an array the objective closes over (a parameter of the condition), not
    # in `theta`: SciPy's L-BFGS-B then stops at `x0` and reports success.
    X_nan = X_JAX.at[0, 0].set(jnp.nan)

    def objective(x, y):
        return problems.ridge_objective(x, 1.0, X_nan, y)

    argmin = ix.ImplicitArgmin(
        ix.Stationarity(objective),
        ix.solvers.ScipyMinimize(),
        x0=jnp.zeros(D),
        throw=False,
    )
    with pytest.warns(UserWarning, match="contain NaN|not finite"):
        sol = jax.block_until_ready(argmin.solve(jnp.asarray(Y_NP)))
    assert sol.result == FAILED
    assert np.all(np.isnan(sol.value))
    assert np.all(np.isnan(_quietly(jax.jacrev(argmin), jnp.asarray(Y_NP))))


def test_objective_not_finite_at_the_returned_point_is_a_failure():
    # A finite start, a NaN objective everywhere else: whatever SciPy reports, a
    # point where the objective or gradient is not finite is not a solution.
    def objective(x, y):
        return jnp.where(jnp.all(x == 0.0), 0.0, jnp.nan) + jnp.sum(x * y[:D])

    argmin = ix.ImplicitArgmin(
        ix.Stationarity(objective),
        ix.solvers.ScipyMinimize(),
        x0=jnp.zeros(D),
        throw=False,
    )
    with pytest.warns(UserWarning, match="scipy.optimize.minimize"):
        sol = jax.block_until_ready(argmin.solve(jnp.asarray(Y_NP)))
    assert sol.result == FAILED


@pytest.mark.parametrize(
    "module, package",
    [
        ("a_package_that_is_not_installed", "a_package_that_is_not_installed"),
        ("sklearn.not_a_module", "scikit-learn"),
    ],
)
def test_install_hint_names_the_external_extra(module, package):
    with pytest.raises(ImportError, match=r"implicitx\[external\]") as info:
        require(module)
    assert f"`pip install {package}`" in str(info.value)
