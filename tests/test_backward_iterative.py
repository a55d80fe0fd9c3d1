"""Iterative backward solves are judged by their true residual.

The backward systems of projected/proximal fixed points are the identity plus a
low-rank part. On such systems lineax's Krylov methods may report a failure with an
exact answer (GMRES: stagnation) or success with a wrong one (BiCGStab, depending
on rounding).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import pytest

import implicitx as ix


def _identity_plus_low_rank():
    # Found by search: float32 GMRES stagnates on this system after reaching its
    # solution.
    rng = np.random.default_rng(29)
    n, rank, scale = 200, int(rng.integers(0, 6)), rng.uniform(0.1, 3)
    U, V = rng.standard_normal((n, rank)), rng.standard_normal((n, rank))
    matrix = np.eye(n) + scale * U @ V.T / np.sqrt(n)
    b = rng.standard_normal(n)
    return matrix, b


def _tangent(linear_solver, throw):
    matrix, b = _identity_plus_low_rank()
    M, c = jnp.asarray(matrix, jnp.float32), jnp.asarray(b, jnp.float32)
    x = ix.custom_root(
        lambda x, c: c - M @ x, linear_solver=linear_solver, throw=throw
    )(lambda c: jnp.linalg.solve(M, c))
    # Forward mode solves A t = B u with A = M, B = I: t = M^{-1} c for u = c.
    return jax.block_until_ready(jax.jvp(x, (c,), (c,))[1])


def test_gmres_stagnation_after_convergence_is_accepted():
    matrix, b = _identity_plus_low_rank()
    gmres = lx.GMRES(rtol=1e-5, atol=1e-5)
    operator = lx.MatrixLinearOperator(jnp.asarray(matrix, jnp.float32))
    raw = lx.linear_solve(operator, jnp.asarray(b, jnp.float32), gmres, throw=False)
    assert raw.result == lx.RESULTS.stagnation  # what lineax itself reports
    exact = np.linalg.solve(matrix, b)
    tangent = np.asarray(_tangent(gmres, throw=True))
    error = np.max(np.abs(tangent - exact)) / np.max(np.abs(exact))
    assert error < 1e-4


class _ClaimsSuccess(lx.BiCGStab):
    """BiCGStab that reports success whatever its residual. lineax's BiCGStab does
    so on some systems of this kind, depending on rounding (it did on the one above
    under jaxlib 0.10.2): stopped after a few steps, this one always does."""

    def compute(self, state, vector, options):
        value, _, stats = super().compute(state, vector, options)
        return value, lx.RESULTS.successful, stats


@pytest.mark.parametrize("throw", [True, False])
def test_krylov_false_success_is_refused(throw):
    matrix, b = _identity_plus_low_rank()
    solver = _ClaimsSuccess(rtol=1e-5, atol=1e-5, max_steps=2)
    operator = lx.MatrixLinearOperator(jnp.asarray(matrix, jnp.float32))
    raw = lx.linear_solve(operator, jnp.asarray(b, jnp.float32), solver, throw=False)
    assert raw.result == lx.RESULTS.successful  # the solver claims success ...
    residual = matrix @ np.asarray(raw.value, np.float64) - b
    assert np.max(np.abs(residual)) > 1e-3 * np.max(np.abs(b))  # ... but is wrong
    if throw:
        with pytest.raises((eqx.EquinoxRuntimeError, jax.errors.JaxRuntimeError)):
            _tangent(solver, throw=True)
    else:
        assert np.all(np.isnan(np.asarray(_tangent(solver, throw=False))))


@pytest.mark.parametrize(
    "dtype, d, free, user",
    [
        (jnp.float32, 150, 10, False),
        (jnp.float64, 150, 10, False),
        (jnp.float64, 150, 10, True),
        (jnp.float32, 600, 30, False),
    ],
)
def test_default_krylov_on_boundary_heavy_projected_gradient(dtype, d, free, user):
    # Non-negative quadratic program with few free coordinates: A is the identity
    # plus a part of rank `free`, and the default backward solver is GMRES (the
    # condition carries `active_set_tag`, d > 100; `user`: a user's fixed point of the
    # same map stating the tag itself). Reference: the active-set closed form.
    rng = np.random.default_rng(0)
    G = rng.standard_normal((d, d))
    Q = G @ G.T / d + 0.1 * np.eye(d)
    c0 = np.where(np.arange(d) < free, 1.0, -1.0) + 0.1 * rng.standard_normal(d)
    Qj = jnp.asarray(Q, dtype)

    def f(x, c):
        return 0.5 * x @ Qj @ x - c @ x

    tol = 1e-6 if dtype == jnp.float32 else 1e-12
    condition = ix.ProjectedGradientFixedPoint(
        f, ix.projection.NonNegative(), stepsize=0.5
    )
    assert ix.active_set_tag in condition.tags
    argmin = ix.ImplicitArgmin(
        condition,
        ix.solvers.ProjectedGradient(rtol=tol, atol=tol, max_steps=100_000),
        x0=jnp.zeros(d, dtype),
    )
    if user:  # the same map as a user's fixed point, forward solve from the above
        step = lambda x, c: jnp.maximum(x - 0.5 * jax.grad(f)(x, c), 0.0)
        argmin = ix.ImplicitArgmin(
            ix.FixedPoint(step, tags=frozenset({ix.active_set_tag})),
            ix.solvers.FunctionSolver(lambda c, x0, solve=argmin: solve(c)),
        )
    c = jnp.asarray(c0, dtype)
    x = np.asarray(argmin(c))
    support = x > 0
    assert 0 < support.sum() < 2 * free
    expected = np.zeros((d, d))
    expected[np.ix_(support, support)] = np.linalg.inv(Q[np.ix_(support, support)])
    w = rng.standard_normal(d)
    rtol = 1e-4 if dtype == jnp.float32 else 1e-8
    for jacobian_vector in (
        jax.grad(lambda c: jnp.asarray(w, dtype) @ argmin(c))(c),  # reverse: J^T w
        jax.jvp(argmin, (c,), (jnp.asarray(w, dtype),))[1],  # forward: J w
    ):
        np.testing.assert_allclose(
            np.asarray(jacobian_vector, np.float64),
            expected @ w,
            rtol=rtol,
            atol=rtol * np.max(np.abs(expected @ w)),
        )
