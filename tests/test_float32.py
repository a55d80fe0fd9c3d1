"""float32, as used by optimisation layers inside networks and on GPUs."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx

import implicitx as ix

from .problems import ridge_closed_form, ridge_data, ridge_gradient


X, y = ridge_data(dtype=np.float32)
d = X.shape[1]


def test_custom_root_float32_dtypes_and_values():
    F = lambda x, theta: ridge_gradient(x, theta, X, y)

    @ix.custom_root(F)
    def solver(theta):
        return ridge_closed_form(X, y, theta)

    theta = jnp.array(2.0, dtype=jnp.float32)
    x = solver(theta)
    assert x.dtype == jnp.float32
    jac = jax.jacrev(solver)(theta)
    assert jac.dtype == jnp.float32
    X64, y64 = X.astype(jnp.float64), y.astype(jnp.float64)
    expected = jax.jacfwd(lambda t: ridge_closed_form(X64, y64, t))(jnp.float64(2.0))
    np.testing.assert_allclose(jac, expected, rtol=2e-5, atol=1e-6)
    jac_fwd = jax.jacfwd(solver)(theta)
    np.testing.assert_allclose(jac_fwd, expected, rtol=2e-5, atol=1e-6)


class _Params(eqx.Module):
    L: jax.Array
    W: jax.Array

    def objective(self, x, z):
        Q = self.L @ self.L.T + jnp.eye(x.shape[0], dtype=x.dtype)
        return 0.5 * x @ Q @ x - (self.W @ z) @ x


def test_layer_in_float32_batched_gradients():
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    dim, in_dim, batch = 4, 3, 8
    params = _Params(
        L=0.3 * jax.random.normal(k1, (dim, dim), jnp.float32),
        W=jax.random.normal(k2, (dim, in_dim), jnp.float32),
    )
    layer = ix.ImplicitArgmin(
        ix.Stationarity(params.objective, convex=True),
        ix.solvers.OptimistixMinimiser(optx.BFGS(rtol=1e-6, atol=1e-6)),
        x0=jnp.zeros(dim, jnp.float32),
    )
    Z = jax.random.normal(k3, (batch, in_dim), jnp.float32)

    def loss(layer):
        return jnp.mean(jax.vmap(layer)(Z) ** 2)

    grads = eqx.filter_jit(eqx.filter_grad(loss))(layer)
    g = grads.condition.objective.__self__
    assert g.L.dtype == jnp.float32 and g.W.dtype == jnp.float32

    def closed(L, W):
        Q = L @ L.T + jnp.eye(dim)
        return jnp.mean(jnp.linalg.solve(Q, W @ Z.astype(jnp.float64).T) ** 2)

    g_L, g_W = jax.grad(closed, argnums=(0, 1))(
        params.L.astype(jnp.float64), params.W.astype(jnp.float64)
    )
    np.testing.assert_allclose(g.L, g_L, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(g.W, g_W, rtol=1e-3, atol=1e-4)
