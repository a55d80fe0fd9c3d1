from typing import Any

import equinox as eqx
from jaxtyping import ArrayLike, PyTree

from ._results import RESULTS


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
        through it raises an error, forward-mode gives it a zero tangent.
    - `stats`: statistics of the forward solve, e.g. `num_steps`. Not differentiated.
    """

    value: PyTree[ArrayLike]
    result: RESULTS
    aux: Any
    stats: dict[str, PyTree[ArrayLike]]
