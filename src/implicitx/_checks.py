"""Checks of the implicit rule's inputs at the solution: is `x` a root of `F`, and
is `A` not negligible next to `B`. Each costs one product with `A`."""

import jax
import jax.numpy as jnp
import jax.tree_util as jtu

from ._linear_solve import max_abs, probe_vector
from ._results import RESULTS


def _structure(tree):
    return jtu.tree_map(lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype), tree)


def root_result(residual, x, theta, result: RESULTS, root_tol: float) -> RESULTS:
    """Reports `nonroot` unless `max|F(x, theta)| <= root_tol * max|A u|`.

    `u` is a fixed pseudo-random direction with entries of size `1 + max|x|`, so that
    `max|A u|` is the size of the change of `F` over a step as large as `x`: the check
    is invariant to the scaling of `F`, and says that the distance to the root is at
    most about `root_tol` relative to `x` (Newton's step, `A^{-1} F`). One product
    with `A`, on top of the evaluation of `F`.
    """
    scale = 1 + max_abs(x)
    u = jtu.tree_map(lambda p: p * scale.astype(p.dtype), probe_vector(_structure(x)))
    r, a_u = jax.jvp(lambda _x: residual(_x, theta), (x,), (u,))
    bad = max_abs(r) > root_tol * max_abs(a_u)  # NaN is reported elsewhere
    return RESULTS.where((result == RESULTS.successful) & bad, RESULTS.nonroot, result)


def not_negligible(operator, residual_of_inputs, diff, backward) -> jax.Array:
    """Whether `A` is not negligible next to `B`: `max|A p| * max_condition` must be
    at least `max|B q|`, with `p` a fixed direction of unit size and `q` a unit change
    of every differentiable input.

    A condition estimate is scale-free, so it passes an `A` that is uniformly tiny
    (e.g. a zero Hessian at the solution), whose inverse then gives derivatives of
    ~1/eps. Relative to `B`, such an `A` is zero.
    """
    probe = probe_vector(operator.in_structure())
    a_p = max_abs(operator.mv(probe))
    ones = jtu.tree_map(jnp.ones_like, diff)
    _, b_q = jax.jvp(residual_of_inputs, (diff,), (ones,))
    max_condition = backward.condition_limit(operator)
    return jnp.logical_not(a_p * max_condition < max_abs(b_q))
