"""Forward solvers that run outside JAX (SciPy, scikit-learn, CVXPY, any Python code),
reached through `jax.pure_callback`. Their solutions are differentiated by implicitx's
rule from the condition, as for any other solver."""

import abc
import importlib
import traceback
import warnings
from collections.abc import Callable
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
from jaxtyping import ArrayLike, PyTree

from .._conditions import AbstractCondition, AbstractObjectiveCondition
from .._results import RESULTS
from .._solution import Solution
from .._while_loops import lax_while_loop
from ._base import AbstractSolver, require_x0


# The PyPI names of the optional dependencies, by top-level module.
_PACKAGES = {"sklearn": "scikit-learn"}


def require(module: str, extra: str = "external") -> Any:
    """Imports an optional dependency, or raises an error saying how to install it
    (the external solvers' dependencies are the `external` extra)."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        top = module.split(".")[0]
        package = _PACKAGES.get(top, top)
        raise ImportError(
            f"This solver needs the optional dependency `{package}` (to import "
            f"`{module}`): `pip install {package}`, or "
            f"`pip install 'implicitx[{extra}]'` for all the external solvers' "
            "dependencies."
        ) from e


def _all_finite(tree) -> bool:
    return all(np.all(np.isfinite(leaf)) for leaf in jtu.tree_leaves(tree))


def _has_nan(tree) -> bool:
    return any(
        np.any(np.isnan(np.asarray(leaf)))
        for leaf in jtu.tree_leaves(tree)
        if np.issubdtype(np.asarray(leaf).dtype, np.inexact)
    )


def _host_solve(fn, structure, theta, x0, name) -> tuple[Any, bool]:
    """Runs `fn` on NumPy values; NaN inputs, any exception or a non-finite output
    is a failure, reported with its traceback as a warning and as a `False` flag."""
    try:
        if _has_nan(theta):
            # A solver fed NaN may well return a finite point (often `x0`) and
            # report success: that point is not the solution of any problem.
            raise ValueError(
                "the inputs (`theta`, or the condition's arrays) contain NaN."
            )
        out = fn(theta, x0)
        if out is None:
            raise RuntimeError("the solver returned no solution (`None`).")
        out = jtu.tree_map(
            lambda o, s: np.asarray(o, dtype=s.dtype).reshape(s.shape), out, structure
        )
        finite = _all_finite(out)
        if not finite:
            warnings.warn(f"{name} returned non-finite values.", stacklevel=1)
        return out, finite
    except Exception:
        warnings.warn(
            f"{name} raised an exception:\n{traceback.format_exc()}", stacklevel=1
        )
        nan = jtu.tree_map(lambda s: np.full(s.shape, np.nan, s.dtype), structure)
        return nan, False


class _AbstractHostSolver(AbstractSolver):
    """A solver that runs on the host (`jax.pure_callback`): JAX cannot differentiate
    through it, so it cannot be unrolled."""

    can_unroll: ClassVar[bool] = False

    @abc.abstractmethod
    def _host_problem(
        self, condition: AbstractCondition, theta: PyTree[ArrayLike]
    ) -> tuple[Callable[[Any, Any], Any], PyTree[ArrayLike]]:
        """`(fn, args)`: the host function `fn(args, x0) -> x` on NumPy values, and
        its JAX arguments (`theta`, and the condition's arrays if `fn` needs them).
        Raises a `TypeError` if the condition does not suit the solver."""

    def solve(self, condition, theta, x0, *, while_loop=lax_while_loop) -> Solution:
        del while_loop  # a host call: no loop of JAX's
        fn, args = self._host_problem(condition, theta)
        return _callback_solve(self, fn, args, x0)


class ExternalSolver(_AbstractHostSolver):
    """Any Python function of NumPy arrays as a forward solver: scikit-learn
    estimators, SciPy, a C library, a hand-written reference, ...

    ```python
    from sklearn.linear_model import Lasso

    def fit(theta, x0):
        model = Lasso(alpha=float(theta["alpha"]), fit_intercept=False, tol=1e-12)
        return model.fit(X, theta["y"]).coef_

    argmin = ix.ImplicitArgmin(lasso_condition, ix.solvers.ExternalSolver(fit),
                               x0=jnp.zeros(d))
    ```

    The function runs on the host through `jax.pure_callback` (so it works under
    `jit`; under `vmap` it is called once per batch element). It is never
    differentiated: derivatives come from the condition. If `theta` contains NaN, or
    `fn` raises or returns non-finite values, the result is
    `RESULTS.external_solver_failed` (an error under
    `throw=True`) and the exception is shown as a warning; in a batch, the result code
    says which elements failed.

    **Arguments:**

    - `fn`: `fn(theta, x0) -> x` on NumPy arrays (`theta` and `x0` as NumPy
        PyTrees). The output is converted to the structure, shape and dtype of `x0`.
    - `vmap_method`: how `jax.vmap` calls `fn`: `"sequential"` (default, one call per
        element) or any other `jax.pure_callback` `vmap_method`.
    """

    fn: Callable[[Any, Any], Any]
    vmap_method: str = eqx.field(default="sequential", static=True)

    def _host_problem(
        self, condition: AbstractCondition, theta: PyTree[ArrayLike]
    ) -> tuple[Callable[[Any, Any], Any], PyTree[ArrayLike]]:
        del condition
        return self.fn, theta


def _callback_solve(solver, fn, args, x0) -> Solution:
    x0 = jtu.tree_map(jnp.asarray, require_x0(x0, solver))
    structure = jax.eval_shape(lambda: x0)
    name = f"The external solver `{type(solver).__name__}`"

    def host(args, x0):
        args = jtu.tree_map(np.asarray, args)
        x0 = jtu.tree_map(np.asarray, x0)
        value, ok = _host_solve(fn, structure, args, x0, name)
        return value, np.asarray(ok)

    out_shape = (structure, jax.ShapeDtypeStruct((), jnp.bool_))
    vmap_method = getattr(solver, "vmap_method", "sequential")
    value, ok = jax.pure_callback(host, out_shape, args, x0, vmap_method=vmap_method)
    good, failed = RESULTS.successful, RESULTS.external_solver_failed
    result = RESULTS.where(ok, good, failed)  # pyright: ignore[reportArgumentType]
    return Solution(value=value, result=result, aux=None, stats={})


class ScipyMinimize(_AbstractHostSolver):
    """`scipy.optimize.minimize` as a forward solver for a condition with a smooth
    objective (e.g. [`implicitx.Stationarity`][]). The objective and its gradient are
    compiled JAX functions called from SciPy.

    **Arguments:**

    - `method`: the SciPy method, e.g. `"L-BFGS-B"` (default), `"BFGS"`,
        `"trust-exact"`, ...
    - `tol`: SciPy's `tol`.
    - `options`: SciPy's `options` dict (e.g. `{"maxiter": 1000}`), as a tuple of
        pairs or a dict.
    - `gradient_tol`: a result that SciPy flags as unsuccessful is still accepted when
        `max|grad f| <= gradient_tol` there (SciPy's line searches often stop with
        "precision loss" at a point as accurate as the floating-point objective
        allows). Otherwise it is a failure.

    A non-finite objective or gradient at the returned point, or NaN in `theta` or
    in the condition's arrays, is a failure (`RESULTS.external_solver_failed`),
    whatever SciPy reports.
    """

    method: str = eqx.field(default="L-BFGS-B", static=True)
    tol: float = eqx.field(default=1e-10, static=True)
    options: tuple[tuple[str, Any], ...] = eqx.field(default=(), static=True)
    gradient_tol: float = eqx.field(default=1e-8, static=True)

    def __init__(self, method="L-BFGS-B", tol=1e-10, options=(), gradient_tol=1e-8):
        self.method = method
        self.tol = tol
        self.options = tuple(dict(options).items())
        self.gradient_tol = gradient_tol

    def _host_problem(
        self, condition: AbstractCondition, theta: PyTree[ArrayLike]
    ) -> tuple[Callable[[Any, Any], Any], PyTree[ArrayLike]]:
        if not isinstance(condition, AbstractObjectiveCondition):
            raise TypeError(
                "`ScipyMinimize` needs a condition with an objective (e.g. "
                f"`Stationarity`), got `{type(condition).__name__}`."
            )
        scipy_optimize = require("scipy.optimize")
        dynamic, static = eqx.partition(condition, eqx.is_array)
        method, tol, options = self.method, self.tol, dict(self.options)
        gradient_tol = self.gradient_tol

        @jax.jit
        def value_and_grad(x, dynamic, theta):
            objective = eqx.combine(dynamic, static).objective_value
            return jax.value_and_grad(objective)(x, theta)

        def fn(args, x0):
            dynamic, theta = args
            shape, dtype = x0.shape, x0.dtype

            def fun(flat):
                v, g = value_and_grad(flat.reshape(shape).astype(dtype), dynamic, theta)
                return float(v), np.asarray(g, dtype=np.float64).reshape(-1)

            res = scipy_optimize.minimize(
                fun, x0.reshape(-1), jac=True, method=method, tol=tol, options=options
            )
            value, grad = fun(res.x)
            # Written so that NaN fails: SciPy's own tests compare NaN norms (False)
            # and may report success at `x0`.
            if not (np.isfinite(value) and np.all(np.isfinite(grad))):
                raise RuntimeError(
                    "scipy.optimize.minimize: the objective or its gradient is not "
                    f"finite at the returned point ({res.message})."
                )
            if not (res.success or np.max(np.abs(grad), initial=0.0) <= gradient_tol):
                raise RuntimeError(f"scipy.optimize.minimize: {res.message}")
            return res.x.reshape(shape)

        return fn, (dynamic, theta)


class ScipyRoot(_AbstractHostSolver):
    """`scipy.optimize.root` as a forward solver for any condition (a root of its
    residual `F(x, theta)`), with the Jacobian `dF/dx` from JAX.

    **Arguments:**

    - `method`: the SciPy method, e.g. `"hybr"` (default), `"lm"`, ...
    - `tol`: SciPy's `tol`.

    A non-finite residual or Jacobian at the returned point, or NaN in `theta` or in
    the condition's arrays, is a failure (`RESULTS.external_solver_failed`).
    """

    method: str = eqx.field(default="hybr", static=True)
    tol: float = eqx.field(default=1e-12, static=True)

    def _host_problem(
        self, condition: AbstractCondition, theta: PyTree[ArrayLike]
    ) -> tuple[Callable[[Any, Any], Any], PyTree[ArrayLike]]:
        scipy_optimize = require("scipy.optimize")
        dynamic, static = eqx.partition(condition, eqx.is_array)
        method, tol = self.method, self.tol

        @jax.jit
        def residual_and_jacobian(x, dynamic, theta):
            residual = lambda y: eqx.combine(dynamic, static)(y, theta)
            return residual(x), jax.jacfwd(residual)(x)

        def fn(args, x0):
            dynamic, theta = args
            shape, dtype = x0.shape, x0.dtype

            def fun(flat):
                r, J = residual_and_jacobian(
                    flat.reshape(shape).astype(dtype), dynamic, theta
                )
                n = flat.size
                return np.asarray(r).reshape(-1), np.asarray(J).reshape(n, n)

            res = scipy_optimize.root(
                fun, x0.reshape(-1), jac=True, method=method, tol=tol
            )
            residual, jacobian = fun(res.x)
            if not (np.all(np.isfinite(residual)) and np.all(np.isfinite(jacobian))):
                raise RuntimeError(
                    "scipy.optimize.root: the residual or its Jacobian is not finite "
                    f"at the returned point ({res.message})."
                )
            if not res.success:
                raise RuntimeError(f"scipy.optimize.root: {res.message}")
            return res.x.reshape(shape)

        return fn, (dynamic, theta)


class ScipyLinprog(_AbstractHostSolver):
    """`scipy.optimize.linprog` (HiGHS) as a forward solver for linear programs
    `min c^T x  s.t.  A_ub x <= b_ub, A_eq x = b_eq`.

    The problem data come from a host function of `theta`; the derivatives come from
    the condition, typically a [`implicitx.ProjectedGradientFixedPoint`][] with the
    objective `c^T x` and the polyhedron as projection (an LP solution `x*` satisfies
    `x* = P_C(x* - eta c)` for every `eta > 0`). Derivatives exist at non-degenerate
    vertices, where `x*` is locally an affine function of `b_ub`, `b_eq`, `A_ub`,
    `A_eq` (and locally constant in `c`).

    **Arguments:**

    - `data`: `data(theta) -> dict` on NumPy values, with keys among `c`, `A_ub`,
        `b_ub`, `A_eq`, `b_eq`, `bounds` (as `scipy.optimize.linprog`; variables are
        free unless `bounds` says otherwise).
    - `method`: the SciPy method. Default `"highs"`.
    """

    data: Callable[[Any], dict] = eqx.field(static=True)
    method: str = eqx.field(default="highs", static=True)

    def _host_problem(
        self, condition: AbstractCondition, theta: PyTree[ArrayLike]
    ) -> tuple[Callable[[Any, Any], Any], PyTree[ArrayLike]]:
        del condition
        scipy_optimize = require("scipy.optimize")
        data, method = self.data, self.method

        def fn(theta, x0):
            problem = dict(data(theta))
            if _has_nan(problem):  # infinite bounds and right-hand sides are allowed
                raise ValueError(
                    "scipy.optimize.linprog: the problem data contain NaN."
                )
            problem.setdefault("bounds", (None, None))
            res = scipy_optimize.linprog(method=method, **problem)
            if res.status != 0 or res.x is None:
                raise RuntimeError(f"scipy.optimize.linprog: {res.message}")
            return res.x

        return fn, theta


class CvxpySolver(_AbstractHostSolver):
    """A CVXPY problem as a forward solver. The problem is written once with
    `cvxpy.Parameter`s; each solve sets the parameters from `theta` and returns the
    value of the variable.

    ```python
    x = cp.Variable(d)
    alpha, target = cp.Parameter(nonneg=True), cp.Parameter(n)
    problem = cp.Problem(cp.Minimize(cp.sum_squares(X @ x - target) / (2 * n)
                                     + alpha * cp.norm1(x)))
    solver = ix.solvers.CvxpySolver(problem, x, {"alpha": alpha, "y": target})
    ```

    The solution is differentiated through the matching condition (here a
    `ProximalGradientFixedPoint` with an L1 prox), not through CVXPY. A status other
    than optimal is reported as `RESULTS.external_solver_failed`.

    **Arguments:**

    - `problem`: a `cvxpy.Problem`.
    - `variable`: the `cvxpy.Variable` that is the solution `x`.
    - `parameters`: a PyTree with the structure of `theta` whose leaves are the
        `cvxpy.Parameter`s to set from the corresponding leaves of `theta` (use
        `None` for leaves of `theta` that the problem does not use).
    - `solve_kwargs`: keyword arguments of `problem.solve` (e.g.
        `{"solver": "CLARABEL"}`), as a dict.
    """

    problem: Any = eqx.field(static=True)
    variable: Any = eqx.field(static=True)
    parameters: Any = eqx.field(static=True)
    solve_kwargs: tuple[tuple[str, Any], ...] = eqx.field(default=(), static=True)

    def __init__(self, problem, variable, parameters, solve_kwargs=()):
        cp = require("cvxpy")
        if not isinstance(problem, cp.Problem):
            raise TypeError("`problem` must be a `cvxpy.Problem`.")
        self.problem = problem
        self.variable = variable
        self.parameters = parameters
        self.solve_kwargs = tuple(dict(solve_kwargs).items())

    def _host_problem(
        self, condition: AbstractCondition, theta: PyTree[ArrayLike]
    ) -> tuple[Callable[[Any, Any], Any], PyTree[ArrayLike]]:
        del condition
        problem, variable, kwargs = self.problem, self.variable, dict(self.solve_kwargs)
        parameters = self.parameters

        def fn(theta, x0):
            del x0
            pairs = jtu.tree_leaves(
                jtu.tree_map(
                    lambda p, t: (p, t), parameters, theta, is_leaf=lambda z: z is None
                ),
                is_leaf=lambda z: isinstance(z, tuple),
            )
            for parameter, value in pairs:
                if parameter is not None:
                    parameter.value = np.asarray(value)
            problem.solve(**kwargs)
            if problem.status not in ("optimal", "optimal_inaccurate"):
                raise RuntimeError(f"CVXPY status: {problem.status}")
            if variable.value is None:
                raise RuntimeError("CVXPY returned no value for the variable.")
            return variable.value

        return fn, theta


class ScipyConstrainedMinimize(_AbstractHostSolver):
    """`scipy.optimize.minimize` with SciPy's SLSQP, for a smooth constrained problem
    stated by its KKT conditions ([`implicitx.KKT`][]):
    `min f(z, theta) s.t. H(z, theta) = 0, G(z, theta) <= 0`. The objective,
    the constraints and their Jacobians are compiled JAX functions called from
    SciPy; the answer is the primal-dual triple `(z, nu, lam)` (SLSQP's Lagrange
    multipliers, with the signs of `f + nu . H + lam . G`), whose derivatives come
    from the KKT conditions.

    The condition is asked for `objective`, `equalities` and `inequalities` (the
    fields of [`implicitx.KKT`][]); `z` must be a vector. A run that SLSQP does
    not report as successful, non-finite values, or NaN in `theta` are a failure
    (`RESULTS.external_solver_failed`, with SciPy's message as a warning). Needs
    SciPy 1.16 or newer (for SLSQP's multipliers).

    **Arguments:**

    - `tol`: SciPy's `tol`. Default `1e-12`.
    - `options`: SciPy's `options` dict (e.g. `{"maxiter": 500}`).
    """

    tol: float = eqx.field(default=1e-12, static=True)
    options: tuple[tuple[str, Any], ...] = eqx.field(default=(), static=True)

    def __init__(self, tol=1e-12, options=()):
        self.tol = tol
        self.options = tuple(dict(options).items())

    def _host_problem(
        self, condition: AbstractCondition, theta: PyTree[ArrayLike]
    ) -> tuple[Callable[[Any, Any], Any], PyTree[ArrayLike]]:
        if not all(
            hasattr(condition, name)
            for name in ("objective", "equalities", "inequalities")
        ):
            raise TypeError(
                "`ScipyConstrainedMinimize` needs a condition that states its "
                "problem by `objective`, `equalities` and `inequalities`, such as "
                f"`implicitx.KKT`; got `{type(condition).__name__}`."
            )
        scipy_optimize = require("scipy.optimize")
        dynamic, static = eqx.partition(condition, eqx.is_array)
        tol, options = self.tol, dict(self.options)

        def constraint(c, name, z, theta):
            fn = getattr(c, name)
            if fn is None:
                return jnp.zeros((0,), z.dtype), jnp.zeros((0, z.shape[0]), z.dtype)
            return jnp.asarray(fn(z, theta)), jax.jacfwd(fn)(z, theta)

        @jax.jit
        def pieces(z, dynamic, theta):
            c = eqx.combine(dynamic, static)
            value, grad = jax.value_and_grad(c.objective)(z, theta)
            return (
                value,
                grad,
                *constraint(c, "equalities", z, theta),
                *constraint(c, "inequalities", z, theta),
            )

        def fn(args, x0):
            dynamic, theta = args
            z0, nu0, _ = x0
            dtype = z0.dtype

            def at(z):
                out = pieces(np.asarray(z, dtype), dynamic, theta)
                return [np.asarray(o, np.float64) for o in out]

            constraints = []
            if nu0.shape[0]:
                constraints.append(
                    {"type": "eq", "fun": lambda z: at(z)[2], "jac": lambda z: at(z)[3]}
                )
            if x0[2].shape[0]:  # SciPy's inequalities are `-G >= 0`
                constraints.append(
                    {
                        "type": "ineq",
                        "fun": lambda z: -at(z)[4],
                        "jac": lambda z: -at(z)[5],
                    }
                )
            res = scipy_optimize.minimize(
                lambda z: tuple(at(z)[:2]),
                np.asarray(z0, np.float64),
                jac=True,
                method="SLSQP",
                constraints=constraints,
                tol=tol,
                options=options,
            )
            if not res.success:
                raise RuntimeError(f"scipy.optimize.minimize (SLSQP): {res.message}")
            multipliers = getattr(res, "multipliers", None)
            if multipliers is None:
                raise RuntimeError(
                    "this SciPy's SLSQP returns no Lagrange multipliers: SciPy 1.16 "
                    "or newer is needed."
                )
            # SLSQP's Lagrangian is `f - mu . h - mu' . c` (equalities first, then
            # the inequalities `c = -G >= 0`).
            p = nu0.shape[0]
            multipliers = np.asarray(multipliers, np.float64)
            return res.x, -multipliers[:p], multipliers[p:]

        return fn, (dynamic, theta)
