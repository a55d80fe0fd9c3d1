"""Dataset distillation: learn one synthetic image per class that trains a classifier.

Ten synthetic 8x8 images, one per digit class, are learned so that a multiclass
logistic regression trained on those ten images alone classifies real digits (the
dataset distillation experiment of Blondel et al., 2021). The inner problem trains
the classifier on the synthetic images `S` (one row per class, labels `E` = identity),

    W*(S) = argmin_W  sum_i CE(S_i W, E_i) + l2/2 ||W||^2,

solved by FISTA (`ix.solvers.ProximalGradient`, with no prox) and differentiated
implicitly through its stationarity condition `grad_W f(W*, S) = 0`
(`ix.Stationarity`): the hypergradient costs one linear solve with the Hessian of the
inner objective, whatever the number of inner iterations. The outer problem is the
cross-entropy of the real training digits under `W*(S)`, minimised over `S` by Adam,
each step projected back onto the pixel range [0, 1].

The data are scikit-learn's `load_digits` (1797 8x8 digits, scaled to [0, 1], split
in half into train and test) in place of the paper's MNIST. The distilled images are
compared with ten random real training images (one per class) and with the full
training set, each used to train the same regularised logistic regression. One
hypergradient is timed implicit vs unrolled (`ix.UnrolledAdjoint`: reverse mode
through the same FISTA iterations) and checked against central finite differences.

Run: python examples/dataset_distillation.py [--steps N] [--quick] [--out DIR]
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
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from tqdm import tqdm

import implicitx as ix


jax.config.update("jax_enable_x64", True)  # before any array is created
plt.switch_backend("Agg")  # write files, open no window

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--steps", type=int, default=None, help="outer steps (2000)")
parser.add_argument("--quick", action="store_true", help="100 outer steps, for CI")
parser.add_argument("--out", type=pathlib.Path, default=None, help="output folder")
args = parser.parse_args()
steps = args.steps if args.steps is not None else (100 if args.quick else 2000)

# --- Data: 8x8 digits, pixels in [0, 1], half for training, half for testing. -------
X, labels = load_digits(return_X_y=True)
X_tr, X_te, y_tr, y_te = train_test_split(
    X / 16.0, labels, test_size=0.5, random_state=0, stratify=labels
)
X_tr, X_te = jnp.asarray(X_tr), jnp.asarray(X_te)
Y_tr = jnp.asarray(np.eye(10)[y_tr])  # one-hot
n_classes, n_pixels = 10, X_tr.shape[1]
l2 = 1e-2  # the inner problem's L2 penalty


# --- Inner problem: logistic regression trained on the ten (synthetic) images. ------
def cross_entropy(logits, Y):
    return -jnp.sum(Y * jax.nn.log_softmax(logits))


def inner_objective(W, data):
    images, Y = data
    return cross_entropy(images @ W, Y) + 0.5 * l2 * jnp.sum(W**2)


condition = ix.Stationarity(inner_objective, convex=True)
fista = ix.solvers.ProximalGradient(rtol=1e-12, atol=1e-12)
W0 = jnp.zeros((n_pixels, n_classes))
implicit = ix.ImplicitArgmin(condition, fista, x0=W0)
unrolled = ix.ImplicitArgmin(condition, fista, ix.UnrolledAdjoint(), x0=W0)
E = jnp.eye(n_classes)  # the synthetic images' labels: image i is of class i


def accuracy(W, X, y):
    return float(jnp.mean(jnp.argmax(X @ W, axis=1) == y))


# --- Outer problem: the real training digits' cross-entropy under W*(S). ------------
def outer_loss(images, layer):
    sol = layer.solve((images, E))  # sol.value is W*(images), differentiable
    loss = cross_entropy(X_tr @ sol.value, Y_tr) / X_tr.shape[0]
    return loss, (sol.value, sol.stats["num_steps"])


def hypergradient(layer):
    grad_fn = jax.value_and_grad(outer_loss, has_aux=True)
    return jax.jit(lambda images: grad_fn(images, layer))


rng = np.random.default_rng(0)
pick = [rng.choice(np.flatnonzero(y_tr == c)) for c in range(n_classes)]
random_real = X_tr[np.asarray(pick)]  # one random real training image per class
grad_implicit, grad_unrolled = hypergradient(implicit), hypergradient(unrolled)


def compile_and_time(fn, *args, repeats=5):
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


def fd_check(images, grad, eps=1e-4):
    """(implicit, central difference, relative error) along a random direction."""
    direction = jnp.asarray(rng.normal(size=images.shape))
    (loss_plus, _), _ = grad_implicit(images + eps * direction)
    (loss_minus, _), _ = grad_implicit(images - eps * direction)
    fd = (loss_plus - loss_minus) / (2 * eps)
    directional = jnp.vdot(grad, direction)
    return float(directional), float(fd), float(abs(directional - fd) / abs(fd))


# --- One hypergradient, at the ten random real images: implicit vs unrolled, and ----
# --- against finite differences. -----------------------------------------------------
compile_i, implicit_ms, ((_, (W_random, n_inner)), g_i) = compile_and_time(
    grad_implicit, random_real
)
compile_u, unrolled_ms, (_, g_u) = compile_and_time(grad_unrolled, random_real)
directional, fd, fd_error = fd_check(random_real, g_i)
unrolled_gap = float(jnp.linalg.norm(g_i - g_u) / jnp.linalg.norm(g_i))
print("One hypergradient d(outer loss)/d(images) at ten random real images,")
print(f"{n_inner} FISTA steps inside:")
print(f"  {'':<10}{'run (ms)':>10}{'compile (s)':>13}")
print(f"  {'implicit':<10}{implicit_ms:10.2f}{compile_i:13.2f}")
print(f"  {'unrolled':<10}{unrolled_ms:10.2f}{compile_u:13.2f}")
print(f"  implicit vs unrolled: relative difference {unrolled_gap:.1e}")
print(f"  along a random direction: implicit {directional:+.10f}")
print(f"  {'':<18}central diff. {fd:+.10f}  (eps=1e-4, rel. error {fd_error:.1e})")

# --- Distillation: Adam on the images, projected onto the pixel range [0, 1]. -------
optimiser = optax.adam(learning_rate=0.01)
# Start from grey images (pixels 0.5), slightly perturbed so that they differ.
images = jnp.asarray(0.5 + 0.01 * rng.normal(size=(n_classes, n_pixels)))
opt_state = optimiser.init(images)


@jax.jit
def adam_step(images, opt_state, grad):
    updates, opt_state = optimiser.update(grad, opt_state)
    images = optax.apply_updates(images, updates)
    return optax.projections.projection_box(images, 0.0, 1.0), opt_state  # pixels


loss_hist, inner_steps, W_start = [], [], None
t0 = time.perf_counter()
for _ in (bar := tqdm(range(steps), desc="outer steps", disable=None)):
    (loss, (W, n)), grad = grad_implicit(images)
    W_start = W if W_start is None else W_start
    images, opt_state = adam_step(images, opt_state, grad)
    loss_hist.append(float(loss))
    inner_steps.append(int(n))
    if len(loss_hist) % 50 == 0:
        bar.set_postfix(outer_loss=f"{loss_hist[-1]:.4f}")
train_s = time.perf_counter() - t0
(loss_final, (W_distilled, n)), grad = grad_implicit(images)
loss_hist.append(float(loss_final))
inner_steps.append(int(n))
# The loss is more curved at the distilled images (finite differences would need a
# smaller step there); compare with the unrolled hypergradient instead.
grad_u = grad_unrolled(images)[1]
gap_distilled = float(jnp.linalg.norm(grad - grad_u) / jnp.linalg.norm(grad))

# --- Test accuracy of the classifier trained on each set of images. ------------------
W_full = jax.jit(implicit)((X_tr, Y_tr))  # the whole training set
rows = [
    ("10 distilled images", accuracy(W_distilled, X_te, y_te)),
    ("10 random real images", accuracy(W_random, X_te, y_te)),
    (f"full train set ({X_tr.shape[0]})", accuracy(W_full, X_te, y_te)),
    ("(grey images at start)", accuracy(W_start, X_te, y_te)),
]
print(f"Distillation: {steps} Adam steps, {1e3 * train_s / steps:.1f} ms each")
print(f"  outer loss (train cross-entropy) {loss_hist[0]:.4f} -> {loss_hist[-1]:.4f}")
print(f"  FISTA steps per inner solve       {inner_steps[0]} -> {inner_steps[-1]}")
print(
    f"  at the distilled images, implicit vs unrolled hypergradient {gap_distilled:.1e}"
)
print(f"  {'logistic regression trained on':<32}{'test accuracy':>14}")
for name, acc in rows:
    print(f"  {name:<32}{acc:14.3f}")

# --- Figure: the distilled images, and the outer loss. -------------------------------
out_dir = args.out or pathlib.Path(__file__).parent / "out"
out_dir.mkdir(parents=True, exist_ok=True)
out = out_dir / "dataset_distillation.png"
fig = plt.figure(figsize=(13, 4.2))
grid = fig.add_gridspec(2, 8)
for c in range(n_classes):
    ax = fig.add_subplot(grid[c // 5, c % 5])
    ax.imshow(np.asarray(images[c]).reshape(8, 8), cmap="gray_r", vmin=0, vmax=1)
    ax.set_title(f"class {c}", fontsize=9)
    ax.set(xticks=[], yticks=[])
ax = fig.add_subplot(grid[:, 5:])
ax.plot(loss_hist)
ax.set(xlabel="Adam step", ylabel="train cross-entropy under W*(images)")
ax.set(yscale="log")
ax.set_title("Outer loss")
fig.suptitle(
    f"Ten distilled 8x8 digits: test accuracy {rows[0][1]:.3f} "
    f"(random real images {rows[1][1]:.3f}, full train set {rows[2][1]:.3f})"
)
fig.tight_layout()
fig.savefig(out, dpi=120)
results = {
    "test_accuracy": rows[0][1],
    "test_accuracy_random_real": rows[1][1],
    "test_accuracy_full": rows[2][1],
    "outer_loss_start": loss_hist[0],
    "outer_loss_final": loss_hist[-1],
    "implicit_ms": implicit_ms,
    "unrolled_ms": unrolled_ms,
    "implicit_compile_s": compile_i,
    "unrolled_compile_s": compile_u,
    "implicit_unrolled_difference": unrolled_gap,
    "hypergradient_fd_error": fd_error,
    "implicit_unrolled_difference_distilled": gap_distilled,
    "inner_steps": int(n_inner),
    "outer_steps": steps,
}
(out_dir / "dataset_distillation.json").write_text(json.dumps(results, indent=1))
print(f"Saved {out}")
