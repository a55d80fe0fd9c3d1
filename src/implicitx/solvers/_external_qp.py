"""Quadratic programs solved outside JAX, by Clarabel, OSQP, DAQP, PIQP, HiGHS or
any solver CVXPY reaches, through `jax.pure_callback`. The primal-dual answer is
differentiated by the rule from [`implicitx.QuadraticKKT`][], never through the
external solver."""

import traceback
import warnings
from collections.abc import Callable
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._results import RESULTS
from .._solution import Solution
from .._while_loops import lax_while_loop
from ._base import AbstractSolver
from ._external import require
from ._qp import polish_qp, qp_data_of, result_of


_CLARABEL_TIGHT = dict(
    tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10, tol_ktratio=1e-10
)
# Host status codes, mapped to result codes below.
_SOLVED, _PRIMAL_INFEASIBLE, _DUAL_INFEASIBLE, _FAILED = 0, 1, 2, 3


def _clarabel(Q, c, E, d, M, h, settings: dict):
    clarabel = require("clarabel")
    sparse = require("scipy.sparse")
    p, m = E.shape[0], M.shape[0]
    options = clarabel.DefaultSettings()
    options.verbose = False
    for name, value in {**_CLARABEL_TIGHT, **settings}.items():
        setattr(options, name, value)
    cones = []
    if p:
        cones.append(clarabel.ZeroConeT(p))
    if m:
        cones.append(clarabel.NonnegativeConeT(m))
    solver = clarabel.DefaultSolver(
        sparse.csc_matrix(np.triu(Q)),
        c,
        sparse.csc_matrix(np.vstack([E, M])),
        np.concatenate([d, h]),
        cones,
        options,
    )
    sol = solver.solve()
    status = str(sol.status)
    if status in ("Solved", "AlmostSolved"):
        code = _SOLVED
    elif "PrimalInfeasible" in status:
        code = _PRIMAL_INFEASIBLE
    elif "DualInfeasible" in status:
        code = _DUAL_INFEASIBLE
    else:
        raise RuntimeError(f"Clarabel status: {status}")
    y = np.asarray(sol.z)
    return np.asarray(sol.x), y[:p], y[p:], code


def _osqp(Q, c, E, d, M, h, settings: dict):
    osqp = require("osqp")
    sparse = require("scipy.sparse")
    p = E.shape[0]
    options = dict(
        verbose=False, eps_abs=1e-10, eps_rel=1e-10, polishing=True, max_iter=100_000
    )
    options.update(settings)
    solver = osqp.OSQP()
    solver.setup(
        P=sparse.csc_matrix(np.triu(Q)),
        q=c,
        A=sparse.csc_matrix(np.vstack([E, M])),
        l=np.concatenate([d, np.full(M.shape[0], -np.inf)]),
        u=np.concatenate([d, h]),
        **options,
    )
    res = solver.solve(raise_error=False)  # statuses are read below
    status = str(res.info.status).lower()
    if "primal infeasible" in status:
        code = _PRIMAL_INFEASIBLE
    elif "dual infeasible" in status:
        code = _DUAL_INFEASIBLE
    elif status.startswith("solved"):
        code = _SOLVED
    else:
        raise RuntimeError(f"OSQP status: {res.info.status}")
    y = np.asarray(res.y)
    return np.asarray(res.x), y[:p], y[p:], code


def _cvxpy(Q, c, E, d, M, h, settings: dict):
    cp = require("cvxpy")
    n = c.shape[0]
    z = cp.Variable(n)
    objective = 0.5 * cp.quad_form(z, cp.psd_wrap(Q)) + c @ z
    constraints = []
    if E.shape[0]:
        constraints.append(E @ z == d)
    if M.shape[0]:
        constraints.append(M @ z <= h)
    problem = cp.Problem(cp.Minimize(objective), constraints)
    if "solver" not in settings:
        settings = {"solver": "CLARABEL", **_CLARABEL_TIGHT, **settings}
    problem.solve(**settings)
    if problem.status in ("infeasible", "infeasible_inaccurate"):
        return None, None, None, _PRIMAL_INFEASIBLE
    if problem.status in ("unbounded", "unbounded_inaccurate"):
        return None, None, None, _DUAL_INFEASIBLE
    if problem.status not in ("optimal", "optimal_inaccurate"):
        raise RuntimeError(f"CVXPY status: {problem.status}")
    # CVXPY's multipliers have the signs of the Lagrangian `f + nu (E z - d) + lam
    # (M z - h)`, as `QuadraticKKT`'s.
    duals = [np.atleast_1d(con.dual_value) for con in constraints]
    nu = duals.pop(0) if E.shape[0] else np.zeros(0)
    lam = duals.pop(0) if M.shape[0] else np.zeros(0)
    return z.value, nu, lam, _SOLVED


def _daqp(Q, c, E, d, M, h, settings: dict):
    daqp = require("daqp")
    p, m = E.shape[0], M.shape[0]
    # Rows `lower <= A z <= upper`; the equalities have sense 5 (DAQP's "equality").
    sense = np.concatenate([np.full(p, 5), np.zeros(m)]).astype(np.int32)
    options = {"primal_tol": 1e-10, **settings}
    # DAQP's buffers must be writable: copies, never views of JAX's arrays.
    z, _, flag, info = daqp.solve(
        np.array(Q, order="C"),
        np.array(c),
        np.array(np.vstack([E, M]), order="C"),
        np.concatenate([d, h]),
        np.concatenate([d, np.full(m, -1e30)]),
        sense,
        **options,
    )
    if flag == -1:
        return None, None, None, _PRIMAL_INFEASIBLE
    if flag == -3:
        return None, None, None, _DUAL_INFEASIBLE
    if flag not in (1, 2):
        raise RuntimeError(f"DAQP exit flag: {flag}")
    # DAQP's multipliers have the Lagrangian signs `f + lam^T (A z - b)`: positive
    # on an active upper bound, as `QuadraticKKT`'s.
    y = np.asarray(info["lam"])
    return np.asarray(z), y[:p], y[p:], _SOLVED


def _piqp(Q, c, E, d, M, h, settings: dict):
    piqp = require("piqp")
    solver = piqp.DenseSolver()
    solver.settings.verbose = False
    solver.settings.eps_abs = 1e-10
    solver.settings.eps_rel = 1e-10
    for name, value in settings.items():
        setattr(solver.settings, name, value)
    solver.setup(
        np.asfortranarray(Q),
        np.ascontiguousarray(c),
        np.asfortranarray(E),
        np.ascontiguousarray(d),
        np.asfortranarray(M),
        None,
        np.ascontiguousarray(h),
        None,
        None,
    )
    status = solver.solve()
    if status == piqp.PIQP_PRIMAL_INFEASIBLE:
        return None, None, None, _PRIMAL_INFEASIBLE
    if status == piqp.PIQP_DUAL_INFEASIBLE:
        return None, None, None, _DUAL_INFEASIBLE
    if status != piqp.PIQP_SOLVED:
        raise RuntimeError(f"PIQP status: {status}")
    result = solver.result
    return np.asarray(result.x), np.asarray(result.y), np.asarray(result.z_u), _SOLVED


def _highs(Q, c, E, d, M, h, settings: dict):
    highspy = require("highspy")
    n, p, m = c.shape[0], E.shape[0], M.shape[0]
    model = highspy.HighsModel()
    lp = model.lp_
    lp.num_col_, lp.num_row_ = n, p + m
    lp.col_cost_ = c
    lp.col_lower_, lp.col_upper_ = np.full(n, -np.inf), np.full(n, np.inf)
    lp.row_lower_ = np.concatenate([d, np.full(m, -np.inf)])
    lp.row_upper_ = np.concatenate([d, h])
    _csc_into(lp.a_matrix_, np.vstack([E, M]), highspy.MatrixFormat.kColwise)
    if np.any(Q):
        model.hessian_.dim_ = n
        model.hessian_.format_ = highspy.HessianFormat.kTriangular
        _csc_into(model.hessian_, np.tril(Q))
    solver = highspy.Highs()
    options = {"output_flag": False, **settings}
    for name, value in options.items():
        solver.setOptionValue(name, value)
    solver.passModel(model)
    solver.run()
    status = solver.getModelStatus()
    statuses = highspy.HighsModelStatus
    if status == statuses.kInfeasible:
        return None, None, None, _PRIMAL_INFEASIBLE
    if status in (statuses.kUnbounded, statuses.kUnboundedOrInfeasible):
        return None, None, None, _DUAL_INFEASIBLE
    if status != statuses.kOptimal:
        raise RuntimeError(f"HiGHS status: {solver.modelStatusToString(status)}")
    solution = solver.getSolution()
    # HiGHS's row duals `y` satisfy `c + Q z - A^T y = 0`: `QuadraticKKT`'s
    # multipliers are `-y`.
    y = -np.asarray(solution.row_dual)
    return np.asarray(solution.col_value), y[:p], y[p:], _SOLVED


def _csc_into(target, matrix: np.ndarray, format_=None):
    """Fills a HiGHS sparse matrix (or Hessian) with `matrix` in column-wise form."""
    sparse = require("scipy.sparse")
    csc = sparse.csc_matrix(matrix)
    if format_ is not None:
        target.format_ = format_
    target.start_ = csc.indptr.astype(np.int32)
    target.index_ = csc.indices.astype(np.int32)
    target.value_ = csc.data.astype(np.float64)


_BACKENDS: dict[str, Callable] = {
    "clarabel": _clarabel,
    "osqp": _osqp,
    "cvxpy": _cvxpy,
    "daqp": _daqp,
    "piqp": _piqp,
    "highs": _highs,
}


class ExternalQP(AbstractSolver):
    """A quadratic program `min 0.5 z^T Q z + c^T z s.t. E z = d, M z <= h` solved on
    the host by an external solver: Clarabel (interior point, the default), OSQP
    (ADMM, polished), DAQP (dual active set, for small dense problems), PIQP
    (proximal interior point, dense), HiGHS (active set for QPs, simplex or
    interior point for LPs) or CVXPY with any solver it has. The condition must be a
    [`implicitx.QuadraticKKT`][] (as in [`implicitx.QuadraticProgram`][]); the
    answer is the primal-dual triple `(z, nu, lam)`, whose derivatives come from
    the KKT conditions.

    It runs through `jax.pure_callback`, so it works under `jit`; under `vmap` it is
    called once per element, and each element has its own result code:
    `RESULTS.primal_infeasible` or `RESULTS.dual_infeasible` when the solver proves
    the problem infeasible or unbounded, `RESULTS.external_solver_failed` (with the
    solver's message as a warning) when it fails otherwise or the data contain NaN.
    Needs the backend's package (`clarabel`, `osqp` or `cvxpy`, all installed with
    `cvxpy`; `daqp`, `piqp`, `highspy`; all of them with the `external` extra).

    The counterpart of JAXopt's `CvxpyQP` (and, through `backend="osqp"`, of its
    OSQP); see also [`implicitx.solvers.InteriorPointQP`][], which runs inside JAX.

    **Arguments:**

    - `backend`: `"clarabel"`, `"osqp"`, `"daqp"`, `"piqp"`, `"highs"` or
        `"cvxpy"`.
    - `settings`: the backend's options as a dict: Clarabel settings (the defaults
        here ask for tolerances of `1e-10`), OSQP `setup` keywords (here
        `eps_abs = eps_rel = 1e-10`, polishing on), `daqp.solve` keywords (here
        `primal_tol=1e-10`), PIQP settings (here `eps_abs = eps_rel = 1e-10`),
        HiGHS options (here `output_flag=False`), or `problem.solve` keywords for
        CVXPY (default `solver="CLARABEL"`, at the same tolerances).
    - `polish`: polish the answer in JAX as [`implicitx.solvers.ADMMQP`][] does
        (keeping it only if its KKT residual is smaller). An interior-point answer
        is accurate to about the square root of its tolerance at a weakly active
        constraint; polished, it is exact to rounding. Default `True`.
    """

    backend: str = eqx.field(default="clarabel", static=True)
    settings: tuple[tuple[str, Any], ...] = eqx.field(default=(), static=True)
    polish: bool = eqx.field(default=True, static=True)
    can_unroll: ClassVar[bool] = False

    def __init__(self, backend: str = "clarabel", settings=(), polish: bool = True):
        if backend not in _BACKENDS:
            raise ValueError(
                f"`backend` must be one of {sorted(_BACKENDS)}, got {backend!r}."
            )
        self.backend = backend
        self.settings = tuple(dict(settings).items())
        self.polish = polish

    def solve(self, condition, theta, x0, *, while_loop=lax_while_loop) -> Solution:
        del x0, while_loop
        data = qp_data_of(condition, theta, self)
        dtype = data.c.dtype
        n, p, m = data.c.shape[0], data.d.shape[0], data.h.shape[0]
        solve_on_host = _BACKENDS[self.backend]
        settings, name = dict(self.settings), f"ExternalQP({self.backend!r})"

        def host(Q, c, E, d, M, h):
            arrays = [np.asarray(a, np.float64) for a in (Q, c, E, d, M, h)]
            nan = (np.full(n, np.nan), np.full(p, np.nan), np.full(m, np.nan))
            try:
                if any(np.isnan(a).any() for a in arrays):
                    raise ValueError("the problem data contain NaN.")
                z, nu, lam, code = solve_on_host(*arrays, settings)
                if code != _SOLVED:
                    z, nu, lam = nan
            except Exception:
                warnings.warn(f"{name} failed:\n{traceback.format_exc()}", stacklevel=1)
                (z, nu, lam), code = nan, _FAILED
            out = [np.asarray(v, dtype).reshape(-1) for v in (z, nu, lam)]
            return (*out, np.asarray(code, np.int32))

        shapes = (
            jax.ShapeDtypeStruct((n,), dtype),
            jax.ShapeDtypeStruct((p,), dtype),
            jax.ShapeDtypeStruct((m,), dtype),
            jax.ShapeDtypeStruct((), jnp.int32),
        )
        z, nu, lam, code = jax.pure_callback(
            host, shapes, data.Q, data.c, data.E, data.d, data.M, data.h,
            vmap_method="sequential",
        )  # fmt: skip
        result = result_of(
            code,
            {
                _SOLVED: RESULTS.successful,
                _PRIMAL_INFEASIBLE: RESULTS.primal_infeasible,
                _DUAL_INFEASIBLE: RESULTS.dual_infeasible,
            },
            RESULTS.external_solver_failed,
        )
        value, stats = (z, nu, lam), {}
        if self.polish:
            value, polished = polish_qp(condition, theta, data, value, data.M @ z)
            stats = {"polished": polished}
        return Solution(value=value, result=result, aux=None, stats=stats)
