"""An OSQP-style ADMM for quadratic programs, in JAX, with a polishing step."""

import equinox as eqx
import jax.numpy as jnp
import lineax as lx
from jaxtyping import Array, Bool, Int, PyTree

from .._conditions._quadratic import QPData
from .._operator_base import default_tolerance
from .._solution import Solution
from .._while_loops import lax_while_loop
from ._base import AbstractIterativeSolver, AbstractIterativeState
from ._loop import max_abs
from ._qp import certified, polish_qp, qp_data_of, symmetric


class _ADMMState(AbstractIterativeState):
    x: tuple  # (z, nu, lam): the primal iterate and the multipliers y = (nu, lam)
    w: Array  # the splitting variable, `w = A z` at a solution (A = [E; M])
    lu: PyTree  # the factorisation of the step's matrix, made once in `init`
    dx: Array  # the last change of the primal iterate and of the multipliers,
    dy: Array  # whose limits are the certificates of (dual) infeasibility
    num_steps: Int[Array, ""]
    converged: Bool[Array, ""]
    status: Int[Array, ""]  # 0 running, 1 primal infeasible, 2 dual infeasible


def _stacked(data: QPData):
    """`A = [E; M]` with the bounds `l <= A z <= u`: `l = [d; -inf]`, `u = [d; h]`."""
    A = jnp.concatenate([data.E, data.M])
    lower = jnp.concatenate([data.d, jnp.full_like(data.h, -jnp.inf)])
    upper = jnp.concatenate([data.d, data.h])
    return A, lower, upper


class ADMMQP(AbstractIterativeSolver[_ADMMState]):
    """The alternating direction method of multipliers of OSQP for
    `min 0.5 z^T Q z + c^T z s.t. E z = d, M z <= h` (`Q` positive semidefinite),
    in JAX: fixed shapes, `vmap`-able, one factorisation of its (quasi-definite)
    step matrix per solve, then one product and two triangular solves per step.
    Cheaper per step than [`implicitx.solvers.InteriorPointQP`][] (which factorises
    at every step), but it converges linearly: it suits larger problems and modest
    accuracy. The condition must be a [`implicitx.QuadraticKKT`][].

    The iteration stops once its primal residual `|A z - w|` and dual residual
    `|Q z + c + A^T y|` are at most `atol + rtol` times the scale of their terms.
    Then, as OSQP does, the answer is **polished**: the constraints with
    `h_i - w_i < lam_i` are taken as active and the KKT system of that
    equality-constrained problem is solved once (regularised, refined); the polished
    point is kept if its KKT residual (the condition's own) is smaller. With the
    right active set it is exact to rounding, which the implicit derivative needs;
    otherwise the rule's root check reports the coarse answer as `RESULTS.nonroot`
    (lower `rtol`).

    Infeasible and unbounded problems are recognised by OSQP's certificates on the
    last changes of the multipliers and of `z`: `RESULTS.primal_infeasible`,
    `RESULTS.dual_infeasible`. `rho` is fixed (OSQP adapts it, refactorising):
    scale the data, or change `rho`, if convergence is slow.

    The counterpart of JAXopt's `OSQP` and `BoxOSQP`.

    **Arguments:**

    - `rtol`, `atol`: the stopping tolerances of the iteration, before polishing;
        default the square root of [`implicitx.solvers.InteriorPointQP`][]'s
        (`6e-6` in float64, `5e-3` in float32).
    - `max_steps`: default 10 000.
    - `rho`: the penalty of the inequality rows (equality rows get `1e3 rho`).
        Default 0.1.
    - `sigma`: the proximal regularisation of `z`. Default `1e-6`.
    - `alpha`: the relaxation parameter, in `(0, 2)`. Default 1.6.
    - `infeasibility_tol`: the tolerance of the certificates. Default `1e-5`.
    """

    rtol: float | None = None
    atol: float | None = None
    max_steps: int = eqx.field(default=10_000, static=True)
    rho: float = eqx.field(default=0.1, static=True)
    sigma: float = eqx.field(default=1e-6, static=True)
    alpha: float = eqx.field(default=1.6, static=True)
    infeasibility_tol: float = eqx.field(default=1e-5, static=True)

    def __check_init__(self):
        if not 0 < self.alpha < 2:
            raise ValueError(f"`alpha` must be in (0, 2), got {self.alpha}.")
        if not (self.rho > 0 and self.sigma > 0):
            raise ValueError(
                f"`rho` and `sigma` must be positive, got {self.rho}, {self.sigma}."
            )

    def _tolerances(self, dtype) -> tuple[float, float]:
        coarse = default_tolerance(dtype) ** 0.5
        rtol = coarse if self.rtol is None else self.rtol
        atol = coarse if self.atol is None else self.atol
        return rtol, atol

    def _rho(self, data: QPData) -> Array:
        p, m = data.d.shape[0], data.h.shape[0]
        dtype = data.c.dtype
        return jnp.concatenate(
            [jnp.full(p, 1e3 * self.rho, dtype), jnp.full(m, self.rho, dtype)]
        )

    def _operator(self, data: QPData) -> lx.MatrixLinearOperator:
        A, _, _ = _stacked(data)
        n = data.c.shape[0]
        matrix = jnp.block(
            [
                [symmetric(data.Q) + self.sigma * jnp.eye(n, dtype=A.dtype), A.T],
                [A, -jnp.diag(1 / self._rho(data))],
            ]
        )
        return lx.MatrixLinearOperator(matrix)

    def init(self, condition, theta, x0) -> _ADMMState:
        data = qp_data_of(condition, theta, self)
        dtype = data.c.dtype
        n, p, m = data.c.shape[0], data.d.shape[0], data.h.shape[0]
        z = jnp.zeros(n, dtype) if x0 is None else jnp.asarray(x0[0], dtype)
        if x0 is None:
            nu, lam = jnp.zeros(p, dtype), jnp.zeros(m, dtype)
        else:
            nu, lam = jnp.asarray(x0[1], dtype), jnp.asarray(x0[2], dtype)
        A, lower, upper = _stacked(data)
        lu = lx.LU().init(self._operator(data), {})
        return _ADMMState(
            x=(z, nu, lam),
            w=jnp.clip(A @ z, lower, upper),
            lu=lu,
            dx=jnp.zeros(n, dtype),
            dy=jnp.zeros(p + m, dtype),
            num_steps=jnp.array(0),
            converged=jnp.array(False),
            status=jnp.array(0),
        )

    def step(self, condition, theta, state, *, while_loop=lax_while_loop):
        del while_loop  # no inner loop
        data = qp_data_of(condition, theta, self)
        A, lower, upper = _stacked(data)
        rho = self._rho(data)
        z, nu, lam = state.x
        y, w = jnp.concatenate([nu, lam]), state.w
        n = z.shape[0]
        rhs = jnp.concatenate([self.sigma * z - data.c, w - y / rho])
        # The factors from `init`: no matrix is formed again in the loop.
        out, _, _ = lx.LU().compute(state.lu, rhs, {})
        z_tilde, v = out[:n], out[n:]
        w_tilde = w + (v - y) / rho
        z_new = self.alpha * z_tilde + (1 - self.alpha) * z
        w_relaxed = self.alpha * w_tilde + (1 - self.alpha) * w
        w_new = jnp.clip(w_relaxed + y / rho, lower, upper)
        y_new = y + rho * (w_relaxed - w_new)
        p = data.d.shape[0]
        x = (z_new, y_new[:p], y_new[p:])
        dx, dy = z_new - z, y_new - y
        converged = self._converged(data, z_new, w_new, y_new)
        status = self._certificates(data, dx, dy)
        return _ADMMState(
            x, w_new, state.lu, dx, dy, state.num_steps + 1, converged, status
        )

    def _converged(self, data: QPData, z, w, y) -> Array:
        rtol, atol = self._tolerances(data.c.dtype)
        A, _, _ = _stacked(data)
        Q = symmetric(data.Q)
        primal = max_abs(A @ z - w)
        dual = max_abs(Q @ z + data.c + A.T @ y)
        primal_scale = jnp.maximum(max_abs(A @ z), max_abs(w))
        dual_scale = jnp.maximum(
            jnp.maximum(max_abs(Q @ z), max_abs(A.T @ y)), max_abs(data.c)
        )
        return (primal <= atol + rtol * primal_scale) & (
            dual <= atol + rtol * dual_scale
        )

    def _certificates(self, data: QPData, dx, dy) -> Array:
        tol = self.infeasibility_tol
        A, lower, upper = _stacked(data)
        Q = symmetric(data.Q)
        # Primal infeasibility: A^T dy ~ 0 with u^T dy+ + l^T dy- < 0.
        dy_size = max_abs(dy)
        support = jnp.sum(
            jnp.where(dy > 0, upper * dy, 0) + jnp.where(dy < 0, lower * dy, 0)
        )
        infeasible = (
            (dy_size > 0)
            & (max_abs(A.T @ dy) <= tol * dy_size)
            & (support < -tol * dy_size)
        )
        # Dual infeasibility: Q dx ~ 0, c^T dx < 0 and A dx within the recession
        # cone of the bounds (0 on equality rows, <= 0 on upper-bounded rows).
        dx_size = max_abs(dx)
        a_dx = A @ dx
        within = jnp.all(
            jnp.where(jnp.isfinite(upper), a_dx <= tol * dx_size, True)
            & jnp.where(jnp.isfinite(lower), a_dx >= -tol * dx_size, True)
        )
        unbounded = (
            (dx_size > 0)
            & (max_abs(Q @ dx) <= tol * dx_size)
            & (data.c @ dx < -tol * dx_size)
            & within
        )
        return jnp.where(infeasible, 1, jnp.where(unbounded, 2, 0))

    def terminate(self, condition, theta, state):
        done, result = super().terminate(condition, theta, state)
        return certified(done, result, state.status)

    def postprocess(self, condition, theta, state, result) -> Solution:
        data = qp_data_of(condition, theta, self)
        p = data.d.shape[0]
        value, polished = polish_qp(condition, theta, data, state.x, state.w[p:])
        stats = {"num_steps": state.num_steps, "polished": polished}
        return Solution(value=value, result=result, aux=None, stats=stats)
