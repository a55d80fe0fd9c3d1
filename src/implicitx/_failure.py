"""The one failure policy of implicitx.

A value or derivative that is not trustworthy is either an error (`throw=True`: the
result's message is raised from the compiled program) or NaN (`throw=False`, with the
result code returned beside it). Every place that applies the policy calls
`apply_policy` (on a value, or on a tangent inside a differentiation rule) or
`guard_tangent` (on a value whose tangent, not value, must not be used).
"""

import jax
import jax.numpy as jnp
import jax.tree_util as jtu

from ._results import RESULTS


def nan_unless(tree, ok):
    """`tree`, with every inexact leaf NaN where `ok` is False."""
    return jtu.tree_map(
        lambda leaf: leaf * jnp.where(ok, 1, jnp.nan).astype(leaf.dtype), tree
    )


def apply_policy(tree, result: RESULTS, throw: bool, ok=None):
    """The policy on `tree`: unless `ok` (by default `result == successful`), raise
    `result`'s message (`throw=True`) or make `tree` NaN (`throw=False`).

    With `throw=True` the error is tied to `tree`: the check runs wherever `tree` is
    used (pass the value a derivative-only program depends on)."""
    if ok is None:
        ok = result == RESULTS.successful
    if throw:
        return result.error_if(tree, jnp.logical_not(ok))
    return nan_unless(tree, ok)


@jax.custom_jvp
def _nan_tangent_unless(ok, x):
    del ok
    return x


@_nan_tangent_unless.defjvp
def _nan_tangent_unless_jvp(primals, tangents):
    ok, x = primals
    _, t_x = tangents
    return x, nan_unless(t_x, ok)


def guard_tangent(tree, result: RESULTS, throw: bool, ok=None):
    """The policy on the derivatives of `tree`, keeping its value: unless `ok`, raise
    (`throw=True`, as `apply_policy`) or make its tangents NaN (`throw=False`)."""
    if ok is None:
        ok = result == RESULTS.successful
    if throw:
        return apply_policy(tree, result, throw, ok)
    return jtu.tree_map(lambda leaf: _nan_tangent_unless(ok, leaf), tree)


def accepted(result: RESULTS, inexact: bool) -> jax.Array:
    """`successful`, or with `inexact=True` a solver that ran out of steps or stopped
    away from the root (its last iterate is then differentiated, approximately)."""
    ok = result == RESULTS.successful
    if inexact:
        ok = ok | (result == RESULTS.nonlinear_max_steps_reached)
        ok = ok | (result == RESULTS.nonroot)
    return ok
