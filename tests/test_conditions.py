"""Every condition of the core x {JVP, VJP}, against finite differences of the solution
map. The differentiable inputs are theta (a PyTree) *and* the array parameters stored in
the condition."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import lineax as lx
import numpy as np
import optimistix as optx
import pytest

import implicitx as ix

from .helpers import finite_difference_jvp, random_like, tree_dot
from .problems import logistic_data, logistic_objective


class Logistic(eqx.Module):
    """Regularised logistic regression; the data are parameters of the condition."""

    X: jax.Array
    y: jax.Array

    def objective(self, x, theta):
        penalty = 0.5 * jnp.sum(theta["w"] * x**2)  # per-coordinate, on top of l2
        return logistic_objective(x, theta["l2"], self.X, self.y) + penalty

    def gradient(self, x, theta):
        return jax.grad(self.objective)(x, theta)

    def gradient_step(self, x, theta):
        return x - 0.05 * self.gradient(x, theta)


class Contraction(eqx.Module):
    """A non-symmetric fixed point x = 0.5 tanh(M x + theta) (A is not symmetric)."""

    M: jax.Array

    def fixed_point_map(self, x, theta):
        return 0.5 * jnp.tanh(self.M @ x + theta["w"] * theta["l2"])

    def residual(self, x, theta):
        return self.fixed_point_map(x, theta) - x


Xl, yl = logistic_data()
D = Xl.shape[1]
LOGISTIC = Logistic(Xl, yl)
CONTRACTION = Contraction(jnp.asarray(np.random.default_rng(3).standard_normal((D, D))))

CONDITIONS = {
    "root_gradient": ix.Root(LOGISTIC.gradient),
    "root_nonsymmetric": ix.Root(CONTRACTION.residual),
    "fixed_point_gradient_step": ix.FixedPoint(LOGISTIC.gradient_step),
    "fixed_point_nonsymmetric": ix.FixedPoint(CONTRACTION.fixed_point_map),
    "stationarity": ix.Stationarity(LOGISTIC.objective),
    "stationarity_convex": ix.Stationarity(LOGISTIC.objective, convex=True),
    "gradient_descent_fixed_point": ix.GradientDescentFixedPoint(
        LOGISTIC.objective, stepsize=jnp.array(0.05)
    ),
    "newton_fixed_point": ix.NewtonFixedPoint(LOGISTIC.objective),
}

THETA = {"l2": jnp.array(0.3), "w": jnp.linspace(0.1, 1.0, D)}


def _argmin(condition, linear_solver=None):
    return ix.ImplicitArgmin(
        condition,
        ix.solvers.OptimistixRootFinder(
            optx.Newton(rtol=1e-14, atol=1e-14), max_steps=64
        ),
        adjoint=ix.ImplicitAdjoint(linear_solver=linear_solver),
        x0=jnp.zeros(D),
    )


def _solution(argmin, theta):
    return argmin(theta)


def _tangents(argmin, seed):
    diff = eqx.filter(argmin, eqx.is_inexact_array)
    t_argmin = random_like(jax.random.key(seed), diff)
    t_theta = random_like(jax.random.key(seed + 1), THETA)
    return t_argmin, t_theta


def _finite_difference(argmin, t_argmin, t_theta, eps=1e-5):
    """Of the solution map in its array parameters and theta jointly."""
    params, static = eqx.partition(argmin, eqx.is_inexact_array)
    return finite_difference_jvp(
        lambda p: _solution(eqx.combine(p[0], static), p[1]),
        (params, THETA),
        (t_argmin, t_theta),
        eps=eps,
    )


@pytest.mark.parametrize("name", sorted(CONDITIONS))
def test_jvp_against_finite_differences(name):
    argmin = _argmin(CONDITIONS[name])
    t_argmin, t_theta = _tangents(argmin, seed=0)
    _, jvp = eqx.filter_jvp(_solution, (argmin, THETA), (t_argmin, t_theta))
    fd = _finite_difference(argmin, t_argmin, t_theta)
    assert jnp.linalg.norm(fd) > 1e-3
    np.testing.assert_allclose(jvp, fd, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("name", sorted(CONDITIONS))
def test_vjp_against_finite_differences(name):
    argmin = _argmin(CONDITIONS[name])
    t_argmin, t_theta = _tangents(argmin, seed=2)
    out, vjp_fn = eqx.filter_vjp(_solution, argmin, THETA)
    cotangent = jax.random.normal(jax.random.key(5), out.shape)
    ct_argmin, ct_theta = vjp_fn(cotangent)
    lhs = tree_dot(eqx.filter(ct_argmin, eqx.is_inexact_array), t_argmin) + tree_dot(
        ct_theta, t_theta
    )
    rhs = jnp.sum(cotangent * _finite_difference(argmin, t_argmin, t_theta))
    np.testing.assert_allclose(lhs, rhs, rtol=1e-6)


@pytest.mark.parametrize(
    "name", ["stationarity_convex", "gradient_descent_fixed_point", "root_nonsymmetric"]
)
@pytest.mark.parametrize("mode", ["jvp", "vjp"])
def test_every_valid_linear_solver_agrees(name, mode):
    condition = CONDITIONS[name]
    definite = lx.positive_semidefinite_tag in condition.tags or (
        lx.negative_semidefinite_tag in condition.tags
    )
    solvers = [lx.LU(), lx.QR(), lx.SVD(), lx.GMRES(rtol=1e-12, atol=1e-12)]
    if definite:
        solvers += [lx.Cholesky(), lx.CG(rtol=1e-12, atol=1e-12)]
    results = []
    for solver in solvers:
        argmin = _argmin(condition, solver)
        if mode == "jvp":
            results.append(jax.jacfwd(argmin)(THETA))
        else:
            results.append(jax.jacrev(argmin)(THETA))
    for other in results[1:]:
        for a, b in zip(
            jtu.tree_leaves(results[0]), jtu.tree_leaves(other), strict=True
        ):
            np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-11)


def test_condition_tags():
    sym = frozenset({lx.symmetric_tag})
    assert ix.Stationarity(LOGISTIC.objective).tags == sym
    assert ix.Stationarity(LOGISTIC.objective, convex=True).tags == sym | {
        lx.negative_semidefinite_tag
    }
    assert ix.GradientDescentFixedPoint(LOGISTIC.objective, convex=True).tags == sym | {
        lx.positive_semidefinite_tag
    }
    assert ix.NewtonFixedPoint(LOGISTIC.objective).tags == frozenset()
    assert ix.FixedPoint(CONTRACTION.fixed_point_map).tags == frozenset()
    assert ix.Root(LOGISTIC.gradient, tags=sym).tags == sym
