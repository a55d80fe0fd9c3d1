"""The backward linear solve of implicit differentiation: `A t = b`.

This is where the choice of lineax solver is validated, where the default solver is
chosen from the structure of `A`, where numerically singular systems are detected, and
where failures become errors (`throw=True`) or NaN derivatives (`throw=False`).

The solve is wrapped in `jax.lax.custom_linear_solve`, so that it is linear in `b` and
transposable (reverse mode), differentiable with respect to `A` (higher order), and so
that the failure policy also holds for the transposed solve of reverse mode.
"""

import copy
import dataclasses
from collections.abc import Callable
from typing import Any

import equinox as eqx
import equinox.internal as eqxi
import jax
import jax.flatten_util as jfu
import jax.lax as lax
import jax.numpy as jnp
import lineax as lx
import numpy as np

from ._batch_safe_lu import BatchSafeLU
from ._failure import accepted, apply_policy
from ._misc import tree_all_finite
from ._results import as_results, RESULTS
from ._tags import active_set_tag, saddle_point_tag


# Solvers that are only valid for symmetric definite (or negative definite) operators.
_DEFINITE_ONLY = (lx.CG, lx.Cholesky)
# Direct solvers for square nonsingular systems: the solution is checked for
# numerical singularity.
_CONDITION_ESTIMATED = (lx.LU, BatchSafeLU, lx.QR, lx.Cholesky)


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
# KKT matrices: GMRES without a preconditioner did not converge on a random QP with
# 850 unknowns (benchmarks/qp_layers.py), while LU takes a fraction of a second there.
SADDLE_POINT_DENSE_MAX_SIZE = 5000


def default_solver(
    operator: lx.AbstractLinearOperator, dense_max_size: int | None = None
) -> lx.AbstractLinearSolver:
    """The default backward solver: the table in docs/api/adjoints.md ("Choosing the
    backward solver")."""
    size = operator.in_size()
    if dense_max_size is None:
        tags = getattr(operator, "tags", frozenset())
        if active_set_tag in tags:
            dense_max_size = ACTIVE_SET_DENSE_MAX_SIZE
        elif saddle_point_tag in tags:
            dense_max_size = SADDLE_POINT_DENSE_MAX_SIZE
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


def probe_vector(structure):
    """A fixed pseudo-random vector with the given structure (for the condition
    estimate). A constant, computed once at trace time."""
    zeros = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), structure)
    flat, unravel = jfu.ravel_pytree(zeros)
    probe = np.random.default_rng(0).uniform(-1.0, 1.0, flat.shape)
    return unravel(jnp.asarray(probe, dtype=flat.dtype))


def max_abs(tree):
    leaves = jax.tree_util.tree_leaves(tree)
    return jnp.max(jnp.stack([jnp.max(jnp.abs(leaf), initial=0) for leaf in leaves]))


def _promote(lineax_result) -> RESULTS:
    result = as_results(lineax_result)
    result = RESULTS.where(result == RESULTS.singular, RESULTS.adjoint_singular, result)
    failed_iterative = (
        (result == RESULTS.max_steps_reached)
        | (result == RESULTS.breakdown)
        | (result == RESULTS.stagnation)
        | (result == RESULTS.conlim)
    )
    return RESULTS.where(failed_iterative, RESULTS.adjoint_unconverged, result)


def _is_iterative(solver) -> bool:
    """Krylov solvers (CG, GMRES, BiCGStab, ...) are those with tolerances."""
    return hasattr(solver, "rtol") and hasattr(solver, "atol")


# The true residual of an iterative solve may exceed the solver's own (recurrence or
# restart) estimate by rounding; this much is still a converged solve.
_RESIDUAL_SLACK = 10.0


def _untagged(operator: lx.AbstractLinearOperator) -> lx.AbstractLinearOperator:
    """The same operator with no structure asserted: its `transpose()` is the true
    transpose, whatever the tags claim."""
    if isinstance(operator, lx.MatrixLinearOperator):
        return lx.MatrixLinearOperator(operator.matrix)
    if isinstance(operator, lx.JacobianLinearOperator):
        # `tags` is a static field: copy, rather than re-run the constructor (which
        # would closure-convert `fn` again).
        plain = copy.copy(operator)
        object.__setattr__(plain, "tags", frozenset())
        return plain
    return operator


def _residual_ok(check_mv, vector, value, tolerance) -> jax.Array:
    """Whether `||A t - b|| <= tolerance(||b||, ||t||, ||A t||)`, with `A t` computed
    by `check_mv`, which trusts no tag (False for NaN)."""
    a_t = check_mv(value)
    residual = jax.tree_util.tree_map(jnp.subtract, a_t, vector)
    bound = tolerance(max_abs(vector), max_abs(value), max_abs(a_t))
    return max_abs(residual) <= bound


class _System(eqx.Module):
    """One direction (`A` or `A^T`) of the backward system, as lineax solves it and as
    its answers are verified.

    - `operator`: the operator handed to lineax (carrying the condition's tags, which
        the solver may rely on: Cholesky and CG assume symmetry and definiteness).
    - `check_mv`: the product with the same matrix computed without trusting the tags,
        used to verify every answer.
    - `true`: whether `operator` is that matrix (False where a symmetric tag made
        lineax reuse `A` for `A^T`).
    """

    operator: lx.AbstractLinearOperator
    check_mv: Callable[[Any], Any]
    true: bool = eqx.field(static=True, default=True)


def _systems(operator, solver, unique):
    """The forward and transposed systems, materialised for direct solvers (the
    condition estimate needs the matrix; verification is then one product with it)
    and linearised for iterative ones (the primal of `A` is computed once)."""
    if unique and isinstance(solver, _CONDITION_ESTIMATED):
        matrix = lx.materialise(operator)
        check_mv, check_transpose_mv = _dense_products(matrix)
    else:
        matrix = lx.linearise(operator) if _is_iterative(solver) else operator
        plain = lx.linearise(_untagged(operator))
        check_mv, check_transpose_mv = plain.mv, plain.transpose().mv
    if lx.is_symmetric(operator):
        # The tag says `A^T = A`: lineax then reuses `A`; the check does not.
        transposed = _System(matrix, check_transpose_mv, true=False)
    else:
        transposed = _System(matrix.transpose(), check_transpose_mv)
    return _System(matrix, check_mv), transposed


def _dense_products(operator):
    """Products with a materialised operator and with its true transpose, on PyTrees
    of its structure, ignoring its tags."""
    matrix = operator.as_matrix()
    zeros = jax.tree_util.tree_map(
        lambda s: jnp.zeros(s.shape, s.dtype), operator.in_structure()
    )
    _, unravel = jfu.ravel_pytree(zeros)

    def mv(tree):
        return unravel(matrix @ jfu.ravel_pytree(tree)[0])

    def transpose_mv(tree):
        return unravel(matrix.T @ jfu.ravel_pytree(tree)[0])

    return mv, transpose_mv


def _condition_ok(operator, solver, state, norm, max_condition):
    """Lower bound on the condition number, ||A|| ||A^{-1} w|| / ||w||, from one extra
    solve against a fixed probe vector (reusing the factorisation). A numerically
    singular `A` makes it ~ 1/eps however consistent the right-hand side happens to
    be."""
    probe = probe_vector(operator.in_structure())
    probe_sol = lx.linear_solve(operator, probe, solver, state=state, throw=False)
    estimate = norm * max_abs(probe_sol.value) / max_abs(probe)
    return estimate <= max_condition  # NaN counts as singular


def _krylov_nonsingular(operator, solver, evidence: bool = True):
    """Whether a Krylov method sees `A` as nonsingular: it must recover a fixed probe
    `p` from `A p`. On a singular `A`, a consistent right-hand side is solved by
    *some* solution (GMRES and CG give the one of least norm), with a small residual:
    only the lost null-space part of `p` reveals that the solution is not unique.

    `A` and `A^T` are singular together, so one probe serves both directions; it is
    computed once per point (not per tangent). The lost part of `p` along a unit null
    vector `u` is `(u . p) u`, of size about `0.6 / sqrt(n)` in every entry if `u` is
    spread out (more if not), so an error above `0.01 / sqrt(n)` (or the square root
    of the solver's `rtol`, if larger) is evidence of a null vector. But an
    ill-conditioned nonsingular `A` also leaves an error of up to `cond(A)` times the
    probe's relative residual; so the probe runs in two stages:

    1. a loose solve (to a tenth of the threshold, restarted often so that it stops
        after few products: lineax tests convergence once per restart cycle), which
        clears a well-conditioned `A`;
    2. only if that one does not, the same solve continued from its answer to the
        solver's own tolerance, which clears any `A` whose derivative the main solve
        can compute (its error is then `cond(A) rtol`, below the threshold while
        `cond(A) < 0.01 / (sqrt(n) rtol)`); what is left is a null vector.

    With `evidence=True` (forward mode, where the answer is accepted only if `A` is
    shown nonsingular) a probe that does not converge at the solver's tolerance
    does not clear `A`; with `evidence=False` (naming why a solve failed) only a
    converged probe that misses `p` counts as a null vector.
    """
    size = operator.in_size()
    threshold = max(float(solver.rtol) ** 0.5, 0.01 / size**0.5)
    if isinstance(solver, lx.GMRES):
        loose = _with_tolerance(solver, _GMRES_PROBE_ACCURACY * threshold)
        if loose.restart > _PROBE_RESTART:
            loose = dataclasses.replace(loose, restart=_PROBE_RESTART)
    else:
        loose = _with_tolerance(solver, 0.01 * threshold)
    probe = probe_vector(operator.in_structure())
    image = operator.mv(probe)
    bound = threshold * max_abs(probe)

    def verdict(sol):
        # As evidence, a stage clears `A` only by converging and recovering the
        # probe (an unconverged loose stage hands over to the final one): a Krylov
        # method that cannot solve `A t = A p` (GMRES breaks down on a singular `A`
        # whose Krylov space degenerates) shows nothing, and the main solve's answer
        # may then be one of many solutions, which its residual cannot tell apart.
        error = max_abs(jax.tree_util.tree_map(jnp.subtract, sol.value, probe))
        converged = sol.result == lx.RESULTS.successful
        if evidence:
            return converged & (error <= bound), sol.value
        return jnp.logical_not(converged) | (error <= bound), sol.value

    cleared, first = verdict(lx.linear_solve(operator, image, loose, throw=False))

    def continued():
        options = {"y0": first}
        sol = lx.linear_solve(operator, image, solver, options=options, throw=False)
        return verdict(sol)[0]

    if loose is solver:  # the first stage was already at the solver's tolerance
        return cleared
    # (For a batch of operators, the second stage runs if one of them needs it.)
    return lax.cond(
        eqxi.unvmap_all(cleared), lambda: cleared, lambda: cleared | continued()
    )


def _diagnose_singular(operator, solver, result):
    """Reverse mode needs no uniqueness probe when its solve succeeds: on a singular
    `A`, `A^T s = g` has a solution only if the cotangent `g` is orthogonal to the
    null space of `A` (the loss does not change along the solution set), and then
    `s^T B` is the same for every solution `s`, because `B = A dx*/dtheta` lies in
    the range of `A` wherever `x*(theta)` has a derivative. Otherwise the true
    residual refuses the answer; only then is the probe run, to name the cause."""
    failed = result != RESULTS.successful

    def named():
        singular = jnp.logical_not(_krylov_nonsingular(operator, solver, False))
        return RESULTS.where(failed & singular, RESULTS.adjoint_singular, result)

    # Under `jax.vmap` over cotangents (`jax.jacrev`) `failed` is batched, and a
    # batched `lax.cond` becomes a select that runs the probe at every call: it runs
    # only if some solve of the batch failed.
    return lax.cond(eqxi.unvmap_any(failed), named, lambda: result)


_PROBE_RESTART = 5
# The probe's GMRES stops at this fraction of the error threshold: lineax stops GMRES
# only when both the residual and the change of the iterate over the last restart
# cycle are below its tolerance, which leaves an error of about that order. (CG
# tests its residual alone, so its probe keeps a margin of 100.)
_GMRES_PROBE_ACCURACY = 0.1


def _with_tolerance(solver, tol: float):
    """`solver` with `rtol = atol = tol`, if that is looser than its own."""
    if tol <= solver.rtol:
        return solver
    try:
        return dataclasses.replace(solver, rtol=tol, atol=max(tol, solver.atol))
    except (TypeError, ValueError):
        return solver


def _solve_one(system: _System, vector, solver, unique, max_condition, ok_extra):
    """Solves `A t = vector` with lineax, checks conditioning (direct solvers; the
    uniqueness of iterative ones arrives in `ok_extra`), verifies the answer by its
    true residual, and returns `(t, result)`."""
    operator = system.operator
    ok = ok_extra
    state = solver.init(operator, {})
    sol = lx.linear_solve(operator, vector, solver, state=state, throw=False)
    value, result = sol.value, _promote(sol.result)
    if unique and isinstance(solver, _CONDITION_ESTIMATED):
        dtype = jnp.result_type(*jax.tree_util.tree_leaves(operator.in_structure()))
        norm = jnp.max(jnp.sum(jnp.abs(operator.as_matrix()), axis=1))  # ||A||_inf
        ok = ok & _condition_ok(operator, solver, state, norm, max_condition)
        # A backward-stable direct solve leaves ~ n eps ||A|| ||t||; a solver fed a
        # structure that `A` does not have leaves an O(1) relative residual.
        slack = float(jnp.finfo(dtype).eps) ** 0.5

        def tolerance(b_norm, t_norm, at_norm):
            del at_norm
            return slack * (norm * t_norm + b_norm)

    else:

        def tolerance(b_norm, t_norm, at_norm):
            del t_norm
            if _is_iterative(solver):
                return _RESIDUAL_SLACK * (solver.atol + solver.rtol * b_norm)
            dtype = jnp.result_type(b_norm)
            return float(jnp.finfo(dtype).eps) ** 0.5 * (at_norm + b_norm)

    if not unique:  # a pseudo-inverse (least-squares) answer asked for explicitly
        return value, _singular_unless(ok, result)
    if system.true and type(solver) is lx.GMRES:
        # GMRES stops on the true residual `b - A y` of the operator it was given
        # (no preconditioner here): once it reports success, that is the check.
        verified = lax.cond(
            result == RESULTS.successful,
            lambda: jnp.asarray(True),
            lambda: _residual_ok(system.check_mv, vector, value, tolerance),
        )
    else:
        verified = _residual_ok(system.check_mv, vector, value, tolerance)
    # A converged-looking answer that does not solve the system: a Krylov method
    # that stalled, or a solver relying on a structure (tags) that `A` lacks.
    result = RESULTS.where(
        (result == RESULTS.successful) & jnp.logical_not(verified),
        RESULTS.adjoint_unverified,
        RESULTS.where(
            verified & _is_accepted(result),
            RESULTS.successful,  # pyright: ignore[reportArgumentType]
            result,
        ),
    )
    # Last: no verified residual overrides a singular verdict (a residual cannot
    # tell one of many solutions from the derivative).
    return value, _singular_unless(ok, result)


def _singular_unless(ok, result):
    """`result`, or `adjoint_singular` where it is successful but `ok` is false."""
    return RESULTS.where(
        (result == RESULTS.successful) & jnp.logical_not(ok),
        RESULTS.adjoint_singular,
        result,
    )


def _is_accepted(result) -> jax.Array:
    """Codes that a verified residual overrides: a Krylov method that reports
    stagnation or breakdown after reaching the answer."""
    return result == RESULTS.adjoint_unconverged


def solve_adjoint_system(
    operator: lx.AbstractLinearOperator,
    vector,
    solver: lx.AbstractLinearSolver,
    *,
    throw: bool,
    max_condition: float,
    nonsingular: jax.Array | bool = True,
    inexact: bool = False,
):
    """Returns `t` with `operator t = vector`, differentiable and transposable.

    `nonsingular=False` (a primal flag computed by the caller) reports the system as
    singular whatever the solver says. With `inexact=True`, an iterative solve that
    stops before its tolerance is accepted (an approximate derivative asked for
    explicitly); singular or non-finite answers are still refused.
    """
    # `AutoLinearSolver(well_posed=False/None)` and `SVD()` ask for a pseudo-inverse
    # solution: singular systems are then expected, not an error. Otherwise the
    # derivative must be the unique solution, and every check below applies.
    unique = not (
        isinstance(solver, lx.AutoLinearSolver) and solver.well_posed is not True
    )
    if isinstance(solver, lx.AutoLinearSolver):
        solver = solver.select_solver(operator)
    if type(solver) is lx.LU:
        # The same factorisation; but a batch of matrices (`vmap`) never goes to
        # jaxlib's batched LAPACK kernels, which can deadlock XLA:CPU's thread pool
        # when the batch is sharded over host devices: see `_batch_safe_lu`.
        solver = BatchSafeLU()
    if isinstance(solver, lx.SVD):
        unique = False
    if not unique:
        nonsingular = True
    forward, transposed = _systems(operator, solver, unique)
    ok_extra = jnp.asarray(nonsingular)
    # (An inexact solve on a budget would not recover the probe either.)
    probed = unique and _is_iterative(solver) and not inexact

    def _finish(value, result):
        if inexact and _is_iterative(solver):
            finite = tree_all_finite(value)
            result = RESULTS.where(
                (result == RESULTS.adjoint_unconverged) & finite,
                RESULTS.successful,  # pyright: ignore[reportArgumentType]
                result,
            )
        return apply_policy(value, result, throw)

    # `lax.custom_linear_solve` runs on the flattened vector: with one leaf per leaf
    # of `x`, a leaf whose tangent is a symbolic zero (a block of `B u` that a
    # perturbation does not reach, in a second derivative) would reach its JVP rule
    # unconverted, which fails.
    flat_vector, unravel = jfu.ravel_pytree(vector)

    def flat(tree):
        return jfu.ravel_pytree(tree)[0]

    def solve(_matvec, b):
        # Forward mode: `t = A^{-1} B u` itself is the derivative, so a Krylov
        # answer must be shown unique (the probe, computed from `A` alone: once per
        # point, however many tangents are vmapped).
        ok = ok_extra
        if probed:
            ok = ok & _krylov_nonsingular(forward.operator, solver)
        value, result = _solve_one(
            forward, unravel(b), solver, unique, max_condition, ok
        )
        return flat(_finish(value, result))

    def transpose_solve(_vecmat, b):
        value, result = _solve_one(
            transposed, unravel(b), solver, unique, max_condition, ok_extra
        )
        if probed:
            result = _diagnose_singular(forward.operator, solver, result)
        return flat(_finish(value, result))

    out = lax.custom_linear_solve(
        lambda v: flat(operator.mv(unravel(v))),
        flat_vector,
        solve,
        transpose_solve=transpose_solve,
    )
    return unravel(out)


def default_max_condition(dtype) -> float:
    """Condition numbers above `0.01 / eps` make a derivative lose all but ~2 digits."""
    return 0.01 / float(jnp.finfo(dtype).eps)


class BackwardSolve(eqx.Module):
    """The backward linear solve `(A, b) -> t` used by the rule, and which forward
    results it accepts."""

    solver: lx.AbstractLinearSolver | None
    throw: bool = eqx.field(static=True)
    dense_max_size: int | None = eqx.field(static=True)
    max_condition: float | None = eqx.field(static=True)
    inexact: bool = eqx.field(default=False, static=True)

    def accepts(self, result: RESULTS) -> jax.Array:
        """Whether a derivative is returned at a forward result: at a solution, or,
        with `inexact=True`, also at the last iterate of a solver that stopped short
        of one."""
        return accepted(result, self.inexact)

    def condition_limit(self, operator) -> float:
        """`max_condition`, or its default for the dtype of `A`."""
        if self.max_condition is not None:
            return self.max_condition
        dtype = jnp.result_type(*jax.tree_util.tree_leaves(operator.in_structure()))
        return default_max_condition(dtype)

    def __call__(self, operator, vector, nonsingular=True):
        solver = self.solver
        if solver is None:
            solver = default_solver(operator, self.dense_max_size)
        max_condition = self.condition_limit(operator)
        return solve_adjoint_system(
            operator,
            vector,
            solver,
            throw=self.throw,
            max_condition=max_condition,
            nonsingular=nonsingular,
            inexact=self.inexact,
        )
