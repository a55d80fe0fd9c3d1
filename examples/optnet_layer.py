"""Train an OptNet-style model: a QP layer inside an Equinox module, learned with optax.

The model maps an input `x` to the solution of a quadratic program whose data it
learns,

    z*(x) = argmin_z  0.5 ||z||^2 - (W x + b)^T z   s.t.  G z <= h,

with `W`, `b` and `h` learned (`G` fixed). The targets come from a hidden model of the
same form with other parameters, plus noise: the layer must learn both the linear map
and where the constraints bind. Gradients flow through `ix.QuadraticProgram` by
implicit differentiation of its KKT conditions (exact, with the active set of each
sample), batched with `jax.vmap`; one gradient is checked against finite differences.

Run: python examples/optnet_layer.py [--steps N] [--quick] [--out DIR]
"""

import argparse
import json
import pathlib
import time

import equinox as eqx
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
parser.add_argument("--steps", type=int, default=None, help="outer steps (300)")
parser.add_argument("--quick", action="store_true", help="30 steps, for CI")
parser.add_argument("--out", type=pathlib.Path, default=None, help="output folder")
args = parser.parse_args()
steps = args.steps if args.steps is not None else (30 if args.quick else 300)


class QPLayer(eqx.Module):
    """`x -> argmin 0.5 |z|^2 - (W x + b)^T z  s.t.  G z <= h` (one sample)."""

    W: jax.Array
    b: jax.Array
    h: jax.Array
    G: jax.Array
    qp: ix.QuadraticProgram = ix.QuadraticProgram()

    def __call__(self, x):
        n = self.b.shape[0]
        c = -(self.W @ x + self.b)
        return self.qp(jnp.eye(n), c, M=jax.lax.stop_gradient(self.G), h=self.h).z


# --- Data from a hidden QP layer of the same form, with noise. ----------------------
d_in, n, m, n_train, n_test = 8, 6, 10, 256, 256
rng = np.random.default_rng(0)
G = jnp.asarray(rng.standard_normal((m, n)))


def layer(seed, scale):
    r = np.random.default_rng(seed)
    W = jnp.asarray(scale * r.standard_normal((n, d_in)))
    b = jnp.asarray(scale * r.standard_normal(n))
    h = jnp.asarray(0.5 + r.random(m))
    return QPLayer(W, b, h, G)


hidden = layer(1, 1.0)
X_train = jnp.asarray(rng.standard_normal((n_train, d_in)))
X_test = jnp.asarray(rng.standard_normal((n_test, d_in)))
Z_train = jax.vmap(hidden)(X_train) + 0.01 * jnp.asarray(
    rng.standard_normal((n_train, n))
)
Z_test = jax.vmap(hidden)(X_test)


def loss(model, X, Z):
    return jnp.mean(jnp.sum((jax.vmap(model)(X) - Z) ** 2, axis=1))


model = layer(2, 0.1)
optimiser = optax.adam(3e-2)
opt_state = optimiser.init(eqx.filter(model, eqx.is_inexact_array))


@eqx.filter_jit
def train_step(model, opt_state):
    value, grads = eqx.filter_value_and_grad(loss)(model, X_train, Z_train)
    updates, opt_state = optimiser.update(grads, opt_state)
    return eqx.apply_updates(model, updates), opt_state, value


# One gradient against central finite differences (along a random direction of W).
direction = jnp.asarray(rng.standard_normal(model.W.shape))
grad_W = eqx.filter_grad(loss)(model, X_train[:16], Z_train[:16]).W
eps = 1e-6


def loss_at(t):
    shifted = eqx.tree_at(lambda mdl: mdl.W, model, model.W + t * direction)
    return loss(shifted, X_train[:16], Z_train[:16])


fd = (loss_at(eps) - loss_at(-eps)) / (2 * eps)
fd_error = abs(float(jnp.sum(grad_W * direction) - fd)) / abs(float(fd))

test_before = float(loss(model, X_test, Z_test))
start = time.perf_counter()
history = []
for _ in tqdm(range(steps), desc="training", disable=None):
    model, opt_state, value = train_step(model, opt_state)
    history.append(float(value))
elapsed = time.perf_counter() - start
test_after = float(loss(model, X_test, Z_test))
active = jax.vmap(lambda x: model.h - G @ model(x) < 1e-7)(X_test)
violation = float(jnp.max(jax.vmap(lambda x: G @ model(x) - model.h)(X_test)))

print(f"QP layer: {n} variables, {m} inequalities, batch {n_train}, {steps} Adam steps")
print(f"train loss              {history[0]:.4f} -> {history[-1]:.4f}")
print(f"test loss               {test_before:.4f} -> {test_after:.4f}")
print(
    f"active constraints      {float(jnp.mean(jnp.sum(active, axis=1))):.2f} per sample"
)
print(f"max constraint violation {violation:.1e}")
print(f"gradient vs finite differences: relative error {fd_error:.1e}")
print(f"time per step: {1e3 * elapsed / steps:.1f} ms (first step includes compiling)")

out = args.out or pathlib.Path(__file__).parent / "out"
out.mkdir(parents=True, exist_ok=True)
fig, ax = plt.subplots(figsize=(5, 3.5))
ax.semilogy(history)
ax.set_xlabel("Adam step")
ax.set_ylabel("training loss (mean squared error)")
ax.set_title("OptNet-style QP layer (implicit gradients)")
fig.tight_layout()
path = out / "optnet_layer.png"
fig.savefig(path, dpi=120)
results = {
    "train_loss_start": history[0],
    "train_loss_final": history[-1],
    "test_loss_start": test_before,
    "test_loss_final": test_after,
    "fd_error": fd_error,
    "max_violation": violation,
}
(out / "optnet_layer.json").write_text(json.dumps(results, indent=1))
print(f"Saved {path}")
