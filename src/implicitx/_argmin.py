import contextlib

import equinox as eqx
import equinox.internal as eqxi
import jax
import jax.tree_util as jtu
from jaxtyping import ArrayLike, PyTree

from ._adjoint import AbstractAdjoint, ImplicitAdjoint
from ._conditions import AbstractCondition
from ._failure import apply_policy
from ._misc import inexact_leaves_asarray, structure_string
from ._solution import Solution
from .solvers import AbstractSolver


def _shape_dtype(tree):
    return jtu.tree_map(
        lambda s: (tuple(s.shape), jax.numpy.dtype(s.dtype)),
        jax.eval_shape(lambda: tree) if not _is_struct_tree(tree) else tree,
    )


def _is_struct_tree(tree) -> bool:
    return all(isinstance(x, jax.ShapeDtypeStruct) for x in jtu.tree_leaves(tree))


class ImplicitArgmin(eqx.Module):
    """The solution of an optimisation problem as a differentiable function of its
    parameters: `argmin(theta) = x*(theta)`.

    Combines an optimality condition (which defines the solution and hence its
    derivatives), a forward solver (which finds it, and is never differentiated) and an
    adjoint (how derivatives are obtained; exact implicit differentiation by default).

    It is an `equinox.Module`: it can be stored inside other modules, and
    `equinox.filter_grad` differentiates with respect to the array parameters of its
    condition as well as with respect to `theta`.

    **Arguments:**

    - `condition`: an [`implicitx.AbstractCondition`][], e.g.
        [`implicitx.Stationarity`][].
    - `solver`: an [`implicitx.solvers.AbstractSolver`][].
    - `adjoint`: an [`implicitx.AbstractAdjoint`][]. Default
        [`implicitx.ImplicitAdjoint`][]`()`.
    - `x0`: the default initial guess, used when the call passes none. It gets no
        derivative (the solution does not depend on it).
    - `throw`: if `True` (default), a failed forward solve or a failed backward linear
        solve raises an error from the compiled program. If `False`, nothing raises: a
        failed forward solve is reported in `Solution.result` and every derivative at
        it is NaN; a failed backward solve (e.g. a singular `A`) makes the derivatives
        NaN. (The backward solve runs only when differentiating, after the primal
        `Solution` exists, so its failure cannot appear in `Solution.result`.) Either
        way, never a silently wrong finite derivative.
    """

    condition: AbstractCondition
    solver: AbstractSolver
    adjoint: AbstractAdjoint = ImplicitAdjoint()
    x0: PyTree[ArrayLike] | None = None
    throw: bool = eqx.field(default=True, static=True)

    def __hash__(self) -> int:
        # `jax.jit(argmin)` hashes the function it compiles; the default hash of a
        # module holding arrays fails (`unhashable type`). Hashing by identity makes
        # `jax.jit(argmin)(theta)` work, with the module's arrays as constants; use
        # `equinox.filter_jit` to make them inputs (no recompilation when they
        # change, and gradients with respect to them).
        return id(self)

    def __call__(
        self, theta: PyTree[ArrayLike], x0: PyTree[ArrayLike] | None = None
    ) -> PyTree[ArrayLike]:
        """**Arguments:**

        - `theta`: the parameters.
        - `x0`: an initial guess (warm start); defaults to the `x0` given at
            construction.

        **Returns:**

        The solution `x*(theta)`, differentiable.
        """
        return self.solve(theta, x0).value

    def solve(
        self, theta: PyTree[ArrayLike], x0: PyTree[ArrayLike] | None = None
    ) -> Solution:
        """As `__call__`, but returns the full [`implicitx.Solution`][] record: the
        (differentiable) value, the result code, auxiliary output and statistics.
        """
        # Compiled as one program (inlined when already inside `jit`): called eagerly,
        # the many small operations of the rule would otherwise each be dispatched and
        # compiled one by one, which costs seconds on a first call. Python floats
        # become arrays first: `filter_jit` would otherwise compile again for every
        # new value.
        theta, x0 = inexact_leaves_asarray((theta, x0))
        return _solve_jit(self, theta, x0)

    def _solve(
        self, theta: PyTree[ArrayLike], x0: PyTree[ArrayLike] | None = None
    ) -> Solution:
        if x0 is None:
            x0 = inexact_leaves_asarray(self.x0)  # (`theta` and `x0`: in `solve`)
        condition, solver, adjoint = self.condition, self.solver, self.adjoint
        name = type(condition).__name__

        adjoint.check_solver(solver)

        def _solve(_theta, _x0):
            return solver.solve(condition, _theta, _x0, while_loop=adjoint.while_loop)

        if x0 is not None:
            # The condition first, at the initial guess: a wrong residual then fails
            # here with a message naming it, not inside the solver's loop.
            _check_residual(condition, x0, theta, "initial guess `x0`")
        what = f"the forward solver `{type(solver).__name__}`"
        with _note_tracing(what, theta, x0, "initial guess `x0`"):
            solve = eqx.filter_closure_convert(_solve, theta, x0)
        x_struct = solve.out_struct.value  # pyright: ignore[reportFunctionMemberAccess]
        if x0 is not None and _shape_dtype(x0) != _shape_dtype(x_struct):
            raise ValueError(
                "The initial guess `x0` does not match the solution returned by the "
                f"solver: `x0` is {structure_string(x0)}, the solution is "
                f"{structure_string(x_struct)}."
            )
        residual = _check_residual(condition, x_struct, theta, "solution `x`")
        sol = self.adjoint.apply(
            residual,
            solve,
            theta,
            x0,
            tags=condition.tags,
            condition_name=name,
            throw=self.throw,
        )
        value = sol.value
        if self.throw:
            ok = self.adjoint.accepts(sol.result)
            value = apply_policy(value, sol.result, throw=True, ok=ok)
        msg = (
            "`Solution.aux` and `Solution.stats` are not differentiable: they are "
            "outputs of the forward solver, which implicitx never differentiates."
        )
        aux = eqxi.nondifferentiable_backward(sol.aux, msg=msg)
        objective_aux = _objective_aux(condition, value, theta)
        if objective_aux is not None:
            if sol.aux is not None:
                raise ValueError(
                    f"Both the objective of `{name}` (`has_aux=True`) and the solver "
                    f"`{type(solver).__name__}` return auxiliary output: keep one."
                )
            aux = objective_aux  # a function of the solution: differentiable
        stats = eqxi.nondifferentiable_backward(sol.stats, msg=msg)
        return Solution(value=value, result=sol.result, aux=aux, stats=stats)


def _objective_aux(condition, x, theta):
    """The auxiliary output of the condition's objective at `x`, if it has one."""
    objective_aux = getattr(condition, "objective_aux", None)
    return None if objective_aux is None else objective_aux(x, theta)


@contextlib.contextmanager
def _note_tracing(what: str, theta, x, x_name: str):
    """Adds to an error raised while tracing `what` the structures it was given."""
    try:
        yield
    except Exception as e:
        e.add_note(
            f"implicitx: raised while tracing {what} with `theta` of structure "
            f"{structure_string(theta)} and {x_name} of structure "
            f"{structure_string(x)}. Check the shapes of `theta` and `x0`."
        )
        raise


def _check_residual(condition: AbstractCondition, x, theta, what: str):
    """Traces the condition at `x` (closure-converted: its arrays become inputs) and
    checks that its residual has the structure of `x`."""
    name = type(condition).__name__
    with _note_tracing(f"the condition `{name}`", theta, x, what):
        residual = eqx.filter_closure_convert(condition, x, theta)
    residual_struct = residual.out_struct  # pyright: ignore[reportFunctionMemberAccess]
    if _shape_dtype(residual_struct) != _shape_dtype(x):
        raise ValueError(
            f"The residual `F(x, theta)` of the condition `{name}` must have the "
            f"same structure, shapes and dtypes as `x`: at the {what}, `x` is "
            f"{structure_string(x)}, `F(x, theta)` is "
            f"{structure_string(residual_struct)}. (For a fixed point `x = T(x, "
            "theta)`, `T` must return the structure of `x`.)"
        )
    return residual


@eqx.filter_jit
def _solve_jit(argmin: ImplicitArgmin, theta, x0) -> Solution:
    return argmin._solve(theta, x0)
