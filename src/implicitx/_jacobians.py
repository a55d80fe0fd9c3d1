import equinox as eqx
import jax.numpy as jnp
import jax.tree_util as jtu
import lineax as lx
from jaxtyping import Array, ArrayLike, PyTree

from ._conditions import AbstractCondition
from ._misc import inexact_leaves_asarray


def _negated_residual(x, args):
    residual, theta = args
    return jtu.tree_map(jnp.negative, residual(x, theta))


def _residual_in_theta(theta_diff, args):
    residual, x, theta_nondiff = args
    return residual(x, eqx.combine(theta_diff, theta_nondiff))


def backward_operator(residual, x, theta, tags) -> lx.JacobianLinearOperator:
    """`A = -dF/dx` at `(x, theta)`, for an already closure-converted `residual`."""
    return lx.JacobianLinearOperator(
        _negated_residual, x, (residual, theta), tags=tags, closure_convert=False
    )


def jacobian_operators(
    condition: AbstractCondition, x: PyTree[Array], theta: PyTree[ArrayLike]
) -> tuple[lx.AbstractLinearOperator, lx.AbstractLinearOperator]:
    """The two Jacobians of implicit differentiation at a point `(x, theta)`.

    With `F` the condition, `A = -dF/dx(x, theta)` and `B = dF/dtheta(x, theta)`. At a
    solution `x*(theta)`, the Jacobian `J = dx*/dtheta` solves `A J = B`. Both are
    matrix-free lineax operators (products are computed by autodiff of `F`); call
    `.as_matrix()` or `lineax.materialise` to form them.

    **Arguments:**

    - `condition`: an [`implicitx.AbstractCondition`][].
    - `x`: the point, usually a solution `x*(theta)`.
    - `theta`: the parameters.

    **Returns:**

    A pair `(A, B)` of lineax operators. `A` maps the space of `x` to the space of the
    residual and carries the condition's tags. `B` maps the floating-point leaves of
    `theta` to the space of the residual: its input structure is `theta` with `None`
    in place of every leaf that is not a floating-point array.
    """
    x = jtu.tree_map(jnp.asarray, x)
    theta = inexact_leaves_asarray(theta)
    theta_diff, theta_nondiff = eqx.partition(theta, eqx.is_inexact_array)
    a = lx.JacobianLinearOperator(
        _negated_residual, x, (condition, theta), tags=condition.tags
    )
    b = lx.JacobianLinearOperator(
        _residual_in_theta, theta_diff, (condition, x, theta_nondiff)
    )
    return a, b
