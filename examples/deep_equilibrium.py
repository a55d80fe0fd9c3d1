"""A deep equilibrium layer in an Equinox classifier of handwritten digits.

Beyond the paper. A deep equilibrium (DEQ) layer maps an input `x` to the fixed point

    z*(x) = tanh(W z* + U x + b),

an "infinitely deep" weight-tied network, and a linear read-out classifies `z*`. The
map is a contraction in `z` when `||W||_2 < 1` (tanh is 1-Lipschitz), so the fixed
point exists and is unique: the layer uses `W ||W||_2^-1 min(||W||_2, 0.9)` in place
of `W`. The fixed point is found by Anderson acceleration
(`ix.solvers.AndersonAcceleration`) on the condition `ix.FixedPoint`, for the whole
batch at once (one row per sample: the rows do not interact), and differentiated
implicitly: the gradient needs one linear solve with `I - dT/dz` at the fixed point,
whatever the number of iterations, and nothing of the forward iterations is stored.
The layer is an `equinox.Module` holding `W`, `U`, `b` and its `ix.ImplicitArgmin`;
the whole classifier is trained by Adam (optax) with `equinox.filter_value_and_grad`,
and the first gradient is checked against central finite differences.

Then the cost of a training step, implicit (`ix.ImplicitAdjoint`) against unrolled
(`ix.UnrolledAdjoint`: backpropagation through the Anderson iterations, with nested
checkpointing), for a fixed budget of `k` iterations (`rtol = atol = 0`,
`max_steps = k`; the implicit derivative is then taken at the last iterate,
`ImplicitAdjoint(inexact=True)`): the time per step, the temporary memory of the
compiled step (XLA's memory analysis), and the error of each gradient against the
converged one, as `k` grows.

Data: scikit-learn's `load_digits` (1797 8x8 digits, pixels scaled to [0, 1], split
in half into train and test), trained full-batch.

Run: python examples/deep_equilibrium.py [--steps N] [--quick] [--out DIR]
"""

import argparse
import json
import pathlib
import time

import equinox as eqx
import jax
import jax.flatten_util as jfu
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from jaxtyping import Array
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from tqdm import tqdm

import implicitx as ix


jax.config.update("jax_enable_x64", True)  # before any array is created
plt.switch_backend("Agg")  # write files, open no window

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--steps", type=int, default=None, help="Adam steps (400)")
parser.add_argument("--quick", action="store_true", help="40 steps, one budget, for CI")
parser.add_argument("--out", type=pathlib.Path, default=None, help="output folder")
args = parser.parse_args()
steps = args.steps if args.steps is not None else (40 if args.quick else 400)
budgets = [10] if args.quick else [5, 10, 20, 40, 80, 160]
repeats = 3 if args.quick else 5
hidden, contraction = 32, 0.9

# --- Data: 8x8 digits, pixels in [0, 1], half for training, half for testing. -------
X, labels = load_digits(return_X_y=True)
X_tr, X_te, y_tr, y_te = train_test_split(
    X / 16.0, labels, test_size=0.5, random_state=0, stratify=labels
)
X_tr, X_te, y_tr, y_te = map(jnp.asarray, (X_tr, X_te, y_tr, y_te))


# --- The layer. ----------------------------------------------------------------------
def tanh_map(Z, theta):
    """`T(Z, theta) = tanh(Z W^T + injection)`, one row per sample: its fixed point is
    the layer's output."""
    W, injection = theta
    return jnp.tanh(Z @ W.T + injection)


class DEQ(eqx.Module):
    """Inputs `X` (one per row) `-> Z*`, with `Z* = tanh(Z* W^T + X U^T + b)`."""

    W: Array
    U: Array
    b: Array
    argmin: ix.ImplicitArgmin

    def contractive_W(self):
        """`W`, scaled down to a spectral norm of at most `contraction`."""
        return self.W * jnp.minimum(1.0, contraction / jnp.linalg.norm(self.W, ord=2))

    def solve(self, X):
        injection = X @ self.U.T + self.b
        # Start from one step of the iteration from Z = 0 (no derivative flows
        # through the initial guess).
        x0 = jnp.tanh(injection)
        return self.argmin.solve((self.contractive_W(), injection), x0)

    def __call__(self, X):
        return self.solve(X).value


class Classifier(eqx.Module):
    deq: DEQ
    readout: eqx.nn.Linear

    def __call__(self, X):
        return jax.vmap(self.readout)(self.deq(X))


def deq_argmin(adjoint, throw=True, **solver_options):
    """The fixed point of `tanh_map` for the whole batch at once, by Anderson
    acceleration (the rows do not interact: `A = I - dT/dZ` is block diagonal)."""
    solver = ix.solvers.AndersonAcceleration(memory=5, **solver_options)
    return ix.ImplicitArgmin(ix.FixedPoint(tanh_map), solver, adjoint, throw=throw)


key_w, key_u, key_out = jax.random.split(jax.random.key(0), 3)
W0 = jax.random.normal(key_w, (hidden, hidden)) * 0.5 / np.sqrt(hidden)
U0 = jax.random.normal(key_u, (hidden, X.shape[1])) / np.sqrt(X.shape[1])
# Converged to 1e-12 for training and for the gradient check.
exact = deq_argmin(ix.ImplicitAdjoint(), rtol=1e-12, atol=1e-12, max_steps=500)
deq = DEQ(W0, U0, jnp.zeros(hidden), exact)
model = Classifier(deq, eqx.nn.Linear(hidden, 10, key=key_out))


def loss_fn(model, X, y):
    sol = model.deq.solve(X)  # sol.value is Z*(X), differentiable
    logits = jax.vmap(model.readout)(sol.value)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return loss, sol.stats["num_steps"]


def accuracy(model, X, y):
    return float(jnp.mean(jnp.argmax(model(X), axis=1) == y))


optimiser = optax.adam(learning_rate=1e-2)


def make_step(static):
    """A jitted training step for the model structure `static` (its arrays are the
    inputs `params`): the loss, the Anderson steps taken, the gradient, the update."""

    def step(params, opt_state, X, y):
        grad_fn = eqx.filter_value_and_grad(loss_fn, has_aux=True)
        (loss, n_iter), grads = grad_fn(eqx.combine(params, static), X, y)
        updates, opt_state = optimiser.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, n_iter, grads

    return jax.jit(step)


def flat(tree):
    return jfu.ravel_pytree(eqx.filter(tree, eqx.is_inexact_array))[0]


params, static = eqx.partition(model, eqx.is_inexact_array)
opt_state = optimiser.init(params)
step = make_step(static)


def loss_only(params):
    """The training loss at `params` (by the compiled training step)."""
    return step(params, opt_state, X_tr, y_tr)[2]


# --- Training; the first step's gradient is checked against finite differences. -----
history, t0 = [], time.perf_counter()
for i in (bar := tqdm(range(steps), desc="Adam steps", disable=None)):
    if i == 0:
        params0 = params
        *_, first_grads = jax.block_until_ready(step(params, opt_state, X_tr, y_tr))
        t0 = time.perf_counter()  # the first call compiles: not counted
    params, opt_state, loss, n_iter, _ = step(params, opt_state, X_tr, y_tr)
    history.append(float(loss))
    if i % 20 == 0:
        bar.set_postfix(loss=f"{history[-1]:.4f}", anderson=int(n_iter))
train_ms = 1e3 * (time.perf_counter() - t0) / steps
model = eqx.combine(params, static)
history.append(float(loss_only(params)))
test_acc = accuracy(model, X_te, y_te)

# Along a random direction in the 3434 parameters, at the initial parameters.
flat0, unflatten = jfu.ravel_pytree(params0)
direction = jax.random.normal(jax.random.key(1), flat0.shape)
eps = 1e-5


def loss_at(x):
    return loss_only(unflatten(x))


fd = (loss_at(flat0 + eps * direction) - loss_at(flat0 - eps * direction)) / (2 * eps)
directional = flat(first_grads) @ direction
gradient_fd_error = float(jnp.abs(directional - fd) / jnp.abs(fd))

print(f"Gradient of the training loss ({flat0.size} parameters) at the initial ones,")
print(f"along a random direction: implicit {directional:+.10f}")
print(f"{'':<26}central diff. {fd:+.10f}  (eps={eps:g}, rel. error ", end="")
print(f"{gradient_fd_error:.1e})")
print(f"Training: {steps} full-batch Adam steps ({train_ms:.1f} ms each), ", end="")
print("Anderson to 1e-12")
print(f"  {'train loss':<28}{history[0]:.4f} -> {history[-1]:.4f}")
print(f"  {'Anderson steps (last step)':<28}{int(n_iter)}")
print(f"  {'test accuracy':<28}{test_acc:.3f}")

# --- Implicit vs unrolled, on a budget of k iterations. ------------------------------
# At the trained parameters, each training step compiled on its own: its temporary
# memory from XLA's analysis, its median time, and its gradient's error against the
# converged implicit one.
*_, exact_grads = step(params, opt_state, X_tr, y_tr)
exact_flat = flat(exact_grads)
# The implicit derivative at the last iterate.
adjoints = [
    ("implicit", ix.ImplicitAdjoint(inexact=True)),
    ("unrolled", ix.UnrolledAdjoint()),
]
rows = []
for k in tqdm(budgets, desc="budgets", disable=None):
    row = {"k": k}
    for name, adjoint in adjoints:
        # throw=False: on a budget, the solve ends with "max steps reached".
        argmin = deq_argmin(adjoint, False, rtol=0.0, atol=0.0, max_steps=k)
        model_k = eqx.tree_at(lambda m: m.deq.argmin, model, argmin)
        params_k, static_k = eqx.partition(model_k, eqx.is_inexact_array)
        state_k = optimiser.init(params_k)
        inputs = (params_k, state_k, X_tr, y_tr)
        t = time.perf_counter()
        compiled = make_step(static_k).lower(*inputs).compile()
        row[f"{name}_compile_s"] = time.perf_counter() - t
        row[f"{name}_mib"] = compiled.memory_analysis().temp_size_in_bytes / 2**20
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            *_, grads = jax.block_until_ready(compiled(*inputs))
            times.append(time.perf_counter() - t)
        row[f"{name}_ms"] = 1e3 * float(np.median(times))
        error = jnp.linalg.norm(flat(grads) - exact_flat) / jnp.linalg.norm(exact_flat)
        row[f"{name}_grad_error"] = float(error)
    rows.append(row)

print(
    "One training step with a budget of k Anderson steps (at the trained parameters):"
)
print(f"  {'':>5}{'time (ms)':>20}{'temp. memory (MiB)':>22}{'gradient error':>20}")
print(f"  {'k':>5}" + f"{'implicit':>11}{'unrolled':>10}" * 3)
for r in rows:
    print(f"  {r['k']:5d}{r['implicit_ms']:11.1f}{r['unrolled_ms']:10.1f}", end="")
    print(f"{r['implicit_mib']:11.1f}{r['unrolled_mib']:10.1f}", end="")
    print(f"{r['implicit_grad_error']:11.1e}{r['unrolled_grad_error']:10.1e}")
compile_i = sum(r["implicit_compile_s"] for r in rows)
compile_u = sum(r["unrolled_compile_s"] for r in rows)
print(f"  (compilation, all budgets: implicit {compile_i:.1f} s, ", end="")
print(f"unrolled {compile_u:.1f} s)")

# --- Figure: training, then time, memory and gradient error against k. ---------------
out_dir = args.out or pathlib.Path(__file__).parent / "out"
out_dir.mkdir(parents=True, exist_ok=True)
out = out_dir / "deep_equilibrium.png"
fig, axes = plt.subplots(1, 4, figsize=(16, 3.8))
axes[0].plot(history)
axes[0].set(xlabel="Adam step", ylabel="train cross-entropy", yscale="log")
axes[0].set_title(f"Training (test accuracy {test_acc:.3f})")
ks = [r["k"] for r in rows]
for ax, key, ylabel, title in [
    (axes[1], "ms", "time per training step (ms)", "Time"),
    (axes[2], "mib", "temporary memory (MiB)", "Memory of the compiled step"),
    (axes[3], "grad_error", "relative error of the gradient", "Gradient vs converged"),
]:
    for name, style in [("implicit", "o-"), ("unrolled", "s-")]:
        ax.plot(ks, [r[f"{name}_{key}"] for r in rows], style, label=name)
    ax.set(xscale="log", yscale="log", xlabel="k (Anderson steps, fixed budget)")
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_xticks([], minor=True)
    ax.set(ylabel=ylabel)
    ax.set_title(title)
    ax.legend()
fig.tight_layout()
fig.savefig(out, dpi=120)
last = rows[-1]
results = {
    "test_accuracy": test_acc,
    "train_loss_start": history[0],
    "train_loss_final": history[-1],
    "gradient_fd_error": gradient_fd_error,
    "train_step_ms": train_ms,
    "budget_largest": last["k"],
    "implicit_ms_largest": last["implicit_ms"],
    "unrolled_ms_largest": last["unrolled_ms"],
    "implicit_mib_largest": last["implicit_mib"],
    "unrolled_mib_largest": last["unrolled_mib"],
    "implicit_grad_error_largest": last["implicit_grad_error"],
    "unrolled_grad_error_largest": last["unrolled_grad_error"],
}
(out_dir / "deep_equilibrium.json").write_text(json.dumps(results, indent=1))
print(f"Saved {out}")
