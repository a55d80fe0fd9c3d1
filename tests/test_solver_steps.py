"""implicitx's iterative solvers step by step (issue 10, item 7): `init` / `step` /
`terminate` / `postprocess` give exactly what `solve` gives; step-size schedules; a
line search that can grow the step; the renamed `PicardIteration`."""

import warnings

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import optimistix as optx
import pytest

import implicitx as ix

from . import problems
from .helpers import assert_tree_allclose


_rng = np.random.default_rng(7)
N, D = 20, 6
X = jnp.asarray(_rng.standard_normal((N, D)))
Y = jnp.asarray(_rng.standard_normal(N))
L_TRUE = float(np.linalg.eigvalsh(np.asarray(X.T @ X) / N)[-1])
W0 = jnp.asarray(_rng.standard_normal((4, 3)))
TOL = 1e-12


def least_squares(w, theta):
    del theta
    return problems.least_squares(w, X, Y)


def lasso(stepsize=1.0):
    prox = lambda theta: ix.prox.L1(theta)
    return ix.ProximalGradientFixedPoint(least_squares, prox, stepsize=stepsize)


def rows_on_simplex(a, theta):
    return 0.5 * theta * jnp.sum((a - W0) ** 2)


# (solver, condition, theta, x0): every iterative solver of implicitx.
CASES = {
    "proximal_gradient": (
        ix.solvers.ProximalGradient(rtol=TOL, atol=TOL),
        lasso(),
        jnp.array(0.1),
        jnp.zeros(D),
    ),
    "proximal_gradient_fixed_step": (
        ix.solvers.ProximalGradient(rtol=TOL, atol=TOL, stepsize=1 / L_TRUE),
        lasso(),
        jnp.array(0.1),
        jnp.zeros(D),
    ),
    "projected_gradient": (
        ix.solvers.ProjectedGradient(rtol=TOL, atol=TOL),
        ix.ProjectedGradientFixedPoint(least_squares, ix.projection.NonNegative()),
        jnp.array(0.0),
        jnp.zeros(D),
    ),
    "block_coordinate": (
        ix.solvers.BlockCoordinateDescent(rtol=TOL, atol=TOL),
        lasso(),
        jnp.array(0.1),
        jnp.zeros(D),
    ),
    "mirror_descent": (
        ix.solvers.MirrorDescent(rtol=TOL, atol=TOL),
        ix.MirrorDescentFixedPoint(
            rows_on_simplex, ix.mirror.NegativeEntropySimplex(), 0.5
        ),
        jnp.array(1.0),
        jnp.full((4, 3), 1 / 3),
    ),
    "picard": (
        ix.solvers.PicardIteration(rtol=TOL, atol=TOL),
        lasso(stepsize=1 / L_TRUE),
        jnp.array(0.1),
        jnp.zeros(D),
    ),
    "anderson": (
        ix.solvers.AndersonAcceleration(rtol=TOL, atol=TOL),
        lasso(stepsize=1 / L_TRUE),
        jnp.array(0.1),
        jnp.zeros(D),
    ),
}


def by_hand(solver, condition, theta, x0):
    """The loop of the docstring of `AbstractIterativeSolver`, in Python."""
    step = eqx.filter_jit(solver.step)
    terminate = eqx.filter_jit(solver.terminate)
    state = solver.init(condition, theta, x0)
    states = [state]
    while True:
        done, result = terminate(condition, theta, state)
        if bool(done) or int(state.num_steps) >= solver.max_steps:
            break
        state = step(condition, theta, state)
        states.append(state)
    if not bool(done):
        result = ix.RESULTS.nonlinear_max_steps_reached
    return solver.postprocess(condition, theta, state, result), states


@pytest.mark.parametrize("name", sorted(CASES))
def test_driving_a_solver_by_hand_is_its_solve(name):
    solver, condition, theta, x0 = CASES[name]
    assert isinstance(solver, ix.solvers.AbstractIterativeSolver)
    expected = eqx.filter_jit(solver.solve)(condition, theta, x0)
    assert expected.result == ix.RESULTS.successful
    sol, states = by_hand(solver, condition, theta, x0)
    assert sol.result == ix.RESULTS.successful
    assert int(sol.stats["num_steps"]) == int(expected.stats["num_steps"]) > 2
    assert len(states) == int(expected.stats["num_steps"]) + 1
    assert_tree_allclose(sol.value, expected.value, rtol=1e-12, atol=1e-12)
    # Each step counts, and only the last one says it has converged.
    assert [int(s.num_steps) for s in states] == list(range(len(states)))
    assert not any(bool(s.converged) for s in states[:-1])


def test_by_hand_the_step_limit_and_a_nonfinite_state_are_reported():
    solver, condition, theta, x0 = CASES["proximal_gradient"]
    short = ix.solvers.ProximalGradient(rtol=TOL, atol=TOL, max_steps=3)
    sol, _ = by_hand(short, condition, theta, x0)
    expected = short.solve(condition, theta, x0)
    assert sol.result == expected.result == ix.RESULTS.nonlinear_max_steps_reached
    assert_tree_allclose(sol.value, expected.value, rtol=1e-12, atol=1e-12)
    state = solver.init(condition, theta, x0.at[0].set(jnp.nan))
    done, result = solver.terminate(condition, theta, state)
    assert bool(done) and result == ix.RESULTS.nonfinite_iterate


def test_init_refuses_a_condition_the_solver_cannot_solve():
    with pytest.raises(TypeError, match="MirrorDescentFixedPoint"):
        ix.solvers.MirrorDescent().init(lasso(), jnp.array(0.1), jnp.zeros(D))
    with pytest.raises(ValueError, match="initial guess"):
        ix.solvers.ProximalGradient().init(lasso(), jnp.array(0.1), None)


# --------------------------------------------------------------------------------------
# Step-size schedules
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("acceleration", [True, False])
def test_a_constant_schedule_is_the_fixed_step(acceleration):
    step = 1 / L_TRUE
    fixed = ix.solvers.ProximalGradient(
        rtol=TOL, atol=TOL, stepsize=step, acceleration=acceleration
    )
    scheduled = eqx.tree_at(lambda s: s.stepsize, fixed, lambda k: step)
    args = (lasso(), jnp.array(0.1), jnp.zeros(D))
    _, fixed_states = by_hand(fixed, *args)
    _, scheduled_states = by_hand(scheduled, *args)
    assert len(fixed_states) == len(scheduled_states) > 2
    for a, b in zip(fixed_states, scheduled_states, strict=True):
        np.testing.assert_array_equal(np.asarray(a.x), np.asarray(b.x))
    a, b = fixed.solve(*args), scheduled.solve(*args)
    np.testing.assert_array_equal(np.asarray(a.value), np.asarray(b.value))
    assert int(a.stats["num_steps"]) == int(b.stats["num_steps"])


def test_a_decaying_schedule_converges_to_the_minimiser_of_a_quadratic():
    Q = jnp.asarray(np.asarray(X.T @ X) / N + 0.1 * np.eye(D))
    b = jnp.asarray(_rng.standard_normal(D))
    quadratic = lambda x, theta: 0.5 * x @ Q @ x - theta @ x
    lipschitz = float(np.linalg.eigvalsh(np.asarray(Q))[-1])
    schedule = lambda k: (1 + 1 / (k + 1)) / (2 * lipschitz)  # 1/L down to 1/(2L)
    solver = ix.solvers.ProximalGradient(rtol=TOL, atol=TOL, stepsize=schedule)
    sol = solver.solve(ix.Stationarity(quadratic), b, jnp.zeros(D))
    assert sol.result == ix.RESULTS.successful
    assert_tree_allclose(sol.value, jnp.linalg.solve(Q, b), rtol=1e-9, atol=1e-9)
    # The schedule was used: the last step is the schedule's at the last step.
    last = int(sol.stats["num_steps"]) - 1
    np.testing.assert_allclose(1 / sol.stats["lipschitz"], schedule(last), rtol=1e-14)


def test_a_bad_scheduled_step_is_a_nonfinite_failure():
    solver = ix.solvers.ProximalGradient(stepsize=lambda k: -1.0)
    sol = solver.solve(lasso(), jnp.array(0.1), jnp.zeros(D))
    assert sol.result == ix.RESULTS.nonfinite_iterate


# --------------------------------------------------------------------------------------
# A line search that can grow the step
# --------------------------------------------------------------------------------------


def test_a_growing_line_search_recovers_from_an_overshooting_estimate():
    # The first estimate of `L` is far above the true one: without growth the step
    # stays 1000 times too small.
    args = (lasso(), jnp.array(0.05), jnp.zeros(D))
    high = 1e3 * L_TRUE
    make = lambda **kw: ix.solvers.ProximalGradient(
        rtol=TOL, atol=TOL, initial_lipschitz=high, max_steps=100_000, **kw
    )
    default = make().solve(*args)
    growing = make(increase_factor=2.0).solve(*args)
    flat = make(increase_factor=1.0).solve(*args)
    for sol in (default, growing, flat):
        assert sol.result == ix.RESULTS.successful
    assert_tree_allclose(growing.value, default.value, rtol=1e-9, atol=1e-9)
    assert_tree_allclose(flat.value, default.value, rtol=1e-8, atol=1e-8)
    assert float(flat.stats["lipschitz"]) == high  # never lowered
    assert float(growing.stats["lipschitz"]) < 4 * L_TRUE < high
    assert int(growing.stats["num_steps"]) < int(flat.stats["num_steps"])


def test_the_block_line_search_grows_too():
    args = (lasso(), jnp.array(0.05), jnp.zeros(D))
    make = lambda **kw: ix.solvers.BlockCoordinateDescent(
        rtol=TOL, atol=TOL, initial_lipschitz=1e3, max_steps=100_000, **kw
    )
    growing, flat = make(increase_factor=2.0), make(increase_factor=1.0)
    a, b = growing.solve(*args), flat.solve(*args)
    assert a.result == b.result == ix.RESULTS.successful
    assert_tree_allclose(a.value, b.value, rtol=1e-8, atol=1e-8)
    assert int(a.stats["num_steps"]) < int(b.stats["num_steps"])


@pytest.mark.parametrize("value", [0.5, 0.0, -2.0, float("inf")])
def test_a_known_bad_increase_factor_raises(value):
    with pytest.raises(ValueError, match="increase_factor"):
        ix.solvers.ProximalGradient(increase_factor=value)
    with pytest.raises(ValueError, match="increase_factor"):
        ix.solvers.BlockCoordinateDescent(increase_factor=value)


# --------------------------------------------------------------------------------------
# The name `FixedPointIteration`
# --------------------------------------------------------------------------------------


def test_fixed_point_iteration_is_a_deprecated_picard_iteration():
    assert ix.solvers.PicardIteration is not optx.FixedPointIteration
    with pytest.warns(DeprecationWarning, match="PicardIteration"):
        old = ix.solvers.FixedPointIteration(rtol=TOL, atol=TOL)
    assert isinstance(old, ix.solvers.PicardIteration)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        new = ix.solvers.PicardIteration(rtol=TOL, atol=TOL)
    args = (lasso(stepsize=1 / L_TRUE), jnp.array(0.1), jnp.zeros(D))
    a, b = old.solve(*args), new.solve(*args)
    np.testing.assert_array_equal(np.asarray(a.value), np.asarray(b.value))
    assert int(a.stats["num_steps"]) == int(b.stats["num_steps"])
