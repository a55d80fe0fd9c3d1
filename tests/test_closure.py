"""Arrays closed over by the user's F / f / solver, also traced ones, are hoisted into
differentiable inputs: their derivatives are correct in forward and reverse mode."""

import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx

import implicitx as ix

from .helpers import assert_tree_allclose, finite_difference_jvp
from .problems import ridge_closed_form, ridge_data, ridge_gradient, ridge_objective


X, y = ridge_data()
d = X.shape[1]
THETA = 2.0
TARGET = jnp.linspace(-1.0, 1.0, d)


def loss_closed(X_):
    return jnp.sum((ridge_closed_form(X_, y, THETA) - TARGET) ** 2)


def loss_custom_root(X_):
    # F and the solver close over the (traced) X_.
    F = lambda x, theta: ridge_gradient(x, theta, X_, y)
    solver = ix.custom_root(F)(lambda theta: ridge_closed_form(X_, y, theta))
    return jnp.sum((solver(THETA) - TARGET) ** 2)


def loss_argmin(X_):
    f = lambda x, theta: ridge_objective(x, theta, X_, y)
    argmin = ix.ImplicitArgmin(
        ix.Stationarity(f, convex=True),
        ix.solvers.OptimistixRootFinder(optx.Newton(rtol=1e-13, atol=1e-13)),
        x0=jnp.zeros(d),
    )
    return jnp.sum((argmin(THETA) - TARGET) ** 2)


def test_reverse_mode_through_closed_over_tracers():
    expected = jax.grad(loss_closed)(X)
    assert jnp.max(jnp.abs(expected)) > 1e-3
    for loss in (loss_custom_root, loss_argmin):
        assert_tree_allclose(
            jax.jit(jax.grad(loss))(X), expected, rtol=1e-8, atol=1e-12
        )


def test_forward_mode_through_closed_over_tracers():
    direction = jax.random.normal(jax.random.key(0), X.shape)
    _, expected = jax.jvp(loss_closed, (X,), (direction,))
    fd = finite_difference_jvp(loss_closed, X, direction)
    np.testing.assert_allclose(expected, fd, rtol=1e-7)
    for loss in (loss_custom_root, loss_argmin):
        _, got = jax.jit(lambda v, loss=loss: jax.jvp(loss, (X,), (v,)))(direction)
        np.testing.assert_allclose(got, expected, rtol=1e-8)


def test_closed_over_tracer_and_theta_together():
    # Differentiate with respect to both the closed-over data and theta at once,
    # and to second order.
    def loss(X_, theta):
        F = lambda x, t: ridge_gradient(x, t, X_, y)
        solver = ix.custom_root(F)(lambda t: ridge_closed_form(X_, y, t))
        return jnp.sum((solver(theta) - TARGET) ** 2)

    def reference(X_, theta):
        return jnp.sum((ridge_closed_form(X_, y, theta) - TARGET) ** 2)

    got = jax.grad(loss, argnums=(0, 1))(X, THETA)
    assert_tree_allclose(got, jax.grad(reference, argnums=(0, 1))(X, THETA), rtol=1e-8)
    h = jax.hessian(loss, argnums=1)(X, THETA)
    np.testing.assert_allclose(
        h, jax.hessian(reference, argnums=1)(X, THETA), rtol=1e-8
    )
    mixed = jax.jacfwd(jax.grad(loss, argnums=1), argnums=0)(X, THETA)
    expected_mixed = jax.jacfwd(jax.grad(reference, argnums=1), argnums=0)(X, THETA)
    assert_tree_allclose(mixed, expected_mixed, rtol=1e-7, atol=1e-12)
