import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
from jaxtyping import PyTree


def _float_leaf_asarray(leaf):
    if isinstance(leaf, (float, complex)) and not isinstance(leaf, bool):
        return jnp.asarray(leaf)
    if isinstance(leaf, np.ndarray) and jnp.issubdtype(leaf.dtype, jnp.inexact):
        return jnp.asarray(leaf)
    return leaf


def inexact_leaves_asarray(tree: PyTree) -> PyTree:
    """Turns Python floats and NumPy float arrays into JAX arrays, so that they are
    treated as differentiable inputs. Integers, booleans and other objects are kept.
    """
    return jtu.tree_map(_float_leaf_asarray, tree)


def tree_all_finite(tree) -> jnp.ndarray:
    leaves = [jnp.all(jnp.isfinite(leaf)) for leaf in jtu.tree_leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def tree_scale(tree, scale):
    return jtu.tree_map(lambda leaf: leaf * scale.astype(leaf.dtype), tree)


def structure_string(tree) -> str:
    """A compact description of the shapes and dtypes of a PyTree, for errors."""

    def _leaf(x):
        shape = getattr(x, "shape", None)
        dtype = getattr(x, "dtype", None)
        if shape is None:
            return type(x).__name__
        return f"{dtype}{list(shape)}"

    return str(jtu.tree_map(_leaf, tree))


@jax.custom_jvp
def nan_tangent_unless(ok, x):
    """Identity on `x`; its tangent is NaN where `ok` is False (a derivative that must
    not be used, e.g. at a failed solve), unchanged otherwise."""
    del ok
    return x


@nan_tangent_unless.defjvp
def _nan_tangent_unless_jvp(primals, tangents):
    ok, x = primals
    _, t_x = tangents
    return x, t_x * jnp.where(ok, 1, jnp.nan).astype(t_x.dtype)
