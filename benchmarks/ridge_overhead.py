"""Overhead of implicit differentiation against its limit: the gradient of an outer
loss through ridge regression, via `ix.custom_root` (and via `ImplicitArgmin` with a
convex `Stationarity` condition, which allows Cholesky), against differentiating the
closed form `jnp.linalg.solve` directly (the limit: it reuses its factorisation).

    python benchmarks/ridge_overhead.py [--quick]
"""

import argparse

import jax
import jax.numpy as jnp
import lineax as lx

import implicitx as ix
from _common import results_name, RidgeOverheadRow, time_calls, write_results
from _problems import (
    ridge_closed_form,
    ridge_data,
    ridge_objective,
    RIDGE_THETA,
    squared_error,
)
from implicitx._linear_solve import DENSE_MAX_SIZE  # the default's threshold


jax.config.update("jax_enable_x64", True)


def _solvers(X, y):
    d = X.shape[1]
    # CG tolerance: about what float32 can resolve, and a tight one for float64.
    tol = 1e-4 if X.dtype == jnp.float32 else 1e-10

    def closed_form(theta):
        return ridge_closed_form(theta, X, y)

    def f(x, theta):
        return ridge_objective(x, theta, X, y)

    solve = ix.solvers.FunctionSolver(lambda theta, x0: closed_form(theta))
    convex = ix.Stationarity(f, convex=True)
    cg = ix.ImplicitAdjoint(linear_solver=lx.CG(rtol=tol, atol=tol, max_steps=10 * d))
    # What the default backward solver picks at this size.
    dense = d <= DENSE_MAX_SIZE
    lu, cholesky = ("dense LU", "dense Cholesky") if dense else ("GMRES", "CG")
    return {
        "closed form (autodiff)": closed_form,
        f"custom_root, default ({lu})": ix.custom_root(jax.grad(f))(closed_form),
        f"Stationarity convex, default ({cholesky})": ix.ImplicitArgmin(convex, solve),
        f"Stationarity convex, CG rtol={tol:g}": ix.ImplicitArgmin(
            convex, solve, adjoint=cg
        ),
    }


def _hypergradient(name):
    # Data are arguments, not closed-over constants: closed-over arrays would be
    # constant-folded by XLA at compile time (seconds for X^T X at d = 500).
    @jax.jit
    def grad(X, y, target, theta):
        solver = _solvers(X, y)[name]
        return jax.grad(lambda t: squared_error(solver(t), target))(theta)

    return grad


def _forward(X, y, target, theta):
    return _solvers(X, y)["closed form (autodiff)"](theta)


def run(d, dtype):
    X, y, target = (jnp.asarray(a, dtype) for a in ridge_data(d))
    theta = jnp.asarray(RIDGE_THETA, dtype)
    args = (X, y, target, theta)
    names = list(_solvers(X, y))
    fns = {name: _hypergradient(name) for name in names}
    timings = time_calls({"forward": jax.jit(_forward), **fns}, *args, repeats=15)
    forward_compile, forward = timings["forward"]
    reference = fns[names[0]](*args)
    base = timings[names[0]][1]
    dtype_name = jnp.dtype(dtype).name
    rows = [
        [d, dtype_name, "forward solve alone (no gradient)", 1e3 * forward]
        + [forward / base, "-", forward_compile]
    ]
    for name in names:
        compile_time, t = timings[name]
        error = float(jnp.abs(fns[name](*args) - reference))
        error = error / float(jnp.abs(reference))
        rows.append([d, dtype_name, name, 1e3 * t, t / base, error, compile_time])
        print(rows[-1])
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
        results_name(RidgeOverheadRow.FILE, args.quick),
        "Hypergradient through ridge: implicit vs autodiff of the closed form",
        RidgeOverheadRow.header(),
        rows,
        "n = 2d samples. Gradient of a squared outer loss w.r.t. the ridge penalty, "
        "including the forward solve (the closed form, for every method). The closed "
        "form's gradient is the limit (ratio 1): its backward pass reuses the LU "
        "factors of its forward pass. The implicit rule sees only `F` and `x*`, so "
        "its backward pass either forms `A` (d Hessian-vector products, about two "
        "`X^T X`-sized matrix products) and factors it again, or runs CG (two "
        "matrix-vector products with `X` per iteration). The row 'forward solve "
        "alone' shows how much of the closed form's time its forward pass takes.",
    )


if __name__ == "__main__":
    main()
