"""Bad input never gives a silently wrong derivative: one row per class of bad input
of the core rule (issue 9). Each row asserts the exact behaviour: with `throw=True` an
error matched by type and message, with `throw=False` the result code and NaN
derivatives, forward and reverse mode, under `jit` and `vmap` (one bad element does
not spoil the others). Operators, solvers and external solvers have their own tables
(`test_bad_input_operators.py`, `test_bad_input_solvers.py`,
`test_bad_input_external.py`)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import optimistix as optx
import pytest

import implicitx as ix

from .helpers import (
    assert_tree_allclose,
    finite_difference_jvp,
    raises_runtime,
    ridge_closed_form,
    ridge_data,
)


X, y = ridge_data(n=20, d=5)
d = 5


def _ridge(w, theta):
    return 0.5 * jnp.sum((X @ w - y) ** 2) + 0.5 * theta * jnp.sum(w**2)


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


def test_singular_default_krylov_above_dense_size():
    fn = _valley_solver(600)  # the default is GMRES above 500 unknowns
    with raises_runtime("singular"):
        jax.block_until_ready(jax.jacfwd(fn)(1.0))
    nan = jax.jacfwd(_valley_solver(600, throw=False))(1.0)
    assert np.all(np.isnan(nan))


def test_singular_gmres_vmapped_cotangents_raise():
    # Reverse mode vmaps one cotangent per output: 8 > 6 of them.
    fn = _valley_solver(8, _GMRES)
    with raises_runtime("singular"):
        jax.block_until_ready(jax.jacrev(lambda t: jnp.tile(fn(t), 2))(1.0))


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
        ix.solvers.FixedPointIteration(),
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
        ix.solvers.FixedPointIteration(max_steps=max_steps),
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
        ix.FixedPoint(T), ix.solvers.FixedPointIteration(), x0=jnp.zeros(2)
    )
    for steps in (2, 4, 6):
        argmin = ix.ImplicitArgmin(
            ix.FixedPoint(T),
            ix.solvers.FixedPointIteration(max_steps=steps),
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
        return 0.5 * jnp.sum((Xl @ w - yl) ** 2) + 0.5 * t * jnp.sum(w**2)

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
