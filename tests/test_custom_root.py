"""The seed's ridge example through the functional API, against closed forms."""

import jax
import jax.numpy as jnp
import lineax as lx
import pytest

import implicitx as ix

from .helpers import assert_tree_allclose
from .problems import (
    ridge_closed_form,
    ridge_closed_form_jacobian,
    ridge_data,
    ridge_objective,
)


X, y = ridge_data()
d = X.shape[1]


def f(x, theta):
    return ridge_objective(x, theta, X, y)


F = jax.grad(f)


@ix.custom_root(F)
def ridge_solver(theta):
    return ridge_closed_form(X, y, theta)


def closed_form_jacobian(theta):
    return ridge_closed_form_jacobian(X, y, theta)


def outer_loss(x):
    return jnp.sum((x - 0.3) ** 2) + jnp.sum(x**3)


def outer_closed(theta):
    return outer_loss(ridge_closed_form(X, y, theta))


def outer_implicit(theta):
    return outer_loss(ridge_solver(theta))


THETA = 10.0


@pytest.mark.parametrize("jac", [jax.jacobian, jax.jacrev, jax.jacfwd])
def test_jacobian_matches_closed_form(jac):
    assert_tree_allclose(jac(ridge_solver)(THETA), closed_form_jacobian(THETA))


def test_jvp_matches_closed_form():
    x, tx = jax.jvp(ridge_solver, (THETA,), (2.0,))
    assert_tree_allclose(x, ridge_closed_form(X, y, THETA))
    assert_tree_allclose(tx, 2.0 * closed_form_jacobian(THETA))


def test_grad_and_hessian_of_outer_loss():
    # The closed form is differentiated directly by JAX: an independent reference.
    assert_tree_allclose(jax.grad(outer_implicit)(THETA), jax.grad(outer_closed)(THETA))
    hess = jax.hessian(outer_implicit)(THETA)
    assert_tree_allclose(hess, jax.hessian(outer_closed)(THETA))
    assert jnp.abs(hess) > 1e-6  # a real second derivative, not a zero


def test_third_order():
    third = jax.grad(jax.grad(jax.grad(outer_implicit)))(THETA)
    assert_tree_allclose(third, jax.grad(jax.grad(jax.grad(outer_closed)))(THETA))


def test_vmap_and_jit():
    thetas = jnp.array([0.1, 1.0, 10.0, 100.0])
    batched = jax.jit(jax.vmap(jax.jacrev(ridge_solver)))(thetas)
    expected = jnp.stack([closed_form_jacobian(t) for t in thetas])
    assert_tree_allclose(batched, expected)
    grads = jax.vmap(jax.grad(outer_implicit))(thetas)
    assert_tree_allclose(grads, jax.vmap(jax.grad(outer_closed))(thetas))


def test_pytree_theta_per_feature_regularisation():
    def f_tree(x, theta):
        residual = X @ x - y
        return 0.5 * jnp.sum(residual**2) + 0.5 * jnp.sum(theta["l2"] * x**2)

    @ix.custom_root(jax.grad(f_tree))
    def solver(theta):
        return jnp.linalg.solve(X.T @ X + jnp.diag(theta["l2"]), X.T @ y)

    theta = {"l2": jnp.linspace(0.5, 5.0, d), "unused": jnp.array(1.0)}

    def closed(theta):
        return jnp.linalg.solve(X.T @ X + jnp.diag(theta["l2"]), X.T @ y)

    jac = jax.jacrev(solver)(theta)
    jac_ref = jax.jacrev(closed)(theta)
    assert_tree_allclose(jac["l2"], jac_ref["l2"])
    assert_tree_allclose(jac["unused"], jnp.zeros(d))
    jac_fwd = jax.jacfwd(solver)(theta)
    assert_tree_allclose(jac_fwd["l2"], jac_ref["l2"])


def test_multiple_args_and_kwargs():
    def F2(x, theta, shift, *, scale):
        return X.T @ (X @ x - scale * y) + theta * x - shift

    @ix.custom_root(F2)
    def solver(theta, shift, *, scale):
        return jnp.linalg.solve(X.T @ X + theta * jnp.eye(d), scale * X.T @ y + shift)

    def closed(theta, shift, scale):
        return jnp.linalg.solve(X.T @ X + theta * jnp.eye(d), scale * X.T @ y + shift)

    args = (2.0, jnp.ones(d), 1.5)
    got = jax.jacrev(lambda a, b, c: solver(a, b, scale=c), argnums=(0, 1, 2))(*args)
    assert_tree_allclose(got, jax.jacrev(closed, argnums=(0, 1, 2))(*args))


def test_custom_fixed_point_gradient_descent_map():
    eta = 0.01  # below 2 / L for this problem

    def T(x, theta):
        return x - eta * F(x, theta)

    @ix.custom_fixed_point(T)
    def solver(theta):
        return ridge_closed_form(X, y, theta)

    assert_tree_allclose(jax.jacrev(solver)(THETA), closed_form_jacobian(THETA))
    assert_tree_allclose(jax.jacfwd(solver)(THETA), closed_form_jacobian(THETA))
    grad = jax.grad(lambda t: outer_loss(solver(t)))(THETA)
    assert_tree_allclose(grad, jax.grad(outer_closed)(THETA))


def test_has_aux_passes_aux_through():
    @ix.custom_root(F, has_aux=True)
    def solver(theta):
        x = ridge_closed_form(X, y, theta)
        return x, {"norm": jnp.linalg.norm(x), "iters": jnp.array(3)}

    x, aux = solver(THETA)
    assert_tree_allclose(aux["norm"], jnp.linalg.norm(ridge_closed_form(X, y, THETA)))
    assert int(aux["iters"]) == 3
    jac, aux2 = jax.jacrev(solver, has_aux=True)(THETA)
    assert_tree_allclose(jac, closed_form_jacobian(THETA))
    assert int(aux2["iters"]) == 3
    # aux is not differentiated: asking for its reverse-mode derivative is an error,
    # not a silent zero.
    with pytest.raises(RuntimeError, match="not differentiable"):
        jax.grad(lambda t: solver(t)[1]["norm"])(THETA)


@pytest.mark.parametrize(
    "solver",
    [
        lx.LU(),
        lx.QR(),
        lx.GMRES(rtol=1e-12, atol=1e-12),
        lx.BiCGStab(rtol=1e-12, atol=1e-12),
    ],
)
def test_linear_solver_option(solver):
    @ix.custom_root(F, linear_solver=solver)
    def ridge(theta):
        return ridge_closed_form(X, y, theta)

    assert_tree_allclose(
        jax.jacrev(ridge)(THETA), closed_form_jacobian(THETA), rtol=1e-8
    )


def test_symmetric_definite_solvers_need_tags():
    for solver in (lx.CG(rtol=1e-12, atol=1e-12), lx.Cholesky()):
        bad = ix.custom_root(F, linear_solver=solver)(
            lambda t: ridge_closed_form(X, y, t)
        )
        with pytest.raises(
            ValueError, match="does not state that `A = -dF/dx` is definite"
        ):
            bad(THETA)
        tags = frozenset({lx.symmetric_tag, lx.negative_semidefinite_tag})
        good = ix.custom_root(F, linear_solver=solver, tags=tags)(
            lambda t: ridge_closed_form(X, y, t)
        )
        assert_tree_allclose(
            jax.jacrev(good)(THETA), closed_form_jacobian(THETA), rtol=1e-8
        )
