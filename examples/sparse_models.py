"""Sparse models with their penalties tuned by hypergradient descent.

Three bi-level problems on real data, each with a non-smooth inner problem. The inner
problem fits a sparse model on a training set, with penalty `g(w, lam)`,

    w*(lam) = argmin_w  L_train(w) + g(w, lam),

and the outer problem tunes `lam` to minimise the loss of `w*(lam)` on a validation
set, by Adam on `log lam` (which keeps `lam` positive). `w*` has no closed form and is
not differentiable in the ordinary sense, but it is the fixed point of a
proximal-gradient step, `w = prox_{eta g}(w - eta grad L_train(w))`, and implicitx
differentiates that condition (`ix.ProximalGradientFixedPoint`): the hypergradient
d(validation loss)/d(log lam) costs one linear solve on the support, whatever the
number of iterations of the solver (FISTA, `ix.solvers.ProximalGradient`, warm-started
from the previous outer step).

1. Lasso on scikit-learn's diabetes data (442 patients, 10 features, a disease
   progression score): `L_train(w) = 1/(2n) ||X w - y||^2`, `g = lam ||w||_1`
   (`ix.prox.L1`), i.e. `sklearn.linear_model.Lasso(alpha=lam)`. Validation MSE.
2. L1-regularised logistic regression on scikit-learn's breast-cancer data (569
   tumours, 30 features, malignant or benign): `L_train` the mean logistic loss with
   an unpenalised intercept, `g = lam ||w||_1`, i.e. `LogisticRegression` with an L1
   penalty and `C = 1 / (n lam)`. Validation log-loss.
3. A group lasso with one penalty per group: an additive cubic model of diabetes,
   each feature `x_j` expanded to `(x_j, x_j^2, x_j^3)` (30 columns, 10 groups of 3),
   `g = sum_j lam_j ||w_j||_2` (`ix.prox.GroupLasso`, one strength per group).

The first two are compared with a grid search of scikit-learn's own models on the
same split (`Lasso`, and `LogisticRegression` with the liblinear solver); the scaling
of `alpha` and `C` is checked by comparing the solutions at one `lam`. The validation
loss is not convex in `lam` (it has a kink wherever a feature enters the model, and
often several local minima), so the descent is run from three starting points and the
best end point kept. For the third, a grid over 10 penalties (`k^10` points) is
hopeless: it is compared with the best single penalty shared by all groups (a grid
search with the same implicitx solver), from which the hypergradient descent starts.
One hypergradient of each problem is checked against central finite differences.

Data: scikit-learn's own datasets, as they ship. Each is split 50/25/25 into train,
validation and test sets (stratified for the classes); the features, and the
diabetes target, are standardised with the training set's statistics.

Run: python examples/sparse_models.py [--steps N] [--quick] [--out DIR]
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
import sklearn
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.linear_model import Lasso, LogisticRegression
from sklearn.model_selection import train_test_split
from tqdm import tqdm

import implicitx as ix


jax.config.update("jax_enable_x64", True)  # before any array is created
plt.switch_backend("Agg")  # write files, open no window

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--steps", type=int, default=None, help="outer steps (200)")
parser.add_argument("--quick", action="store_true", help="20 outer steps, for CI")
parser.add_argument("--out", type=pathlib.Path, default=None, help="output folder")
args = parser.parse_args()
steps = args.steps if args.steps is not None else (20 if args.quick else 200)
tol = 1e-12  # of the inner solves (FISTA's fixed-point residual)

SKLEARN_1_8 = tuple(int(v) for v in sklearn.__version__.split(".")[:2]) >= (1, 8)


def split(X, y, classes=False):
    """50% train, 25% validation, 25% test; features standardised on the training
    set. Stratified for classes; otherwise `y` is standardised too."""
    strata = y if classes else None
    X_tr, X_rest, y_tr, y_rest = train_test_split(
        X, y, test_size=0.5, random_state=0, stratify=strata
    )
    X_val, X_te, y_val, y_te = train_test_split(
        X_rest,
        y_rest,
        test_size=0.5,
        random_state=0,
        stratify=y_rest if classes else None,
    )
    mean, std = X_tr.mean(0), X_tr.std(0)
    Xs = [jnp.asarray((X - mean) / std) for X in (X_tr, X_val, X_te)]
    if not classes:
        y_mean, y_std = y_tr.mean(), y_tr.std()
        y_tr, y_val, y_te = [(v - y_mean) / y_std for v in (y_tr, y_val, y_te)]
    return Xs, [jnp.asarray(v, dtype=float) for v in (y_tr, y_val, y_te)]


def mse(w, X, y):
    return float(jnp.mean((X @ w.ravel() - y) ** 2))


# --- The recipe shared by the three problems. ---------------------------------------
def sparse_model(objective, prox, lipschitz=None):
    """`lam -> w*(lam)`: FISTA, with the fixed step `1/L` given the Lipschitz
    constant `L` of the gradient of `objective`, or else with a line search;
    differentiated implicitly through the proximal-gradient fixed point (any positive
    step gives the same derivatives)."""
    eta = None if lipschitz is None else 1.0 / lipschitz
    condition = ix.ProximalGradientFixedPoint(objective, prox, stepsize=eta or 1.0)
    solver = ix.solvers.ProximalGradient(rtol=tol, atol=tol, stepsize=eta)
    return ix.ImplicitArgmin(condition, solver)


def hypergradient(model, outer):
    """`(log lam, w0) -> ((outer loss, w*), d(outer loss)/d(log lam))`, compiled;
    `w0` is the warm start of the inner solve."""

    def loss(log_lam, w0):
        w = model(jnp.exp(log_lam), w0)
        return outer(w), w

    return jax.jit(jax.value_and_grad(loss, has_aux=True))


# Adam on log lam, its learning rate decayed from 0.2 to 0 so that the last steps
# settle. The validation loss has kinks (where a feature enters the model), often
# at its minimum: short memories (b1, b2) let the steps shrink as soon as the
# gradient flips there, rather than carrying momentum past it.
optimiser = optax.adam(optax.cosine_decay_schedule(0.2, steps), b1=0.5, b2=0.9)


@jax.jit
def adam_step(log_lam, opt_state, grad):
    updates, opt_state = optimiser.update(grad, opt_state)
    return optax.apply_updates(log_lam, updates), opt_state


def log_of(lam, shape=()):
    """`log lam`, an array of `shape`, of a fixed (not weak) type: a compiled
    function is then never compiled again for an input of a different type."""
    return jnp.full(shape, np.log(lam), dtype=jnp.float64)


def compile_first(hyper, log_lam, w0):
    """Seconds to compile `hyper` (its first call), and the Adam step for `log_lam`
    (outside the timing)."""
    t0 = time.perf_counter()
    jax.block_until_ready(hyper(log_lam, w0))
    compile_s = time.perf_counter() - t0
    adam_step(log_lam, optimiser.init(log_lam), log_lam)
    return compile_s


def descend(hyper, log_lam, w0, steps, name, test=None):
    """Adam on `log lam` from `log_lam`: the path `(lam, validation loss[, test
    loss])` of every step, the final `log lam` and `w*`, and the milliseconds per
    step."""
    opt_state, path, w = optimiser.init(log_lam), [], w0
    t0 = time.perf_counter()
    for _ in tqdm(range(steps), desc=name, disable=None):
        (loss, w), grad = hyper(log_lam, w)
        path.append((np.exp(np.asarray(log_lam)), float(loss)) + test_of(test, w))
        log_lam, opt_state = adam_step(log_lam, opt_state, grad)
    step_ms = 1e3 * (time.perf_counter() - t0) / steps
    (loss, w), _ = hyper(log_lam, w)  # at the final penalties
    path.append((np.exp(np.asarray(log_lam)), float(loss)) + test_of(test, w))
    return path, log_lam, w, step_ms


def multistart(hyper, lam_max, w0, steps, name):
    """The validation loss is not convex in `lam` (it has a kink wherever a feature
    enters or leaves the model, and often several local minima): descend from three
    starting points, `lam_max / 10, / 100, / 1000`, and keep the best end point.
    Returns the three paths, the best final `log lam` and `w*`, and the ms/step."""
    runs = [
        descend(hyper, log_of(lam_max / 10**k), w0, steps, f"{name}, start {k}")
        for k in (1, 2, 3)
    ]
    paths = [run[0] for run in runs]
    best_run = min(runs, key=lambda run: run[0][-1][1])
    return paths, best_run[1], best_run[2], float(np.median([r[3] for r in runs]))


def test_of(test, w):
    return () if test is None else (test(w),)


def fd_check(hyper, log_lam, w0, direction, eps=1e-4):
    """Relative error of the hypergradient along `direction` against a central
    difference of the whole solve-then-validate pipeline."""
    (_, w), grad = hyper(log_lam, w0)
    (plus, _), _ = hyper(log_lam + eps * direction, w)
    (minus, _), _ = hyper(log_lam - eps * direction, w)
    fd = (plus - minus) / (2 * eps)
    return float(abs(jnp.vdot(grad, direction) - fd) / abs(fd))


# --- 1. Lasso on diabetes. ----------------------------------------------------------
diabetes = load_diabetes()
(X_tr, X_val, X_te), (y_tr, y_val, y_te) = split(diabetes.data, diabetes.target)
n, d = X_tr.shape


def least_squares(w, lam):  # the smooth part; the penalty is the prox's
    return 0.5 * jnp.mean((X_tr @ w - y_tr) ** 2)


lasso = sparse_model(
    least_squares, lambda lam: ix.prox.L1(lam), jnp.linalg.norm(X_tr, 2) ** 2 / n
)
lasso_hyper = hypergradient(lasso, lambda w: jnp.mean((X_val @ w - y_val) ** 2))

# scikit-learn's Lasso minimises 1/(2n) ||y - X w||^2 + alpha ||w||_1: alpha = lam
# (no intercept: the features and the target are centred on the training set).
lam_max = float(jnp.max(jnp.abs(X_tr.T @ y_tr)) / n)  # the smallest lam giving w = 0
lasso_grid = lam_max * np.logspace(-3, 0, 50)


def sklearn_lasso(lam, tol=1e-4):
    model = Lasso(alpha=lam, fit_intercept=False, tol=tol, max_iter=100_000)
    return model.fit(X_tr, y_tr).coef_


lasso_grid_val = [
    mse(jnp.asarray(sklearn_lasso(lam)), X_val, y_val) for lam in lasso_grid
]
best = int(np.argmin(lasso_grid_val))
lasso_best_lam = lasso_grid[best]
w_lasso_grid = jnp.asarray(sklearn_lasso(lasso_best_lam))
lasso_compile_s = compile_first(lasso_hyper, log_of(lasso_best_lam), jnp.zeros(d))
(_, w_check), _ = lasso_hyper(log_of(lasso_best_lam), jnp.zeros(d))
lasso_scaling_gap = float(
    jnp.max(jnp.abs(w_check - sklearn_lasso(lasso_best_lam, tol=1e-14)))
)

lasso_paths, lasso_log_lam, w_lasso, lasso_ms = multistart(
    lasso_hyper, lam_max, jnp.zeros(d), steps, "lasso"
)
lasso_fd = fd_check(lasso_hyper, log_of(lam_max / 10), jnp.zeros(d), jnp.ones(()))

# --- 2. L1 logistic regression on breast cancer. ------------------------------------
cancer = load_breast_cancer()
(B_tr, B_val, B_te), (c_tr, c_val, c_te) = split(cancer.data, cancer.target, True)
nb, db = B_tr.shape


def with_ones(B):  # the last coordinate of w is the intercept
    return jnp.concatenate([B, jnp.ones((len(B), 1))], axis=1)


B1_tr, B1_val, B1_te = map(with_ones, (B_tr, B_val, B_te))


def log_loss(scores, c):
    return jnp.mean(jnp.logaddexp(0.0, -(2 * c - 1) * scores))


def logistic(w, lam):
    return log_loss(B1_tr @ w, c_tr)


unpenalised_intercept = jnp.asarray(np.r_[np.ones(db), 0.0])
# The bound L = ||X||^2 / (4n) is loose where the model is confident (the curvature
# of the logistic loss is p (1 - p) <= 1/4): a line search takes longer steps.
l1_logistic = sparse_model(
    logistic, lambda lam: ix.prox.L1(lam * unpenalised_intercept)
)
logistic_hyper = hypergradient(l1_logistic, lambda w: log_loss(B1_val @ w, c_val))

# scikit-learn minimises ||w||_1 + C sum_i loss_i: divided by C n, C = 1 / (n lam).
# liblinear penalises the intercept too, as a weight on a constant feature of value
# `intercept_scaling`: a large one makes that penalty, |b| / scaling, negligible.
p0 = float(jnp.mean(c_tr))
lam_max_b = float(jnp.max(jnp.abs(B_tr.T @ (c_tr - p0))) / nb)
logistic_grid = lam_max_b * np.logspace(-3, 0, 40)


def sklearn_logistic(lam, tol=1e-7):
    penalty = dict(l1_ratio=1.0) if SKLEARN_1_8 else dict(penalty="l1")
    model = LogisticRegression(
        C=1 / (nb * lam),
        solver="liblinear",
        intercept_scaling=1e5,
        tol=tol,
        max_iter=100_000,
        **penalty,
    ).fit(B_tr, c_tr)
    return jnp.asarray(np.r_[model.coef_[0], model.intercept_])


logistic_grid_val = [
    float(log_loss(B1_val @ sklearn_logistic(lam), c_val)) for lam in logistic_grid
]
best = int(np.argmin(logistic_grid_val))
logistic_best_lam = logistic_grid[best]
w_logistic_grid = sklearn_logistic(logistic_best_lam)
zeros_b = jnp.zeros(db + 1)
logistic_compile_s = compile_first(logistic_hyper, log_of(logistic_best_lam), zeros_b)
(_, w_check), _ = logistic_hyper(log_of(logistic_best_lam), zeros_b)
logistic_scaling_gap = float(
    jnp.max(jnp.abs(w_check - sklearn_logistic(logistic_best_lam, tol=1e-10)))
)

logistic_paths, logistic_log_lam, w_logistic, logistic_ms = multistart(
    logistic_hyper, lam_max_b, zeros_b, steps, "L1 logistic"
)
logistic_fd = fd_check(logistic_hyper, log_of(lam_max_b / 10), zeros_b, jnp.ones(()))


def accuracy(w, B1, c):
    return float(jnp.mean((B1 @ w > 0) == (c > 0.5)))


# --- 3. Group lasso, one penalty per feature of an additive cubic model. ------------
powers = (1, 2, 3)
G, S = d, len(powers)


def cubic(X):  # (n, 10) -> (n, 30): columns 3j, 3j+1, 3j+2 are x_j, x_j^2, x_j^3
    return np.stack([X**p for p in powers], axis=-1).reshape(len(X), G * S)


(Z_tr, Z_val, Z_te), _ = split(cubic(diabetes.data), diabetes.target)


def group_least_squares(W, lam):  # W has one row per group
    return 0.5 * jnp.mean((Z_tr @ W.ravel() - y_tr) ** 2)


group_lasso = sparse_model(
    group_least_squares,
    lambda lam: ix.prox.GroupLasso(lam),  # lam: one strength per row of W
    jnp.linalg.norm(Z_tr, 2) ** 2 / n,
)
group_hyper = hypergradient(
    group_lasso, lambda W: jnp.mean((Z_val @ W.ravel() - y_val) ** 2)
)
W0 = jnp.zeros((G, S))

# The best single penalty: a grid search, along the path from lam_max down.
gradient_rows = (Z_tr.T @ y_tr / n).reshape(G, S)
lam_max_g = float(jnp.max(jnp.linalg.norm(gradient_rows, axis=1)))
group_grid = lam_max_g * np.logspace(0, -3, 30)
group_compile_s = compile_first(group_hyper, log_of(lam_max_g, G), W0)
group_grid_val, W = [], W0
for lam in group_grid:
    (loss, W), _ = group_hyper(log_of(lam, G), W)
    group_grid_val.append(float(loss))
best = int(np.argmin(group_grid_val))
group_best_lam = group_grid[best]
log_lam0_g = log_of(group_best_lam, G)
(_, W_single), _ = group_hyper(log_lam0_g, W0)

group_path, group_log_lam, W_group, group_ms = descend(
    group_hyper,
    log_lam0_g,
    W0,
    steps,
    "group lasso",
    test=lambda W: mse(W, Z_te, y_te),
)
direction = jnp.asarray(np.random.default_rng(0).normal(size=G))
group_fd = fd_check(group_hyper, log_lam0_g, W0, direction / jnp.linalg.norm(direction))

# --- Results. -----------------------------------------------------------------------
lasso_val = float(lasso_hyper(lasso_log_lam, w_lasso)[0][0])
logistic_val = float(logistic_hyper(logistic_log_lam, w_logistic)[0][0])
group_val = group_path[-1][1]
lam_l, lam_b = float(jnp.exp(lasso_log_lam)), float(jnp.exp(logistic_log_lam))
lam_g = np.exp(np.asarray(group_log_lam))


def row(name, lam, val, test, nonzero, total, extra=""):
    print(f"  {name:<38}{lam:9.1e}{val:9.4f}{test:9.4f}{nonzero:6d}/{total}{extra}")


def groups(W):
    return int(jnp.sum(jnp.linalg.norm(W, axis=1) > 0))


def logistic_row(name, lam, val, w):
    test = float(log_loss(B1_te @ w, c_te))
    nonzero = int(jnp.sum(w[:-1] != 0))
    row(name, lam, val, test, nonzero, db, f"  ({accuracy(w, B1_te, c_te):.3f})")


print(f"Hypergradient descent: Adam on log lam, {steps} steps (learning rate 0.2 -> 0)")
print(f"{'':<40}{'lam':>9}{'val':>9}{'test':>9}{'nonzero':>9}")
print("Lasso, diabetes (MSE, target standardised)")


def lasso_row(name, lam, val, w):
    row(name, lam, val, mse(w, X_te, y_te), int(jnp.sum(w != 0)), d)


lasso_row(
    f"sklearn Lasso, best of {len(lasso_grid)}-point grid",
    lasso_best_lam,
    min(lasso_grid_val),
    w_lasso_grid,
)
lasso_row("hypergradient descent", lam_l, lasso_val, w_lasso)
print("L1 logistic, breast cancer (log-loss; test accuracy in brackets)")
logistic_row(
    f"sklearn liblinear, best of {len(logistic_grid)}",
    logistic_best_lam,
    min(logistic_grid_val),
    w_logistic_grid,
)
logistic_row("hypergradient descent", lam_b, logistic_val, w_logistic)
print("Group lasso, diabetes, (x, x^2, x^3) per feature (MSE; nonzero groups)")
row(
    f"best single lam, {len(group_grid)}-point grid",
    group_best_lam,
    min(group_grid_val),
    mse(W_single, Z_te, y_te),
    groups(W_single),
    G,
)
row(
    "one lam per group (median shown)",
    float(np.median(lam_g)),
    group_val,
    mse(W_group, Z_te, y_te),
    groups(W_group),
    G,
)
print("Objective scaling, ours vs scikit-learn at the grid's best lam, max |w diff|:")
print(
    f"  lasso {lasso_scaling_gap:.1e}, L1 logistic {logistic_scaling_gap:.1e} ", end=""
)
print("(liblinear's intercept penalty |b| / 1e5)")
print("Hypergradient vs central difference (eps=1e-4 in log lam), relative error:")
print(f"  lasso {lasso_fd:.1e}, L1 logistic {logistic_fd:.1e}, group lasso ", end="")
print(f"{group_fd:.1e} (along a random direction)")
print(f"{'time per outer step':<22}{'run (ms)':>10}{'compile (s)':>13}")
for name, ms, c in [
    ("lasso", lasso_ms, lasso_compile_s),
    ("L1 logistic", logistic_ms, logistic_compile_s),
    ("group lasso", group_ms, group_compile_s),
]:
    print(f"  {name:<20}{ms:10.2f}{c:13.2f}")


# --- Figure. ------------------------------------------------------------------------
def plot_search(ax, grid, grid_val, paths, lam_end, val_end, title, ylabel):
    """The grid's validation curve, and the hypergradient paths over it."""
    ax.plot(grid, grid_val, "o-", ms=3, color="tab:gray", label="scikit-learn grid")
    for k, path in enumerate(paths):
        lams, vals = [p[0] for p in path], [p[1] for p in path]
        label = "hypergradient descent (3 starts)" if k == 0 else None
        ax.plot(lams, vals, ".-", ms=4, color="tab:blue", alpha=0.6, label=label)
        ax.plot(lams[0], vals[0], "o", mfc="none", color="tab:blue")
    ax.plot(lam_end, val_end, "*", ms=15, color="tab:red", label="best end point")
    ax.set(xscale="log", xlabel="lam", ylabel=ylabel, title=title)
    ax.legend()


out_dir = args.out or pathlib.Path(__file__).parent / "out"
out_dir.mkdir(parents=True, exist_ok=True)
out = out_dir / "sparse_models.png"
fig, axes = plt.subplots(2, 2, figsize=(11, 8))
plot_search(
    axes[0, 0],
    lasso_grid,
    lasso_grid_val,
    lasso_paths,
    lam_l,
    lasso_val,
    "Lasso (diabetes)",
    "validation MSE",
)
plot_search(
    axes[0, 1],
    logistic_grid,
    logistic_grid_val,
    logistic_paths,
    lam_b,
    logistic_val,
    "L1 logistic regression (breast cancer)",
    "validation log-loss",
)
axes[0, 1].set_ylim(0.5 * min(logistic_grid_val), 3 * min(logistic_grid_val))
ax = axes[1, 0]
ax.plot([p[1] for p in group_path], color="tab:blue", label="one lam per group: val.")
ax.plot([p[2] for p in group_path], ":", color="tab:blue", label="... test")
single_val, single_test = min(group_grid_val), mse(W_single, Z_te, y_te)
ax.axhline(single_val, ls="--", color="tab:orange", label="best single lam: val.")
ax.axhline(single_test, ls=":", color="tab:orange", label="... test")
ax.set(xlabel="outer step", ylabel="MSE")
ax.set_title("Group lasso (diabetes, cubic in each feature)")
ax.legend(fontsize=8)
ax = axes[1, 1]
active = np.asarray(jnp.linalg.norm(W_group, axis=1) > 0)
ax.bar(np.arange(G), lam_g, color=np.where(active, "tab:blue", "tab:gray"))
ax.axhline(group_best_lam, ls="--", color="tab:orange", label="best single lam")
ax.set_xticks(np.arange(G), diabetes.feature_names)
ax.set(yscale="log", ylabel="lam_j")
ax.set_title("Learned group penalties (gray: group set to zero)")
ax.legend()
fig.tight_layout()
fig.savefig(out, dpi=120)
results = {
    "lasso_val_mse_hypergradient": lasso_val,
    "lasso_val_mse_grid": float(min(lasso_grid_val)),
    "lasso_test_mse_hypergradient": mse(w_lasso, X_te, y_te),
    "lasso_test_mse_grid": mse(w_lasso_grid, X_te, y_te),
    "lasso_lam_hypergradient": lam_l,
    "lasso_lam_grid": float(lasso_best_lam),
    "logistic_val_loss_hypergradient": logistic_val,
    "logistic_val_loss_grid": float(min(logistic_grid_val)),
    "logistic_test_loss_hypergradient": float(log_loss(B1_te @ w_logistic, c_te)),
    "logistic_test_loss_grid": float(log_loss(B1_te @ w_logistic_grid, c_te)),
    "logistic_test_accuracy_hypergradient": accuracy(w_logistic, B1_te, c_te),
    "logistic_test_accuracy_grid": accuracy(w_logistic_grid, B1_te, c_te),
    "group_val_mse_hypergradient": group_val,
    "group_val_mse_single": float(min(group_grid_val)),
    "group_test_mse_hypergradient": mse(W_group, Z_te, y_te),
    "group_test_mse_single": mse(W_single, Z_te, y_te),
    "lasso_scaling_gap": lasso_scaling_gap,
    "logistic_scaling_gap": logistic_scaling_gap,
    "hypergradient_fd_error": max(lasso_fd, logistic_fd, group_fd),
    "lasso_ms": lasso_ms,
    "logistic_ms": logistic_ms,
    "group_ms": group_ms,
}
(out_dir / "sparse_models.json").write_text(json.dumps(results, indent=1))
print(f"Saved {out}")
