"""Failures are errors or NaN with a result code, never a silently wrong derivative."""

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import optimistix as optx
import pytest
from beartype import beartype
from jaxtyping import Array, Float, jaxtyped

import implicitx as ix

from .problems import ridge_closed_form, ridge_data, ridge_objective


X, y = ridge_data()
d = X.shape[1]


def _raises_runtime(match):
    # Raised from the compiled program: `EquinoxRuntimeError` under `eqx.filter_jit`,
    # `JaxRuntimeError` (carrying the same message) otherwise. Dispatch is
    # asynchronous, so the callers block on the result inside the `with`.
    return pytest.raises(
        (eqx.EquinoxRuntimeError, jax.errors.JaxRuntimeError), match=match
    )


# --- Singular backward systems ---------------------------------------------------


def _flat_valley(x, theta):
    # f = 0.5 (x1 + x2 - theta)^2: minimisers form a line, A = -[[1, 1], [1, 1]].
    return 0.5 * (x[0] + x[1] - theta) ** 2


def _valley_argmin(throw):
    return ix.ImplicitArgmin(
        ix.Stationarity(_flat_valley),
        ix.solvers.FunctionSolver(lambda theta, x0: jnp.stack([theta, theta]) / 2),
        throw=throw,
    )


def test_singular_system_raises_in_both_modes():
    argmin = _valley_argmin(throw=True)
    assert jnp.allclose(argmin(1.0), jnp.array([0.5, 0.5]))  # the primal is fine
    with _raises_runtime("singular"):
        jax.block_until_ready(jax.jacrev(argmin)(1.0))
    with _raises_runtime("singular"):
        jax.block_until_ready(jax.jacfwd(argmin)(1.0))


def test_singular_system_gives_nan_with_throw_false():
    argmin = _valley_argmin(throw=False)
    assert jnp.all(jnp.isnan(jax.jacrev(argmin)(1.0)))
    assert jnp.all(jnp.isnan(jax.jacfwd(argmin)(1.0)))


def test_rank_deficient_least_squares_detected():
    # Fewer samples than features and no regularisation: x* (min-norm lstsq) is not a
    # locally unique function of the data. In floating point A is only *numerically*
    # singular, and LU returns a finite, meaningless answer unless checked.
    Xw, yw = ridge_data(n=3, d=6, seed=4)

    def F(x, scale):
        return Xw.T @ (Xw @ x - scale * yw)

    @ix.custom_root(F)
    def solver(scale):
        return jnp.linalg.lstsq(Xw, scale * yw)[0]

    with _raises_runtime("singular"):
        jax.block_until_ready(jax.jacrev(solver)(1.0))
    # Asking for the pseudo-inverse derivative explicitly is allowed and is the
    # derivative of the min-norm solution (here linear in `scale`).
    pinv = ix.custom_root(F, linear_solver=lx.SVD())(solver.__wrapped__)
    jac = jax.jacrev(pinv)(1.0)
    assert jnp.allclose(jac, jnp.linalg.lstsq(Xw, yw)[0], atol=1e-10)


def test_iterative_backward_failure_raises():
    @ix.custom_root(jax.grad(lambda x, t: 0.5 * jnp.sum((X @ x - y) ** 2) + t * x @ x))
    def solver(theta):
        return ridge_closed_form(X, y, 2 * theta)

    fine = ix.custom_root(
        jax.grad(lambda x, t: 0.5 * jnp.sum((X @ x - y) ** 2) + t * x @ x),
        linear_solver=lx.GMRES(rtol=1e-12, atol=1e-12, max_steps=1, restart=1),
    )(solver.__wrapped__)
    with _raises_runtime("did not converge"):
        jax.block_until_ready(jax.jacrev(fine)(1.0))


# --- Forward solver failures -----------------------------------------------------


def _ridge_objective(x, theta):
    return ridge_objective(x, theta, X, y)


def _bfgs_argmin(max_steps, throw):
    return ix.ImplicitArgmin(
        ix.Stationarity(_ridge_objective),
        ix.solvers.OptimistixMinimiser(
            optx.BFGS(rtol=1e-12, atol=1e-12), max_steps=max_steps
        ),
        x0=jnp.zeros(d),
        throw=throw,
    )


def test_unconverged_forward_solve_is_reported():
    sol = _bfgs_argmin(max_steps=2, throw=False).solve(1.0)
    assert sol.result == ix.RESULTS.nonlinear_max_steps_reached
    assert int(sol.stats["num_steps"]) == 2
    grad = jax.grad(lambda t: jnp.sum(_bfgs_argmin(2, throw=False)(t)))(1.0)
    assert jnp.isnan(grad)  # no derivative at a point that is not a solution
    converged = _bfgs_argmin(max_steps=256, throw=False).solve(1.0)
    assert converged.result == ix.RESULTS.successful


def test_unconverged_forward_solve_raises_by_default():
    with _raises_runtime("maximum number of steps"):
        jax.block_until_ready(_bfgs_argmin(max_steps=2, throw=True)(1.0))
    with _raises_runtime("maximum number of steps"):
        jax.block_until_ready(
            jax.jit(jax.grad(lambda t: jnp.sum(_bfgs_argmin(2, throw=True)(t))))(1.0)
        )


def test_nonfinite_solution_is_reported():
    argmin = ix.ImplicitArgmin(
        ix.Stationarity(_ridge_objective),
        ix.solvers.FunctionSolver(lambda theta, x0: ridge_closed_form(X, y, theta)),
        throw=False,
    )
    assert argmin.solve(jnp.nan).result == ix.RESULTS.nonfinite_solution
    throwing = ix.ImplicitArgmin(argmin.condition, argmin.solver, throw=True)
    with _raises_runtime("non-finite"):
        jax.block_until_ready(throwing(jnp.nan))


# --- Bad input: shapes, structures, solvers ----------------------------------------


@jaxtyped(typechecker=beartype)
def _typed_objective(
    x: Float[Array, " d"], theta: Float[Array, " d"]
) -> Float[Array, ""]:
    return 0.5 * jnp.sum((X @ x - y) ** 2) + 0.5 * jnp.sum(theta * x**2)


def test_wrong_theta_shape_names_the_argument():
    argmin = ix.ImplicitArgmin(
        ix.Stationarity(_typed_objective),
        ix.solvers.FunctionSolver(lambda theta, x0: jnp.zeros(d)),
        throw=False,  # zeros is not the minimiser: this test is about shapes
    )
    assert argmin(jnp.ones(d)).shape == (d,)
    with pytest.raises(TypeError) as info:
        argmin(jnp.ones(d + 1))
    # The jaxtyping check names the argument and the dimension it could not match.
    text = str(info.value) + "".join(getattr(info.value, "__notes__", []))
    assert "theta" in text
    assert f"float64[{d + 1}]" in text  # the shape it was given


def test_wrong_x0_shape_is_a_clear_error():
    # A solver that returns a solution of another shape than x0.
    argmin = ix.ImplicitArgmin(
        ix.Stationarity(_ridge_objective),
        ix.solvers.FunctionSolver(lambda theta, x0: ridge_closed_form(X, y, theta)),
    )
    # The condition is traced at x0 first: the wrong shape is reported there.
    with pytest.raises(TypeError) as info:
        argmin(1.0, jnp.zeros(d + 1))
    assert any(
        f"initial guess `x0` of structure float64[{d + 1}]" in note
        for note in info.value.__notes__
    )
    # A solver whose solution does not match a well-shaped x0.
    wrong = ix.ImplicitArgmin(
        ix.Root(lambda x, t: x - t),
        ix.solvers.FunctionSolver(lambda theta, x0: jnp.zeros(d + 1)),
    )
    with pytest.raises(ValueError, match="initial guess `x0` does not match"):
        wrong(jnp.zeros(d), jnp.zeros(d))
    # A solver that fails on an x0 of the wrong shape: its error says what was passed.
    with pytest.raises(TypeError) as info:
        _bfgs_argmin(max_steps=16, throw=True)(1.0, jnp.zeros(d + 1))
    assert any(
        "initial guess `x0` of structure" in note for note in info.value.__notes__
    )
    assert any(f"float64[{d + 1}]" in note for note in info.value.__notes__)


def test_residual_structure_must_match_x():
    argmin = ix.ImplicitArgmin(
        ix.Root(lambda x, theta: jnp.sum(x) - theta),
        ix.solvers.FunctionSolver(lambda theta, x0: jnp.zeros(d)),
    )
    with pytest.raises(ValueError, match="same structure, shapes and dtypes"):
        argmin(1.0)


def test_symmetric_definite_solver_refused_for_general_condition():
    T = lambda x, theta: 0.5 * jnp.tanh(x) + theta
    for solver in (lx.CG(rtol=1e-8, atol=1e-8), lx.Cholesky()):
        argmin = ix.ImplicitArgmin(
            ix.FixedPoint(T),
            ix.solvers.OptimistixFixedPoint(
                optx.FixedPointIteration(rtol=1e-12, atol=1e-12)
            ),
            adjoint=ix.ImplicitAdjoint(linear_solver=solver),
            x0=jnp.zeros(3),
        )
        with pytest.raises(ValueError, match="symmetric"):
            argmin(jnp.ones(3))
    # A non-convex stationarity condition is symmetric but not definite: refused too.
    argmin = ix.ImplicitArgmin(
        ix.Stationarity(_ridge_objective, convex=False),
        ix.solvers.FunctionSolver(lambda theta, x0: ridge_closed_form(X, y, theta)),
        adjoint=ix.ImplicitAdjoint(linear_solver=lx.CG(rtol=1e-8, atol=1e-8)),
    )
    with pytest.raises(ValueError, match="definite"):
        argmin(1.0)


def test_solver_needing_an_objective_refuses_a_root_condition():
    argmin = ix.ImplicitArgmin(
        ix.Root(lambda x, theta: x - theta),
        ix.solvers.OptimistixMinimiser(optx.BFGS(rtol=1e-8, atol=1e-8)),
        x0=jnp.zeros(2),
    )
    with pytest.raises(TypeError, match="needs an objective"):
        argmin(jnp.ones(2))


def test_public_signatures_are_checked():
    # The test suite runs with the jaxtyping import hook + beartype on implicitx, so a
    # wrong argument to a public function fails at trace time, naming the argument.
    from jaxtyping import TypeCheckError

    with pytest.raises(TypeCheckError, match="condition"):
        ix.jacobian_operators(lambda x, t: x - t, jnp.zeros(2), 1.0)  # pyright: ignore


def test_renamed_result_codes_keep_their_deprecated_aliases():
    assert ix.RESULTS.singular_adjoint == ix.RESULTS.adjoint_singular
    assert ix.RESULTS.adjoint_failed == ix.RESULTS.adjoint_unconverged
    assert ix.RESULTS.adjoint_singular != ix.RESULTS.adjoint_unconverged
    assert "singular" in ix.RESULTS[ix.RESULTS.adjoint_singular]
    assert "did not converge" in ix.RESULTS[ix.RESULTS.adjoint_unconverged]
