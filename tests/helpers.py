"""Shared checks for the test suite (the shared problems are in `problems.py`)."""

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


def finite_difference_jacobian(fn, x, *, eps=1e-5):
    """The Jacobian of `fn` at the array `x`, by `finite_difference_jvp` along every
    coordinate (vmapped): shape `fn(x).shape + x.shape`."""
    x = jnp.asarray(x)
    basis = jnp.eye(x.size, dtype=x.dtype).reshape((x.size,) + x.shape)
    columns = jax.vmap(lambda e: finite_difference_jvp(fn, x, e, eps=eps))(basis)
    return jnp.moveaxis(columns, 0, -1).reshape(columns.shape[1:] + x.shape)


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
