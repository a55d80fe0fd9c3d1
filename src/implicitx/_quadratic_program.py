import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from ._adjoint import AbstractAdjoint, ImplicitAdjoint
from ._argmin import ImplicitArgmin
from ._conditions._quadratic import QPData, QuadraticKKT
from ._solution import Solution
from .solvers import AbstractSolver
from .solvers._qp import InteriorPointQP


class QPSolution(eqx.Module):
    """The primal-dual solution of a [`implicitx.QuadraticProgram`][]:

    - `z`: the minimiser, shape `(n,)`.
    - `nu`: the multipliers of the equalities `E z = d`, shape `(p,)`.
    - `lam`: the multipliers of the inequalities: the rows of `M z <= h` first,
        then `n` for `lower <= z` (if given), then `n` for `z <= upper` (if given).
        A row with an infinite bound has a zero multiplier.

    All three are differentiable with respect to every datum.
    """

    z: Float[Array, " n"]
    nu: Float[Array, " p"]
    lam: Float[Array, " m"]


class QuadraticProgram(eqx.Module):
    """A differentiable quadratic (or linear) programming layer,

    `z*(Q, c, E, d, M, h) = argmin_z 0.5 z^T Q z + c^T z`
    `s.t.  E z = d,  M z <= h,  lower <= z <= upper`,

    returning the primal-dual solution ([`implicitx.QPSolution`][]) with exact
    derivatives with respect to every datum, in forward and reverse mode, of any
    order (through [`implicitx.ImplicitArgmin`][] on the KKT conditions
    [`implicitx.QuadraticKKT`][]). Linear programs are the case `Q = 0`. It is an
    `equinox.Module`: use it inside a model, under `jax.jit` and `jax.vmap`.

    Any group of constraints may be omitted. Infinite entries of `h`, `lower` and
    `upper` are constraints that never bind: they are replaced by the inactive row
    `0 z <= 1` (with a zero multiplier and zero derivatives), never producing NaN.
    Bounds are given as arrays of shape `(n,)` (or scalars).

    **Arguments:**

    - `solver`: the forward solver, default
        [`implicitx.solvers.InteriorPointQP`][]`()`.
    - `adjoint`: default [`implicitx.ImplicitAdjoint`][]`()`.
    - `throw`: as for [`implicitx.ImplicitArgmin`][]: an infeasible or unbounded
        problem raises its result's message, or (`throw=False`) gives NaN
        derivatives and the code in `solve(...).result`.
    """

    solver: AbstractSolver = InteriorPointQP()
    adjoint: AbstractAdjoint = ImplicitAdjoint()
    throw: bool = eqx.field(default=True, static=True)

    def __call__(self, Q, c, E=None, d=None, M=None, h=None, lower=None, upper=None):
        """The solution `QPSolution(z, nu, lam)`; see `solve` for the arguments."""
        sol = self.solve(Q, c, E, d, M, h, lower, upper)
        z, nu, lam = sol.value
        return QPSolution(z, nu, lam)

    def solve(
        self,
        Q: Float[ArrayLike, "n n"],
        c: Float[ArrayLike, " n"],
        E: Float[ArrayLike, "p n"] | None = None,
        d: Float[ArrayLike, " p"] | None = None,
        M: Float[ArrayLike, "m n"] | None = None,
        h: Float[ArrayLike, " m"] | None = None,
        lower: Float[ArrayLike, "..."] | None = None,
        upper: Float[ArrayLike, "..."] | None = None,
    ) -> Solution:
        """**Arguments:** the data of the problem above (`E` with `d`, `M` with `h`;
        `None` for an absent group).

        **Returns:** the [`implicitx.Solution`][] of the KKT conditions: `value` is
        the triple `(z, nu, lam)`, `result` the forward solver's code (e.g.
        `RESULTS.primal_infeasible`).
        """
        data = qp_data(Q, c, E, d, M, h, lower, upper)
        argmin = ImplicitArgmin(
            QuadraticKKT(), self.solver, self.adjoint, throw=self.throw
        )
        n, p, m = data.c.shape[0], data.d.shape[0], data.h.shape[0]
        dtype = data.c.dtype
        x0 = (jnp.zeros(n, dtype), jnp.zeros(p, dtype), jnp.zeros(m, dtype))
        return argmin.solve(data, x0)


def qp_data(Q, c, E=None, d=None, M=None, h=None, lower=None, upper=None) -> QPData:
    """The [`implicitx.QPData`][] of a problem given with optional groups, bounds and
    infinite entries (see [`implicitx.QuadraticProgram`][])."""
    c = jnp.asarray(c)
    if not jnp.issubdtype(c.dtype, jnp.floating):
        c = c.astype(float)
    dtype = c.dtype
    n = c.shape[0]
    Q = _matrix(Q, "Q", (n, n), dtype)
    E, d = _pair(E, d, "E", "d", n, dtype)
    M, h = _pair(M, h, "M", "h", n, dtype)
    rows, rhs = [M], [h]
    eye = jnp.eye(n, dtype=dtype)
    if lower is not None:
        rows.append(-eye)
        rhs.append(-jnp.broadcast_to(jnp.asarray(lower, dtype), (n,)))
    if upper is not None:
        rows.append(eye)
        rhs.append(jnp.broadcast_to(jnp.asarray(upper, dtype), (n,)))
    M, h = jnp.concatenate(rows), jnp.concatenate(rhs)
    # A row with h = +inf never binds: it becomes 0 z <= 1.
    never = jnp.isposinf(h)
    M = jnp.where(never[:, None], 0, M)
    h = jnp.where(never, 1, h)
    return QPData(Q, c, E, d, M, h)


def _matrix(value, name, shape, dtype) -> Array:
    value = jnp.asarray(value, dtype)
    if value.shape != shape:
        raise ValueError(f"`{name}` must have shape {shape}, got {value.shape}.")
    return value


def _pair(A, b, name_a, name_b, n, dtype) -> tuple[Array, Array]:
    if (A is None) != (b is None):
        raise ValueError(
            f"`{name_a}` and `{name_b}` come together: pass both or neither."
        )
    if A is None:
        return jnp.zeros((0, n), dtype), jnp.zeros((0,), dtype)
    b = jnp.asarray(b, dtype)
    if b.ndim != 1:
        raise ValueError(f"`{name_b}` must be a vector, got shape {b.shape}.")
    return _matrix(A, name_a, (b.shape[0], n), dtype), b
