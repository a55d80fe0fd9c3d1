"""The bottom layer of implicitx: the bases of its operators (Euclidean projections,
proximal operators, mirror maps) and the helpers they share (hyperparameter
conversion and checks, casting, norms that neither overflow nor underflow, default
tolerances).

Imports nothing of implicitx: conditions, solvers and the operators themselves build
on it, so that no import of an operator can reach back into the layers above.
"""

import abc
from collections.abc import Callable, Mapping

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.core import Tracer
from jaxtyping import Array, ArrayLike, Bool, Float, Scalar


# --------------------------------------------------------------------------------------
# Hyperparameters
# --------------------------------------------------------------------------------------


def hyperparameter(value: ArrayLike) -> float | Array:
    """Converter for hyperparameter fields.

    A Python number stays a Python `float`: it is a fixed setting, not a parameter
    (`equinox.is_inexact_array` does not select it, so it is neither trained nor a
    source of retracing under `equinox.filter_jit`), and it adopts the dtype of the
    point it is used with. Anything else (a JAX or NumPy array or scalar, a list)
    becomes a JAX array: a parameter that derivatives reach.
    """
    if isinstance(value, (bool, int, float)) and not isinstance(value, np.generic):
        return float(value)
    return jnp.asarray(value)


def optional_hyperparameter(value: ArrayLike | None) -> float | Array | None:
    """[`hyperparameter`][], with `None` kept as `None`."""
    return None if value is None else hyperparameter(value)


def is_traced(*values) -> bool:
    """Whether any of `values` is a tracer (inside `jax.jit`, `jax.vmap`, `jax.grad`,
    ...), so that its value is not known."""
    return any(isinstance(v, Tracer) for v in values)


def _show(values: Mapping[str, object]) -> str:
    def show(value):
        if isinstance(value, (jax.Array, np.ndarray)) and np.ndim(value) > 0:
            return np.array2string(np.asarray(value), threshold=8)
        return repr(float(np.asarray(value))) if np.ndim(value) == 0 else repr(value)

    return ", ".join(f"{name}={show(value)}" for name, value in values.items())


def check_hyperparameters(
    owner: str,
    requirement: str,
    holds: Callable[..., ArrayLike],
    /,
    why: str = "otherwise the set is empty",
    **values: ArrayLike | None,
) -> None:
    """Raises a `ValueError` at construction when the hyperparameters `values` are
    known (Python numbers, NumPy or concrete JAX arrays) and `holds(*values)` is not
    true everywhere; `requirement` says, in words, what is allowed, and `why` what
    goes wrong otherwise.

    Traced values (an operator built inside `jax.jit`, `jax.vmap`, `jax.grad`) are
    not known here: the operator then checks them when called and returns NaN (see
    [`nan_unless`][]).
    """
    if is_traced(*values.values()) or any(v is None for v in values.values()):
        return
    arrays = [np.asarray(v) for v in values.values()]
    dtype = np.result_type(*arrays, np.float32)
    with jax.ensure_compile_time_eval():
        ok = bool(jnp.all(holds(*(jnp.asarray(a, dtype) for a in arrays))))
    if not ok:
        raise ValueError(
            f"`{owner}` needs {requirement} ({why}); got {_show(values)}. Pass "
            "values that satisfy this (values only known under `jax.jit`, "
            "`jax.vmap` or `jax.grad` give NaN instead of this error)."
        )


def nan_unless(
    holds: Callable[..., Bool[ArrayLike, "..."]],
    x: Float[Array, "..."],
    *values: ArrayLike,
    point: Array | None = None,
) -> Float[Array, "..."]:
    """`x` where `holds(*values)` is true everywhere, and NaN (every entry of `x`)
    otherwise: how an operator reports hyperparameters found invalid only when it is
    called (under `jax.jit`, `jax.vmap` or `jax.grad`). Under `jax.vmap` each batch
    element is checked on its own.

    The values are cast to the dtype of `x` first. Derivatives of an invalid element
    with respect to the values and to `point` (the operator's input) are NaN too (not
    the zero a `where` would give, nor one that a sparse Jacobian would give), and
    those of a valid one are unchanged. When every value is a Python number or a
    NumPy array (checked at construction), `x` is returned as is.
    """
    if not any(isinstance(v, jax.Array) for v in values):
        return x
    ok = jnp.all(holds(*(cast_to(v, x) for v in values)))
    one, zero = jnp.ones((), x.dtype), jnp.zeros((), x.dtype)
    factor = jnp.where(ok, one, jnp.nan)
    poison = jnp.where(ok, zero, jnp.nan)
    # `v - stop_gradient(v)` is zero with the derivative of `v`: multiplied by
    # `poison`, it adds nothing to a valid element and NaN to every derivative of an
    # invalid one.
    inputs = [cast_to(v, x) for v in values if isinstance(v, jax.Array)]
    if point is not None:
        inputs.append(cast_to(point, x))
    # (Infinite entries, e.g. bounds, are left out: `inf - inf` is NaN.)
    inputs = [jnp.where(jnp.isinf(v), 0, v) for v in inputs]
    moving = sum(jnp.sum(v - jax.lax.stop_gradient(v)) for v in inputs)
    return x * factor + moving * poison


def nonnegative(value: Array | np.ndarray | float) -> Bool[ArrayLike, "..."]:
    """`value >= 0` (false for NaN; `inf` is allowed)."""
    return value >= 0


def positive(value: Array | np.ndarray | float) -> Bool[ArrayLike, "..."]:
    """`value > 0` (false for NaN; `inf` is allowed)."""
    return value > 0


def nonnegative_finite(value: Array | np.ndarray | float) -> Bool[ArrayLike, "..."]:
    """`0 <= value < inf` (false for NaN)."""
    return (value >= 0) & (value < np.inf)


# --------------------------------------------------------------------------------------
# Arithmetic
# --------------------------------------------------------------------------------------


def cast_to(value: ArrayLike, like: Array) -> Array:
    """Casts a hyperparameter to the dtype of the point `like` (its shape is kept).

    Hyperparameters given as Python numbers adopt the dtype of the point, so a
    float32 point gives a float32 projection. Casting is differentiable: derivatives
    still reach `value`.
    """
    return jnp.asarray(value, dtype=like.dtype)


def safe_norm(
    y: Float[Array, "..."], axis: int | None = None, keepdims: bool = False
) -> tuple[Array, Array]:
    """The Euclidean norm of `y` (over `axis`, or all its entries) as `(norm, safe)`:
    `norm` is exact; `safe` equals `norm` where it is positive and `1` where `y` is
    zero, so that dividing by it, and differentiating the division, gives no NaN at
    `y = 0`.

    Computed as `m ||y / m||` with `m = max |y|` (held constant for differentiation,
    which leaves every derivative exact), so it neither overflows for large entries
    (above about `1e154` in float64) nor underflows for small ones. An infinite
    entry gives an infinite norm, as the plain formula does.
    """
    largest = jax.lax.stop_gradient(jnp.max(jnp.abs(y), axis=axis, keepdims=True))
    usable = (largest > 0) & (largest < jnp.inf)
    largest = jnp.where(usable, largest, 1)
    scaled = y / largest
    squared = jnp.sum(scaled * scaled, axis=axis, keepdims=True)
    positive = squared > 0
    safe = jnp.sqrt(jnp.where(positive, squared, 1)) * largest
    norm = jnp.where(positive, safe, 0)
    if not keepdims:
        norm = jnp.squeeze(norm, axis=axis)
        safe = jnp.squeeze(safe, axis=axis)
    return norm, safe


def positive_part_max(*terms: Array) -> Scalar:
    """`max(0, max(terms))`, the largest entry of all `terms` or zero: the usual
    measure of how much a family of inequality constraints `term <= 0` is violated."""
    dtype = jnp.result_type(*terms)
    largest = [jnp.max(t) if jnp.ndim(t) > 0 else t for t in terms]
    return jnp.maximum(jnp.max(jnp.stack(largest)), jnp.zeros((), dtype))


def default_tolerance(dtype) -> float:
    """The default relative tolerance of the iterative projections: `eps^(2/3)`
    (about `4e-11` in float64 and `2.5e-5` in float32)."""
    return float(jnp.finfo(dtype).eps) ** (2 / 3)


# --------------------------------------------------------------------------------------
# Operator bases
# --------------------------------------------------------------------------------------


class AbstractProjection(eqx.Module):
    """The Euclidean projection onto a closed convex set `C`:
    `P(y) = argmin_{x in C} 0.5 ||x - y||^2`.

    A projection is an `equinox.Module`; its hyperparameters (radius, bounds,
    hyperplane, polytope data, ...) are its fields.

    **Fixed or learnable hyperparameters.** A hyperparameter given as a Python number
    (and every default) stays a Python `float`: a fixed setting, not a parameter.
    `equinox.is_inexact_array` does not select it, so the usual
    `optax.init(eqx.filter(model, eqx.is_inexact_array))` does not train it, and
    `equinox.filter_jit` treats it as static. To make a hyperparameter learnable,
    pass it as a JAX array, e.g. `Simplex(jnp.asarray(1.0))`, or build the operator
    from `theta` inside a function `theta -> projection`: derivatives (forward and
    reverse mode) then reach it, including through an optimality condition that uses
    the operator.

    **Invalid hyperparameters.** Values that make the set empty (or the operator
    undefined), such as a negative radius or `lower > upper`, raise a `ValueError`
    at construction when they are known. When they are traced (the operator is built
    inside `jax.jit`, `jax.vmap` or `jax.grad`), the operator returns NaN instead, for
    that batch element only, with NaN derivatives.

    Projections act on one point (an array of the shape the set is defined for, usually
    a vector); use `jax.vmap` or [`implicitx.projection.RowWise`][] for batches.
    """

    @abc.abstractmethod
    def __call__(self, y: Float[Array, "..."]) -> Float[Array, "..."]:
        """**Arguments:**

        - `y`: the point to project.

        **Returns:**

        The projection `P(y)`, of the same shape and dtype as `y`.
        """

    @abc.abstractmethod
    def violation(self, x: Float[Array, "..."]) -> Scalar:
        """A non-negative measure of how far `x` is from satisfying the constraints of
        `C` (for example the largest constraint violation); zero exactly when `x` is
        in `C`. Used to check feasibility.
        """


class AbstractProx(eqx.Module):
    """The proximal operator of a convex function `g`:
    `prox_{s g}(y) = argmin_x 0.5 ||x - y||^2 + s g(x)` for a step size `s > 0`.

    A prox is an `equinox.Module`; the hyperparameters of `g` (regularisation strength,
    ...) are its fields. As for projections (see
    [`implicitx.projection.AbstractProjection`][]), a Python number (and every
    default) stays a fixed Python `float`, not a parameter; pass a JAX array, e.g.
    `L1(jnp.asarray(0.1))`, or build the prox from `theta`, to make it learnable.
    Invalid values (a negative strength) raise a `ValueError` at construction when
    known, and give NaN when traced.
    """

    @abc.abstractmethod
    def __call__(
        self, y: Float[Array, "..."], stepsize: float | Float[ArrayLike, ""] = 1.0
    ) -> Float[Array, "..."]:
        """**Arguments:**

        - `y`: the point.
        - `stepsize`: the scaling `s > 0` of `g`.

        **Returns:**

        `prox_{s g}(y)`, of the same shape and dtype as `y`.
        """

    @abc.abstractmethod
    def value(self, x: Float[Array, "..."]) -> Scalar:
        """The value `g(x)` (`inf` outside the domain of `g`)."""


class AbstractMirrorMap(eqx.Module):
    """A mirror map for mirror descent on a convex set `C`: a strictly convex function
    `phi` (the distance-generating function) with its gradient, and the mirror
    projection that maps a dual point `z` back to `C`:
    `project(z) = argmin_{x in C} phi(x) - <z, x>`.

    A mirror-descent step is `x+ = project(gradient(x) - stepsize * grad f(x))`; its
    fixed points are the solutions of `min_{x in C} f(x)`.
    """

    @abc.abstractmethod
    def gradient(self, x: Float[Array, "..."]) -> Float[Array, "..."]:
        """`grad phi(x)`, mapping a primal point to the dual space."""

    @abc.abstractmethod
    def project(self, z: Float[Array, "..."]) -> Float[Array, "..."]:
        """`argmin_{x in C} phi(x) - <z, x>`, mapping a dual point into `C`."""

    def step(
        self,
        x: Float[Array, "..."],
        direction: Float[Array, "..."],
        stepsize: float | Float[Array, ""],
    ) -> Float[Array, "..."]:
        """One mirror-descent step, `project(gradient(x) - stepsize * direction)`."""
        return self._move(x, stepsize * direction)

    def _move(self, x: Array, displacement: Array) -> Array:
        """`project(gradient(x) - displacement)`. Subclasses may override it with an
        equivalent, better-behaved formula."""
        return self.project(self.gradient(x) - displacement)
