"""How the cost of one hypergradient grows: with the problem size `d` (forward solve
alone, forward + backward, compile time, and which backward linear solver the default
`ix.ImplicitAdjoint()` picks), and with the batch size `B` of `jax.vmap` over
hyperparameter values, against a Python loop of single calls.

Two problems, each with `n = 2d` training and `n` validation samples: L2-regularised
logistic regression (smooth, `Stationarity` + BFGS; hypergradient of the validation
log-loss w.r.t. the log L2 strength) and the lasso (non-smooth,
`ProximalGradientFixedPoint` + FISTA; hypergradient of the validation squared error
w.r.t. the log L1 strength).

    python benchmarks/scaling.py [--quick]
"""

import argparse
import os
import statistics
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optimistix as optx

import implicitx as ix
from _common import (
    RESULTS_DIR,
    results_name,
    ScalingBatchRow,
    ScalingSizeRow,
    time_call,
    write_results,
)
from _problems import (
    central_difference,
    lasso_smooth,
    lasso_split_data,
    logistic_split_data,
    signed_log_loss,
)
from implicitx._linear_solve import default_solver


jax.config.update("jax_enable_x64", True)

# Stopping tolerances of the timed forward solves, and of the reference solves of the
# finite-difference check (float64 only).
TOL = {"float32": 1e-5, "float64": 1e-8}
REFERENCE_TOL = 1e-13
# Central finite-difference step in the log hyperparameter.
FD_STEP = 1e-5
# A size whose single hypergradient takes longer than this is the last one run.
MAX_CALL_S = 2.0


# --- The two problems. Data are arguments of the jitted functions, never closed-over
# constants (XLA would constant-fold them at compile time).


def _logistic_argmin(tol, data, reference=False):
    X, y, _, _ = data

    def f(w, theta):
        return signed_log_loss(w, X, y) + 0.5 * jnp.exp(theta) * jnp.sum(w**2)

    if reference:
        # BFGS's line search compares objective values, so it stalls once the
        # gradient is ~sqrt(eps): too noisy for a finite difference. Newton's method
        # on the same condition reaches machine precision.
        solver = ix.solvers.OptimistixRootFinder(optx.Newton(rtol=tol, atol=tol))
    else:
        solver = ix.solvers.OptimistixMinimiser(
            optx.BFGS(rtol=tol, atol=tol), max_steps=2_000
        )
    return ix.ImplicitArgmin(
        ix.Stationarity(f, convex=True), solver, x0=jnp.zeros(X.shape[1], X.dtype)
    )


def _logistic_outer(x, data):
    _, _, Xv, yv = data
    return signed_log_loss(x, Xv, yv)


def _lasso_argmin(tol, data, reference=False):
    del reference  # the same solver, with a tight tolerance
    X, y, _, _ = data

    def f(x, theta):
        return lasso_smooth(x, X, y)

    condition = ix.ProximalGradientFixedPoint(f, lambda t: ix.prox.L1(jnp.exp(t)))
    solver = ix.solvers.ProximalGradient(rtol=tol, atol=tol, max_steps=100_000)
    return ix.ImplicitArgmin(condition, solver, x0=jnp.zeros(X.shape[1], X.dtype))


def _lasso_outer(x, data):
    _, _, Xv, yv = data
    return lasso_smooth(x, Xv, yv)


PROBLEMS = {
    "logistic (BFGS)": (_logistic_argmin, _logistic_outer, logistic_split_data),
    "lasso (FISTA)": (_lasso_argmin, _lasso_outer, lasso_split_data),
}


def _functions(problem, reference=False):
    """Fresh (never yet traced) `value` and `hypergradient` functions, not jitted:
    `(tol, data, theta) -> outer loss at x*(theta)` and its derivative in `theta`."""
    make_argmin, outer, _ = PROBLEMS[problem]

    def value(tol, data, theta):
        return outer(make_argmin(tol, data, reference)(theta), data)

    def hypergradient(tol, data, theta):
        return jax.grad(value, argnums=2)(tol, data, theta)

    return value, hypergradient


# Jitted once per problem, so that compiled programs are reused across calls with the
# same shapes and dtypes.
JITTED = {
    problem: tuple(jax.jit(fn) for fn in _functions(problem)) for problem in PROBLEMS
}
# The outer loss at tight float64 solves, for the finite-difference check (the lasso
# reuses its timed function: same solver, tighter tolerance).
REFERENCE_VALUE = {
    "logistic (BFGS)": jax.jit(_functions("logistic (BFGS)", reference=True)[0]),
    "lasso (FISTA)": JITTED["lasso (FISTA)"][0],
}


def _cast(data, theta, dtype):
    data = tuple(jnp.asarray(a, dtype) for a in data)
    return data, jnp.asarray(theta, dtype)


def _backward_solver(problem, d, dtype) -> str:
    """The lineax solver the default `ImplicitAdjoint()` uses for this `A`."""
    make_argmin, _, make_data = PROBLEMS[problem]
    data, theta = _cast(*make_data(d), dtype)
    argmin = make_argmin(jnp.asarray(1e-3, dtype), data)
    A, _ = ix.jacobian_operators(argmin.condition, argmin.x0, theta)
    solver = default_solver(A)
    if hasattr(solver, "select_solver"):
        solver = solver.select_solver(A)
    return type(solver).__name__


def _trace_lower(fn, *args) -> tuple[float, float]:
    """Trace and lowering times (seconds) of a never-traced function."""
    start = time.perf_counter()
    traced = jax.jit(fn).trace(*args)
    trace_time = time.perf_counter() - start
    start = time.perf_counter()
    traced.lower()
    return trace_time, time.perf_counter() - start


_REFERENCES = {}


def _reference(problem, d) -> float:
    """Central finite difference of the outer loss, float64, tight solves."""
    if (problem, d) in _REFERENCES:
        return _REFERENCES[problem, d]
    value = REFERENCE_VALUE[problem]
    data, theta = _cast(*PROBLEMS[problem][2](d), jnp.float64)
    tol = jnp.asarray(REFERENCE_TOL, jnp.float64)
    fd = central_difference(lambda t: value(tol, data, t), theta, FD_STEP)
    _REFERENCES[problem, d] = fd
    return _REFERENCES[problem, d]


def size_rows(problem, sizes, repeats, checked, trace_lower=True):
    rows = []
    for dtype in (jnp.float64, jnp.float32):
        name = jnp.dtype(dtype).name
        value, hypergradient = JITTED[problem]
        for d in sizes:
            data, theta = _cast(*PROBLEMS[problem][2](d), dtype)
            args = (jnp.asarray(TOL[name], dtype), data, theta)
            _, t_forward = time_call(value, *args, repeats=repeats)
            # Slow calls time steadily: fewer repeats.
            n = repeats if t_forward < 0.05 else min(repeats, 5)
            compile_time, t_grad = time_call(hypergradient, *args, repeats=n)
            if trace_lower:
                trace_time, lower_time = _trace_lower(_functions(problem)[1], *args)
            else:
                trace_time = lower_time = "-"
            if d in checked:
                fd = _reference(problem, d)
                error = abs(float(hypergradient(*args)) - fd) / abs(fd)
            else:
                error = "-"
            backward = _backward_solver(problem, d, dtype)
            checked_note = f", relative error {error:.1e}" if d in checked else ""
            print(
                f"  {problem}, {name}, d = {d}: forward {1e3 * t_forward:.3g} ms, "
                f"hypergradient {1e3 * t_grad:.3g} ms, compile {compile_time:.2f} s, "
                f"backward {backward}{checked_note}",
                flush=True,
            )
            rows.append(
                [
                    problem,
                    name,
                    d,
                    1e3 * t_forward,
                    1e3 * t_grad,
                    t_grad / t_forward,
                    compile_time,
                    trace_time,
                    lower_time,
                    backward,
                    error,
                ]
            )
            if t_grad > MAX_CALL_S:
                break
    return rows


def _median_loop(fn, thetas, tol, data, repeats) -> float:
    jax.block_until_ready([fn(tol, data, t) for t in thetas])  # warm
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready([fn(tol, data, t) for t in thetas])
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def batch_rows(problem, d, batches, loop_batch, repeats, dtypes=(jnp.float32,)):
    rows = []
    _, hypergradient = JITTED[problem]
    batched = jax.jit(jax.vmap(_functions(problem)[1], in_axes=(None, None, 0)))
    for dtype in dtypes:
        name = jnp.dtype(dtype).name
        data, theta = _cast(*PROBLEMS[problem][2](d), dtype)
        tol = jnp.asarray(TOL[name], dtype)
        t = time_call(hypergradient, tol, data, theta, repeats=repeats)[1]
        print(f"  {problem}, {name}: single call {1e3 * t:.3g} ms", flush=True)
        rows.append([problem, name, "single (no vmap)", 1, 1e3 * t, 1e3 * t, "-", "-"])
        base = None
        for B in batches:
            # Hyperparameters spread over a factor 3 either side of the default.
            thetas = theta + jnp.linspace(-np.log(3), np.log(3), B, dtype=dtype)
            compile_time, t = time_call(batched, tol, data, thetas, repeats=repeats)
            per = t / B
            base = per if base is None else base
            print(
                f"  {problem}, {name}, B = {B}: vmap {1e3 * t:.3g} ms "
                f"({1e3 * per:.3g} ms each), compile {compile_time:.2f} s",
                flush=True,
            )
            rows.append(
                [problem, name, "vmap", B, 1e3 * t, 1e3 * per, per / base, compile_time]
            )
            if B == loop_batch:
                t = _median_loop(hypergradient, list(thetas), tol, data, repeats)
                print(
                    f"  {problem}, {name}, B = {B}: loop {1e3 * t:.3g} ms",
                    flush=True,
                )
                rows.append(
                    [problem, name, "loop", B, 1e3 * t, 1e3 * t / B, t / B / base, "-"]
                )
    return rows


def plot(size, batch, path):
    plt.switch_backend("Agg")
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    styles = {"float64": "-", "float32": "--"}
    for ax, problem in zip(axes[:2], PROBLEMS, strict=True):
        for name, style in styles.items():
            rows = [r for r in size if r[0] == problem and r[1] == name]
            if not rows:
                continue
            d = [r[2] for r in rows]
            ax.loglog(
                d, [r[3] for r in rows], "o" + style, c="C0", label=f"forward, {name}"
            )
            ax.loglog(
                d,
                [r[4] for r in rows],
                "s" + style,
                c="C1",
                label=f"hypergradient, {name}",
            )
        # Where the default backward solver changes (dense -> Krylov), if it does.
        rows = [r for r in size if r[0] == problem and r[1] == "float64"]
        for before, after in zip(rows, rows[1:], strict=False):
            if before[9] != after[9]:
                ax.axvline(
                    np.sqrt(before[2] * after[2]),
                    c="gray",
                    ls=":",
                    label=f"backward {before[9]} → {after[9]}",
                )
        ax.set_xlabel("d (features; n = 2d samples)")
        ax.set_ylabel("time per call (ms)")
        ax.set_title(problem)
        ax.legend(fontsize=8)
    ax = axes[2]
    for i, problem in enumerate(PROBLEMS):
        for name, style in styles.items():
            rows = [
                r for r in batch if r[0] == problem and r[1] == name and r[2] == "vmap"
            ]
            if rows:
                ax.loglog(
                    [r[3] for r in rows],
                    [r[5] for r in rows],
                    "o" + style,
                    c=f"C{i}",
                    label=f"{problem}, {name}",
                )
            for r in batch:
                if r[0] == problem and r[1] == name and r[2] == "single (no vmap)":
                    ax.axhline(r[5], c=f"C{i}", ls=":", label=f"{problem}, single call")
    ax.set_xlabel("batch size B (vmap)")
    ax.set_ylabel("time per element (ms)")
    ax.set_title("vmap over hyperparameters")
    ax.legend(fontsize=8)
    fig.tight_layout()
    RESULTS_DIR.mkdir(exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _threads_note() -> str:
    # JAX's CPU LAPACK calls (LU, Cholesky) run on scipy's OpenBLAS: its threads spin
    # badly when the cores are shared with other processes.
    threads = os.environ.get("OPENBLAS_NUM_THREADS", "unset")
    return f" OPENBLAS_NUM_THREADS: {threads}."


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="small sizes (CI)")
    args = parser.parse_args()
    if args.quick:
        sizes, batches, loop_batch, batch_d, repeats = (10, 30), (1, 4), 4, 30, 3
        # Compiling the batched programs is the slowest part: one problem only.
        batch_problems = ["logistic (BFGS)"]
    else:
        sizes, batches, loop_batch, batch_d, repeats = (
            (10, 30, 100, 300, 1000),
            (1, 4, 16, 64, 256),
            16,
            100,
            15,
        )
        batch_problems = list(PROBLEMS)
    size = []
    for problem in PROBLEMS:
        # `--quick` checks the hypergradient once per problem (finite differences need
        # another compiled program per size).
        checked = sizes[-1:] if args.quick else sizes
        size += size_rows(problem, sizes, repeats, checked, trace_lower=not args.quick)
    write_results(
        results_name(ScalingSizeRow.FILE, args.quick),
        "Hypergradient cost vs problem size",
        ScalingSizeRow.header(),
        size,
        "n = 2d training samples. `forward` is the forward solve plus the outer loss; "
        "`hypergradient` is `jax.grad` of the same (forward solve + backward linear "
        "solve); median of repeated calls of the jitted function, data passed as "
        "arguments. `compile` is the first call of the hypergradient (trace, lowering, "
        "XLA compilation and one run); `trace` and `lower` are measured apart on a "
        "fresh function (not in `--quick` runs). `backward solver` is the lineax "
        "solver the default `ImplicitAdjoint()` picks for this `A` (asked of the "
        "library): "
        "a dense factorisation (Cholesky/LU) for small systems, CG/GMRES above a size "
        "threshold. "
        "`relative error`: against a central finite difference of the outer loss with "
        "tight float64 solves (the float32 rows carry float32 rounding and a looser "
        "tolerance; their error comes from the forward solve, which stops where "
        "float32 rounding stalls its line search, not from the backward solve)."
        + _threads_note(),
    )
    batch = []
    for problem in batch_problems:
        batch += batch_rows(problem, batch_d, batches, loop_batch, repeats)
    write_results(
        results_name(ScalingBatchRow.FILE, args.quick),
        f"Hypergradient cost vs batch size (vmap), d = {batch_d}",
        ScalingBatchRow.header(),
        batch,
        "`vmap`: one jitted `jax.vmap` of the hypergradient over B values of the "
        "hyperparameter (spread over a factor 3 either side of the default; data "
        "shared). The batched solver loop runs until its slowest element has "
        "converged. `loop`: B separate calls of the jitted single hypergradient from "
        "Python (already compiled); `single`: one such call. Median of repeated "
        "calls." + _threads_note(),
    )
    plot(size, batch, RESULTS_DIR / (results_name("scaling", args.quick) + ".png"))


if __name__ == "__main__":
    main()
