"""The problems the benchmarks share: ridge regression, the lasso, the multiclass SVM
dual and L2-regularised logistic regression (data and objectives), and the central
finite difference that gives the hypergradient references.

Objectives take the data as trailing arguments (`f(x, theta, X, y)`): the benchmarks
pass data as arguments of their jitted functions, never as closed-over constants,
which XLA would constant-fold at compile time.

Each script keeps its own draws of the data (their order, sizes and noise differ, and
the committed results were measured on them): they are here side by side, built from
the same pieces, so that a change to one problem is made in one place.
"""

import jax
import jax.numpy as jnp
import numpy as np

import implicitx as ix


def central_difference(fn, theta, h):
    """`(fn(theta + h) - fn(theta - h)) / 2h` of a scalar function (jitted, forward
    only), as a Python float."""
    return (float(fn(theta + h)) - float(fn(theta - h))) / (2 * h)


# ----------------------------------------------------------------------------- ridge

RIDGE_THETA = 10.0  # the ridge penalty at which the hypergradient is taken


def ridge_data(d, seed=0):
    """`n = 2d` samples: `X`, `y` and the target of the outer loss (NumPy float64)."""
    rng = np.random.default_rng(seed)
    n = 2 * d
    X = rng.standard_normal((n, d))
    y = rng.standard_normal(n)
    target = rng.standard_normal(d)
    return X, y, target


def ridge_objective(x, theta, X, y):
    return 0.5 * jnp.sum((X @ x - y) ** 2) + 0.5 * theta * jnp.sum(x**2)


def ridge_closed_form(theta, X, y):
    d = X.shape[1]
    return jnp.linalg.solve(X.T @ X + theta * jnp.eye(d, dtype=X.dtype), X.T @ y)


def squared_error(solution, target):
    """The outer loss of the ridge benchmarks."""
    return jnp.sum((solution - target) ** 2)


# ----------------------------------------------------------------------------- lasso


def sparse_weights(rng, d):
    """Ground truth with its first `max(1, d // 10)` weights non-zero."""
    w = np.zeros(d)
    w[: max(1, d // 10)] = rng.standard_normal(max(1, d // 10))
    return w


def lasso_data(n, d, seed=0):
    """Training and validation sets, `y = X w + 0.1 noise`, `w` sparse: `(X, y, X_val,
    y_val)` (NumPy float64). For `hypergradients_vs_peers.py`."""
    rng = np.random.default_rng(seed)
    w = sparse_weights(rng, d)
    X = rng.standard_normal((n, d))
    y = X @ w + 0.1 * rng.standard_normal(n)
    X_val = rng.standard_normal((n, d))
    y_val = X_val @ w + 0.1 * rng.standard_normal(n)
    return X, y, X_val, y_val


def lasso_training_data(n, d, seed=0):
    """A training set only, `X` drawn before `w`: `(X, y)` (float64 arrays). For
    `solvers_vs_jaxopt.py`."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    w = sparse_weights(rng, d)
    y = X @ w + 0.1 * rng.standard_normal(n)
    return jnp.asarray(X), jnp.asarray(y)


def lasso_split_data(d, seed=0):
    """`n = 2d` training and `n` validation samples split from one draw, `y = X w +
    0.5 noise`, and the log of the l1 strength `0.1 max|X^T y| / n`: `((X, y, X_val,
    y_val), log_alpha)` (NumPy float64). For `scaling.py`."""
    rng = np.random.default_rng(seed)
    n = 2 * d
    w = sparse_weights(rng, d)
    X = rng.standard_normal((2 * n, d))
    y = X @ w + 0.5 * rng.standard_normal(2 * n)
    theta = np.log(lasso_alpha(X[:n], y[:n]))
    return (X[:n], y[:n], X[n:], y[n:]), theta


def lasso_alpha(X, y):
    """The l1 strength the benchmarks use: a tenth of the smallest one that gives
    the zero solution."""
    return 0.1 * float(np.max(np.abs(X.T @ y))) / X.shape[0]


def lasso_smooth(w, X, y):
    """The lasso's smooth part, `(1 / 2n) ||X w - y||^2`."""
    return 0.5 * jnp.sum((X @ w - y) ** 2) / X.shape[0]


# ------------------------------------------------------------------------------- SVM

SIMPLICES = ix.projection.RowWise(ix.projection.Simplex())


def svm_data(n, p, k, seed=0):
    """Training and validation sets whose labels depend on the features (so that the
    validation loss is informative): `(X, Y, X_val, Y_val)`, `Y` one-hot (NumPy
    float64). For `hypergradients_vs_peers.py`."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    W_true = rng.standard_normal((p, k))
    labels = np.argmax(X @ W_true + 0.5 * rng.standard_normal((n, k)), axis=1)
    Y = np.eye(k)[labels]
    X_val = rng.standard_normal((n, p))
    labels_val = np.argmax(X_val @ W_true + 0.5 * rng.standard_normal((n, k)), axis=1)
    Y_val = np.eye(k)[labels_val]
    return X, Y, X_val, Y_val


def svm_example_data(n, p, k, dtype, seed=0):
    """Training and validation sets as in `examples/svm_hyperparameter.py`: class
    scores depend on the first 10 features, noisy (Gumbel) labels, one-hot `Y`. Also
    returns `||X||_2^2`, from which the step size `lam / ||X||_2^2` (1/Lipschitz) is
    formed. For `svm_implicit_vs_unrolled.py`."""
    rng = np.random.default_rng(seed)
    W_true = 2.0 * rng.normal(size=(p, k)) * (np.arange(p) < 10)[:, None]

    def draw():
        X = rng.normal(size=(n, p))
        labels = np.argmax(X @ W_true + rng.gumbel(size=(n, k)), axis=1)
        return X, np.eye(k)[labels]

    (X, Y), (X_val, Y_val) = draw(), draw()
    sq_norm = np.linalg.norm(X, 2) ** 2
    return tuple(jnp.asarray(a, dtype) for a in (X, Y, X_val, Y_val, sq_norm))


def svm_random_data(n, p, k, seed=0):
    """A training set with random labels: `(X, Y)` (float64 arrays). For
    `solvers_vs_jaxopt.py`."""
    rng = np.random.default_rng(seed)
    X = jnp.asarray(rng.standard_normal((n, p)))
    Y = jax.nn.one_hot(jnp.asarray(rng.integers(0, k, n)), k, dtype=jnp.float64)
    return X, Y


def svm_dual(beta, lam, X, Y):
    """`0.5/lam ||X^T (Y - beta)||^2 + <beta, Y>`, minimised over rows of `beta` in
    the simplex; the primal weights are `W = X^T (Y - beta) / lam`."""
    return 0.5 / lam * jnp.sum((X.T @ (Y - beta)) ** 2) + jnp.sum(beta * Y)


def svm_validation_loss(beta, lam, X, Y, X_val, Y_val):
    """Validation softmax cross-entropy of `X_val @ W(beta, lam)`."""
    logits = X_val @ (X.T @ (Y - beta) / lam)
    return -jnp.mean(jnp.sum(Y_val * jax.nn.log_softmax(logits), axis=1))


def uniform_beta(Y):
    """The centre of every simplex, the starting point of every SVM solve."""
    return jnp.full(Y.shape, 1.0 / Y.shape[1], Y.dtype)


# ------------------------------------------------------------- logistic regression


def logistic_data(n, d, seed=0):
    """Training and validation sets of labels in {0, 1} drawn from a logistic model:
    `(X, y, X_val, y_val)` (NumPy float64). For `hypergradients_vs_peers.py`."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(d) / np.sqrt(d)
    X = rng.standard_normal((n, d))
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-X @ w))).astype(np.float64)
    X_val = rng.standard_normal((n, d))
    y_val = (rng.uniform(size=n) < 1 / (1 + np.exp(-X_val @ w))).astype(np.float64)
    return X, y, X_val, y_val


def log_loss(w, X, y):
    """The mean logistic loss, labels `y` in {0, 1}."""
    z = X @ w
    return jnp.mean(jnp.logaddexp(0, z) - y * z)


def logistic_objective(w, log_l2, X, y):
    return log_loss(w, X, y) + 0.5 * jnp.exp(log_l2) * jnp.sum(w**2)


def logistic_split_data(d, seed=0):
    """`n = 2d` training and `n` validation samples split from one draw, labels in
    {-1, 1} (a noisy linear model), and the log of the l2 strength: `((X, y, X_val,
    y_val), log_l2)` (NumPy float64). For `scaling.py`."""
    rng = np.random.default_rng(seed)
    n = 2 * d
    w = rng.standard_normal(d) / np.sqrt(d)
    X = rng.standard_normal((2 * n, d))
    y = np.sign(X @ w + 0.5 * rng.standard_normal(2 * n))
    theta = np.log(0.05)
    return (X[:n], y[:n], X[n:], y[n:]), theta


def signed_log_loss(w, X, y):
    """The mean logistic loss, labels `y` in {-1, 1}."""
    return jnp.mean(jax.nn.softplus(-y * (X @ w)))
