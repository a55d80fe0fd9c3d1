import optimistix as optx


class RESULTS(optx.RESULTS):  # pyright: ignore[reportGeneralTypeIssues]
    """Result codes of implicitx solves.

    Extends `optimistix.RESULTS` (and through it `lineax.RESULTS`) with the failures
    that are specific to implicit differentiation. Convert a code into its message with
    `implicitx.RESULTS[result]`.
    """

    nonfinite_solution = (
        "The forward solver returned a solution containing non-finite values (inf or "
        "nan). Check the inputs `theta` and the initial guess for non-finite values."
    )
    external_solver_failed = (
        "An external forward solver (run through `jax.pure_callback`) raised an "
        "exception, returned non-finite values or reported that it failed. Its "
        "message was shown as a warning."
    )
    adjoint_singular = (
        "The linear system of implicit differentiation, `A t = B u` with "
        "`A = -dF/dx` evaluated at the solution, is singular or numerically singular "
        "(its estimated condition number exceeds the adjoint's `max_condition`). The "
        "solution `x*(theta)` is then not a locally unique, differentiable function of "
        "`theta` (for example the objective is not strictly convex), so no derivative "
        "is returned. Regularise the problem, or pass "
        "`ImplicitAdjoint(linear_solver=lineax.SVD())` to ask explicitly for the "
        "minimum-norm (pseudo-inverse) derivative."
    )
    adjoint_unconverged = (
        "The iterative linear solver of implicit differentiation, for `A t = B u` with "
        "`A = -dF/dx` at the solution, did not converge (maximum number of steps, "
        "breakdown or stagnation). Use a direct solver (e.g. `lineax.LU()`), raise "
        "its `max_steps`, or check that the forward solve converged."
    )

    adjoint_unverified = (
        "The backward linear solve returned an answer that does not solve "
        "`A t = B u` (`A = -dF/dx` at the solution): its true residual `|A t - B u|` "
        "is too large. Either an iterative solver stopped early while reporting "
        "success, or a solver relied on a structure that `A` does not have: the "
        "condition's tags (symmetric, positive/negative semidefinite) or `convex=True` "
        "are wrong. Remove the wrong tags, or use `lineax.LU()` / `lineax.GMRES(...)`."
    )
    nonfinite_iterate = (
        "The forward solver stopped because its iterate (or the objective or gradient "
        "it evaluated) became non-finite (inf or nan). Check `theta` and the data the "
        "condition closes over for non-finite values, and the step size for a value "
        "that makes the iteration diverge."
    )
    nonroot = (
        "The value returned by the forward solver does not satisfy the optimality "
        "condition: `max|F(x, theta)|` exceeds `root_tol` times the scale of `F` "
        "(`max|A u|` for `u` of the size of `x`; see the docs page on failures). The "
        "implicit derivative is only valid at a solution. Make the forward solver "
        "converge (tighter tolerance, more steps), check that the condition matches "
        "the problem the solver solves, or, to differentiate an approximate solution "
        "on purpose, use `implicitx.ImplicitAdjoint(inexact=True)`."
    )
    primal_infeasible = (
        "The constrained problem is infeasible: the solver found a certificate (a "
        "direction of the multipliers along which the dual objective grows without "
        "bound), so no point satisfies the constraints. Check the constraint data of "
        "this problem (for a batch, of this element)."
    )
    dual_infeasible = (
        "The constrained problem is unbounded below: the solver found a feasible "
        "direction along which the objective decreases without bound. Check that the "
        "objective is bounded on the feasible set (e.g. `Q` positive definite on the "
        "directions the constraints leave free, or bounds on every variable of a "
        "linear program)."
    )


# Deprecated names (0.1.0): the same codes. `adjoint_*` now prefixes every
# failure of the backward solve.
RESULTS.singular_adjoint = RESULTS.adjoint_singular  # pyright: ignore[reportAttributeAccessIssue]
RESULTS.adjoint_failed = RESULTS.adjoint_unconverged  # pyright: ignore[reportAttributeAccessIssue]


def as_results(result) -> RESULTS:
    """Converts a lineax/optimistix/implicitx result code into an implicitx one."""
    if result._enumeration is RESULTS:
        return result
    return RESULTS.promote(result)
