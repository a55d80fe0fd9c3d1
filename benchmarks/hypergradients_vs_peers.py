"""Hypergradients (the gradient of an outer loss with respect to hyperparameters,
forward solve included) computed by implicitx against JAXopt 0.8.5 and against
optimistix's own `ImplicitAdjoint`, on identical problems with the same forward
algorithm, the same tolerance and the same starting point, side by side in one
process:

- ridge regression through `custom_root` (closed-form forward solve), with each
  library's default backward solve, then with both forced to LU and to CG;
- the lasso (proximal gradient), gradient with respect to the l1 strength;
- the multiclass SVM dual (projected gradient; mirror descent), gradient with respect
  to the regularisation;
- l2-regularised logistic regression with optimistix BFGS and Newton, gradient with
  respect to the log of the l2 strength.

Each row is run in float64 and float32. The gradients are also compared with an
independent float64 reference: autodiff of the closed form (ridge), or a central
finite difference of the outer loss with tight forward solves (the others).

    python benchmarks/hypergradients_vs_peers.py [--quick]
"""

import argparse
import functools as ft
import importlib.util
import os
import traceback

import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np

import implicitx as ix
from _common import PeersRow, results_name, time_call, write_results
from _problems import (
    central_difference,
    lasso_alpha,
    lasso_data,
    lasso_smooth,
    log_loss,
    logistic_data,
    logistic_objective,
    ridge_closed_form,
    ridge_data,
    ridge_objective,
    RIDGE_THETA,
    SIMPLICES,
    squared_error,
    svm_data,
    svm_dual,
    svm_validation_loss,
    uniform_beta,
)


jax.config.update("jax_enable_x64", True)

HAVE_JAXOPT = importlib.util.find_spec("jaxopt") is not None
HAVE_OPTX = importlib.util.find_spec("optimistix") is not None
if HAVE_JAXOPT:
    import jaxopt
    import jaxopt.version
if HAVE_OPTX:
    import optimistix as optx

# Forward (and, where set explicitly, backward) tolerance per dtype: a float32 solve
# cannot reach a float64 tolerance.
TOL = {jnp.float64: 1e-10, jnp.float32: 1e-5}
REPEATS = 7


# JAXopt's default backward solve (`custom_root`, and every solver's
# `implicit_diff_solve=None`): CG on the normal equations, at jax's default tolerance.
JAXOPT_DEFAULT = "JAXopt solve_normal_cg (jax cg, tol 1e-5)"
# optimistix's `ImplicitAdjoint()`: `lineax.AutoLinearSolver(well_posed=None)`, LU for
# an untagged square operator (`minimise` and `root_find` pass no tags by default).
OPTX_DEFAULT = "optx AutoLinearSolver (LU)"


def _ix_default(size, dtype, tags=frozenset()):
    """The backward solver that implicitx's default `ImplicitAdjoint()` picks for a
    system of this size, dtype and structure (`A`'s tags, from the condition), asked
    from the library itself."""
    try:
        from implicitx._linear_solve import default_solver

        operator = lx.MatrixLinearOperator(jnp.zeros((size, size), dtype), tags)
        solver = default_solver(operator)
        if isinstance(solver, lx.AutoLinearSolver):
            return "ix dense " + type(solver.select_solver(operator)).__name__
        return f"ix {type(solver).__name__} (tol {solver.rtol:.2g})"
    except Exception:  # a private helper: only used for the label
        return "ix ImplicitAdjoint() default"


def _jaxopt_name():
    return f"JAXopt {jaxopt.version.__version__}" if HAVE_JAXOPT else "JAXopt"


def _optx_name():
    return f"optimistix {optx.__version__}" if HAVE_OPTX else "optimistix"


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _try(fn, *args):
    """`time_call` and value of `fn(*args)`, or the error's name."""
    try:
        compile_time, run_time = time_call(fn, *args, repeats=REPEATS)
        gradient, steps = fn(*args)
        return compile_time, run_time, np.asarray(gradient), int(steps), None
    except Exception as e:  # reported in the table, never hidden
        traceback.print_exc()
        return None, None, None, None, f"error: {type(e).__name__}"


def compare(problem, dtype, peer, backward, ours, theirs, args, reference):
    """One table row: implicitx's `ours(*args)` against the peer's `theirs(*args)`
    (both jitted, returning the hypergradient and the number of forward steps, -1
    for a closed-form solve). `theirs` is `None` when the peer is not installed."""
    name = jnp.dtype(dtype).name
    print(f"{problem} [{name}] vs {peer} ({backward})", flush=True)
    c_ours, t_ours, g_ours, s_ours, err_ours = _try(ours, *args)
    if theirs is None:
        c_theirs = t_theirs = g_theirs = s_theirs = None
        err_theirs = "skipped"
    else:
        c_theirs, t_theirs, g_theirs, s_theirs, err_theirs = _try(theirs, *args)
    both = not (err_ours or err_theirs)

    def ref(g, err):
        return "-" if reference is None or err else _rel(g, reference)

    def steps(s, err):
        return "-" if err or s < 0 else str(s)

    return [
        problem,
        name,
        peer,
        backward,
        f"{steps(s_ours, err_ours)} / {steps(s_theirs, err_theirs)}",
        err_ours or 1e3 * t_ours,
        err_theirs or 1e3 * t_theirs,
        t_ours / t_theirs if both else "-",
        _rel(g_ours, g_theirs) if both else "-",
        ref(g_ours, err_ours),
        ref(g_theirs, err_theirs),
        "-" if err_ours else c_ours,
        "-" if err_theirs else c_theirs,
    ]


def _cast(dtype, *arrays):
    return tuple(jnp.asarray(a, dtype) for a in arrays)


def _at(loss, *data):
    """`theta -> loss(*data, theta)`, for `central_difference` (theta a float)."""
    return lambda theta: loss(*data, jnp.asarray(theta))


# --------------------------------------------------------------------------- ridge


def ridge_rows(d, dtypes, quick):
    n = 2 * d
    X0, y0, target0 = ridge_data(d)
    theta0 = RIDGE_THETA
    F = jax.grad(ridge_objective)
    definite = frozenset({lx.symmetric_tag, lx.negative_semidefinite_tag})

    @jax.jit
    def reference_grad(X, y, target, theta):
        loss = lambda t: squared_error(ridge_closed_form(t, X, y), target)
        return jax.grad(loss)(theta)

    reference = reference_grad(*_cast(jnp.float64, X0, y0, target0, theta0))
    rows = []
    for dtype in dtypes:
        tol = TOL[dtype]
        args = _cast(dtype, X0, y0, target0, theta0)

        def ours(**kwargs):
            solver = ix.custom_root(F, **kwargs)(ridge_closed_form)

            @jax.jit
            def grad(X, y, target, theta):
                loss = lambda t: squared_error(solver(t, X, y), target)
                return jax.grad(loss)(theta), -1

            return grad

        def theirs(**kwargs):
            if not HAVE_JAXOPT:
                return None
            solver = jaxopt.implicit_diff.custom_root(F, **kwargs)(
                lambda init, theta, X, y: ridge_closed_form(theta, X, y)
            )

            @jax.jit
            def grad(X, y, target, theta):
                loss = lambda t: squared_error(solver(None, t, X, y), target)
                return jax.grad(loss)(theta), -1

            return grad

        variants = [
            (
                f"defaults: {_ix_default(d, dtype)} / {JAXOPT_DEFAULT}",
                ours(),
                theirs(),
            ),
            (
                "both LU",
                ours(linear_solver=lx.LU()),
                theirs(solve=jaxopt.linear_solve.solve_lu) if HAVE_JAXOPT else None,
            ),
            (
                f"both CG (tol {tol:g})",
                ours(linear_solver=lx.CG(rtol=tol, atol=tol), tags=definite),
                theirs(solve=ft.partial(jaxopt.linear_solve.solve_cg, tol=tol))
                if HAVE_JAXOPT
                else None,
            ),
        ]
        # --quick: each library's defaults only.
        for backward, ours_fn, theirs_fn in variants[:1] if quick else variants:
            rows.append(
                compare(
                    f"ridge custom_root n={n} d={d}",
                    dtype,
                    _jaxopt_name(),
                    backward,
                    ours_fn,
                    theirs_fn,
                    args,
                    reference,
                )
            )
    return rows


# --------------------------------------------------------------------------- lasso


def _ix_lasso(X, y, tol, max_steps, **options):
    return ix.ImplicitArgmin(
        ix.ProximalGradientFixedPoint(
            lambda w, alpha: lasso_smooth(w, X, y), lambda alpha: ix.prox.L1(alpha)
        ),
        ix.solvers.ProximalGradient(rtol=tol, atol=tol, max_steps=max_steps, **options),
        x0=jnp.zeros(X.shape[1], X.dtype),
    )


def _lasso_grads(tol, maxiter, stepsize):
    """Jitted `(X, y, X_val, y_val, alpha) -> (hypergradient, steps)` of implicitx
    and JAXopt (`None` if not installed). `stepsize=None`: each library's FISTA with
    its line search; else plain proximal gradient with that fixed step on both
    (then both compute the same iterates)."""
    if stepsize is None:
        ours_options, their_options = {}, {}
    else:
        ours_options = dict(stepsize=stepsize, acceleration=False)
        their_options = dict(stepsize=stepsize, acceleration=False)

    @jax.jit
    def ours(X, y, X_val, y_val, alpha):
        argmin = _ix_lasso(X, y, tol, maxiter, **ours_options)

        def loss(a):
            sol = argmin.solve(a)
            return lasso_smooth(sol.value, X_val, y_val), sol.stats["num_steps"]

        return jax.grad(loss, has_aux=True)(alpha)

    theirs = None
    if HAVE_JAXOPT:
        pg = jaxopt.ProximalGradient(
            fun=lasso_smooth,
            prox=jaxopt.prox.prox_lasso,
            tol=tol,
            maxiter=maxiter,
            implicit_diff=True,
            **their_options,
        )

        @jax.jit
        def theirs(X, y, X_val, y_val, alpha):
            w0 = jnp.zeros(X.shape[1], X.dtype)

            def loss(a):
                sol = pg.run(w0, a, X, y)
                return lasso_smooth(sol.params, X_val, y_val), sol.state.iter_num

            return jax.grad(loss, has_aux=True)(alpha)

    return ours, theirs


def lasso_rows(n, d, dtypes, quick):
    data0 = lasso_data(n, d)
    X, y = data0[0], data0[1]
    alpha0 = lasso_alpha(X, y)
    maxiter = 100_000

    @jax.jit
    def tight_loss(X, y, X_val, y_val, alpha):
        w = _ix_lasso(X, y, 1e-14, maxiter)(alpha)
        return lasso_smooth(w, X_val, y_val)

    data64 = _cast(jnp.float64, *data0)
    h = 1e-6 * alpha0
    reference = central_difference(_at(tight_loss, *data64), alpha0, h)
    lipschitz = float(np.linalg.eigvalsh(X.T @ X / n)[-1])
    variants = (("FISTA, line search", None), ("ISTA, step 1/L", 1 / lipschitz))
    tags = _ix_lasso(X, y, 1e-8, 1).condition.tags
    rows = []
    for dtype in dtypes:
        tol = TOL[dtype]
        args = _cast(dtype, *data0, alpha0)
        for method, stepsize in variants[:1] if quick else variants:
            ours, theirs = _lasso_grads(tol, maxiter, stepsize)
            rows.append(
                compare(
                    f"lasso n={n} d={d} ({method})",
                    dtype,
                    _jaxopt_name(),
                    f"defaults: {_ix_default(d, dtype, tags)} / {JAXOPT_DEFAULT}",
                    ours,
                    theirs,
                    args,
                    reference,
                )
            )
    return rows


# ----------------------------------------------------------------------------- SVM


def _ix_svm_pg(X, Y, tol, max_steps, **options):
    return ix.ImplicitArgmin(
        ix.ProjectedGradientFixedPoint(
            lambda beta, lam: svm_dual(beta, lam, X, Y), SIMPLICES
        ),
        ix.solvers.ProjectedGradient(
            rtol=tol, atol=tol, max_steps=max_steps, **options
        ),
        x0=uniform_beta(Y),
    )


def _ix_svm_md(X, Y, stepsize, tol, max_steps):
    return ix.ImplicitArgmin(
        ix.MirrorDescentFixedPoint(
            lambda beta, lam: svm_dual(beta, lam, X, Y),
            ix.mirror.NegativeEntropySimplex(),
            stepsize=stepsize,
        ),
        ix.solvers.MirrorDescent(rtol=tol, atol=tol, max_steps=max_steps),
        x0=uniform_beta(Y),
    )


def _svm_grads(tol, maxiter, md_stepsize, pg_stepsize):
    """Jitted `(X, Y, X_val, Y_val, lam) -> (hypergradient, steps)` of implicitx
    and JAXopt (`None` if not installed), projected gradient then mirror descent.
    `pg_stepsize=None`: each library's accelerated projected gradient with its line
    search; else plain projected gradient with that fixed step on both."""
    options = {}
    if pg_stepsize is not None:
        options = dict(stepsize=pg_stepsize, acceleration=False)

    @jax.jit
    def ours_pg(X, Y, X_val, Y_val, lam):
        argmin = _ix_svm_pg(X, Y, tol, maxiter, **options)

        def loss(t):
            sol = argmin.solve(t)
            outer = svm_validation_loss(sol.value, t, X, Y, X_val, Y_val)
            return outer, sol.stats["num_steps"]

        return jax.grad(loss, has_aux=True)(lam)

    @jax.jit
    def ours_md(X, Y, X_val, Y_val, lam):
        argmin = _ix_svm_md(X, Y, md_stepsize, tol, maxiter)

        def loss(t):
            sol = argmin.solve(t)
            outer = svm_validation_loss(sol.value, t, X, Y, X_val, Y_val)
            return outer, sol.stats["num_steps"]

        return jax.grad(loss, has_aux=True)(lam)

    theirs_pg = theirs_md = None
    if HAVE_JAXOPT:
        pgd = jaxopt.ProjectedGradient(
            fun=svm_dual,
            projection=lambda beta, hp: jax.vmap(jaxopt.projection.projection_simplex)(
                beta
            ),
            tol=tol,
            maxiter=maxiter,
            implicit_diff=True,
            **options,
        )
        md = jaxopt.MirrorDescent(
            fun=svm_dual,
            projection_grad=jaxopt.MirrorDescent.make_projection_grad(
                projection=lambda z, hp: jax.nn.softmax(z, axis=-1),
                mapping_fun=jnp.log,
            ),
            stepsize=md_stepsize,
            tol=tol,
            maxiter=maxiter,
            implicit_diff=True,
        )

        def _theirs(solver):
            @jax.jit
            def grad(X, Y, X_val, Y_val, lam):
                beta0 = uniform_beta(Y)

                def loss(t):
                    sol = solver.run(beta0, None, t, X, Y)
                    outer = svm_validation_loss(sol.params, t, X, Y, X_val, Y_val)
                    return outer, sol.state.iter_num

                return jax.grad(loss, has_aux=True)(lam)

            return grad

        theirs_pg, theirs_md = _theirs(pgd), _theirs(md)

    return (ours_pg, theirs_pg), (ours_md, theirs_md)


def svm_rows(n, p, k, lam0, dtypes, quick, mirror):
    """Projected gradient rows (`mirror=False`; fixed-step ones only without
    `quick`), or mirror-descent rows (`mirror=True`; it needs many more steps, hence
    a smaller problem)."""
    data0 = svm_data(n, p, k)
    X = data0[0]
    # Mirror-descent step: 1 / (the largest diagonal entry of the Hessian
    # X X^T / lam), the Lipschitz constant of the gradient from l1 to l-infinity.
    md_stepsize = lam0 / float(np.max(np.sum(X**2, axis=1)))
    # Projected-gradient fixed step: 1 / L, L the largest eigenvalue of X X^T / lam.
    pg_stepsize = lam0 / float(np.linalg.eigvalsh(X @ X.T)[-1])
    maxiter = 100_000
    print(f"SVM: lam = {lam0:g}, mirror-descent step = {md_stepsize:.3g}", flush=True)

    @jax.jit
    def tight_loss(X, Y, X_val, Y_val, lam):
        beta = _ix_svm_pg(X, Y, 1e-14, maxiter)(lam)
        return svm_validation_loss(beta, lam, X, Y, X_val, Y_val)

    data64 = _cast(jnp.float64, *data0)
    reference = central_difference(_at(tight_loss, *data64), lam0, 1e-5 * lam0)
    print(f"SVM: reference hypergradient = {reference:.6g}", flush=True)
    X, Y = data0[0], data0[1]
    argmin = _ix_svm_md(X, Y, 1.0, 1e-8, 1) if mirror else _ix_svm_pg(X, Y, 1e-8, 1)
    rows = []
    for dtype in dtypes:
        tol = TOL[dtype]
        args = _cast(dtype, *data0, lam0)
        pg, md = _svm_grads(tol, maxiter, md_stepsize, None)
        if mirror:
            variants = [("mirror descent (exponentiated gradient)", md)]
        else:
            variants = [("accelerated projected gradient, line search", pg)]
            if not quick:
                pg_fixed, _ = _svm_grads(tol, maxiter, md_stepsize, pg_stepsize)
                variants.append(("projected gradient, step 1/L", pg_fixed))
        ix_solver = _ix_default(n * k, dtype, argmin.condition.tags)
        backward = f"defaults: {ix_solver} / {JAXOPT_DEFAULT}"
        for method, (ours, theirs) in variants:
            rows.append(
                compare(
                    f"SVM dual n={n} p={p} k={k} lam={lam0:g} ({method})",
                    dtype,
                    _jaxopt_name(),
                    backward,
                    ours,
                    theirs,
                    args,
                    reference,
                )
            )
    return rows


# ---------------------------------------------------- logistic regression (optimistix)


def logistic_rows(n, d, dtypes, quick):
    data0 = logistic_data(n, d)
    log_l2_0 = float(np.log(1e-2))

    @jax.jit
    def tight_loss(X, y, X_val, y_val, t):
        w = optx.root_find(
            lambda w, a: jax.grad(logistic_objective)(w, *a),
            optx.Newton(rtol=1e-13, atol=1e-13),
            jnp.zeros(X.shape[1], X.dtype),
            args=(t, X, y),
            max_steps=100,
        ).value
        return log_loss(w, X_val, y_val)

    rows = []
    if not HAVE_OPTX:  # (implicitx's own optimistix wrappers need it too)
        for dtype in dtypes:
            for method in ("BFGS", "Newton"):
                name = jnp.dtype(dtype).name
                row = [f"logistic ({method}) n={n} d={d}", name, "optimistix", "-"]
                rows.append(row + ["-", "skipped", "skipped"] + ["-"] * 6)
        return rows
    data64 = _cast(jnp.float64, *data0)
    reference = central_difference(_at(tight_loss, *data64), log_l2_0, 1e-5)
    for dtype in dtypes:
        tol = TOL[dtype]
        args = _cast(dtype, *data0, log_l2_0)

        def f(w, theta):
            return logistic_objective(w, *theta)

        def grad_f(w, theta):
            return jax.grad(logistic_objective)(w, *theta)

        def ours(condition, solver):
            @jax.jit
            def grad(X, y, X_val, y_val, t):
                argmin = ix.ImplicitArgmin(
                    condition, solver, x0=jnp.zeros(X.shape[1], X.dtype)
                )

                def loss(s):
                    sol = argmin.solve((s, X, y))
                    return log_loss(sol.value, X_val, y_val), sol.stats["num_steps"]

                return jax.grad(loss, has_aux=True)(t)

            return grad

        def theirs(entry, fn, solver):
            @jax.jit
            def grad(X, y, X_val, y_val, t):
                def loss(s):
                    sol = entry(
                        fn,
                        solver,
                        jnp.zeros(X.shape[1], X.dtype),
                        args=(s, X, y),
                        adjoint=optx.ImplicitAdjoint(),
                        max_steps=256,
                    )
                    return log_loss(sol.value, X_val, y_val), sol.stats["num_steps"]

                return jax.grad(loss, has_aux=True)(t)

            return grad

        bfgs = optx.BFGS(rtol=tol, atol=tol)
        newton = optx.Newton(rtol=tol, atol=tol)
        stationarity, root = ix.Stationarity(f, convex=True), ix.Root(grad_f)
        variants = [
            (
                "BFGS",
                f"defaults: {_ix_default(d, dtype, stationarity.tags)} / "
                f"{OPTX_DEFAULT}",
                ours(stationarity, ix.solvers.OptimistixMinimiser(bfgs)),
                theirs(optx.minimise, f, bfgs),
            ),
            (
                "Newton",
                f"defaults: {_ix_default(d, dtype, root.tags)} / {OPTX_DEFAULT}",
                ours(root, ix.solvers.OptimistixRootFinder(newton)),
                theirs(optx.root_find, grad_f, newton),
            ),
        ]
        for method, backward, ours_fn, theirs_fn in variants:
            rows.append(
                compare(
                    f"logistic ({method}) n={n} d={d}",
                    dtype,
                    _optx_name(),
                    backward,
                    ours_fn,
                    theirs_fn,
                    args,
                    reference,
                )
            )
    return rows


def main():
    global REPEATS
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="tiny sizes (CI)")
    args = parser.parse_args()
    quick = args.quick
    # --quick (CI): tiny sizes, float64 only, each library's defaults only.
    dtypes = (jnp.float64,) if quick else (jnp.float64, jnp.float32)
    if quick:
        REPEATS = 3
    rows = []
    for d in (20,) if quick else (100, 500):
        rows += ridge_rows(d, dtypes, quick)
    rows += lasso_rows(*((50, 20) if quick else (500, 200)), dtypes, quick)
    svm_size = (20, 50, 3, 100.0) if quick else (200, 1000, 5, 1000.0)
    rows += svm_rows(*svm_size, dtypes, quick, mirror=False)
    svm_size = (20, 50, 3, 100.0) if quick else (100, 300, 5, 1000.0)
    rows += svm_rows(*svm_size, dtypes, quick, mirror=True)
    rows += logistic_rows(*((50, 5) if quick else (500, 50)), dtypes, quick)
    header = PeersRow.header()
    notes = (
        "Each time is one jitted call computing the hypergradient d(outer loss)/d"
        "(hyperparameter), forward solve included, data passed as arguments (median "
        f"of {REPEATS} runs after the first, compiling call, timed as compile). Both "
        "sides run the same forward algorithm from the same starting point with the "
        "same tolerance ("
        + ", ".join(f"{jnp.dtype(t).name} {v:g}" for t, v in TOL.items())
        + "), but the stopping rules differ: implicitx stops on "
        "max|x_k+1 - x_k| <= tol (1 + max|x_k+1|), JAXopt on "
        "||x_k+1 - x_k||_2 / stepsize <= tol (optimistix rows use the same optimistix "
        "solver on both sides), so the forward steps column shows what each did. "
        "The FISTA / accelerated rows differ in algorithm detail (implicitx restarts "
        "the momentum and never increases its step; JAXopt does not restart and "
        "tries a larger step each iteration); the fixed-step rows (ISTA, projected "
        "gradient with step 1/L, mirror descent) compute the same iterates on both "
        "sides and so isolate the cost of differentiation. The backward solve column "
        "names each side's linear solver. Ratio < 1: implicitx is faster. Gradient "
        "rel. diff is |g_ix - g_peer| / |g_peer|; the reference columns compare each "
        "with a float64 reference (autodiff of the closed form for ridge, else a "
        "central finite difference of the outer loss with forward solves at 1e-13 or "
        "tighter). A missing peer is reported as skipped, an error by its type. "
        "`--quick` runs tiny sizes in float64 with each library's defaults only."
    )
    if os.environ.get("XLA_FLAGS"):
        notes += f" Run with XLA_FLAGS={os.environ['XLA_FLAGS']!r}."
    write_results(
        results_name(PeersRow.FILE, quick),
        "Hypergradients: implicitx vs JAXopt and optimistix ImplicitAdjoint",
        header,
        rows,
        notes,
    )


if __name__ == "__main__":
    main()
