import abc
from typing import ClassVar, Generic, TypeVar

import equinox as eqx
import jax.numpy as jnp
from equinox import AbstractVar
from jaxtyping import Array, ArrayLike, Bool, Int, PyTree

from .._conditions import AbstractCondition
from .._results import RESULTS
from .._solution import Solution
from .._while_loops import lax_while_loop, WhileLoop
from ._loop import stop_or_nonfinite


class AbstractSolver(eqx.Module):
    """A forward solver: finds `x*(theta)` satisfying a condition.

    A solver knows nothing about derivatives; [`implicitx.ImplicitArgmin`][] attaches
    them. It holds configuration only (tolerances, step limits); the problem comes from
    the condition and `theta`.
    """

    #: Whether [`implicitx.UnrolledAdjoint`][] can differentiate through this solver:
    #: False for solvers that run outside JAX (host callbacks).
    can_unroll: ClassVar[bool] = True

    @abc.abstractmethod
    def solve(
        self,
        condition: AbstractCondition,
        theta: PyTree[ArrayLike],
        x0: PyTree[ArrayLike] | None,
        *,
        while_loop: WhileLoop = lax_while_loop,
    ) -> Solution:
        """**Arguments:**

        - `condition`: the optimality condition the solution must satisfy.
        - `theta`: the parameters.
        - `x0`: the initial guess (a warm start), or `None` if the solver needs none.
        - `while_loop`: the loop to run the iterations with, handed over by the
            adjoint ([`implicitx.AbstractAdjoint.while_loop`][]): a plain
            `lax.while_loop` under implicit differentiation, a differentiable
            checkpointed loop when unrolled. A solver uses it for every loop it runs
            and never asks how it will be differentiated.

        **Returns:**

        An [`implicitx.Solution`][] with the value, a result code, auxiliary output and
        statistics.
        """


class AbstractIterativeState(eqx.Module):
    """The state of an [`implicitx.solvers.AbstractIterativeSolver`][] between two
    steps. Every state has at least these attributes:

    - `x`: the current iterate, with the structure of `x0`.
    - `num_steps`: the number of steps taken so far (`0` after `init`).
    - `converged`: whether the last step met the solver's stopping criterion.
    """

    x: AbstractVar[PyTree[Array]]
    num_steps: AbstractVar[Int[Array, ""]]
    converged: AbstractVar[Bool[Array, ""]]


_State = TypeVar("_State", bound=AbstractIterativeState)


class AbstractIterativeSolver(AbstractSolver, Generic[_State]):
    """A solver that can be run step by step, in the style of optimistix:

    ```python
    state = solver.init(condition, theta, x0)
    while not solver.terminate(condition, theta, state)[0]:
        state = solver.step(condition, theta, state)
    solution = solver.postprocess(condition, theta, state, RESULTS.successful)
    ```

    `solve` is exactly this loop (in a `while_loop`, stopped after `max_steps` steps
    with `RESULTS.nonlinear_max_steps_reached`), so both give the same iterates. All
    the methods can be traced (`jax.jit`, `jax.vmap`); the state is an
    `equinox.Module` ([`implicitx.solvers.AbstractIterativeState`][]), `state.x` is
    the current iterate.

    **Arguments:**

    - `rtol`, `atol`: the stopping tolerances (each solver says what they bound).
        `None` (the default) means `max(1e-8, 100 eps)` for the machine epsilon `eps`
        of `x`'s dtype: `1e-8` in float64, about `1.2e-5` in float32.
    - `max_steps`: the maximum number of steps taken by `solve`; reaching it is
        reported as a failure.
    """

    rtol: float | None = None
    atol: float | None = None
    max_steps: int = eqx.field(default=10_000, static=True)

    @abc.abstractmethod
    def init(
        self,
        condition: AbstractCondition,
        theta: PyTree[ArrayLike],
        x0: PyTree[ArrayLike] | None,
    ) -> _State:
        """The state before the first step, at the initial guess `x0`. Raises a
        `TypeError` if the solver cannot solve `condition`, a `ValueError` if `x0` is
        missing."""

    @abc.abstractmethod
    def step(
        self,
        condition: AbstractCondition,
        theta: PyTree[ArrayLike],
        state: _State,
        *,
        while_loop: WhileLoop = lax_while_loop,
    ) -> _State:
        """One step of the method. `while_loop` runs the step's inner loops (line
        searches), as for `solve`."""

    def terminate(self, condition, theta, state) -> tuple[Bool[Array, ""], RESULTS]:
        """Whether to stop, and the result code if so: `successful` once the last
        step met the stopping criterion, `nonfinite_iterate` as soon as the state
        (iterate, objective, gradient, step size: every inexact leaf) is not finite.
        The step limit is `solve`'s."""
        del condition, theta
        return stop_or_nonfinite(state.converged, state)

    def postprocess(self, condition, theta, state, result) -> Solution:
        """The [`implicitx.Solution`][] of a final `state`, with the result code of
        the run (from `terminate`, or `nonlinear_max_steps_reached`)."""
        del condition, theta
        return Solution(value=state.x, result=result, aux=None, stats=stats(state))

    def solve(self, condition, theta, x0, *, while_loop=lax_while_loop) -> Solution:
        return run_steps(self, condition, theta, x0, while_loop)


def stats(state: AbstractIterativeState) -> dict[str, PyTree[Array]]:
    return {"num_steps": state.num_steps}


_X = TypeVar("_X")


def require_x0(x0: _X | None, solver: AbstractSolver) -> _X:
    if x0 is None:
        raise ValueError(
            f"`{type(solver).__name__}` needs an initial guess: pass `x0=` to "
            "`ImplicitArgmin(...)` or to the call `argmin(theta, x0)`."
        )
    return x0


def run_steps(
    solver: AbstractIterativeSolver,
    condition,
    theta,
    x0,
    while_loop: WhileLoop,
) -> Solution:
    """`solver.solve`: `solver.init`, then `solver.step` until `solver.terminate`
    says stop or for `solver.max_steps` steps, then `solver.postprocess`.

    The loop is `while_loop`, the one the adjoint handed the solver (see
    `implicitx._while_loops`); it also runs the steps' inner loops. The result is
    `terminate`'s, or `nonlinear_max_steps_reached`.
    """

    def cond(state):
        done, _ = solver.terminate(condition, theta, state)
        return jnp.logical_and(jnp.logical_not(done), state.num_steps < max_steps)

    def body(state):
        return solver.step(condition, theta, state, while_loop=while_loop)

    max_steps = solver.max_steps
    state = solver.init(condition, theta, x0)
    state = while_loop(cond, body, state, max_steps=max_steps)
    done, result = solver.terminate(condition, theta, state)
    failed = RESULTS.nonlinear_max_steps_reached
    result = RESULTS.where(done, result, failed)  # pyright: ignore[reportArgumentType]
    return solver.postprocess(condition, theta, state, result)
