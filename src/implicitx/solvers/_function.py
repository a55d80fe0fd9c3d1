from collections.abc import Callable
from typing import Any

import equinox as eqx

from .._results import RESULTS
from .._solution import Solution
from .._while_loops import lax_while_loop
from ._base import AbstractSolver


class FunctionSolver(AbstractSolver):
    """Any function `fn(theta, x0) -> x` as a forward solver: a closed form, a solver
    written by hand, or a call to another library.

    The function is trusted to return a solution; implicitx checks only that it is
    finite (a non-finite value gives the result `nonfinite_solution`). It is never
    differentiated, so it may contain anything JAX can trace.

    **Arguments:**

    - `fn`: `fn(theta, x0) -> x`, or `-> (x, aux)` with `has_aux=True`.
    - `has_aux`: whether `fn` returns auxiliary output, which becomes
        `Solution.aux` (not differentiated).
    """

    fn: Callable[..., Any]
    has_aux: bool = eqx.field(default=False, static=True)

    def solve(self, condition, theta, x0, *, while_loop=lax_while_loop) -> Solution:
        del condition, while_loop  # differentiable if `fn` is
        out = self.fn(theta, x0)
        if self.has_aux:
            if not (isinstance(out, tuple) and len(out) == 2):
                raise ValueError(
                    "With `has_aux=True` the solver must return a pair `(x, aux)`; "
                    f"got {type(out).__name__}."
                )
            value, aux = out
        else:
            value, aux = out, None
        result = RESULTS.successful
        return Solution(value=value, result=result, aux=aux, stats={})  # pyright: ignore[reportArgumentType]
