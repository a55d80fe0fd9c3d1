"""Theorem 1 of Blondel et al. (2021): the implicit Jacobian at an approximate solution.

Implicit differentiation assumes `x*` solves the optimality condition `F(x*, theta) =
0`; a forward solver stopped early returns an iterate `x_k` instead. Theorem 1 of the
paper bounds the error of the implicit Jacobian evaluated there,
`J(x_k) = A(x_k)^{-1} B(x_k)` with `A = -dF/dx` and `B = dF/dtheta`, by a constant
times the distance of the iterate to the solution:
`||J(x_k) - dx*/dtheta|| <= C ||x_k - x*||`. The alternative, unrolling (autodiff
through the solver's iterations), gives the Jacobian of the iterate itself.

The problem is ridge regression with one penalty per feature on scikit-learn's
diabetes data (442 patients, 10 standardised features, the standardised disease
progression score), as in the paper's figure:

    x*(theta) = argmin_x 1/(2n) ||X x - y||^2 + 1/2 sum_j theta_j x_j^2,

whose Jacobian is known in closed form: with `H = X^T X / n + diag(theta)`,
`dx*/dtheta = -H^{-1} diag(x*)`. Here `A = H` and `B(x) = diag(x)`, so the implicit
Jacobian at `x_k` is `-H^{-1} diag(x_k)` and its error is
`||H^{-1} diag(x_k - x*)||_F <= ||H^{-1}||_2 ||x_k - x*||_2`: Theorem 1, with
`C = ||H^{-1}||_2`.

The forward solver is gradient descent with the step `1/L`
(`ix.solvers.ProximalGradient` without a prox or acceleration, on `ix.Stationarity`),
stopped earlier and earlier by looser tolerances. At each iterate the 10x10 Jacobian
is computed with `jax.jacfwd` twice: implicitly
(`ix.ImplicitAdjoint(inexact=True)`, which asks for the derivative at an unconverged
iterate; `throw=False`, so that the failed root check is reported, not raised) and by
unrolling the same iterations (`ix.UnrolledAdjoint()`), and compared with the closed
form.

Run: python examples/implicit_vs_unrolled_error.py [--quick] [--out DIR]
"""

import argparse
import json
import pathlib
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_diabetes
from tqdm import tqdm

import implicitx as ix


jax.config.update("jax_enable_x64", True)  # before any array is created
plt.switch_backend("Agg")  # write files, open no window

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--quick", action="store_true", help="12 tolerances, for CI")
parser.add_argument("--out", type=pathlib.Path, default=None, help="output folder")
args = parser.parse_args()
n_tols = 12 if args.quick else 40
tolerances = np.logspace(0, -13, n_tols)  # of gradient descent's step length

# --- Data and the closed form. -------------------------------------------------------
X, y = load_diabetes(return_X_y=True)
X = jnp.asarray((X - X.mean(0)) / X.std(0))
y = jnp.asarray((y - y.mean()) / y.std())
n, d = X.shape
theta = jnp.full(d, 0.1)  # one ridge penalty per feature


def f(x, theta):
    return 0.5 * jnp.mean((X @ x - y) ** 2) + 0.5 * jnp.sum(theta * x**2)


H = X.T @ X / n + jnp.diag(theta)
x_star = jnp.linalg.solve(H, X.T @ y / n)
J_star = -jnp.linalg.solve(H, jnp.diag(x_star))  # dx*/dtheta
eigenvalues = jnp.linalg.eigvalsh(H)
L, mu = float(eigenvalues[-1]), float(eigenvalues[0])
C = 1 / mu  # ||H^{-1}||_2, the constant of Theorem 1 here


# --- Gradient descent stopped by a tolerance; the Jacobian of what it returns. -------
def jacobian(atol, adjoint):
    """(x_k, number of steps, root check passed, dx_k/dtheta by `adjoint`)."""
    gradient_descent = ix.solvers.ProximalGradient(
        rtol=0.0, atol=atol, stepsize=1 / L, acceleration=False, max_steps=5_000
    )
    layer = ix.ImplicitArgmin(
        ix.Stationarity(f, convex=True),
        gradient_descent,
        adjoint,
        x0=jnp.zeros(d),
        throw=False,  # an unconverged iterate is reported, not raised on
    )
    sol = layer.solve(theta)
    converged = sol.result == ix.RESULTS.successful
    return sol.value, sol.stats["num_steps"], converged, jax.jacfwd(layer)(theta)


implicit = jax.jit(lambda atol: jacobian(atol, ix.ImplicitAdjoint(inexact=True)))
unrolled = jax.jit(lambda atol: jacobian(atol, ix.UnrolledAdjoint()))


def tolerance(value):  # a fixed input type: one compilation for every tolerance
    return jnp.asarray(value, dtype=jnp.float64)


def compile_and_time(fn, atol, repeats=3):
    """(compile seconds, median milliseconds of a run)."""
    t = time.perf_counter()
    jax.block_until_ready(fn(tolerance(atol)))
    compile_s = time.perf_counter() - t
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(tolerance(atol)))
        times.append(time.perf_counter() - t)
    return compile_s, 1e3 * float(np.median(times))


compile_i, implicit_ms = compile_and_time(implicit, tolerances[-1])
compile_u, unrolled_ms = compile_and_time(unrolled, tolerances[-1])

rows = []
for atol in tqdm(tolerances, desc="tolerances", disable=None):
    x_k, k, converged, J_implicit = implicit(tolerance(atol))
    if rows and int(k) == rows[-1]["steps"]:
        continue  # the same iterate as the previous, looser tolerance
    x_u, k_u, _, J_unrolled = unrolled(tolerance(atol))
    assert int(k) == int(k_u) and bool(jnp.all(x_k == x_u))  # the same iterations
    # The implicit Jacobian is the Theorem's object: A^{-1} B at the iterate x_k.
    formula_gap = float(
        jnp.max(jnp.abs(J_implicit + jnp.linalg.solve(H, jnp.diag(x_k))))
    )
    rows.append(
        dict(
            atol=float(atol),
            steps=int(k),
            converged=bool(converged),
            distance=float(jnp.linalg.norm(x_k - x_star)),
            implicit=float(jnp.linalg.norm(J_implicit - J_star)),
            unrolled=float(jnp.linalg.norm(J_unrolled - J_star)),
            formula_gap=formula_gap,
        )
    )

distance = np.array([r["distance"] for r in rows])
err_i = np.array([r["implicit"] for r in rows])
err_u = np.array([r["unrolled"] for r in rows])
ratio = err_i / distance
slope_i = float(np.polyfit(np.log(distance), np.log(err_i), 1)[0])
slope_u = float(np.polyfit(np.log(distance), np.log(err_u), 1)[0])
formula_gap = max(r["formula_gap"] for r in rows)

print(f"Ridge on diabetes (n={n}, d={d}, theta_j = 0.1), gradient descent, step 1/L")
print(
    f"(L = {L:.3f}, mu = {mu:.4f}); errors ||J - dx*/dtheta||_F of the 10x10 Jacobians:"
)
print(f"{'tolerance':>10}{'steps':>7}{'root':>6}{'||x_k - x*||':>14}", end="")
print(f"{'implicit':>11}{'unrolled':>11}{'impl./dist.':>13}")
for r in rows:
    print(
        f"{r['atol']:10.1e}{r['steps']:7d}{'yes' if r['converged'] else 'no':>6}"
        f"{r['distance']:14.2e}{r['implicit']:11.2e}{r['unrolled']:11.2e}"
        f"{r['implicit'] / r['distance']:13.3f}"
    )
print("(root: the iterate passes the root check of implicit differentiation; the")
print(" others are reported as RESULTS.nonroot, and differentiated: inexact=True)")
print(f"Implicit error / distance: {ratio.min():.3f} to {ratio.max():.3f}, ", end="")
print(f"below Theorem 1's C = ||H^-1||_2 = {C:.3f}")
print("Log-log slope of the error against the distance: ", end="")
print(f"implicit {slope_i:.3f}, unrolled {slope_u:.3f}")
print("Implicit Jacobian vs -H^-1 diag(x_k), at every iterate: ", end="")
print(f"max |diff| {formula_gap:.1e}")
print(f"Unrolled / implicit error at the last iterate: {err_u[-1] / err_i[-1]:.1f}x")
print(f"{'one Jacobian, ' + str(rows[-1]['steps']) + ' steps':<24}", end="")
print(f"{'run (ms)':>10}{'compile (s)':>13}")
print(f"  {'implicit':<22}{implicit_ms:10.2f}{compile_i:13.2f}")
print(f"  {'unrolled':<22}{unrolled_ms:10.2f}{compile_u:13.2f}")

# --- Figure. ------------------------------------------------------------------------
out_dir = args.out or pathlib.Path(__file__).parent / "out"
out_dir.mkdir(parents=True, exist_ok=True)
out = out_dir / "implicit_vs_unrolled_error.png"
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
ax1.loglog(distance, err_u, "s-", ms=4, color="tab:orange", label="unrolled")
ax1.loglog(distance, err_i, "o-", ms=4, color="tab:blue", label="implicit")
ax1.loglog(distance, C * distance, "k--", lw=1, label="Theorem 1 bound C ||x_k - x*||")
ax1.set(xlabel="||x_k - x*||  (distance of the iterate to the solution)")
ax1.set(ylabel="||J - dx*/dtheta||_F")
ax1.set_title("Jacobian error against iterate error")
ax1.invert_xaxis()  # the solve goes on to the right
ax1.legend()
steps_k = [r["steps"] for r in rows]
ax2.semilogy(steps_k, err_u, "s-", ms=4, color="tab:orange", label="unrolled")
ax2.semilogy(steps_k, err_i, "o-", ms=4, color="tab:blue", label="implicit")
ax2.semilogy(steps_k, distance, ":", color="k", label="||x_k - x*||")
ax2.set(xlabel="gradient descent steps k", ylabel="error")
ax2.set_title("Errors against the number of steps")
ax2.legend()
fig.tight_layout()
fig.savefig(out, dpi=120)
results = {
    "implicit_error_first": float(err_i[0]),
    "implicit_error_last": float(err_i[-1]),
    "unrolled_error_first": float(err_u[0]),
    "unrolled_error_last": float(err_u[-1]),
    "distance_first": float(distance[0]),
    "distance_last": float(distance[-1]),
    "steps_first": rows[0]["steps"],
    "steps_last": rows[-1]["steps"],
    "implicit_ratio_min": float(ratio.min()),
    "implicit_ratio_max": float(ratio.max()),
    "theorem_constant": C,
    "slope_implicit": slope_i,
    "slope_unrolled": slope_u,
    "implicit_formula_gap": formula_gap,
    "implicit_ms": implicit_ms,
    "unrolled_ms": unrolled_ms,
}
(out_dir / "implicit_vs_unrolled_error.json").write_text(json.dumps(results, indent=1))
print(f"Saved {out}")
