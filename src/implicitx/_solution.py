from typing import Any

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import ArrayLike, PyTree

from ._misc import tree_all_finite
from ._results import as_results, RESULTS


class Solution(eqx.Module):
    """The solution of an optimisation problem, as returned by
    [`implicitx.ImplicitArgmin.solve`][] and by every forward solver.

    **Attributes:**

    - `value`: the solution `x*(theta)`. It is differentiable with respect to `theta`
        and to the array parameters of the condition.
    - `result`: a [`implicitx.RESULTS`][] code saying whether the solve succeeded;
        `implicitx.RESULTS[result]` is its message.
    - `aux`: auxiliary output of the forward solver (`None` if there is none). It is
        passed through and is **not** differentiated: reverse-mode differentiation
        through it raises an error, forward mode gives it NaN tangents.
    - `stats`: statistics of the forward solve, e.g. `num_steps`. Not differentiated.
    """

    value: PyTree[ArrayLike]
    result: RESULTS
    aux: Any
    stats: dict[str, PyTree[ArrayLike]]


def with_checked_result(sol: Solution) -> Solution:
    """Converts the result code to implicitx's, and reports a non-finite value as a
    failure (`nonfinite_solution`) unless the solve already failed otherwise."""
    result = as_results(sol.result)
    finite = tree_all_finite(sol.value)
    result = RESULTS.where(
        (result == RESULTS.successful) & jnp.logical_not(finite),
        RESULTS.nonfinite_solution,
        result,
    )
    return Solution(value=sol.value, result=result, aux=sol.aux, stats=sol.stats)
