"""Shared problems and checks for the test suite."""

import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np


def assert_tree_allclose(x, y, *, rtol=1e-10, atol=1e-10):
    xs, ys = jtu.tree_leaves(x), jtu.tree_leaves(y)
    assert jtu.tree_structure(x) == jtu.tree_structure(y)
    for a, b in zip(xs, ys, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol)


def finite_difference_jvp(fn, primal, tangent, *, eps=1e-5):
    """Central finite difference of `fn` at `primal` along `tangent` (PyTrees)."""
    plus = jtu.tree_map(lambda p, t: p + eps * t, primal, tangent)
    minus = jtu.tree_map(lambda p, t: p - eps * t, primal, tangent)
    return jtu.tree_map(lambda a, b: (a - b) / (2 * eps), fn(plus), fn(minus))


def random_like(key, tree):
    leaves, treedef = jtu.tree_flatten(tree)
    keys = jax.random.split(key, len(leaves))
    new = [
        jax.random.normal(k, jnp.shape(x), jnp.result_type(x))
        for k, x in zip(keys, leaves, strict=True)
    ]
    return jtu.tree_unflatten(treedef, new)


def tree_dot(x, y):
    return sum(
        jnp.sum(a * b)
        for a, b in zip(jtu.tree_leaves(x), jtu.tree_leaves(y), strict=True)
    )


def ridge_data(n=20, d=5, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    X = jnp.asarray(rng.standard_normal((n, d)), dtype=dtype)
    y = jnp.asarray(rng.standard_normal(n), dtype=dtype)
    return X, y


def ridge_closed_form(X, y, theta):
    d = X.shape[1]
    return jnp.linalg.solve(X.T @ X + theta * jnp.eye(d, dtype=X.dtype), X.T @ y)


def logistic_data(n=30, d=4, seed=1):
    rng = np.random.default_rng(seed)
    X = jnp.asarray(rng.standard_normal((n, d)))
    w = rng.standard_normal(d)
    labels = (rng.uniform(size=n) < 1 / (1 + np.exp(-np.asarray(X) @ w))).astype(float)
    return X, jnp.asarray(2 * labels - 1)


def logistic_objective(x, theta, X, y):
    """L2-regularised logistic regression: smooth, strictly convex, not quadratic."""
    margins = y * (X @ x)
    return jnp.sum(jnp.logaddexp(0.0, -margins)) + 0.5 * theta * jnp.sum(x**2)


def raises_runtime(match):
    """`pytest.raises` for an error raised from inside a compiled program:
    `EquinoxRuntimeError` under `eqx.filter_jit`, `JaxRuntimeError` (carrying the same
    message) under `jax.jit`. Dispatch is asynchronous: block on the result inside the
    `with`."""
    import equinox as eqx
    import pytest

    return pytest.raises(
        (eqx.EquinoxRuntimeError, jax.errors.JaxRuntimeError), match=match
    )
