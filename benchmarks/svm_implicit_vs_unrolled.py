"""Implicit against unrolled differentiation for the hypergradient of a multiclass SVM
(Crammer-Singer dual), as the number of features grows: run time, compile time and
peak memory, each set against the forward solve alone (the limit of the implicit
hypergradient), and the memory of both as the number of inner iterations grows.

The inner problem is solved by a fixed number of projected-gradient steps, a clean
`jax.lax.fori_loop`; "unrolled" is `jax.grad` through that same loop, "implicit"
differentiates the projected-gradient fixed point of its result.

    python benchmarks/svm_implicit_vs_unrolled.py [--quick]
"""

import argparse

import jax
import jax.numpy as jnp
import lineax as lx
import matplotlib.pyplot as plt
import numpy as np

import implicitx as ix
from _common import (
    memory_bytes,
    RESULTS_DIR,
    results_name,
    SvmFeaturesRow,
    SvmMemoryRow,
    time_calls,
    write_results,
)
from _problems import (
    SIMPLICES,
    svm_dual,
    svm_example_data,
    svm_validation_loss,
    uniform_beta,
)

# The default's dense/GMRES boundary for this condition (it carries
# `ix.active_set_tag`).
from implicitx._linear_solve import ACTIVE_SET_DENSE_MAX_SIZE as DENSE_MAX_SIZE


jax.config.update("jax_enable_x64", True)
plt.switch_backend("Agg")  # write files, open no window

MiB = 2.0**20
# ||X^T (Y - beta)||^2 grows like p, so lam must too: below about lam = p the
# solution is the hard-margin one (beta* at vertices, hypergradient ~0); lam = 3p is in
# the soft-margin regime, where beta* moves with lam.
LAM_PER_FEATURE = 3.0


def pg_step(beta, lam, X, Y, sq_norm):
    """One projected-gradient step, `P(beta - eta grad f)` with `eta = lam/||X||^2`."""
    eta = lam / sq_norm
    return SIMPLICES(beta - eta * jax.grad(svm_dual)(beta, lam, X, Y))


def forward(lam, beta0, X, Y, sq_norm, iters):
    """`iters` projected-gradient steps from `beta0`: a plain `fori_loop`."""
    body = lambda _, beta: pg_step(beta, lam, X, Y, sq_norm)
    return jax.lax.fori_loop(0, iters, body, beta0)


# Every function below takes the data as arguments, not as closed-over constants:
# XLA would constant-fold closed-over arrays at compile time (slow compiles).


def forward_fn(iters):
    def run(log_lam, X, Y, X_val, Y_val, sq_norm):
        return forward(jnp.exp(log_lam), uniform_beta(Y), X, Y, sq_norm, iters)

    return run


def residual_fn(iters):
    """`max |T(beta) - beta|` after `iters` steps: how far from a fixed point."""

    def run(log_lam, X, Y, X_val, Y_val, sq_norm):
        lam = jnp.exp(log_lam)
        beta = forward(lam, uniform_beta(Y), X, Y, sq_norm, iters)
        return jnp.max(jnp.abs(pg_step(beta, lam, X, Y, sq_norm) - beta))

    return run


def unrolled_fn(iters):
    """d(validation loss)/d(log lam) by reverse mode through the loop."""

    def run(log_lam, X, Y, X_val, Y_val, sq_norm):
        def loss(log_lam):
            lam = jnp.exp(log_lam)
            beta = forward(lam, uniform_beta(Y), X, Y, sq_norm, iters)
            return svm_validation_loss(beta, lam, X, Y, X_val, Y_val)

        return jax.grad(loss)(log_lam)

    return run


def implicit_fn(iters, adjoint, mode=jax.grad):
    """The same hypergradient, through `ImplicitArgmin` with the loop as its
    (non-differentiated) forward solver; `mode=jax.jacfwd` for forward mode."""

    def run(log_lam, X, Y, X_val, Y_val, sq_norm):
        def loss(log_lam):
            lam = jnp.exp(log_lam)
            # The step size changes neither the fixed points nor their derivatives:
            # no tangent is sent through it.
            eta = jax.lax.stop_gradient(lam) / sq_norm
            condition = ix.ProjectedGradientFixedPoint(
                lambda beta, lam: svm_dual(beta, lam, X, Y), SIMPLICES, stepsize=eta
            )
            solver = ix.solvers.FunctionSolver(
                lambda lam, x0: forward(lam, x0, X, Y, sq_norm, iters)
            )
            argmin = ix.ImplicitArgmin(condition, solver, adjoint, x0=uniform_beta(Y))
            return svm_validation_loss(argmin(lam), lam, X, Y, X_val, Y_val)

        return mode(loss)(log_lam)

    return run


# The loop runs a fixed budget of iterations (the table reports the residual it
# reaches), so the implicit rows differentiate its last iterate: the root check is
# switched off, every other check of the default adjoint stays on.
_BUDGET = float("inf")


NO_PROBE = "implicit (GMRES, no uniqueness probe)"
# Forward mode needs the probe (the tangent `dx*` itself would be ambiguous on a
# singular `A`); reverse mode runs it only to name a failure.
FORWARD = "implicit, forward mode (jax.jacfwd)"
FORWARD_NO_PROBE = "implicit, forward mode, no uniqueness probe"
# The default once more, compiled and timed as a separate method: the ratio of the two
# is the noise of a ratio on this machine, against which the probe's cost is read.
AGAIN = "implicit (default, timed again)"


def methods(iters, system_size, with_dense=True, dtype=jnp.float64):
    default = "GMRES" if system_size > DENSE_MAX_SIZE else "dense LU"
    out = {
        "forward solve alone": forward_fn(iters),
        f"implicit (default: {default})": implicit_fn(
            iters, ix.ImplicitAdjoint(root_tol=_BUDGET)
        ),
    }
    if default != "dense LU":
        # The cost of the Krylov uniqueness probe, the one check that costs a solve:
        # `inexact=True` (meant for budgeted solves) skips it and nothing else here.
        out[NO_PROBE] = implicit_fn(
            iters, ix.ImplicitAdjoint(root_tol=_BUDGET, inexact=True)
        )
        out[AGAIN] = implicit_fn(iters, ix.ImplicitAdjoint(root_tol=_BUDGET))
    if with_dense and default != "dense LU":
        out[FORWARD] = implicit_fn(
            iters, ix.ImplicitAdjoint(root_tol=_BUDGET), mode=jax.jacfwd
        )
        out[FORWARD_NO_PROBE] = implicit_fn(
            iters, ix.ImplicitAdjoint(root_tol=_BUDGET, inexact=True), mode=jax.jacfwd
        )
        out["implicit (dense LU)"] = implicit_fn(
            iters, ix.ImplicitAdjoint(dense_max_size=10**6, root_tol=_BUDGET)
        )
        # lineax's GMRES checks convergence once per restart cycle: a shorter cycle
        # wastes fewer products on this easy system (not the default: it converges
        # more slowly on ill-conditioned ones).
        tol = float(jnp.finfo(dtype).eps) ** 0.75  # the default's tolerance
        gmres = lx.GMRES(rtol=tol, atol=tol, restart=8, stagnation_iters=3)
        out["implicit (GMRES, restart 8)"] = implicit_fn(
            iters, ix.ImplicitAdjoint(linear_solver=gmres, root_tol=_BUDGET)
        )
    out["unrolled"] = unrolled_fn(iters)
    return out


def measure(fns, args, repeats):
    """Per method: compile time, median run time (s; runs interleaved across the
    methods), XLA's planned peak memory (bytes), value."""
    jitted = {name: jax.jit(fn) for name, fn in fns.items()}
    times = time_calls(jitted, *args, repeats=repeats)
    return {
        name: (*times[name], memory_bytes(fns[name], *args), jitted[name](*args))
        for name in fns
    }


def sweep_features(sizes, n, k, iters, dtypes, repeats, dense_p):
    rows, curves = [], {}
    for p in sizes:
        for dtype in dtypes:
            X, Y, X_val, Y_val, sq_norm = svm_example_data(n, p, k, dtype)
            lam = LAM_PER_FEATURE * p
            args = (jnp.asarray(np.log(lam), dtype), X, Y, X_val, Y_val, sq_norm)
            residual = float(jax.jit(residual_fn(iters))(*args))
            with_dense = p == dense_p  # slow: once is enough for the comparison
            # The headline reads its ratios at this size: three times the calls.
            calls = 3 * repeats if with_dense else repeats
            stats = measure(methods(iters, n * k, with_dense, dtype), args, calls)
            _, t_fwd, m_fwd, _ = stats["forward solve alone"]
            _, t_unr, _, g_unr = stats["unrolled"]
            dtype_name = jnp.dtype(dtype).name
            for name, (c, t, m, value) in stats.items():
                is_grad = name != "forward solve alone"
                rel = float(jnp.abs(value - g_unr) / jnp.abs(g_unr)) if is_grad else "-"
                rows.append(
                    [
                        p,
                        dtype_name,
                        name,
                        1e3 * t,
                        t / t_fwd,
                        t_unr / t,
                        m / MiB,
                        m / m_fwd,
                        c,
                        float(value) if is_grad else "-",
                        rel,
                        residual,
                    ]
                )
                curves.setdefault((dtype_name, name), []).append((p, t, m))
                print(
                    f"p={p:5d} {dtype_name:8s} {name:30s} run {1e3 * t:8.2f} ms "
                    f"({t / t_fwd:5.2f}x forward)  memory {m / MiB:7.2f} MiB  "
                    f"compile {c:5.2f} s"
                    + (f"  grad {float(value):+.6e}" if is_grad else "")
                    + (f"  residual {residual:.1e}" if not is_grad else "")
                )
    return rows, curves


def sweep_iterations(p, n, k, iter_counts, dtype, repeats):
    rows = []
    X, Y, X_val, Y_val, sq_norm = svm_example_data(n, p, k, dtype)
    lam = LAM_PER_FEATURE * p
    args = (jnp.asarray(np.log(lam), dtype), X, Y, X_val, Y_val, sq_norm)
    for iters in iter_counts:
        residual = float(jax.jit(residual_fn(iters))(*args))
        stats = measure(methods(iters, n * k, with_dense=False), args, repeats)
        _, t_fwd, m_fwd, _ = stats["forward solve alone"]
        for name, (c, t, m, _) in stats.items():
            rows.append(
                [iters, name, 1e3 * t, t / t_fwd, m / MiB, m / m_fwd, c, residual]
            )
            print(
                f"iters={iters:5d} {name:30s} run {1e3 * t:8.2f} ms  "
                f"memory {m / MiB:7.2f} MiB  residual {residual:.1e}"
            )
    return rows


def plot(curves, dtype_name, path):
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for (dt, name), points in curves.items():
        if dt != dtype_name:
            continue
        p, t, m = (np.array(c) for c in zip(*points, strict=True))
        ax1.plot(p, 1e3 * t, "o-", label=name)
        ax2.plot(p, m / MiB, "o-", label=name)
    ax1.set(xlabel="features p", ylabel="run time (ms)", xscale="log", yscale="log")
    ax1.set_title(f"Hypergradient time ({dtype_name})")
    ax2.set(xlabel="features p", ylabel="peak memory (MiB)", xscale="log")
    ax2.set_title(f"Planned peak memory ({dtype_name})")
    ax1.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"Saved {path}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="small sizes (CI)")
    args = parser.parse_args()
    if args.quick:
        n, k, iters, sizes, repeats = 20, 3, 20, (50,), 3
        mem_p, iter_counts, dtypes = 50, (10,), (jnp.float64,)
    else:
        n, k, iters, sizes, repeats = 200, 5, 100, (100, 250, 500, 1000, 2000), 15
        mem_p, iter_counts, dtypes = 1000, (10, 100, 1000), (jnp.float32, jnp.float64)

    rows, curves = sweep_features(sizes, n, k, iters, dtypes, repeats, dense_p=mem_p)
    dense_note = (
        f" 'implicit (dense LU)' is measured at p = {mem_p} only."
        if n * k > DENSE_MAX_SIZE
        else ""
    )
    dtype_name = jnp.dtype(dtypes[0]).name
    name = results_name(SvmFeaturesRow.FILE, args.quick)
    plot(curves, dtype_name, RESULTS_DIR / f"{name}.png")
    write_results(
        name,
        f"Multiclass SVM hypergradient: implicit vs unrolled ({iters} inner "
        f"iterations, n = {n}, k = {k})",
        SvmFeaturesRow.header(),
        rows,
        f"Crammer-Singer dual, n = {n} training and {n} validation samples, k = {k} "
        f"classes, lam = {LAM_PER_FEATURE:g} p (soft margin: below about lam = p the "
        "solution is the hard-margin one and the hypergradient vanishes); gradient "
        "of the validation cross-entropy with respect to log lam. The forward solve "
        f"is {iters} projected-gradient steps (step lam/||X||_2^2, a `fori_loop` "
        "from the uniform beta); 'unrolled' is "
        "`jax.grad` through that loop, 'implicit' is `ImplicitArgmin` with the loop as "
        "its solver and the projected-gradient fixed point as its condition (default "
        f"backward solve: dense LU up to {DENSE_MAX_SIZE} unknowns, GMRES above; here "
        f"n k = {n * k}). Run time: median of {repeats} calls after the compiling "
        f"one ({3 * repeats} at p = {mem_p}), interleaved across the methods; "
        f"'{AGAIN}' is the default compiled and timed once more, so its ratio to "
        f"the default is the noise of a ratio in this run; '{NO_PROBE}' is the default "
        "without the Krylov uniqueness probe, the one check that costs a solve, "
        "which reverse mode runs only to name a failed solve and forward mode runs "
        f"once per point ('{FORWARD}' and '{FORWARD_NO_PROBE}', at p = {mem_p} only: "
        "see the docs page on failures); "
        "memory: XLA's planned peak (arguments + outputs + temporaries) of the "
        "compiled program. Forward residual: max |T(beta) - beta| after the loop; "
        "the implicit gradient is exact only at a fixed point, the unrolled one is "
        "that of the iterate, so they agree only when the residual is small. For "
        "p < n, X X^T is singular (the dual is not strongly convex) and for p near n "
        "it is ill-conditioned: there the fixed number of steps stops short of the "
        "fixed point, and the two gradients differ accordingly." + dense_note,
    )

    dtype = dtypes[0]
    mem_rows = sweep_iterations(mem_p, n, k, iter_counts, dtype, repeats)
    write_results(
        results_name(SvmMemoryRow.FILE, args.quick),
        f"Multiclass SVM hypergradient: memory against inner iterations (p = {mem_p}, "
        f"{jnp.dtype(dtype).name})",
        SvmMemoryRow.header(),
        mem_rows,
        f"Same problem as above (n = {n}, k = {k}, lam = "
        f"{LAM_PER_FEATURE * mem_p:g}), with the number of projected-gradient steps "
        "varied. Unrolled reverse mode stores every iterate "
        "of the loop; the implicit hypergradient needs only the last one.",
    )


if __name__ == "__main__":
    main()
