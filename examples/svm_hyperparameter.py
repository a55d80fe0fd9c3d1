"""Tune the regularisation of a multiclass SVM by gradient descent on a validation loss.

The inner problem is the dual of the Crammer-Singer multiclass SVM: one probability
vector per training sample (a row of `beta`, on the simplex),

    beta*(lam) = argmin_{beta in simplex^n}  lam/2 ||W||^2 + <beta, Y>,
    W(beta, lam) = X_train^T (Y - beta) / lam,

and the primal weights are `W(beta*, lam)`. The outer problem tunes `log lam` to
minimise the softmax cross-entropy of `X_val @ W` on a validation set. The problem is
constrained, so there is no gradient-equals-zero condition: implicitx differentiates
the fixed point of projected gradient, `beta = P(beta - eta grad f(beta, lam))`.

The last part times one hypergradient as the number of features grows (the paper's
runtime figure): implicit differentiation of the fixed point of each of three solvers
(projected gradient, mirror descent, block coordinate descent), against unrolling the
same solver's iterations.

Run: python examples/svm_hyperparameter.py [--steps N] [--quick] [--out DIR]
"""

import argparse
import json
import pathlib
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from tqdm import tqdm

import implicitx as ix


jax.config.update("jax_enable_x64", True)  # before any array is created
plt.switch_backend("Agg")  # write files, open no window

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--steps", type=int, default=None, help="outer steps (50)")
parser.add_argument("--quick", action="store_true", help="10 outer steps, for CI")
parser.add_argument("--out", type=pathlib.Path, default=None, help="output folder")
args = parser.parse_args()
steps = args.steps if args.steps is not None else (10 if args.quick else 50)

# --- Synthetic data: the class scores depend on 10 of the 50 features. --------------
n_train, n_val, p, k = 150, 150, 50, 4
rng = np.random.default_rng(0)
W_true = 2.0 * rng.normal(size=(p, k)) * (np.arange(p) < 10)[:, None]


def make_data(n):
    X = rng.normal(size=(n, p))
    labels = np.argmax(X @ W_true + rng.gumbel(size=(n, k)), axis=1)  # noisy labels
    return jnp.asarray(X), jnp.asarray(np.eye(k)[labels])  # one-hot Y


(X_tr, Y_tr), (X_val, Y_val) = make_data(n_train), make_data(n_val)


# --- Inner problem: the multiclass SVM dual, one simplex per training sample. -------
def primal(beta, lam):
    return X_tr.T @ (Y_tr - beta) / lam  # W, shape (p, k)


def f(beta, lam):
    return 0.5 * lam * jnp.sum(primal(beta, lam) ** 2) + jnp.sum(beta * Y_tr)


simplices = ix.projection.RowWise(ix.projection.Simplex())
condition = ix.ProjectedGradientFixedPoint(f, simplices)
beta0 = jnp.full((n_train, k), 1.0 / k)  # the centre of every simplex
svm = ix.ImplicitArgmin(
    condition, ix.solvers.ProjectedGradient(rtol=1e-8, atol=1e-8), x0=beta0
)


# --- Outer problem: validation cross-entropy as a function of log lam. --------------
def val_metrics(log_lam, beta0, layer=svm):
    lam = jnp.exp(log_lam)  # the log keeps lam positive
    beta = layer(lam, beta0)  # warm start from beta0
    logits = X_val @ primal(beta, lam)
    loss = -jnp.mean(jnp.sum(Y_val * jax.nn.log_softmax(logits), axis=1))
    accuracy = jnp.mean(jnp.argmax(logits, 1) == jnp.argmax(Y_val, 1))
    return loss, (accuracy, jax.lax.stop_gradient(beta))


def val_loss(log_lam, layer=svm):
    return val_metrics(log_lam, beta0, layer)[0]


optimiser = optax.adam(learning_rate=0.1)


@jax.jit
def step(log_lam, opt_state, beta):
    grad_fn = jax.value_and_grad(val_metrics, has_aux=True)
    (loss, (accuracy, beta)), grad = grad_fn(log_lam, beta)
    updates, opt_state = optimiser.update(grad, opt_state)
    return optax.apply_updates(log_lam, updates), opt_state, beta, loss, accuracy


# --- Hypergradient check at the initial point. --------------------------------------
# Not weakly typed, so the jitted step is compiled once. For very small lam the
# solution is the hard-margin one (W does not depend on lam) and for very large lam
# beta* stops moving; lam = 100 is in between, where beta* depends on lam.
log_lam = jnp.asarray(np.log(100.0))
beta_init = svm(jnp.exp(log_lam))
# The same solution, differentiated through the mirror-descent (exponentiated
# gradient) fixed point instead: a different condition with the same solutions. It is
# more sensitive to the forward solver's error (about 1e-6 in beta at rtol=1e-8).
mirror = ix.ImplicitArgmin(
    ix.MirrorDescentFixedPoint(f, ix.mirror.NegativeEntropySimplex(), stepsize=0.1),
    ix.solvers.FunctionSolver(lambda lam, x0: beta_init),
)
# A central difference needs a tighter solve and a small step: the loss is only
# piecewise smooth in lam (the support of beta* changes at isolated values).
tight = ix.ImplicitArgmin(
    condition, ix.solvers.ProjectedGradient(rtol=1e-12, atol=1e-12), x0=beta0
)
eps = 1e-6
g_implicit = jax.grad(val_loss)(log_lam)
g_mirror = jax.grad(lambda t: val_loss(t, mirror))(log_lam)
g_fd = (val_loss(log_lam + eps, tight) - val_loss(log_lam - eps, tight)) / (2 * eps)
print(f"Hypergradient d(val loss)/d(log lam) at lam = {jnp.exp(log_lam):g}:")
print(f"  projected-gradient condition  {g_implicit:+.10f}")
for name, g in [
    ("mirror-descent condition", g_mirror),
    (f"central diff, eps={eps:g}", g_fd),
]:
    print(f"  {name:<29} {g:+.10f}  (rel. diff {abs(g - g_implicit) / abs(g):.1e})")

# --- Bi-level training loop, warm-starting each inner solve. ------------------------
opt_state = optimiser.init(log_lam)
t0 = time.perf_counter()
jax.block_until_ready(step(log_lam, opt_state, beta_init))  # compile, untimed
compile_s = time.perf_counter() - t0

beta, loss_hist, lam_hist, acc_hist = beta_init, [], [], []
t0 = time.perf_counter()
for _ in (bar := tqdm(range(steps), desc="outer steps")):
    lam_hist.append(float(jnp.exp(log_lam)))
    log_lam, opt_state, beta, loss, accuracy = step(log_lam, opt_state, beta)
    loss_hist.append(float(loss))
    acc_hist.append(float(accuracy))
    bar.set_postfix(val_loss=f"{loss_hist[-1]:.4f}", lam=f"{lam_hist[-1]:.3g}")
step_ms = 1e3 * (time.perf_counter() - t0) / steps
final_loss, (final_acc, _) = val_metrics(log_lam, beta)  # at the learned lam
loss_hist.append(float(final_loss))
lam_hist.append(float(jnp.exp(log_lam)))

print(f"{'':<20}{'lam':>10}{'val loss':>10}{'val acc':>9}")
print(f"{'initial':<20}{lam_hist[0]:10.4g}{loss_hist[0]:10.4f}{acc_hist[0]:9.3f}")
after = f"after {steps} steps"
print(f"{after:<20}{lam_hist[-1]:10.4g}{final_loss:10.4f}{final_acc:9.3f}")
print(f"Time per outer step: {step_ms:.1f} ms (plus {compile_s:.2f} s to compile)")


# --- Runtime of one hypergradient as the number of features grows. ----------------
# Each solver runs a fixed budget of iterations, as in the paper, and is
# differentiated by its own fixed point at its last iterate (implicit, asked for
# explicitly with `inexact=True`: by Theorem 1 its error is proportional to the
# iterate's) or through its iterations (unrolled, `ix.UnrolledAdjoint`). The data are
# arguments of the compiled function (closed-over arrays would be folded into
# constants at compile time).
budget = 10 if args.quick else 100  # iterations of every solver


def conditioned_solver(kind, f, X, lam):
    fixed = dict(rtol=0.0, atol=0.0, max_steps=budget)  # never stops early
    # 1/L of the dual's gradient (Euclidean, and in the entropy's geometry for mirror
    # descent); no derivative flows through a step size.
    eta = jax.lax.stop_gradient(lam / jnp.linalg.norm(X, 2) ** 2)
    if kind == "projected gradient":
        condition = ix.ProjectedGradientFixedPoint(f, simplices, stepsize=eta)
        return condition, ix.solvers.ProjectedGradient(stepsize=eta, **fixed)
    if kind == "mirror descent":
        eta_md = jax.lax.stop_gradient(lam / jnp.max(jnp.sum(X**2, axis=1)))
        entropy = ix.mirror.NegativeEntropySimplex()
        condition = ix.MirrorDescentFixedPoint(f, entropy, stepsize=eta_md)
        return condition, ix.solvers.MirrorDescent(**fixed)
    prox = ix.prox.FromProjection(ix.projection.Simplex())
    condition = ix.BlockProximalGradientFixedPoint(f, prox, stepsize=eta)
    return condition, ix.solvers.BlockCoordinateDescent(**fixed)


def hypergradient(kind, adjoint):
    def loss(log_lam, X, Y, X_v, Y_v):
        lam = jnp.exp(log_lam)

        def f(beta, lam):
            return 0.5 / lam * jnp.sum((X.T @ (Y - beta)) ** 2) + jnp.sum(beta * Y)

        condition, solver = conditioned_solver(kind, f, X, lam)
        beta0 = jnp.full(Y.shape, 1.0 / Y.shape[1])
        argmin = ix.ImplicitArgmin(condition, solver, adjoint, x0=beta0, throw=False)
        beta = argmin(lam)
        logits = X_v @ (X.T @ (Y - beta) / lam)
        return -jnp.mean(jnp.sum(Y_v * jax.nn.log_softmax(logits), axis=1))

    return jax.jit(jax.grad(loss))


def median_ms(fn, *args, repeats=3):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t)
    return 1e3 * float(np.median(times))


kinds = ("projected gradient", "mirror descent", "block coordinate descent")
adjoints = {
    "implicit": ix.ImplicitAdjoint(inexact=True),
    "unrolled": ix.UnrolledAdjoint(),
}
sizes = (20,) if args.quick else (50, 200, 800, 2000)
timings = {(kind, how): [] for kind in kinds for how in adjoints}
gaps = []  # max |implicit - unrolled| relative, per size: both are the hypergradient
for p_size in tqdm(sizes, desc="runtime vs features", disable=None):
    r = np.random.default_rng(p_size)
    W_size = 2.0 * r.normal(size=(p_size, k)) * (np.arange(p_size) < 10)[:, None]
    data = []
    for _ in range(2):  # training, validation
        X_s = r.normal(size=(n_train, p_size))
        labels = np.argmax(X_s @ W_size + r.gumbel(size=(n_train, k)), axis=1)
        data += [jnp.asarray(X_s), jnp.asarray(np.eye(k)[labels])]
    theta = jnp.asarray(np.log(2.0 * p_size))  # soft-margin regime: lam ~ p
    for kind in kinds:
        grads = []
        for how, adjoint in adjoints.items():
            fn = hypergradient(kind, adjoint)
            grads.append(fn(theta, *data))  # compile (and one run), untimed
            timings[kind, how].append(median_ms(fn, theta, *data))
        gaps.append(float(abs(grads[0] - grads[1]) / abs(grads[1])))

print(f"One hypergradient (ms, implicit / unrolled), {budget} iterations, ", end="")
print(f"n = {n_train} samples, k = {k} classes:")
print(f"{'features':>9}" + "".join(f"{kind:>26}" for kind in kinds))
for j, p_size in enumerate(sizes):
    row = [
        f"{timings[kind, 'implicit'][j]:10.1f} /{timings[kind, 'unrolled'][j]:9.1f}"
        for kind in kinds
    ]
    print(f"{p_size:9d}" + "".join(f"{cell:>26}" for cell in row))
print(f"implicit vs unrolled hypergradient: max relative difference {max(gaps):.1e}")
print("  (both differentiate the last iterate: the difference is the iterate's error)")

# --- Figure. ------------------------------------------------------------------------
out_dir = args.out or pathlib.Path(__file__).parent / "out"
out_dir.mkdir(parents=True, exist_ok=True)
out = out_dir / "svm_hyperparameter.png"
fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(15, 4))
ax1.plot(loss_hist)
ax1.set(xlabel="outer step", ylabel="validation cross-entropy")
ax1.set_title("Validation loss")
ax2.plot(lam_hist)
ax2.set(xlabel="outer step", ylabel="lam", yscale="log")
ax2.set_title("Regularisation strength")
for kind, colour in zip(kinds, ("tab:blue", "tab:orange", "tab:green"), strict=True):
    for how, style in (("implicit", "-o"), ("unrolled", "--s")):
        ax3.plot(sizes, timings[kind, how], style, color=colour, label=f"{kind}, {how}")
ax3.set(xlabel="number of features p", ylabel="one hypergradient (ms)")
ax3.set(xscale="log", yscale="log")
ax3.set_title("Implicit (solid) vs unrolled (dashed)")
ax3.legend(fontsize=7)
fig.tight_layout()
fig.savefig(out, dpi=120)
results = {
    "val_loss_start": loss_hist[0],
    "val_loss_final": loss_hist[-1],
    "hypergradient_fd_error": float(abs(g_fd - g_implicit) / abs(g_fd)),
    "implicit_unrolled_max_difference": max(gaps),
}
for kind in kinds:
    for how in adjoints:
        results[f"{kind.replace(' ', '_')}_{how}_ms_largest"] = timings[kind, how][-1]
results["implicit_ms_largest"] = results["projected_gradient_implicit_ms_largest"]
results["unrolled_ms_largest"] = results["projected_gradient_unrolled_ms_largest"]
(out_dir / "svm_hyperparameter.json").write_text(json.dumps(results, indent=1))
print(f"Saved {out}")
