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
    singular_adjoint = (
        "The linear system of implicit differentiation, `A t = B u` with "
        "`A = -dF/dx` evaluated at the solution, is singular or numerically singular "
        "(its estimated condition number exceeds the adjoint's `max_condition`). The "
        "solution `x*(theta)` is then not a locally unique, differentiable function of "
        "`theta` (for example the objective is not strictly convex), so no derivative "
        "is returned. Regularise the problem, or pass "
        "`ImplicitAdjoint(linear_solver=lineax.SVD())` to ask explicitly for the "
        "minimum-norm (pseudo-inverse) derivative."
    )
    adjoint_failed = (
        "The iterative linear solver of implicit differentiation, for `A t = B u` with "
        "`A = -dF/dx` at the solution, did not converge (maximum number of steps, "
        "breakdown or stagnation). Use a direct solver (e.g. `lineax.LU()`), raise "
        "its `max_steps`, or check that the forward solve converged."
    )


def as_results(result) -> RESULTS:
    """Converts a lineax/optimistix/implicitx result code into an implicitx one."""
    if result._enumeration is RESULTS:
        return result
    return RESULTS.promote(result)
