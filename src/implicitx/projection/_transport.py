"""Projections onto transportation polytopes: Euclidean (dual L-BFGS) and KL
(Sinkhorn)."""

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import optimistix as optx
from jaxtyping import Array, Float, Scalar

from .._argmin import ImplicitArgmin
from .._conditions import FixedPoint, Stationarity
from .._operator_base import (
    AbstractProjection,
    cast_to,
    check_hyperparameters,
    default_tolerance,
    hyperparameter,
    nan_unless,
    positive,
)
from ..solvers import (
    OptimistixMinimiser,
    OptimistixRootFinder,
    PicardIteration,
    Polished,
)


def _polytope_violation(x: Array, a: Array, b: Array) -> Scalar:
    a, b = cast_to(a, x), cast_to(b, x)
    negative = jnp.max(-x)
    rows = jnp.max(jnp.abs(jnp.sum(x, axis=1) - a))
    columns = jnp.max(jnp.abs(jnp.sum(x, axis=0) - b))
    return jnp.maximum(jnp.maximum(negative, 0), jnp.maximum(rows, columns))


def _balanced(a, b) -> Array:
    """`sum(a) = sum(b)`, to a relative `sqrt(eps)` (false for NaN)."""
    total_a, total_b = jnp.sum(a), jnp.sum(b)
    rtol = float(jnp.finfo(total_a.dtype).eps) ** 0.5
    scale = jnp.maximum(jnp.abs(total_a), jnp.abs(total_b))
    return jnp.abs(total_a - total_b) <= rtol * scale


def _marginals_valid(a, b) -> Array:
    """Positive marginals with equal sums (a non-empty polytope, and potentials that
    exist)."""
    return jnp.all(a > 0) & jnp.all(b > 0) & _balanced(a, b)


def _check_marginals(owner: str, a, b):
    check_hyperparameters(
        owner,
        "positive marginals `a` and `b` with `sum(a) = sum(b)`",
        _marginals_valid,
        a=a,
        b=b,
    )


def _safe_marginals(a: Array, b: Array) -> tuple[Array, Array]:
    """`(a, b)` if they are valid, and otherwise uniform marginals of equal sums, so
    that an invalid batch element still gives a solve that converges (its result is
    then replaced by NaN, see `nan_unless`)."""
    ok = _marginals_valid(a, b)
    n, m = a.shape[0], b.shape[0]
    a = jnp.where(ok, a, jnp.full_like(a, m))
    b = jnp.where(ok, b, jnp.full_like(b, n))
    return a, b


def _check_epsilon(owner: str, epsilon):
    check_hyperparameters(
        owner,
        "`epsilon > 0`",
        positive,
        why="otherwise the KL projection is not defined",
        epsilon=epsilon,
    )


def _with_pinned_last(head: Array) -> Array:
    """The column potentials with the last one pinned at zero. The potentials are
    defined up to `(alpha + c, beta - c)`; pinning removes that null direction."""
    return jnp.concatenate([head, jnp.zeros((1,), head.dtype)])


# --------------------------------------------------------------------------------------
# Euclidean projection
# --------------------------------------------------------------------------------------
#
# min 0.5 ||P - Y||^2 s.t. P >= 0, P 1 = a, P^T 1 = b. With potentials alpha (rows) and
# beta (columns), the inner minimisation over P >= 0 is separable:
# P = max(Y - alpha 1^T - 1 beta^T, 0), and the (negated) dual is the convex, C^1,
# piecewise quadratic
#
#     phi(alpha, beta) = 0.5 ||max(Y - alpha 1^T - 1 beta^T, 0)||^2 + a.alpha + b.beta
#
# whose gradient is (a - P 1, b - P^T 1).


def _euclidean_plan(y: Array, alpha: Array, beta: Array) -> Array:
    u = y - alpha[:, None] - beta[None, :]
    # `where`, not `maximum`: the second derivative of phi at a zero entry is then 0.
    return jnp.where(u > 0, u, jnp.zeros_like(u))


class _TransportData(NamedTuple):
    """The Euclidean projection of `y` onto `U(a, b)`."""

    y: Array
    a: Array
    b: Array


def _transport_dual(potentials, data: _TransportData) -> Scalar:
    alpha, beta_head = potentials
    beta = _with_pinned_last(beta_head)
    plan = _euclidean_plan(data.y, alpha, beta)
    return 0.5 * jnp.sum(plan**2) + jnp.dot(data.a, alpha) + jnp.dot(data.b, beta)


def _marginal_error(potentials, data: _TransportData) -> Scalar:
    """The largest error of the row and column sums (the gradient of the dual),
    relative to the largest marginal."""
    gradient = jax.grad(_transport_dual)(potentials, data)
    error = jnp.max(jnp.concatenate([jnp.abs(g) for g in gradient]))
    return error / jnp.maximum(jnp.max(data.a), jnp.max(data.b))


def _euclidean_transport(
    y: Array, a: Array, b: Array, tol: float | None, max_steps: int, throw: bool
) -> Array:
    tol = default_tolerance(y.dtype) if tol is None else tol
    # L-BFGS, then semismooth Newton on the gradient (whose Jacobian is the
    # generalised Hessian): the dual is piecewise quadratic, so once L-BFGS has found
    # the support of the plan, Newton finishes in a step or two.
    solver = Polished(
        OptimistixMinimiser(optx.LBFGS(rtol=tol, atol=tol), max_steps),
        OptimistixRootFinder(optx.Newton(rtol=tol, atol=tol), max_steps=16),
        _marginal_error,
        tol,
    )
    argmin = ImplicitArgmin(
        Stationarity(_transport_dual, convex=True), solver, throw=throw
    )
    a, b = cast_to(a, y), cast_to(b, y)
    n, m = y.shape
    x0 = (jnp.zeros(n, y.dtype), jnp.zeros(m - 1, y.dtype))
    alpha, beta_head = argmin(_TransportData(y, *_safe_marginals(a, b)), x0)
    x = _euclidean_plan(y, alpha, _with_pinned_last(beta_head))
    return nan_unless(_marginals_valid, x, a, b, point=y)


class TransportPolytope(AbstractProjection):
    """The Euclidean projection of an `n x m` matrix onto the transportation
    polytope `U(a, b) = {P : P >= 0, P 1 = a, P^T 1 = b}`.

    The marginals must be positive with equal sums, `sum(a) = sum(b)` (otherwise the
    polytope is empty and the solver fails).

    **Algorithm.** The dual in the row and column potentials `(alpha, beta)` is
    smooth (piecewise quadratic, once differentiable) and unconstrained, because the
    inner problem is separable: `P = max(Y - alpha 1^T - 1 beta^T, 0)`. It is
    minimised by `optimistix.LBFGS`, followed by a few semismooth Newton steps
    (`optimistix.Newton` on its gradient) that make the solution accurate to rounding
    once the support of `P` is found. The solve has converged when every row and
    column sum is within `tol * max(a, b)` of its target.

    **Derivatives** come from implicit differentiation ([`implicitx.ImplicitArgmin`][])
    of the stationarity of the dual, in the potentials with the last column potential
    pinned at zero. They need unique potentials: the bipartite graph of the positive
    entries of `P(Y)` (rows and columns joined where `P_ij > 0`) must be connected.
    Otherwise (for example at a vertex of the polytope, such as a permutation matrix
    for the Birkhoff polytope) the linear system of implicit differentiation is
    singular and differentiating raises an error. Where an entry of
    `Y - alpha 1^T - 1 beta^T` is exactly zero the projection has a kink and a
    one-sided derivative is returned.

    **Arguments:**

    - `a`: the row sums, positive, shape `(n,)`.
    - `b`: the column sums, positive, shape `(m,)`, with `sum(b) = sum(a)`.
    - `tol`: the relative accuracy of the constraints ([the meaning of
        `tol`](operators-library.md#projections-that-solve-a-problem-tol-max_steps-throw)):
        here every row and column sum within `tol * max(a, b)` of its target.
    - `max_steps`: the maximum number of L-BFGS steps.
    - `throw`: whether a solve that does not converge raises an error (with
        `throw=False`, derivatives are NaN instead).
    """

    a: Float[Array, " n"] = eqx.field(converter=jnp.asarray)
    b: Float[Array, " m"] = eqx.field(converter=jnp.asarray)
    tol: float | None = eqx.field(default=None, static=True)
    max_steps: int = eqx.field(default=1000, static=True)
    throw: bool = eqx.field(default=True, static=True)

    def __check_init__(self):
        _check_marginals("TransportPolytope", self.a, self.b)

    def __call__(self, y: Float[Array, "n m"]) -> Float[Array, "n m"]:
        return _euclidean_transport(
            y, self.a, self.b, self.tol, self.max_steps, self.throw
        )

    def violation(self, x: Float[Array, "n m"]) -> Scalar:
        """The largest of `-x_ij` and the errors of the row and column sums."""
        return _polytope_violation(x, self.a, self.b)


class BirkhoffPolytope(AbstractProjection):
    """The Euclidean projection of a square matrix onto the Birkhoff polytope
    of doubly stochastic matrices, `{P : P >= 0, P 1 = 1, P^T 1 = 1}`: the
    [`implicitx.projection.TransportPolytope`][] with `a = b = 1`, computed and
    differentiated as it is (see its **Derivatives**: none exist at a vertex of the
    polytope, a permutation matrix).

    **Arguments:**

    - `tol`, `max_steps`, `throw`: as for
        [`implicitx.projection.TransportPolytope`][].
    """

    tol: float | None = eqx.field(default=None, static=True)
    max_steps: int = eqx.field(default=1000, static=True)
    throw: bool = eqx.field(default=True, static=True)

    def __call__(self, y: Float[Array, "n n"]) -> Float[Array, "n n"]:
        ones = jnp.ones(y.shape[0], y.dtype)
        return _euclidean_transport(y, ones, ones, self.tol, self.max_steps, self.throw)

    def violation(self, x: Float[Array, "n n"]) -> Scalar:
        """The largest of `-x_ij` and the errors of the row and column sums."""
        ones = jnp.ones(x.shape[0], x.dtype)
        return _polytope_violation(x, ones, ones)


# --------------------------------------------------------------------------------------
# KL projection (entropic optimal transport, Sinkhorn)
# --------------------------------------------------------------------------------------
#
# argmin_{P in U(a, b)} KL(P || exp(Y / eps)) has the form
# P = exp(S - f 1^T - 1 g^T), with the scores `S = Y / eps` and the potentials `f`, `g`
# in units of `eps`. In log domain, the row update makes the row sums equal to `a`, the
# column update the column sums equal to `b`:
#
#     f = lse_j(S_ij - g_j) - log a,    g = lse_i(S_ij - f_i) - log b.
#
# Composed, they form a map of `g` alone, commuting with shifts `g + c`. Pinning the
# last column potential at zero makes its fixed point unique. Changing `g` by `dg`
# multiplies the column sums by `exp(-dg)`: the accuracy of the potentials is the
# relative accuracy of the marginals.


class _KLTransportData(NamedTuple):
    """The KL projection of `exp(scores)` onto `U(a, b)`, in log domain."""

    scores: Array  # Y / epsilon
    log_a: Array
    log_b: Array


def _row_potentials(data: _KLTransportData, g: Array) -> Array:
    return jax.nn.logsumexp(data.scores - g[None, :], axis=1) - data.log_a


def _sinkhorn_map(g_head: Array, data: _KLTransportData) -> Array:
    """One Sinkhorn sweep (rows then columns) on the pinned column potentials."""
    f = _row_potentials(data, _with_pinned_last(g_head))
    g = jax.nn.logsumexp(data.scores - f[:, None], axis=0) - data.log_b
    return g[:-1] - g[-1]


def _kl_plan(data: _KLTransportData, g_head: Array) -> Array:
    g = _with_pinned_last(g_head)
    f = _row_potentials(data, g)
    return jnp.exp(data.scores - f[:, None] - g[None, :])


def _kl_transport(y, a, b, epsilon, tol, max_steps, throw):
    raw_a, raw_b = a, b
    raw_epsilon = epsilon
    a, b, epsilon = cast_to(a, y), cast_to(b, y), cast_to(epsilon, y)
    a, b = _safe_marginals(a, b)
    valid_epsilon = positive(epsilon)
    epsilon = jnp.where(valid_epsilon, epsilon, jnp.ones_like(epsilon))
    tol = default_tolerance(y.dtype) if tol is None else tol
    argmin = ImplicitArgmin(
        FixedPoint(_sinkhorn_map),
        PicardIteration(rtol=0.0, atol=tol, max_steps=max_steps),
        throw=throw,
    )
    data = _KLTransportData(y / epsilon, jnp.log(a), jnp.log(b))
    g_head = argmin(data, jnp.zeros(y.shape[1] - 1, y.dtype))
    x = _kl_plan(data, g_head)
    x = nan_unless(_marginals_valid, x, raw_a, raw_b, point=y)
    return nan_unless(positive, x, raw_epsilon, point=y)


class KLTransportPolytope(AbstractProjection):
    """The KL projection onto the transportation polytope
    `U(a, b) = {P : P >= 0, P 1 = a, P^T 1 = b}`, of the positive matrix
    `K = exp(Y / epsilon)` given by its scores `Y`:

    `P(Y) = argmin_{P in U(a, b)} KL(P || exp(Y / epsilon))`, with
    `KL(P || K) = sum P log(P / K) - P + K`.

    This is a **Bregman (KL) projection, not a Euclidean one**: it shares the
    interface of [`implicitx.projection.AbstractProjection`][] (and its `violation`
    measures membership of the same polytope), but it is not the nearest point in the
    Euclidean norm, so Euclidean properties such as non-expansiveness do not apply.
    Its output is strictly positive. Equivalently, it is the entropy-regularised
    optimal transport plan `argmax_P <P, Y> + epsilon H(P)` with
    `H(P) = -sum P (log P - 1)`. To project a positive matrix `K` in KL, pass
    `Y = log(K)` with `epsilon = 1`.

    **Algorithm.** Sinkhorn iterations in the log domain (in the row and column
    potentials, stable for small `epsilon` and large scores), by
    [`implicitx.solvers.PicardIteration`][], until the estimated distance of the
    column potentials (in units of `epsilon`) to their fixed point is at most `tol`:
    then every column sum is within about a relative `tol` of its target (row sums are
    exact after each sweep). Convergence is linear, and slows
    down as `epsilon` decreases relative to the spread of `Y`.

    **Derivatives** with respect to `Y` and every parameter come from implicit
    differentiation ([`implicitx.ImplicitArgmin`][]) of the fixed point of a Sinkhorn
    sweep in the column potentials, with the last one pinned at zero (the potentials
    are otherwise defined only up to `(f + c, g - c)`); forward and reverse mode, any
    order. A solve that does not converge raises an error (`throw=True`) or gives NaN
    derivatives (`throw=False`).

    **Arguments:**

    - `a`: the row sums, positive, shape `(n,)`.
    - `b`: the column sums, positive, shape `(m,)`, with `sum(b) = sum(a)`.
    - `epsilon`: the (positive) temperature. Default `1.0`.
    - `tol`: the relative accuracy of the constraints ([the meaning of
        `tol`](operators-library.md#projections-that-solve-a-problem-tol-max_steps-throw)):
        here the column sums, to within about a relative `tol` (the solve stops when
        the column potentials, in units of `epsilon`, are within `tol` of their fixed
        point; the row sums are exact).
    - `max_steps`: the maximum number of Sinkhorn sweeps.
    - `throw`: whether a solve that does not converge raises an error.
    """

    a: Float[Array, " n"] = eqx.field(converter=jnp.asarray)
    b: Float[Array, " m"] = eqx.field(converter=jnp.asarray)
    epsilon: float | Float[Array, ""] = eqx.field(default=1.0, converter=hyperparameter)
    tol: float | None = eqx.field(default=None, static=True)
    max_steps: int = eqx.field(default=10_000, static=True)
    throw: bool = eqx.field(default=True, static=True)

    def __check_init__(self):
        _check_marginals("KLTransportPolytope", self.a, self.b)
        _check_epsilon("KLTransportPolytope", self.epsilon)

    def __call__(self, y: Float[Array, "n m"]) -> Float[Array, "n m"]:
        return _kl_transport(
            y, self.a, self.b, self.epsilon, self.tol, self.max_steps, self.throw
        )

    def violation(self, x: Float[Array, "n m"]) -> Scalar:
        """The largest of `-x_ij` and the errors of the row and column sums."""
        return _polytope_violation(x, self.a, self.b)


class KLBirkhoffPolytope(AbstractProjection):
    """The KL projection of a square matrix onto the Birkhoff polytope of
    doubly stochastic matrices: [`implicitx.projection.KLTransportPolytope`][] with
    `a = b = 1`,

    `P(Y) = argmin_{P doubly stochastic} KL(P || exp(Y / epsilon))`.

    A Bregman (KL) projection, not a Euclidean one, computed and differentiated as
    [`implicitx.projection.KLTransportPolytope`][] (log-domain Sinkhorn; implicit
    derivatives of its fixed point).

    **Arguments:**

    - `epsilon`: the (positive) temperature. Default `1.0`.
    - `tol`, `max_steps`, `throw`: as for
        [`implicitx.projection.KLTransportPolytope`][].
    """

    epsilon: float | Float[Array, ""] = eqx.field(default=1.0, converter=hyperparameter)
    tol: float | None = eqx.field(default=None, static=True)
    max_steps: int = eqx.field(default=10_000, static=True)
    throw: bool = eqx.field(default=True, static=True)

    def __check_init__(self):
        _check_epsilon("KLBirkhoffPolytope", self.epsilon)

    def __call__(self, y: Float[Array, "n n"]) -> Float[Array, "n n"]:
        ones = jnp.ones(y.shape[0], y.dtype)
        return _kl_transport(
            y, ones, ones, self.epsilon, self.tol, self.max_steps, self.throw
        )

    def violation(self, x: Float[Array, "n n"]) -> Scalar:
        """The largest of `-x_ij` and the errors of the row and column sums."""
        ones = jnp.ones(x.shape[0], x.dtype)
        return _polytope_violation(x, ones, ones)
