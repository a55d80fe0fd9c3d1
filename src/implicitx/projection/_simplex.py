import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Scalar

from .._operator_base import (
    AbstractProjection,
    cast_to,
    check_hyperparameters,
    hyperparameter,
    nan_unless,
    nonnegative_finite,
    positive_part_max,
)


@jax.custom_jvp
def project_simplex(y: Float[Array, " n"], scale: Scalar) -> Float[Array, " n"]:
    """The projection of `y` onto `{x >= 0, sum(x) = scale}` (`scale >= 0`, of the
    dtype of `y`), by sorting: `P(y) = max(y - tau, 0)`, where the threshold `tau`
    makes the entries sum to `scale`.

    The arithmetic is done on `z = y - max(y)` (so `P(y) = max(z - tau', 0)`, with
    `tau'` the threshold of `z`): the cumulative sums are then relative to the
    largest entry, and `scale` is not lost to cancellation when `|y| >> scale`.

    Its derivatives are given in closed form by a custom JVP rule (see
    `_project_simplex_jvp`), not by differentiating through the sort.
    """
    n = y.shape[0]
    y = y - jnp.max(y)
    descending = jnp.flip(jnp.sort(y))
    excess = jnp.cumsum(descending) - scale
    counts = jnp.arange(1, n + 1)
    # `descending[k-1] > excess[k-1] / k` holds for k = 1, ..., |support| and for no
    # larger k; the support size is the largest such k (at least 1, which gives
    # `x = 0` when `scale = 0`).
    keeps = descending * counts.astype(y.dtype) > excess
    support_size = jnp.max(jnp.where(keeps, counts, 1))
    tau = excess[support_size - 1] / support_size.astype(y.dtype)
    return jnp.maximum(y - tau, jnp.zeros((), y.dtype))


@project_simplex.defjvp
def _project_simplex_jvp(primals, tangents):
    # On the support `s = {i : x_i > 0}`, `x_s = y_s - tau` with
    # `tau = (sum(y_s) - scale) / |s|`, so that
    #   dx = s * (dy - (sum(s * dy) - dscale) / |s|),
    # i.e. the Jacobian `diag(s) - s s^T / |s|` in `y` and `s / |s|` in `scale`. The
    # primal is recomputed by the function itself (not received from outside), so
    # that differentiating this rule again (second order) stays exact.
    y, scale = primals
    t_y, t_scale = tangents
    x = project_simplex(y, scale)
    support = (x > 0).astype(y.dtype)
    size = jnp.maximum(jnp.sum(support), jnp.ones((), y.dtype))
    t_x = support * (t_y - (jnp.sum(support * t_y) - t_scale) / size)
    return x, t_x


def check_scale(owner: str, scale, name: str = "scale"):
    """The sum (or radius) of a simplex or a sphere must be finite and `>= 0`."""
    check_hyperparameters(
        owner, f"`0 <= {name} < inf`", nonnegative_finite, **{name: scale}
    )


def simplex_violation(x: Float[Array, " n"], scale: Scalar) -> Scalar:
    """`max(0, max_i -x_i, |sum(x) - scale|)`."""
    return positive_part_max(-x, jnp.abs(jnp.sum(x) - scale))


class Simplex(AbstractProjection):
    """The projection onto the (scaled) probability simplex
    `{x : x >= 0, sum(x) = scale}`.

    Computed by the sort-based algorithm in `O(n log n)`: `P(y) = max(y - tau, 0)`,
    with the threshold `tau` such that the entries sum to `scale`.

    Derivatives come from a closed form (a custom JVP rule), cheaper than
    differentiating through the sort: on the support `s = {i : P(y)_i > 0}`, the
    Jacobian is `diag(s) - s s^T / |s|` with respect to `y` and `s / |s|` with respect
    to `scale`. It is exact away from the kinks `y_i = tau`; forward mode, reverse
    mode (JAX transposes the rule), higher order, `jax.vmap` and `jax.jit` all work.

    Acts on vectors; use [`implicitx.projection.RowWise`][] or `jax.vmap` for batches.

    **Arguments:**

    - `scale`: the sum of the entries, `0 <= scale < inf`. Default `1.0`.
    """

    scale: float | Float[Array, ""] = eqx.field(default=1.0, converter=hyperparameter)

    def __check_init__(self):
        check_scale("Simplex", self.scale)

    def __call__(self, y: Float[Array, " n"]) -> Float[Array, " n"]:
        x = project_simplex(y, cast_to(self.scale, y))
        return nan_unless(nonnegative_finite, x, self.scale, point=y)

    def violation(self, x: Float[Array, " n"]) -> Scalar:
        """`max(0, max_i -x_i, |sum(x) - scale|)`."""
        return simplex_violation(x, cast_to(self.scale, x))


class SparseSimplex(AbstractProjection):
    """A Euclidean projection onto the sparse simplex
    `{x : x >= 0, sum(x) = scale, x has at most k non-zero entries}`.

    The `k` largest entries of `y` are kept and projected onto the simplex of sum
    `scale`; the other entries are set to zero. This is an exact closest point
    (Kyrillidis et al., *Sparse projections onto the simplex*, 2013).

    The set is **not convex**: the closest point need not be unique (when the `k`-th
    and `(k+1)`-th largest entries of `y` are equal, either may be kept; the one
    chosen by `jax.lax.top_k` is returned), and the projection is not non-expansive.
    Feasibility, idempotence and the closest-point property hold; the convex-only
    properties (non-expansiveness, the variational inequality) do not.

    Derivatives are those of the simplex projection on the `k` selected entries (zero
    elsewhere), exact away from ties between the `k`-th and `(k+1)`-th entries and
    away from the simplex kinks.

    **Arguments:**

    - `k`: the largest number of non-zero entries, a positive Python integer (static).
        With `k >= n` this is [`implicitx.projection.Simplex`][].
    - `scale`: the sum of the entries, `0 <= scale < inf`. Default `1.0`.
    """

    k: int = eqx.field(static=True)
    scale: float | Float[Array, ""] = eqx.field(default=1.0, converter=hyperparameter)

    def __check_init__(self):
        if not isinstance(self.k, int) or isinstance(self.k, bool) or self.k < 1:
            raise ValueError(
                f"`SparseSimplex` needs a positive integer `k`, got {self.k!r}."
            )
        check_scale("SparseSimplex", self.scale)

    def __call__(self, y: Float[Array, " n"]) -> Float[Array, " n"]:
        k = min(self.k, y.shape[0])
        top, indices = jax.lax.top_k(y, k)
        projected = project_simplex(top, cast_to(self.scale, y))
        x = jnp.zeros_like(y).at[indices].set(projected)
        return nan_unless(nonnegative_finite, x, self.scale, point=y)

    def violation(self, x: Float[Array, " n"]) -> Scalar:
        """`max(0, max_i -x_i, |sum(x) - scale|, (number of non-zeros) - k)`."""
        excess_nonzeros = (jnp.sum(x != 0) - self.k).astype(x.dtype)
        return jnp.maximum(
            simplex_violation(x, cast_to(self.scale, x)), excess_nonzeros
        )
