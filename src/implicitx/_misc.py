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


def structure_string(tree) -> str:
    """A compact description of the shapes and dtypes of a PyTree, for errors."""

    def _leaf(x):
        shape = getattr(x, "shape", None)
        dtype = getattr(x, "dtype", None)
        if shape is None:
            return type(x).__name__
        return f"{dtype}{list(shape)}"

    return str(jtu.tree_map(_leaf, tree))
