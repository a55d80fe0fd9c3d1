"""The protocols between conditions, solvers and adjoints (issue 10).

- A user's own composite condition (a subclass of `AbstractCompositeCondition`) is
  solved by every composite solver, which asks it for its objective and prox only.
- A user's own mirror-descent condition (a subclass of
  `AbstractMirrorDescentCondition`) is solved by `MirrorDescent`.
- The adjoint hands the solver its loop: a custom adjoint's `while_loop` is the one
  the solver runs; `UnrolledAdjoint` refuses a solver that cannot be unrolled.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

import implicitx as ix

from .helpers import finite_difference_jvp


_rng = np.random.default_rng(3)
N, D = 15, 6
X = _rng.standard_normal((N, D))
Y = _rng.standard_normal(N)
LAM = 0.5


class NonNegativeRidge(ix.AbstractCompositeCondition):
    """`min_w 0.5 ||X w - theta||^2 + 0.5 lam ||w||^2` over `w >= 0`, written by a
    user: the prox of the non-negativity constraint is a clip."""

    objective: Callable
    stepsize: float = 0.05

    def fixed_point_map(self, x, theta):
        step = self.stepsize
        return self.prox_at(theta)(x - step * jax.grad(self.objective)(x, theta), step)

    def prox_at(self, theta):
        del theta
        return lambda z, step: jnp.maximum(z, 0.0)

    def block_prox_at(self, theta):
        prox = self.prox_at(theta)
        return lambda x, j, z_j, step: prox(z_j, step)


def _objective(w, theta):
    return 0.5 * jnp.sum((jnp.asarray(X) @ w - theta) ** 2) + 0.5 * LAM * jnp.sum(w**2)


def _reference(theta) -> np.ndarray:
    """The same problem by SciPy's bounded least squares (ridge as extra rows)."""
    A = np.vstack([X, np.sqrt(LAM) * np.eye(D)])
    b = np.concatenate([np.asarray(theta), np.zeros(D)])
    return scipy.optimize.lsq_linear(A, b, bounds=(0, np.inf), tol=1e-14).x


SOLVERS = {
    "proximal_gradient": ix.solvers.ProximalGradient(rtol=1e-12, atol=1e-12),
    "projected_gradient": ix.solvers.ProjectedGradient(rtol=1e-12, atol=1e-12),
    "block_coordinate": ix.solvers.BlockCoordinateDescent(rtol=1e-12, atol=1e-12),
}


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_a_users_composite_condition_works_with_every_composite_solver(name):
    argmin = ix.ImplicitArgmin(
        NonNegativeRidge(_objective), SOLVERS[name], x0=jnp.zeros(D)
    )
    theta = jnp.asarray(Y)
    expected = _reference(Y)
    assert 0 < np.sum(expected > 1e-8) < D  # some coordinates active, some not
    np.testing.assert_allclose(argmin(theta), expected, atol=1e-9)
    tangent = jnp.asarray(_rng.standard_normal(N))
    _, jvp = jax.jvp(argmin, (theta,), (tangent,))
    fd = finite_difference_jvp(
        lambda t: jnp.asarray(_reference(np.asarray(t))), theta, tangent, eps=1e-6
    )
    np.testing.assert_allclose(jvp, fd, atol=1e-6)


class EntropicProjection(ix.AbstractMirrorDescentCondition):
    """`min_{x in simplex} 0.5 ||x - theta||^2` by exponentiated gradient, written by
    a user: the mirror map is the negative entropy, the step a constant."""

    objective: Callable

    def mirror_map_at(self, theta):
        del theta
        return ix.mirror.NegativeEntropySimplex()

    def step_size(self):
        return 0.5


def test_a_users_mirror_descent_condition_works_with_mirror_descent():
    condition = EntropicProjection(lambda x, theta: 0.5 * jnp.sum((x - theta) ** 2))
    solver = ix.solvers.MirrorDescent(rtol=1e-12, atol=1e-12)
    argmin = ix.ImplicitArgmin(condition, solver, x0=jnp.full(4, 0.25))
    theta = jnp.array([0.35, 0.25, 0.45, 0.15])
    # The projection onto the simplex, here in its interior: theta shifted by the
    # mean excess; its Jacobian there is the centring matrix I - 11^T / n.
    expected = theta - (jnp.sum(theta) - 1) / 4
    np.testing.assert_allclose(argmin(theta), expected, atol=1e-10)
    np.testing.assert_allclose(
        jax.jacobian(argmin)(theta), np.eye(4) - np.ones((4, 4)) / 4, atol=1e-8
    )


def test_mirror_descent_refuses_a_condition_without_a_mirror_step():
    with pytest.raises(TypeError, match="AbstractMirrorDescentCondition"):
        ix.solvers.MirrorDescent().init(
            NonNegativeRidge(_objective), jnp.asarray(Y), jnp.zeros(D)
        )


class _CountingAdjoint(ix.ImplicitAdjoint):
    """The default adjoint, whose loop counts how often a solver runs it."""

    def while_loop(self, cond_fun, body_fun, init_val, *, max_steps):
        _CALLS.append(max_steps)
        return super().while_loop(cond_fun, body_fun, init_val, max_steps=max_steps)


_CALLS: list = []


def test_the_solver_runs_the_loop_its_adjoint_hands_it():
    _CALLS.clear()
    solver = ix.solvers.ProximalGradient(max_steps=321)
    argmin = ix.ImplicitArgmin(
        NonNegativeRidge(_objective), solver, _CountingAdjoint(), x0=jnp.zeros(D)
    )
    np.testing.assert_allclose(argmin(jnp.asarray(Y)), _reference(Y), atol=1e-6)
    # The main loop (max_steps) and the line search's inner loop.
    assert 321 in _CALLS and len(_CALLS) >= 2


def test_unrolled_adjoint_refuses_a_solver_that_cannot_be_unrolled():
    class HostSolver(ix.solvers.FunctionSolver):
        can_unroll = False

    argmin = ix.ImplicitArgmin(
        NonNegativeRidge(_objective),
        HostSolver(lambda theta, x0: x0),
        ix.UnrolledAdjoint(),
        x0=jnp.zeros(D),
    )
    with pytest.raises(ValueError, match="`HostSolver` cannot be differentiated"):
        argmin(jnp.asarray(Y))
