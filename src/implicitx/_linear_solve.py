"""The backward linear solve of implicit differentiation: `A t = b`.

This is where the choice of lineax solver is validated, where the default solver is
chosen from the structure of `A`, where numerically singular systems are detected, and
where failures become errors (`throw=True`) or NaN derivatives (`throw=False`).

The solve is wrapped in `jax.lax.custom_linear_solve`, so that it is linear in `b` and
transposable (reverse mode), differentiable with respect to `A` (higher order), and so
that the failure policy also holds for the transposed solve of reverse mode.
"""

import jax
import jax.flatten_util as jfu
import jax.lax as lax
import jax.numpy as jnp
import lineax as lx
import numpy as np

from ._misc import tree_scale
from ._results import as_results, RESULTS
from ._tags import active_set_tag


# Solvers that are only valid for symmetric definite (or negative definite) operators.
_DEFINITE_ONLY = (lx.CG, lx.Cholesky)
# Direct solvers for square nonsingular systems: the solution is checked for
# numerical singularity.
_CHECKED = (lx.LU, lx.QR, lx.Cholesky)


def is_definite(tags: frozenset[object]) -> bool:
    return (lx.positive_semidefinite_tag in tags) or (
        lx.negative_semidefinite_tag in tags
    )


def check_solver(solver: lx.AbstractLinearSolver, tags: frozenset[object], name: str):
    """Refuses, at trace time, a linear solver that is invalid for the tags of `A`."""
    if isinstance(solver, _DEFINITE_ONLY) and not is_definite(tags):
        raise ValueError(
            f"`{type(solver).__name__}` solves only symmetric (semi)definite systems, "
            f"but the condition `{name}` does not state that `A = -dF/dx` is "
            f"definite (its tags are {_tag_names(tags)}). A wrong solver would give a "
            "wrong derivative. Use a solver valid for any square system, such as "
            "`lineax.LU()` or `lineax.GMRES(...)`, or, if `A` really is symmetric "
            "definite, state it on the condition (e.g. `Stationarity(f, convex=True)`, "
            "or `Root(F, tags=...)`)."
        )


def _tag_names(tags) -> str:
    names = sorted(getattr(t, "__name__", repr(t)) for t in tags)
    return "{" + ", ".join(names) + "}"


# The default `dense_max_size`: the largest system solved densely. For systems tagged
# `active_set_tag` it is smaller: on lasso hypergradients (CPU), GMRES and dense LU
# cost the same near d = 100 and GMRES is 3x faster at d = 300.
DENSE_MAX_SIZE = 500
ACTIVE_SET_DENSE_MAX_SIZE = 100


def default_solver(
    operator: lx.AbstractLinearOperator, dense_max_size: int | None = None
) -> lx.AbstractLinearSolver:
    """Dense LU/Cholesky for small systems; CG or GMRES for large ones (and for
    moderate ones that are the identity plus an active-set part)."""
    size = operator.in_size()
    if dense_max_size is None:
        if active_set_tag in getattr(operator, "tags", frozenset()):
            dense_max_size = ACTIVE_SET_DENSE_MAX_SIZE
        else:
            dense_max_size = DENSE_MAX_SIZE
    if size <= dense_max_size:
        return lx.AutoLinearSolver(well_posed=True)
    dtype = jnp.result_type(*jax.tree_util.tree_leaves(operator.in_structure()))
    tol = float(jnp.finfo(dtype).eps) ** 0.75
    if lx.is_positive_semidefinite(operator) or lx.is_negative_semidefinite(operator):
        return lx.CG(rtol=tol, atol=tol, max_steps=10 * size)
    # Few stagnating restart cycles: when rounding stalls the residual above `tol`
    # (float32), more cycles rarely help, and the true-residual check decides.
    return lx.GMRES(rtol=tol, atol=tol, max_steps=10 * size, stagnation_iters=3)


def _probe_vector(structure):
    """A fixed pseudo-random vector with the given structure (for the condition
    estimate). A constant, computed once at trace time."""
    zeros = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), structure)
    flat, unravel = jfu.ravel_pytree(zeros)
    probe = np.random.default_rng(0).uniform(-1.0, 1.0, flat.shape)
    return unravel(jnp.asarray(probe, dtype=flat.dtype))


def _max_abs(tree):
    leaves = jax.tree_util.tree_leaves(tree)
    return jnp.max(jnp.stack([jnp.max(jnp.abs(leaf)) for leaf in leaves]))


def _promote(lineax_result) -> RESULTS:
    result = as_results(lineax_result)
    result = RESULTS.where(result == RESULTS.singular, RESULTS.singular_adjoint, result)
    failed_iterative = (
        (result == RESULTS.max_steps_reached)
        | (result == RESULTS.breakdown)
        | (result == RESULTS.stagnation)
        | (result == RESULTS.conlim)
    )
    return RESULTS.where(failed_iterative, RESULTS.adjoint_failed, result)


def _is_iterative(solver) -> bool:
    """Krylov solvers (CG, GMRES, BiCGStab, ...) are those with tolerances."""
    return hasattr(solver, "rtol") and hasattr(solver, "atol")


# The true residual of an iterative solve may exceed the solver's own (recurrence or
# restart) estimate by rounding; this much is still a converged solve.
_RESIDUAL_SLACK = 10.0


def _verify_residual(operator, vector, value, solver, result) -> RESULTS:
    """Judges an iterative solve by its true residual `||A t - b||`, not by the code
    the Krylov method reports.

    The backward systems of projected/proximal fixed points are the identity plus a
    low-rank part (coordinates at the boundary of the set are fixed). Krylov methods
    reach the exact solution in a few steps there, after which GMRES may report
    stagnation or breakdown although its answer is exact, and BiCGStab may report
    success with a wrong answer. One extra product with `A` settles both.
    """
    residual = jax.tree_util.tree_map(jnp.subtract, operator.mv(value), vector)
    scale = _RESIDUAL_SLACK * (solver.atol + solver.rtol * _max_abs(vector))
    converged = _max_abs(residual) <= scale  # False for NaN
    return RESULTS.where(
        converged,
        RESULTS.successful,  # pyright: ignore[reportArgumentType]
        RESULTS.where(result == RESULTS.successful, RESULTS.adjoint_failed, result),
    )


def _solve_one(operator, vector, solver, checked, max_condition, throw):
    """Solves `operator t = vector` with lineax, estimates conditioning for direct
    solvers, and applies the failure policy."""
    if isinstance(solver, lx.AutoLinearSolver):
        solver = solver.select_solver(operator)
    iterative = _is_iterative(solver)
    if checked and isinstance(solver, _CHECKED):
        operator = lx.materialise(operator)
    elif iterative:
        # Cache the primal computation of `A` once, rather than once per product.
        operator = lx.linearise(operator)
    state = solver.init(operator, {})
    sol = lx.linear_solve(operator, vector, solver, state=state, throw=False)
    result = _promote(sol.result)
    if checked and isinstance(solver, _CHECKED):
        # Lower bound on the condition number, ||A|| ||A^{-1} w|| / ||w||, from one
        # extra solve against a fixed probe vector (reusing the factorisation).
        # A numerically singular `A` makes it ~ 1/eps however consistent `vector`
        # happens to be.
        probe = _probe_vector(operator.in_structure())
        probe_sol = lx.linear_solve(operator, probe, solver, state=state, throw=False)
        matrix = operator.as_matrix()
        norm = jnp.max(jnp.sum(jnp.abs(matrix), axis=1))
        estimate = norm * _max_abs(probe_sol.value) / _max_abs(probe)
        ill = jnp.logical_not(estimate <= max_condition)  # NaN counts as singular
        result = RESULTS.where(
            (result == RESULTS.successful) & ill, RESULTS.singular_adjoint, result
        )
    if iterative:
        result = _verify_residual(operator, vector, sol.value, solver, result)
    ok = result == RESULTS.successful
    value = sol.value
    if throw:
        value = result.error_if(value, jnp.logical_not(ok))
    else:
        value = tree_scale(value, jnp.where(ok, 1.0, jnp.nan))
    return value


def solve_adjoint_system(
    operator: lx.AbstractLinearOperator,
    vector,
    solver: lx.AbstractLinearSolver,
    *,
    throw: bool,
    max_condition: float,
):
    """Returns `t` with `operator t = vector`, differentiable and transposable."""
    # `AutoLinearSolver(well_posed=False/None)` asks for a pseudo-inverse solution:
    # singular systems are then expected, not an error.
    checked = not (
        isinstance(solver, lx.AutoLinearSolver) and solver.well_posed is not True
    )
    symmetric = lx.is_symmetric(operator)

    def solve(_matvec, b):
        return _solve_one(operator, b, solver, checked, max_condition, throw)

    def transpose_solve(_vecmat, b):
        return _solve_one(
            operator.transpose(), b, solver, checked, max_condition, throw
        )

    return lax.custom_linear_solve(
        operator.mv,
        vector,
        solve,
        transpose_solve=None if symmetric else transpose_solve,
        symmetric=symmetric,
    )


def default_max_condition(dtype) -> float:
    """Condition numbers above `0.01 / eps` make a derivative lose all but ~2 digits."""
    return 0.01 / float(jnp.finfo(dtype).eps)
