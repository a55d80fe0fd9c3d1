"""Forward solvers of quadratic programs: a direct KKT solve for equality-constrained
problems, and a dense primal-dual interior-point method."""

from typing import Any

import equinox as eqx
import jax.numpy as jnp
import jax.scipy as jsp
import lineax as lx
import numpy as np
from jaxtyping import Array, Bool, Int

from .._conditions import AbstractCondition
from .._conditions._quadratic import QPData
from .._operator_base import default_tolerance
from .._results import RESULTS
from .._solution import Solution
from .._while_loops import lax_while_loop
from ._base import AbstractIterativeSolver, AbstractIterativeState, AbstractSolver
from ._loop import max_abs


def qp_data_of(condition: AbstractCondition, theta, solver) -> QPData:
    qp_at = getattr(condition, "qp_at", None)
    if not callable(qp_at):
        raise TypeError(
            f"`{type(solver).__name__}` solves quadratic programs: it needs a "
            "condition that gives its data through `qp_at(theta)`, such as "
            f"`implicitx.QuadraticKKT`, got `{type(condition).__name__}`."
        )
    data = qp_at(theta)
    assert isinstance(data, QPData)
    return data


def certified(done, result, status) -> tuple[Array, RESULTS]:
    """`terminate`'s answer once a QP solver's `status` may hold a certificate: 1
    stops with `RESULTS.primal_infeasible`, 2 with `RESULTS.dual_infeasible`."""
    result = RESULTS.where(
        status == 1,
        RESULTS.primal_infeasible,  # pyright: ignore[reportArgumentType]
        RESULTS.where(
            status == 2,
            RESULTS.dual_infeasible,  # pyright: ignore[reportArgumentType]
            result,
        ),
    )
    return done | (status != 0), result


def result_of(code, codes: dict[int, Any], otherwise: Any) -> RESULTS:
    """The result whose entry in `codes` is the (traced) integer `code`, or
    `otherwise`: an external solver's status as a result code."""
    result = otherwise
    for value, mapped in codes.items():
        result = RESULTS.where(code == value, mapped, result)
    return result


def symmetric(Q: Array) -> Array:
    return 0.5 * (Q + Q.T)


def _solve_dense(matrix: Array, vector: Array) -> Array:
    operator = lx.MatrixLinearOperator(matrix)
    return lx.linear_solve(operator, vector, lx.LU(), throw=False).value


class EqualityConstrainedQP(AbstractSolver):
    """Solves `min 0.5 z^T Q z + c^T z s.t. E z = d` by one direct solve of its KKT
    system `[[Q, E^T], [E, 0]] [z; nu] = [-c; d]` (lineax LU). The condition must be a
    [`implicitx.QuadraticKKT`][] without inequalities (`M` with zero rows). A
    singular KKT matrix (dependent equalities, or `Q` singular on the null space of
    `E`) gives a non-finite solution, reported as `RESULTS.nonfinite_solution`.

    The counterpart of JAXopt's `EqualityConstrainedQP`.
    """

    def solve(self, condition, theta, x0, *, while_loop=lax_while_loop) -> Solution:
        del x0, while_loop
        data = qp_data_of(condition, theta, self)
        if data.M.shape[0] != 0:
            raise TypeError(
                "`EqualityConstrainedQP` solves problems without inequalities; this "
                f"one has {data.M.shape[0]}. Use `implicitx.solvers.InteriorPointQP`."
            )
        n, p = data.c.shape[0], data.d.shape[0]
        kkt = jnp.block(
            [[symmetric(data.Q), data.E.T], [data.E, jnp.zeros((p, p), data.c.dtype)]]
        )
        out = _solve_dense(kkt, jnp.concatenate([-data.c, data.d]))
        value = (out[:n], out[n:], jnp.zeros((0,), data.c.dtype))
        finite = jnp.all(jnp.isfinite(out))
        result = RESULTS.where(
            finite,
            RESULTS.successful,  # pyright: ignore[reportArgumentType]
            RESULTS.nonfinite_solution,  # pyright: ignore[reportArgumentType]
        )
        return Solution(value=value, result=result, aux=None, stats={})


class _IPMState(AbstractIterativeState):
    x: tuple  # (z, nu, lam)
    s: Array  # slacks of the inequalities, h - M z at a feasible point
    residuals: tuple  # of stationarity, equalities, inequalities, at (x, s)
    num_steps: Int[Array, ""]
    converged: Bool[Array, ""]
    status: Int[Array, ""]  # 0 running, 1 primal infeasible, 2 dual infeasible


class InteriorPointQP(AbstractIterativeSolver[_IPMState]):
    """A dense primal-dual interior-point method (Mehrotra's predictor-corrector)
    for `min 0.5 z^T Q z + c^T z s.t. E z = d, M z <= h`, with `Q` positive
    semidefinite. The condition must be a [`implicitx.QuadraticKKT`][]; the answer
    is the primal-dual triple `(z, nu, lam)`.

    Written for `jax.vmap`: fixed shapes, no Python branching on values. Each step
    factorises the Newton system once, reduced to `z` and `nu` (the inequality
    multipliers eliminated): a Cholesky factorisation of
    `Q + M^T diag(lam / s) M` (slightly regularised) and one of its Schur
    complement with the equalities, used for both the predictor and the
    corrector. In float32 each solve is followed by one step of iterative
    refinement against the unregularised system, which keeps it accurate; in
    float64 that is not needed. The step to the boundary is the fraction
    `1 - min(0.01, mu)` of the largest one, so that the last steps converge fast.

    It stops when the residuals of stationarity, of the equalities and of the
    inequalities are at most `rtol` times the scale of their data (plus `atol`),
    and the complementarity `min(lam_i, s_i)` of every inequality as well (the
    KKT conditions' own measure: at a weakly active constraint it asks for more
    than the duality measure `s^T lam / m` would). It reports
    `RESULTS.primal_infeasible` or `RESULTS.dual_infeasible` when an iterate
    approaches a certificate of infeasibility or unboundedness (checked on the
    normalised multipliers or primal variables, once they exceed `1 / atol`), and
    `RESULTS.nonlinear_max_steps_reached` after `max_steps` steps.

    **Arguments:**

    - `rtol`, `atol`: default `eps^(2/3)` of the dtype (about `4e-11` in float64,
        `2.5e-5` in float32).
    - `max_steps`: default 100 (a well-posed problem takes 10 to 30 steps).
    - `refinements`: the number of iterative-refinement steps per Newton solve;
        default 1 in float32 (and lower precisions), 0 in float64.
    """

    rtol: float | None = None
    atol: float | None = None
    max_steps: int = eqx.field(default=100, static=True)
    refinements: int | None = eqx.field(default=None, static=True)

    def _tolerances(self, dtype) -> tuple[float, float]:
        rtol = default_tolerance(dtype) if self.rtol is None else self.rtol
        atol = default_tolerance(dtype) if self.atol is None else self.atol
        return rtol, atol

    def _refinements(self, dtype) -> int:
        if self.refinements is not None:
            return self.refinements
        return 0 if jnp.finfo(dtype).bits >= 64 else 1

    def init(self, condition, theta, x0) -> _IPMState:
        data = qp_data_of(condition, theta, self)
        dtype = data.c.dtype
        n, p, m = data.c.shape[0], data.d.shape[0], data.h.shape[0]
        if x0 is None:
            z = jnp.zeros(n, dtype)
        else:
            z = jnp.asarray(x0[0], dtype)
        nu = jnp.zeros(p, dtype)
        lam = jnp.ones(m, dtype)
        s = jnp.maximum(data.h - data.M @ z, 1.0)
        return _IPMState(
            x=(z, nu, lam),
            s=s,
            residuals=_residuals(
                data, s, _products(data, symmetric(data.Q), z, nu, lam)
            ),
            num_steps=jnp.array(0),
            converged=jnp.array(False),
            status=jnp.array(0),
        )

    def step(self, condition, theta, state, *, while_loop=lax_while_loop):
        del while_loop  # no inner loop
        data = qp_data_of(condition, theta, self)
        Q = symmetric(data.Q)
        z, nu, lam = state.x
        s = state.s
        m = lam.shape[0]
        r_d, r_e, r_i = state.residuals
        mu = jnp.sum(s * lam) / max(m, 1)

        eps = float(np.finfo(z.dtype).eps)
        delta = eps**0.75 * (1 + jnp.max(jnp.abs(Q), initial=0.0))
        w = s / lam
        factors = _ReducedKKT.factor(Q, data.E, data.M, w, delta)

        def newton(r_c):
            # M dz - W dlam = -r_i - r_c / lam, with r_c the target of s * lam.
            rhs = (-r_d, -r_e, -r_i - r_c / lam)
            out = factors.solve(*rhs)
            for _ in range(self._refinements(z.dtype)):
                # Iterative refinement against the unregularised system.
                fix = factors.solve(*factors.residual(Q, data.E, data.M, w, rhs, out))
                out = tuple(o + f for o, f in zip(out, fix, strict=True))
            dz, dnu, dlam = out
            ds = (r_c - s * dlam) / lam
            return dz, dnu, dlam, ds

        def max_step(v, dv):
            ratios = jnp.where(dv < 0, -v / jnp.where(dv < 0, dv, -1), jnp.inf)
            return jnp.minimum(1.0, jnp.min(ratios, initial=jnp.inf))

        # Predictor (affine scaling), then Mehrotra's centring and corrector.
        dz_a, dnu_a, dlam_a, ds_a = newton(-s * lam)
        alpha_a = jnp.minimum(max_step(s, ds_a), max_step(lam, dlam_a))
        mu_a = jnp.sum((s + alpha_a * ds_a) * (lam + alpha_a * dlam_a)) / max(m, 1)
        sigma = jnp.where(mu > 0, (mu_a / jnp.where(mu > 0, mu, 1)) ** 3, 0.0)
        dz, dnu, dlam, ds = newton(-s * lam - ds_a * dlam_a + sigma * mu)
        # Fraction to the boundary 0.99, tending to 1 as mu -> 0 (fast final steps).
        eta = 1 - jnp.clip(mu, eps, 0.01)
        alpha = eta * jnp.minimum(max_step(s, ds), max_step(lam, dlam))
        alpha = jnp.where(m > 0, alpha, 1.0)  # no inequalities: one Newton step

        z, nu = z + alpha * dz, nu + alpha * dnu
        lam, s = lam + alpha * dlam, s + alpha * ds
        products = _products(data, Q, z, nu, lam)
        converged, status = self._check(data, z, nu, lam, s, products)
        residuals = _residuals(data, s, products)
        return _IPMState(
            x=(z, nu, lam),
            s=s,
            residuals=residuals,
            num_steps=state.num_steps + 1,
            converged=converged,
            status=status,
        )

    def _check(self, data: QPData, z, nu, lam, s, products):
        """Convergence, and certificates of infeasibility or unboundedness, from the
        products of `_products` (no other product with the data)."""
        rtol, atol = self._tolerances(data.c.dtype)
        Qz, Ez, Mz, ETnu, MTlam = products
        r_d, r_e, r_i = _residuals(data, s, products)

        def big(*arrays):
            return jnp.max(
                jnp.stack([jnp.max(jnp.abs(a), initial=0.0) for a in arrays])
            )

        primal_scale = 1 + big(data.d, data.h, Mz, Ez)
        dual_scale = 1 + big(data.c, Qz)
        # Complementarity as the KKT condition measures it, `min(lam_i, s_i)`, not
        # by the duality measure `mean(s lam)`: at a weakly active constraint both
        # are ~ sqrt(mu), so `mu` alone would stop with `z` off by sqrt(mu).
        converged = (
            (big(r_d) <= atol + rtol * dual_scale)
            & (big(r_e, r_i) <= atol + rtol * primal_scale)
            & (
                big(jnp.minimum(lam, s))
                <= atol + rtol * jnp.maximum(primal_scale, dual_scale)
            )
        )
        # Certificates, on the normalised iterates once they are large.
        y_size = big(nu, lam)
        y_scale = 1 / jnp.maximum(y_size, 1)
        dual_gap = y_scale * (data.d @ nu + data.h @ lam)
        infeasible = (
            (y_size > 1 / atol)
            & (y_scale * big(ETnu + MTlam) <= 1e3 * atol)
            & (dual_gap < 0)
        )
        z_size = big(z)
        z_scale = 1 / jnp.maximum(z_size, 1)
        unbounded = (
            (z_size > 1 / atol)
            & (z_scale * big(Qz, Ez) <= 1e3 * atol)
            & (z_scale * jnp.max(Mz, initial=0.0) <= 1e3 * atol)
            & (z_scale * (data.c @ z) < 0)
        )
        status = jnp.where(infeasible, 1, jnp.where(unbounded, 2, 0))
        return converged & ~infeasible & ~unbounded, status

    def terminate(self, condition, theta, state):
        done, result = super().terminate(condition, theta, state)
        return certified(done, result, state.status)

    def postprocess(self, condition, theta, state, result) -> Solution:
        del condition, theta
        stats = {"num_steps": state.num_steps}
        return Solution(value=state.x, result=result, aux=None, stats=stats)


def _products(data: QPData, Q, z, nu, lam) -> tuple[Array, ...]:
    """`(Q z, E z, M z, E^T nu, M^T lam)`: every product with the data that the
    residuals and the stopping test need."""
    return Q @ z, data.E @ z, data.M @ z, data.E.T @ nu, data.M.T @ lam


def _residuals(data: QPData, s, products) -> tuple[Array, Array, Array]:
    """Of stationarity, of the equalities, of the inequalities (with slacks)."""
    Qz, Ez, Mz, ETnu, MTlam = products
    return Qz + data.c + ETnu + MTlam, Ez - data.d, Mz + s - data.h


class _ReducedKKT(eqx.Module):
    """The interior-point Newton system

    `[[Q, E^T, M^T], [E, 0, 0], [M, 0, -W]] [dz; dnu; dlam] = [a; b; r]`,

    `W = diag(w)`, `w = s / lam`, solved through its reduction to `z` and `nu`:
    `dlam = D (M dz - r)` with `D = 1 / (w + delta)`, and the quasi-definite
    `[[H, E^T], [E, -delta]]`, `H = Q + M^T D M + delta I`, by the Cholesky
    factorisation `H = L L^T` and that of the Schur complement
    `Y^T Y + delta I`, `Y = L^-1 E^T` (both positive definite for a convex
    problem; `delta`, of the order `eps^(3/4)`, keeps them so for a linear
    program). A solve is two triangular solves with `L` and one with the small
    Schur factor."""

    chol_h: Array
    Y: Array
    chol_s: Array
    M: Array
    D: Array

    @classmethod
    def factor(cls, Q, E, M, w, delta) -> "_ReducedKKT":
        n, p = Q.shape[0], E.shape[0]
        D = 1 / (w + delta)
        H = Q + (M.T * D[None, :]) @ M + delta * jnp.eye(n, dtype=Q.dtype)
        chol_h = jsp.linalg.cholesky(H, lower=True)
        Y = jsp.linalg.solve_triangular(chol_h, E.T, lower=True)
        chol_s = jsp.linalg.cholesky(
            Y.T @ Y + delta * jnp.eye(p, dtype=Q.dtype), lower=True
        )
        return cls(chol_h, Y, chol_s, M, D)

    def solve(self, a, b, r) -> tuple[Array, Array, Array]:
        u = jsp.linalg.solve_triangular(
            self.chol_h, a + self.M.T @ (self.D * r), lower=True
        )
        dnu = jsp.linalg.cho_solve((self.chol_s, True), self.Y.T @ u - b)
        dz = jsp.linalg.solve_triangular(
            self.chol_h, u - self.Y @ dnu, lower=True, trans="T"
        )
        dlam = self.D * (self.M @ dz - r)
        return dz, dnu, dlam

    @staticmethod
    def residual(Q, E, M, w, rhs, out) -> tuple[Array, Array, Array]:
        """`rhs` minus the unregularised Newton matrix times `out`."""
        (a, b, r), (dz, dnu, dlam) = rhs, out
        return (
            a - (Q @ dz + E.T @ dnu + M.T @ dlam),
            b - E @ dz,
            r - (M @ dz - w * dlam),
        )


def polish_qp(condition, theta, data: QPData, x: tuple, Mz) -> tuple[tuple, Array]:
    """OSQP's polishing of an approximate primal-dual solution `x = (z, nu, lam)`
    (with `Mz` its estimate of `M z`): the solution of the equality-constrained QP
    whose active inequalities are those with `h_i - Mz_i < lam_i`, the others'
    multipliers set to zero (one regularised, refined solve of fixed shape), kept
    if its KKT residual (the condition's) is smaller. Returns the answer and
    whether it is the polished one."""
    fine = _active_set_solution(data, x, data.h - Mz)
    coarse_error = max_abs(condition(x, theta))
    fine_error = max_abs(condition(fine, theta))
    use_fine = fine_error <= coarse_error  # False if NaN
    value = tuple(jnp.where(use_fine, f, c) for f, c in zip(fine, x, strict=True))
    return value, use_fine


def _active_set_solution(data: QPData, x: tuple, slack) -> tuple:
    z, nu, lam = x
    dtype = z.dtype
    n, p, m = z.shape[0], nu.shape[0], lam.shape[0]
    Q = symmetric(data.Q)
    active = slack < lam
    # Inactive rows say `lam_i = 0`; active rows `M_i z = h_i`.
    M_rows = jnp.where(active[:, None], data.M, 0)
    exact = jnp.block(
        [
            [Q, data.E.T, data.M.T],
            [data.E, jnp.zeros((p, p), dtype), jnp.zeros((p, m), dtype)],
            [M_rows, jnp.zeros((m, p), dtype), jnp.diag(jnp.where(active, 0, 1.0))],
        ]
    ).astype(dtype)
    rhs = jnp.concatenate([-data.c, data.d, jnp.where(active, data.h, 0)])
    eps = float(np.finfo(dtype).eps)
    delta = eps**0.75 * (1 + jnp.max(jnp.abs(Q), initial=0.0))
    signs = jnp.concatenate(
        [jnp.ones(n, dtype), -jnp.ones(p, dtype), jnp.where(active, -1.0, 0.0)]
    ).astype(dtype)
    operator = lx.MatrixLinearOperator(exact + jnp.diag(delta * signs))
    lu = lx.LU()
    lu_state = lu.init(operator, {})
    out = jnp.zeros_like(rhs)
    for _ in range(3):  # iterative refinement against the unregularised matrix
        fix = lx.linear_solve(
            operator, rhs - exact @ out, lu, state=lu_state, throw=False
        )
        out = out + fix.value
    return out[:n], out[n : n + p], out[n + p :]
