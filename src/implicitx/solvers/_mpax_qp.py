"""Quadratic and linear programs solved by MPAX's restarted, averaged PDHG (in JAX),
with exact implicit derivatives from the KKT conditions, which MPAX does not give."""

import dataclasses
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp

from .._results import RESULTS
from .._solution import Solution
from .._while_loops import lax_while_loop
from ._base import AbstractSolver
from ._external import require
from ._qp import polish_qp, qp_data_of, result_of


# MPAX's `TerminationStatus` values.
_OPTIMAL, _PRIMAL_INFEASIBLE, _DUAL_INFEASIBLE, _ITERATION_LIMIT = 2, 3, 4, 6


class MPAXQP(AbstractSolver):
    """A quadratic (or linear) program `min 0.5 z^T Q z + c^T z s.t. E z = d,
    M z <= h` solved by MPAX's `raPDHG` (restarted averaged primal-dual hybrid
    gradient: only products with the data, no factorisation; for large LPs and
    QPs, on GPU), then polished in JAX as [`implicitx.solvers.ADMMQP`][] does. The
    condition must be a [`implicitx.QuadraticKKT`][]; the answer is the
    primal-dual triple `(z, nu, lam)`, whose exact derivatives come from the KKT
    conditions, never through MPAX's iterations.

    It runs in JAX, so it works under `jit` and `vmap` (the batch runs until its
    slowest element stops). Result codes: `RESULTS.primal_infeasible` and
    `RESULTS.dual_infeasible` from MPAX's certificates (MPAX looks for them only
    in linear programs: an infeasible QP stops at `max_steps`, reported as
    `RESULTS.nonlinear_max_steps_reached`), the same code at its iteration limit,
    and `RESULTS.external_solver_failed` for its other failures (or a nonzero `Q`
    with `linear_program=True`). Needs `mpax` (`pip install mpax`).

    **Arguments:**

    - `rtol`, `atol`: MPAX's relative and absolute tolerances on its KKT residuals
        (`eps_rel`, `eps_abs`), default `1e-8`. A first-order method needs many
        iterations for tight tolerances: the polish then makes the answer exact
        once the active set is right.
    - `max_steps`: MPAX's iteration limit, default 100000.
    - `polish`: default `True`.
    - `linear_program`: whether `Q = 0`, default `False`. MPAX chooses its method
        (and its infeasibility detection) from this; under `jit` it cannot look
        at the values of `Q`, so say it here.
    """

    rtol: float = eqx.field(default=1e-8, static=True)
    atol: float = eqx.field(default=1e-8, static=True)
    max_steps: int = eqx.field(default=100_000, static=True)
    polish: bool = eqx.field(default=True, static=True)
    linear_program: bool = eqx.field(default=False, static=True)
    can_unroll: ClassVar[bool] = False

    def solve(self, condition, theta, x0, *, while_loop=lax_while_loop) -> Solution:
        del x0, while_loop  # MPAX runs its own loop from its own starting point
        mpax = require("mpax")
        data = qp_data_of(condition, theta, self)
        n, p = data.c.shape[0], data.d.shape[0]
        free = jnp.full(n, jnp.inf, data.c.dtype)
        # MPAX writes its inequalities `G z >= g`: `G = -M`, `g = -h`. It relies on
        # NumPy's broadcasting and promotion rules, which the caller may have made
        # strict.
        with jax.numpy_rank_promotion("allow"), jax.numpy_dtype_promotion("standard"):
            problem = mpax.create_qp(
                data.Q, data.c, data.E, data.d, -data.M, -data.h, -free, free,
                use_sparse_matrix=False,
            )  # fmt: skip
            problem = dataclasses.replace(problem, is_lp=self.linear_program)
            out = mpax.raPDHG(
                eps_abs=self.atol,
                eps_rel=self.rtol,
                iteration_limit=self.max_steps,
                verbose=False,
            ).optimize(problem)
        z = out.primal_solution
        # MPAX's multipliers `y` have the signs of the Lagrangian
        # `f - y^T (A z - b)` with its rows `[E; -M]`: `nu = -y_E` and `lam = y_M`.
        nu, lam = -out.dual_solution[:p], out.dual_solution[p:]
        status = out.termination_status
        if self.linear_program:
            status = jnp.where(jnp.any(data.Q != 0), -1, status)
        result = result_of(
            status,
            {
                _OPTIMAL: RESULTS.successful,
                _PRIMAL_INFEASIBLE: RESULTS.primal_infeasible,
                _DUAL_INFEASIBLE: RESULTS.dual_infeasible,
                _ITERATION_LIMIT: RESULTS.nonlinear_max_steps_reached,
            },
            RESULTS.external_solver_failed,
        )
        value = (z, nu, lam)
        stats = {"num_steps": out.iteration_count}
        if self.polish:
            value, polished = polish_qp(condition, theta, data, value, data.M @ z)
            stats["polished"] = polished
        return Solution(value=value, result=result, aux=None, stats=stats)
