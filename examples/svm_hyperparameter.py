"""Tune the regularisation of a multiclass SVM by gradient descent on a validation loss.

The inner problem is the dual of the Crammer-Singer multiclass SVM: one probability
vector per training sample (a row of `beta`, on the simplex),

    beta*(lam) = argmin_{beta in simplex^n}  lam/2 ||W||^2 + <beta, Y>,
    W(beta, lam) = X_train^T (Y - beta) / lam,

and the primal weights are `W(beta*, lam)`. The outer problem tunes `log lam` to
minimise the softmax cross-entropy of `X_val @ W` on a validation set. The problem is
constrained, so there is no gradient-equals-zero condition: implicitx differentiates
the fixed point of projected gradient, `beta = P(beta - eta grad f(beta, lam))`.

Run: python examples/svm_hyperparameter.py [--steps N] [--quick]
"""

import argparse
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

# --- Figure. ------------------------------------------------------------------------
out = pathlib.Path(__file__).parent / "out" / "svm_hyperparameter.png"
out.parent.mkdir(exist_ok=True)
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
ax1.plot(loss_hist)
ax1.set(xlabel="outer step", ylabel="validation cross-entropy")
ax1.set_title("Validation loss")
ax2.plot(lam_hist)
ax2.set(xlabel="outer step", ylabel="lam", yscale="log")
ax2.set_title("Regularisation strength")
fig.tight_layout()
fig.savefig(out, dpi=120)
print(f"Saved {out}")
