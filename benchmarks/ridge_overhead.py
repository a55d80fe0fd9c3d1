"""Overhead of implicit differentiation against its limit: the gradient of an outer
loss through ridge regression, via `ix.custom_root` (and via `ImplicitArgmin` with a
convex `Stationarity` condition, which allows Cholesky), against differentiating the
closed form `jnp.linalg.solve` directly (the limit: it reuses its factorisation).

    python benchmarks/ridge_overhead.py [--quick]
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np

import implicitx as ix
from _common import time_call, write_results


jax.config.update("jax_enable_x64", True)


def _solvers(X, y):
    d = X.shape[1]

    def closed_form(theta):
        return jnp.linalg.solve(X.T @ X + theta * jnp.eye(d, dtype=X.dtype), X.T @ y)

    def f(x, theta):
        return 0.5 * jnp.sum((X @ x - y) ** 2) + 0.5 * theta * jnp.sum(x**2)

    return {
        "closed form (autodiff)": closed_form,
        "custom_root (LU)": ix.custom_root(jax.grad(f))(closed_form),
        "Stationarity convex (Cholesky)": ix.ImplicitArgmin(
            ix.Stationarity(f, convex=True),
            ix.solvers.FunctionSolver(lambda theta, x0: closed_form(theta)),
        ),
    }


def _hypergradient(name):
    # Data are arguments, not closed-over constants: closed-over arrays would be
    # constant-folded by XLA at compile time (seconds for X^T X at d = 500).
    @jax.jit
    def grad(X, y, target, theta):
        solver = _solvers(X, y)[name]
        return jax.grad(lambda t: jnp.sum((solver(t) - target) ** 2))(theta)

    return grad


def run(d, dtype):
    rng = np.random.default_rng(0)
    n = 2 * d
    X = jnp.asarray(rng.standard_normal((n, d)), dtype)
    y = jnp.asarray(rng.standard_normal(n), dtype)
    target = jnp.asarray(rng.standard_normal(d), dtype)
    theta = jnp.asarray(10.0, dtype)
    args = (X, y, target, theta)
    names = list(_solvers(X, y))
    timings = {name: time_call(_hypergradient(name), *args) for name in names}
    reference = _hypergradient(names[0])(*args)
    base = timings[names[0]][1]
    rows = []
    for name in names:
        compile_time, t = timings[name]
        error = float(jnp.abs(_hypergradient(name)(*args) - reference))
        error = error / float(jnp.abs(reference))
        rows.append(
            [d, jnp.dtype(dtype).name, name, 1e3 * t, t / base, error, compile_time]
        )
    return rows


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    sizes = [50] if args.quick else [100, 500, 1000]
    rows = []
    for d in sizes:
        for dtype in (jnp.float32, jnp.float64):
            rows += run(d, dtype)
    write_results(
        "ridge_overhead" + ("_quick" if args.quick else ""),
        "Hypergradient through ridge: implicit vs autodiff of the closed form",
        [
            "d",
            "dtype",
            "method",
            "run (ms)",
            "ratio to closed form",
            "relative error",
            "compile (s)",
        ],
        rows,
        "n = 2d samples. Gradient of a squared outer loss w.r.t. the ridge penalty, "
        "including the forward solve. The closed form is the limit (ratio 1): it "
        "reuses its factorisation, while the implicit rule forms and factors `A` "
        "again.",
    )


if __name__ == "__main__":
    main()
