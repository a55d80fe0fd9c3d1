"""Bad input through the external (host) solvers: NaN in the data must give
`RESULTS.external_solver_failed` and NaN derivatives (`throw=False`) or an error
(`throw=True`), never a finite point reported as a solution (issue 9, item 5).

Every row solves the same ridge problem, `x*(y) = (X^T X + I)^{-1} X^T y` (or, for
`ScipyLinprog`, a vertex that is affine in the right-hand side), with one external
solver, and puts a NaN in `theta`."""

import warnings

import cvxpy as cp
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import implicitx as ix
from implicitx.solvers._external import require


N, D = 10, 3
_rng = np.random.default_rng(0)
X_NP = _rng.normal(size=(N, D))
Y_NP = _rng.normal(size=N)
X = jnp.asarray(X_NP)
RIDGE_INVERSE = np.linalg.inv(X_NP.T @ X_NP + np.eye(D))
FAILED = ix.RESULTS.external_solver_failed
MESSAGE = "An external forward solver"


def ridge_objective(x, y):
    return 0.5 * jnp.sum((X @ x - y) ** 2) + 0.5 * jnp.sum(x**2)


def ridge_residual(x, y):
    return (X.T @ X + jnp.eye(D)) @ x - X.T @ y


def ridge_closed_form(theta, x0):
    del x0
    return RIDGE_INVERSE @ X_NP.T @ theta


def ridge_lenient(theta, x0):
    """A host solver that hides bad data: NaN in, finite out."""
    return np.nan_to_num(ridge_closed_form(theta, x0))


def ridge_none(theta, x0):
    """A host solver that returns `None` on bad data."""
    return None if np.any(np.isnan(theta)) else ridge_closed_form(theta, x0)


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


def _codes(result):
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
        _codes(batch.result), [_codes(code) for code in expected_codes]
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
    X_nan = X.at[0, 0].set(jnp.nan)

    def objective(x, y):
        return 0.5 * jnp.sum((X_nan @ x - y) ** 2) + 0.5 * jnp.sum(x**2)

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
