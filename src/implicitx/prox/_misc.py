import abc

import jax.numpy as jnp
from equinox import AbstractVar
from jaxtyping import Array, ArrayLike, Float

from .._operator_base import (
    AbstractProx,
    check_hyperparameters,
    nan_unless,
    nonnegative,
    safe_norm as safe_norm,
)


def check_strengths(owner: str, **strengths: ArrayLike) -> None:
    """Regularisation strengths must be `>= 0` (`inf` allowed) everywhere: raises a
    `ValueError` at construction for known negative (or NaN) values."""
    for name, value in strengths.items():
        check_hyperparameters(
            owner,
            f"`{name} >= 0`",
            nonnegative,
            why="otherwise the penalty is not convex",
            **{name: value},
        )


def nan_unless_nonnegative(x: Array, y: Array, *strengths: ArrayLike) -> Array:
    """`x = prox(y)`, or NaN (with NaN derivatives) where a traced strength is
    negative (or NaN)."""
    for value in strengths:
        x = nan_unless(nonnegative, x, value, point=y)
    return x


def cast_and_broadcast(value: ArrayLike, like: Array) -> Array:
    """Casts a step size or hyperparameter to the dtype of the point `like`, and
    broadcasts it to `like`'s shape unless it is a scalar (scalars broadcast without
    rank promotion). Casting is differentiable, so derivatives still reach `value`."""
    value = jnp.asarray(value, dtype=like.dtype)
    if value.ndim == 0:
        return value
    return jnp.broadcast_to(value, like.shape)


def soft_threshold(y: Float[Array, "..."], threshold: Array) -> Float[Array, "..."]:
    """`sign(y) * max(|y| - threshold, 0)`, elementwise, for `threshold >= 0`.

    Written as `y - clip(y, -threshold, threshold)` (the Moreau decomposition of the
    l1 norm), whose derivatives are exact away from `|y| = threshold`: `1` in `y` and
    `-sign(y)` in `threshold` outside the interval, `0` inside.
    """
    return y - jnp.clip(y, -threshold, threshold)


def block_soft_threshold(
    y: Float[Array, "..."], threshold: Array, axis: int | None = None
) -> Float[Array, "..."]:
    """`max(1 - threshold / ||y||, 0) * y`, the norm taken over `axis` (or the whole
    array), for `threshold >= 0`. Finite derivatives everywhere, including `y = 0`."""
    norm, safe = safe_norm(y, axis=axis, keepdims=axis is not None)
    scale = jnp.where(norm >= threshold, 1 - threshold / safe, 0)
    return scale * y


class AbstractStrengthProx(AbstractProx):
    """The prox of a penalty `g = strength * g_1` with one non-negative `strength`:
    `prox_{s g}(y) = shrink(y, s * strength)`. Checks the strength at construction
    (see [`check_strengths`][]) and, when it is traced, when called (NaN for a
    negative one)."""

    strength: AbstractVar[float | Float[Array, "..."]]

    def __check_init__(self):
        check_strengths(type(self).__name__, strength=self.strength)

    @abc.abstractmethod
    def _shrink(self, y: Array, threshold: Array) -> Array:
        """`prox_{s g}(y)` with `threshold = s * strength`, cast and broadcast to
        `y`."""

    def __call__(
        self, y: Float[Array, "..."], stepsize: float | Float[ArrayLike, ""] = 1.0
    ) -> Float[Array, "..."]:
        strength = cast_and_broadcast(self.strength, y)
        x = self._shrink(y, cast_and_broadcast(stepsize, y) * strength)
        return nan_unless_nonnegative(x, y, self.strength)
