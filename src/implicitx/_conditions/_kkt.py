from collections.abc import Callable

import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from jax import lax
from jaxtyping import Array, ArrayLike, PyTree, Scalar

from .._tags import saddle_point_tag
from ._base import AbstractCondition


def complementarity(lam: Array, g: Array) -> Array:
    """`min(lam, -g)`: zero exactly when `lam >= 0`, `g <= 0` and `lam * g = 0`.

    Its derivative takes the branch of the smaller argument, except at a tie: a
    weakly active constraint, where `lam_i` and `-g_i` are both below `sqrt(eps)`
    times their largest entries (plus one) — a solver leaves either one the smaller
    there, by rounding or by the path it took. The branch `-g` is then taken: the
    constraint is differentiated as active. See the docs of [`implicitx.KKT`][]."""
    smaller = jnp.where(lam < -g, lam, -g)
    tau = float(jnp.finfo(smaller.dtype).eps) ** 0.5
    lam_scale = 1 + jnp.max(jnp.abs(lam), initial=0.0)
    g_scale = 1 + jnp.max(jnp.abs(g), initial=0.0)
    tie = (jnp.abs(lam) <= tau * lam_scale) & (jnp.abs(g) <= tau * g_scale)
    tie = lax.stop_gradient(tie)
    # The value stays `min(lam, -g)`; only the derivative's branch changes.
    return jnp.where(tie, -g + lax.stop_gradient(smaller + g), smaller)


class KKT(AbstractCondition):
    """The Karush-Kuhn-Tucker conditions of the constrained problem

    `z*(theta) = argmin_z f(z, theta)  s.t.  H(z, theta) = 0,  G(z, theta) <= 0`,

    over the primal-dual triple `x = (z, nu, lam)`:

    - stationarity: `grad_z f + dH^T nu + dG^T lam = 0`;
    - primal feasibility: `H(z, theta) = 0`;
    - complementary slackness: `min(lam, -G(z, theta)) = 0`, which says
        `lam >= 0`, `G <= 0` and `lam * G = 0` at once.

    **Derivatives.** At a point with linearly independent active constraints and
    strict complementarity (every active inequality has `lam_i > 0`) this gives the
    derivative of the paper's form `lam * G = 0`: an inactive constraint keeps
    `lam_i = 0`, an active one stays active. Unlike the product form, its rows do
    not shrink with `lam_i` or `G_i`, so `A` stays well conditioned when a multiplier
    is small. At a *weakly active* constraint (`lam_i = G_i = 0`) the solution is
    not differentiable; the constraint is then differentiated as active (kept as an
    equality, `d G_i = 0`), which gives the one-sided derivative for the
    perturbations that keep it active. Linearly dependent active constraints make
    the multipliers non-unique and `A` singular: differentiating raises (or gives
    NaN with `throw=False`) `RESULTS.adjoint_singular`.

    `A` is indefinite (a saddle-point matrix): it is tagged
    `implicitx.saddle_point_tag`, which keeps the default backward solve dense up to
    5000 unknowns (see the adjoints page, "Choosing the backward solver").

    **Arguments:**

    - `objective`: `f(z, theta) -> scalar`.
    - `equalities`: `H(z, theta) -> array` of shape `(p,)`, or `None` (then `nu`
        has shape `(0,)`).
    - `inequalities`: `G(z, theta) -> array` of shape `(m,)`, or `None` (then `lam`
        has shape `(0,)`).
    """

    objective: Callable[[PyTree[Array], PyTree[ArrayLike]], Scalar]
    equalities: Callable[[PyTree[Array], PyTree[ArrayLike]], Array] | None = None
    inequalities: Callable[[PyTree[Array], PyTree[ArrayLike]], Array] | None = None

    @property
    def tags(self) -> frozenset[object]:
        return frozenset({saddle_point_tag})

    def lagrangian(self, x: tuple, theta: PyTree[ArrayLike]) -> Scalar:
        """`f + nu . H + lam . G` at `x = (z, nu, lam)`."""
        z, nu, lam = x
        value = self.objective(z, theta)
        if self.equalities is not None:
            value = value + jnp.dot(nu, self.equalities(z, theta))
        if self.inequalities is not None:
            value = value + jnp.dot(lam, self.inequalities(z, theta))
        return value

    def __call__(self, x: tuple, theta: PyTree[ArrayLike]) -> tuple:
        z, nu, lam = _triple(x)
        stationarity = jax.grad(lambda z: self.lagrangian((z, nu, lam), theta))(z)
        if self.equalities is None:
            primal = jnp.zeros_like(nu)
        else:
            primal = jnp.asarray(self.equalities(z, theta))
        if self.inequalities is None:
            slack = jnp.zeros_like(lam)
        else:
            slack = complementarity(lam, jnp.asarray(self.inequalities(z, theta)))
        return stationarity, primal, slack


def _triple(x) -> tuple:
    if not (isinstance(x, tuple) and len(x) == 3):
        raise ValueError(
            "A `KKT` condition is solved for the primal-dual triple `(z, nu, lam)`; "
            f"got {jtu.tree_structure(x)}. Pass `x0 = (z0, nu0, lam0)` (with "
            "`jnp.zeros((0,))` for a group of constraints that is absent)."
        )
    return x
