"""Forward solvers of implicitx against JAXopt's on the same problems: lasso
(proximal gradient, block coordinate descent) and the multiclass SVM dual (projected
gradient, block coordinate descent). Time to the same tolerance (median of runs after
a warm-up; compile time apart), the error reached against a tight reference solve, and
the ratio implicitx / JAXopt measured in the same process.

    python benchmarks/solvers_vs_jaxopt.py [--quick]
"""

import argparse
import importlib.util

import jax
import jax.numpy as jnp
import numpy as np

import implicitx as ix
from _common import time_call, write_results


jax.config.update("jax_enable_x64", True)


def lasso_problem(n, d, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    w = np.zeros(d)
    w[: max(1, d // 10)] = rng.standard_normal(max(1, d // 10))
    y = X @ w + 0.1 * rng.standard_normal(n)
    return jnp.asarray(X), jnp.asarray(y)


def svm_problem(n, p, k, seed=0):
    rng = np.random.default_rng(seed)
    X = jnp.asarray(rng.standard_normal((n, p)))
    Y = jax.nn.one_hot(jnp.asarray(rng.integers(0, k, n)), k, dtype=jnp.float64)
    return X, Y


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="small sizes (CI)")
    args = parser.parse_args()
    have_jaxopt = importlib.util.find_spec("jaxopt") is not None
    if have_jaxopt:
        import jaxopt
    tol = 1e-8
    rows = []
    n, d = (50, 30) if args.quick else (500, 200)
    X, y = lasso_problem(n, d)
    alpha = 0.1 * float(jnp.max(jnp.abs(X.T @ y))) / n

    def f(x, theta):
        return 0.5 * jnp.sum((X @ x - y) ** 2) / n

    reference = ix.ImplicitArgmin(
        ix.ProximalGradientFixedPoint(f, ix.prox.L1(alpha)),
        ix.solvers.ProximalGradient(rtol=1e-14, atol=1e-14, max_steps=100_000),
        x0=jnp.zeros(d),
    )(jnp.array(0.0))

    def run_ours(solver, condition):
        argmin = ix.ImplicitArgmin(condition, solver, x0=jnp.zeros(d), throw=False)
        return jax.jit(lambda: argmin.solve(jnp.array(0.0)).value)

    cond = ix.ProximalGradientFixedPoint(f, ix.prox.L1(alpha))
    ours = {
        "proximal gradient (FISTA)": run_ours(
            ix.solvers.ProximalGradient(rtol=tol, atol=tol, max_steps=100_000), cond
        ),
        "block coordinate descent": run_ours(
            ix.solvers.BlockCoordinateDescent(rtol=tol, atol=tol, max_steps=10_000),
            cond,
        ),
    }
    theirs = {}
    if have_jaxopt:
        fun = lambda w: 0.5 * jnp.sum((X @ w - y) ** 2) / n
        pg = jaxopt.ProximalGradient(
            fun=fun, prox=jaxopt.prox.prox_lasso, tol=tol, maxiter=100_000
        )
        theirs["proximal gradient (FISTA)"] = jax.jit(
            lambda: pg.run(jnp.zeros(d), hyperparams_prox=alpha).params
        )
        bcd = jaxopt.BlockCoordinateDescent(
            fun=jaxopt.objective.least_squares,
            block_prox=jaxopt.prox.prox_lasso,
            tol=tol,
            maxiter=10_000,
        )
        theirs["block coordinate descent"] = jax.jit(
            lambda: bcd.run(jnp.zeros(d), hyperparams_prox=alpha, data=(X, y)).params
        )
    for name, fn in ours.items():
        rows.append(_row(f"lasso n={n} d={d}", name, fn, theirs.get(name), reference))

    n, p, k = (20, 50, 3) if args.quick else (200, 1000, 5)
    XS, YS = svm_problem(n, p, k)
    lam = 10.0

    def dual(beta, theta):
        w = XS.T @ (YS - beta) / lam
        return 0.5 * lam * jnp.sum(w**2) + jnp.sum(beta * YS)

    x0 = jnp.full((n, k), 1.0 / k)
    pg_cond = ix.ProjectedGradientFixedPoint(
        dual, ix.projection.RowWise(ix.projection.Simplex())
    )
    reference = ix.ImplicitArgmin(
        pg_cond,
        ix.solvers.ProjectedGradient(rtol=1e-14, atol=1e-14, max_steps=100_000),
        x0=x0,
    )(jnp.array(0.0))
    argmin = ix.ImplicitArgmin(
        pg_cond,
        ix.solvers.ProjectedGradient(rtol=tol, atol=tol, max_steps=100_000),
        x0=x0,
        throw=False,
    )
    ours_svm = jax.jit(lambda: argmin.solve(jnp.array(0.0)).value)
    theirs_svm = None
    if have_jaxopt:
        proj = lambda beta, hp: jax.vmap(jaxopt.projection.projection_simplex)(beta)
        pgd = jaxopt.ProjectedGradient(
            fun=lambda b: dual(b, None), projection=proj, tol=tol, maxiter=100_000
        )
        theirs_svm = jax.jit(lambda: pgd.run(x0).params)
    rows.append(
        _row(
            f"SVM dual n={n} p={p} k={k}",
            "projected gradient",
            ours_svm,
            theirs_svm,
            reference,
        )
    )
    write_results(
        "solvers_vs_jaxopt" + ("_quick" if args.quick else ""),
        "Forward solvers: implicitx vs JAXopt 0.8.5 (float64)",
        [
            "problem",
            "solver",
            "implicitx run (ms)",
            "JAXopt run (ms)",
            "ratio implicitx/JAXopt",
            "implicitx error",
            "JAXopt error",
            "implicitx compile (s)",
            "JAXopt compile (s)",
        ],
        rows,
        f"Same tolerance ({tol:g}) for both; error = max |x - x_ref| against a solve "
        "to 1e-14. Times are medians of 7 runs after one warm-up call. A missing "
        "JAXopt is reported as skipped.",
    )


def _row(problem, name, ours, theirs, reference):
    c_ours, t_ours = time_call(ours)
    err_ours = float(jnp.max(jnp.abs(ours() - reference)))
    if theirs is None:
        return [problem, name, 1e3 * t_ours, "skipped", "-", err_ours, "-", c_ours, "-"]
    c_theirs, t_theirs = time_call(theirs)
    err_theirs = float(jnp.max(jnp.abs(theirs() - reference)))
    return [
        problem,
        name,
        1e3 * t_ours,
        1e3 * t_theirs,
        t_ours / t_theirs,
        err_ours,
        err_theirs,
        c_ours,
        c_theirs,
    ]


if __name__ == "__main__":
    main()
