"""Sensitivity analysis: the full Jacobian of a solution, by JVPs and by VJPs.

An L2-regularised logistic regression, with one weight `theta_i` per training sample,

    w*(theta) = argmin_w  1/n sum_i theta_i log(1 + exp(-y_i z_i . w)) + lam/2 ||w||^2,

is fitted at `theta = 1`, and its full Jacobian `J = dw*/dtheta` (`p` weights by `n`
samples) is computed. Column `i` of `J` is the influence of upweighting sample `i` on
the fitted weights (an influence function); `grad L_test(w*)^T J` ranks the training
samples by their effect on the test loss.

By the implicit function theorem `A J = B`, with `A = -d^2f/dw^2` and
`B = d/dtheta grad_w f` at the solution; `ix.jacobian_operators` returns both as
lineax operators. `J` is obtained three ways, which must agree (and agree with central
finite differences):

- forward mode, `jax.jacfwd` through an `ix.ImplicitArgmin`: one JVP per column of
  `J`, each one linear solve `A t = B u` (`n` solves);
- reverse mode, `jax.jacrev`: one VJP per row, each one solve `A^T s = v` followed by
  `s^T B` (`p` solves);
- directly from the operators: `B` materialised, and `A J = B` solved with lineax.

With a matrix-free Krylov backward solve (`lineax.CG`) every solve costs the same, so
forward mode is cheaper when `dim theta = n < dim x = p` and reverse mode when `p < n`:
both are timed as `n` grows at fixed `p`, and as `p` grows at fixed `n`.

Data: scikit-learn's `load_digits` (even vs odd digits), through `p` random Fourier
features `z_i = sqrt(2/p) cos(Omega^T x_i + b)` of the pixels (Rahimi and Recht's
approximation of a Gaussian kernel), so that `p` can be chosen freely; `n` is the number
of training digits used. The fit is by Newton's method, written by hand and wrapped in
`ix.solvers.FunctionSolver` (it is never differentiated).

Run: python examples/sensitivity_analysis.py [--quick] [--out DIR]
"""

import argparse
import json
import pathlib
import time

import jax
import jax.numpy as jnp
import lineax as lx
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from tqdm import tqdm

import implicitx as ix


jax.config.update("jax_enable_x64", True)  # before any array is created
plt.switch_backend("Agg")  # write files, open no window

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--quick", action="store_true", help="one grid point, for CI")
parser.add_argument("--out", type=pathlib.Path, default=None, help="output folder")
args = parser.parse_args()
center = 64  # dim theta = dim x at the centre of the grid, where J is checked
sizes = [64] if args.quick else [16, 32, 64, 128, 256, 512]
repeats = 3 if args.quick else 5
lam = 1e-2  # the L2 penalty

# --- Data: digits, even (+1) vs odd (-1), through random Fourier features. ----------
pixels, labels = load_digits(return_X_y=True)
rng = np.random.default_rng(0)
order = rng.permutation(len(labels))
pixels, labels = pixels[order] / 16.0, labels[order]
signs = np.where(labels % 2 == 0, 1.0, -1.0)
n_max = p_max = 512  # the full grid's largest sizes (--quick draws the same features)
omega = rng.normal(0.0, np.sqrt(2 * 0.02), size=(64, p_max))  # kernel width 1/0.02
phase = rng.uniform(0, 2 * np.pi, size=p_max)


def features(x, p):
    """The first `p` random Fourier features of the rows of `x`."""
    return jnp.asarray(np.sqrt(2 / p) * np.cos(x @ omega[:, :p] + phase[:p]))


def train_data(n, p):
    return features(pixels[:n], p), jnp.asarray(signs[:n])


# Held-out digits, for the test loss (never among the training digits of any size).
test_pixels, test_signs = pixels[n_max:], jnp.asarray(signs[n_max:])


# --- Inner problem and its solver. ---------------------------------------------------
def objective(w, theta, Z, y):
    """Per-sample weighted logistic loss: `theta` are the samples' weights."""
    losses = jnp.logaddexp(0.0, -y * (Z @ w))
    return jnp.mean(theta * losses) + 0.5 * lam * jnp.sum(w**2)


def newton(theta, Z, y):
    """Newton's method from w = 0, until a step below 1e-10 (relative): convergence
    is quadratic, so the error left after that step is at the rounding level."""
    grad, hess = jax.grad(objective), jax.hessian(objective)

    def not_done(carry):
        w, step, k = carry
        return (k < 50) & (jnp.max(jnp.abs(step)) > 1e-10 * (1 + jnp.max(jnp.abs(w))))

    def body(carry):
        w, _, k = carry
        step = jnp.linalg.solve(hess(w, theta, Z, y), grad(w, theta, Z, y))
        return w - step, step, k + 1

    w0 = jnp.zeros(Z.shape[1])
    return jax.lax.while_loop(not_done, body, (w0, jnp.ones_like(w0), 0))[0]


# A matrix-free backward solve: every column (forward mode) or row (reverse mode) of J
# is one CG solve, with products by A computed by autodiff.
adjoint = ix.ImplicitAdjoint(
    linear_solver=lx.CG(rtol=1e-12, atol=1e-12, max_steps=10_000)
)


def make_argmin(Z, y):
    """`theta -> w*(theta)` for the training set `(Z, y)` (which may be traced)."""
    condition = ix.Stationarity(lambda w, theta: objective(w, theta, Z, y), convex=True)
    solver = ix.solvers.FunctionSolver(lambda theta, x0: newton(theta, Z, y))
    return condition, ix.ImplicitArgmin(condition, solver, adjoint)


@jax.jit
def fit(theta, Z, y):
    return make_argmin(Z, y)[1](theta)


@jax.jit
def jacobian_forward(theta, Z, y):
    return jax.jacfwd(make_argmin(Z, y)[1])(theta)  # n JVPs: one solve per column


@jax.jit
def jacobian_reverse(theta, Z, y):
    return jax.jacrev(make_argmin(Z, y)[1])(theta)  # p VJPs: one solve per row


@jax.jit
def jacobian_operators(theta, Z, y):
    """`J` from `A J = B`: `B` materialised (n products), `A` factorised once."""
    condition, argmin = make_argmin(Z, y)
    w = argmin(theta)
    A, B = ix.jacobian_operators(condition, w, theta)
    A = lx.materialise(A)  # -Hessian, p x p; tagged symmetric negative definite
    B = B.as_matrix()  # p x n

    def solve(b):
        return lx.linear_solve(A, b, lx.AutoLinearSolver(well_posed=True)).value

    return jax.vmap(solve, in_axes=1, out_axes=1)(B)


def compile_and_time(fn, *args):
    """(compile seconds, median milliseconds of a run, the run's output)."""
    t = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    compile_s = time.perf_counter() - t
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t)
    return compile_s, 1e3 * float(np.median(times)), out


# --- Timings: n grows at p fixed, then p grows at n fixed. --------------------------
grid = [(s, center) for s in sizes] + [(center, s) for s in sizes if s != center]
timings, compile_s = {}, {"solve": 0.0, "jvp": 0.0, "vjp": 0.0}
for n, p in tqdm(grid, desc="grid points", disable=None):
    Z, y = train_data(n, p)
    theta = jnp.ones(n)
    row = {}
    functions = [("solve", fit), ("jvp", jacobian_forward), ("vjp", jacobian_reverse)]
    for name, fn in functions:
        c, row[name], row[name + "_out"] = compile_and_time(fn, theta, Z, y)
        compile_s[name] += c
    timings[n, p] = row

# --- The Jacobian at the centre of the grid, three ways, and a finite difference. --
n, p = center, center
Z, y = train_data(n, p)
theta = jnp.ones(n)
w_star = timings[n, p]["solve_out"]
J_fwd, J_rev = timings[n, p]["jvp_out"], timings[n, p]["vjp_out"]
J_op = jacobian_operators(theta, Z, y)
u, eps = jnp.asarray(rng.normal(size=n)), 1e-5
fd = (fit(theta + eps * u, Z, y) - fit(theta - eps * u, Z, y)) / (2 * eps)
scale = float(jnp.max(jnp.abs(J_fwd)))
jvp_vjp = float(jnp.max(jnp.abs(J_fwd - J_rev)))
fwd_op = float(jnp.max(jnp.abs(J_fwd - J_op)))
fd_error = float(jnp.max(jnp.abs(J_fwd @ u - fd)) / jnp.max(jnp.abs(fd)))
print(f"J = dw*/dtheta at n = {n} samples, p = {p} features (max |J| = {scale:.2e}):")
print(f"  {'jacfwd (JVPs) vs jacrev (VJPs), max |difference|':<52}{jvp_vjp:.1e}")
print(f"  {'jacfwd vs A J = B from jacobian_operators':<52}{fwd_op:.1e}")
print(f"  {'J u vs central difference (eps=1e-5), rel. error':<52}{fd_error:.1e}")


# The training digits that matter most to the test loss: d L_test / d theta_i.
def test_loss(w):
    margins = test_signs * (features(test_pixels, center) @ w)
    return jnp.mean(jnp.logaddexp(0.0, -margins))


influence = jax.grad(test_loss)(w_star) @ J_fwd  # one number per training digit
ranked = np.argsort(np.asarray(influence))  # most helpful first (upweighting helps)
print(f"Test log-loss {test_loss(w_star):.4f}; d(test loss)/d(theta_i), extremes:")
for name, i in [("most helpful", ranked[0]), ("most harmful", ranked[-1])]:
    print(f"  {name:<14} training digit {i:>3} (a {labels[i]}): {influence[i]:+.2e}")


def show(pairs, title):
    print(title)
    print(f"  {'n':>5}{'p':>6}{'solve (ms)':>12}{'jacfwd (ms)':>13}{'jacrev (ms)':>13}")
    for n, p in pairs:
        t = timings[n, p]
        faster = "jacfwd" if t["jvp"] < t["vjp"] else "jacrev"
        times = f"{t['solve']:12.1f}{t['jvp']:13.1f}{t['vjp']:13.1f}"
        print(f"  {n:5d}{p:6d}{times}   {faster} faster")


by_n = [(s, center) for s in sizes]
by_p = [(center, s) for s in sizes]
show(by_n, f"Time for the full Jacobian (median of {repeats}), p = {center} fixed:")
show(by_p, f"... and n = {center} fixed:")
print(
    f"Compilation over the {len(grid)} grid points: solve {compile_s['solve']:.1f} s, "
    f"jacfwd {compile_s['jvp']:.1f} s, jacrev {compile_s['vjp']:.1f} s"
)

# --- Figure: the most influential digits, and the timings. ---------------------------
out_dir = args.out or pathlib.Path(__file__).parent / "out"
out_dir.mkdir(parents=True, exist_ok=True)
out = out_dir / "sensitivity_analysis.png"
fig = plt.figure(figsize=(14, 4.2))
panels = fig.add_gridspec(2, 7)
shown = list(ranked[:3]) + list(ranked[-3:])
for k, i in enumerate(shown):
    ax = fig.add_subplot(panels[k // 3, k % 3])
    ax.imshow(pixels[i].reshape(8, 8), cmap="gray_r")
    word = "helps" if influence[i] < 0 else "hurts"
    ax.set_title(f"digit {labels[i]}: {word}\n{influence[i]:+.1e}", fontsize=8)
    ax.set(xticks=[], yticks=[])
for k, (pairs, free, fixed) in enumerate([(by_n, 0, "p"), (by_p, 1, "n")]):
    ax = fig.add_subplot(panels[:, 3 + 2 * k : 5 + 2 * k])
    dims = [pair[free] for pair in pairs]
    for name, label, style in [
        ("jvp", "jacfwd: one solve per column (n)", "o-"),
        ("vjp", "jacrev: one solve per row (p)", "s-"),
        ("solve", "forward solve alone", "k:"),
    ]:
        ax.plot(dims, [timings[pair][name] for pair in pairs], style, label=label)
    ax.axvline(center, color="gray", lw=1, ls="--")
    xlabel = "dim theta = n (training digits)" if free == 0 else "dim x = p (features)"
    ax.set(xscale="log", yscale="log", xlabel=xlabel, ylabel="time (ms)")
    ax.set_xticks(dims, [str(d) for d in dims])
    ax.set_xticks([], minor=True)
    ax.set_title(f"Full Jacobian, {fixed} = {center} fixed (dashed: n = p)")
    ax.legend(fontsize=8)
fig.suptitle(
    "Left: the training digits whose upweighting most lowers (helps) or raises "
    "(hurts) the test loss, d L_test / d theta_i"
)
fig.tight_layout()
fig.savefig(out, dpi=120)
largest_n, largest_p = (max(sizes), center), (center, max(sizes))
results = {
    "jvp_vjp_max_difference": jvp_vjp,
    "jvp_operators_max_difference": fwd_op,
    "jacobian_max_abs": scale,
    "fd_error": fd_error,
    "test_loss": float(test_loss(w_star)),
    "jvp_ms_largest_n": timings[largest_n]["jvp"],
    "vjp_ms_largest_n": timings[largest_n]["vjp"],
    "jvp_ms_largest_p": timings[largest_p]["jvp"],
    "vjp_ms_largest_p": timings[largest_p]["vjp"],
    "compile_s_jvp": compile_s["jvp"],
    "compile_s_vjp": compile_s["vjp"],
}
(out_dir / "sensitivity_analysis.json").write_text(json.dumps(results, indent=1))
print(f"Saved {out}")
