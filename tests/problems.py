"""The problems the tests share, built once: ridge regression, L2-regularised logistic
regression, the lasso and the elastic net, non-negative least squares, the multiclass
(Crammer-Singer) SVM dual and a smooth root problem, with their independent references
(closed forms, scikit-learn, SciPy, CVXPY). Data generators and objectives only; the
checks are in `helpers.py`.

Objectives take the data as trailing arguments, `f(x, theta, X, y)`: a test binds its
own data (`lambda x, theta: ridge_objective(x, theta, X, y)`), so the data may also be
closed-over tracers or parameters of an `eqx.Module`."""

import jax
import jax.numpy as jnp
import numpy as np


# --- Ridge regression ---------------------------------------------------------------


def ridge_data(n=20, d=5, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    X = jnp.asarray(rng.standard_normal((n, d)), dtype=dtype)
    y = jnp.asarray(rng.standard_normal(n), dtype=dtype)
    return X, y


def ridge_objective(x, theta, X, y):
    """`0.5 ||X x - y||^2 + 0.5 theta ||x||^2`."""
    return 0.5 * jnp.sum((X @ x - y) ** 2) + 0.5 * theta * jnp.sum(x**2)


def ridge_gradient(x, theta, X, y):
    """The gradient of `ridge_objective` in `x`, written out: `X^T (X x - y) + theta
    x` (the root condition of `custom_root`)."""
    return X.T @ (X @ x - y) + theta * x


def ridge_residuals(x, theta, X, y):
    """The residuals `(X x - y, sqrt(theta) x)`: half their squared norm is ridge's."""
    return jnp.concatenate([X @ x - y, jnp.sqrt(theta) * x])


def ridge_closed_form(X, y, theta):
    d = X.shape[1]
    return jnp.linalg.solve(X.T @ X + theta * jnp.eye(d, dtype=X.dtype), X.T @ y)


def ridge_closed_form_jacobian(X, y, theta):
    """d/dtheta of `(X^T X + theta I)^{-1} X^T y`: `-(X^T X + theta I)^{-1} x*`."""
    d = X.shape[1]
    x_star = ridge_closed_form(X, y, theta)
    return -jnp.linalg.solve(X.T @ X + theta * jnp.eye(d), x_star)


# --- Logistic regression ------------------------------------------------------------


def logistic_data(n=30, d=4, seed=1):
    """Features and labels in {-1, 1} drawn from a logistic model."""
    rng = np.random.default_rng(seed)
    X = jnp.asarray(rng.standard_normal((n, d)))
    w = rng.standard_normal(d)
    labels = (rng.uniform(size=n) < 1 / (1 + np.exp(-np.asarray(X) @ w))).astype(float)
    return X, jnp.asarray(2 * labels - 1)


def logistic_loss(x, X, y):
    """The logistic loss `sum log(1 + exp(-y X x))`, labels `y` in {-1, 1}."""
    return jnp.sum(jnp.logaddexp(0.0, -y * (X @ x)))


def logistic_objective(x, theta, X, y):
    """L2-regularised logistic regression: smooth, strictly convex, not quadratic."""
    return logistic_loss(x, X, y) + 0.5 * theta * jnp.sum(x**2)


def sklearn_logistic(X, y, theta):
    """scikit-learn's minimiser of `logistic_objective` (no intercept, C = 1/theta)."""
    from sklearn.linear_model import LogisticRegression

    C = 1 / float(theta)
    model = LogisticRegression(C=C, fit_intercept=False, tol=1e-12, max_iter=10_000)
    return model.fit(X, y).coef_[0]


# --- Lasso --------------------------------------------------------------------------


def lasso_data(w_true, n, rng, noise=0.3):
    """`n` samples of `y = X w_true + noise`, drawn from `rng` (a NumPy generator,
    which a test may go on drawing from)."""
    X = rng.standard_normal((n, len(w_true)))
    y = X @ w_true + noise * rng.standard_normal(n)
    return X, y


def least_squares(x, X, y):
    """The lasso's smooth part in scikit-learn's scaling: `(1 / 2n) ||X x - y||^2`."""
    return 0.5 * jnp.sum((X @ x - y) ** 2) / X.shape[0]


def sklearn_lasso(X, y, alpha):
    """scikit-learn's lasso solution (no intercept), to its tightest tolerance."""
    from sklearn.linear_model import Lasso

    model = Lasso(alpha=alpha, fit_intercept=False, tol=1e-14, max_iter=1_000_000)
    return model.fit(X, y).coef_


def sklearn_elastic_net(X, y, alpha, l1_ratio):
    """scikit-learn's elastic-net solution (no intercept), to its tightest tolerance."""
    from sklearn.linear_model import ElasticNet

    model = ElasticNet(
        alpha=alpha,
        l1_ratio=l1_ratio,
        fit_intercept=False,
        tol=1e-14,
        max_iter=1_000_000,
    )
    return model.fit(X, y).coef_


def lasso_cvxpy(X, y):
    """The lasso in CVXPY, its strength a parameter: `(problem, x, alpha)`."""
    import cvxpy as cp

    n, d = X.shape
    x = cp.Variable(d)
    alpha = cp.Parameter(nonneg=True)
    objective = cp.sum_squares(X @ x - y) / (2 * n) + alpha * cp.norm1(x)
    return cp.Problem(cp.Minimize(objective)), x, alpha


# --- Non-negative least squares -----------------------------------------------------


def nnls_objective(x, X, y):
    """`0.5 ||X x - y||^2`, to be minimised over `x >= 0`."""
    return 0.5 * jnp.sum((X @ x - y) ** 2)


def scipy_nnls(X, y):
    """SciPy's non-negative least-squares solution (an active-set method)."""
    import scipy.optimize

    return scipy.optimize.nnls(np.asarray(X), np.asarray(y))[0]


# --- Multiclass SVM dual (Crammer-Singer) -------------------------------------------


def svm_data(n, p, k, rng, n_val=None) -> tuple[jax.Array, ...]:
    """`n` training samples (`X`, one-hot `Y` of random labels), then `n_val`
    validation samples if asked, drawn from `rng` (a NumPy generator)."""

    def draw(m):
        X = jnp.asarray(rng.standard_normal((m, p)))
        Y = jax.nn.one_hot(jnp.asarray(rng.integers(0, k, m)), k, dtype=jnp.float64)
        return X, Y

    if n_val is None:
        return draw(n)
    return (*draw(n), *draw(n_val))


def svm_weights(beta, lam, X, Y):
    """The primal weights `W = X^T (Y - beta) / lam` of dual variables `beta`."""
    return X.T @ (Y - beta) / lam


def svm_dual(beta, lam, X, Y):
    """The Crammer-Singer dual, as a minimisation over one simplex per sample (row of
    `beta`): `0.5 lam ||W||^2 + <beta, Y>`."""
    return 0.5 * lam * jnp.sum(svm_weights(beta, lam, X, Y) ** 2) + jnp.sum(beta * Y)


def svm_validation_loss(beta, lam, X, Y, X_val, Y_val):
    """Softmax cross-entropy of the validation scores `X_val W(beta, lam)`."""
    scores = X_val @ svm_weights(beta, lam, X, Y)
    return jnp.mean(jax.nn.logsumexp(scores, axis=1) - jnp.sum(scores * Y_val, axis=1))


def svm_dual_cvxpy(X, Y, lam, **solve_options):
    """The dual solved by CVXPY (CLARABEL; `solve_options` passed on): an independent
    reference."""
    import cvxpy as cp

    X, Y = np.asarray(X), np.asarray(Y)
    beta = cp.Variable(Y.shape)
    objective = 0.5 / float(lam) * cp.sum_squares(X.T @ (Y - beta))
    objective = objective + cp.sum(cp.multiply(beta, Y))
    problem = cp.Problem(cp.Minimize(objective), [beta >= 0, cp.sum(beta, axis=1) == 1])
    problem.solve(solver=cp.CLARABEL, **solve_options)
    return beta.value


# --- A smooth root problem ----------------------------------------------------------


def tanh_root(x, theta, M):
    """`x + 0.5 tanh(M x) - theta`: smooth, nonlinear, one root if `0.5 ||M|| < 1`."""
    return x + 0.5 * jnp.tanh(M @ x) - theta


def tanh_fixed_point_map(x, theta, M):
    """`theta - 0.5 tanh(M x)`: its fixed point is the root of `tanh_root`."""
    return theta - 0.5 * jnp.tanh(M @ x)


def scipy_tanh_root(theta, M):
    """The root of `tanh_root` by SciPy (`scipy.optimize.root`, from zero)."""
    import scipy.optimize

    fun = lambda x: np.asarray(tanh_root(jnp.asarray(x), jnp.asarray(theta), M))
    return scipy.optimize.root(fun, np.zeros(M.shape[0]), tol=1e-14).x


# --- Quadratic programs -------------------------------------------------------------


def random_qp(n, p, m, seed, *, strongly_convex=True) -> dict:
    """A feasible random QP `min 0.5 z^T Q z + c^T z s.t. E z = d, M z <= h`: `h` is
    chosen so that a known point `z0` satisfies every inequality with slack in
    `[0, 1)` (some nearly active), so its solution has active and inactive rows."""
    rng = np.random.default_rng(seed)
    L = rng.standard_normal((n, n))
    Q = L @ L.T / n + (0.5 if strongly_convex else 0.0) * np.eye(n)
    z0 = rng.standard_normal(n)
    E = rng.standard_normal((p, n))
    M = rng.standard_normal((m, n))
    return dict(
        Q=Q,
        c=rng.standard_normal(n) * 2,
        E=E,
        d=E @ z0,
        M=M,
        h=M @ z0 + rng.random(m),
    )


def cvxpy_qp(Q, c, E=None, d=None, M=None, h=None):
    """`(z, nu, lam)` of the QP by CVXPY with Clarabel at tight tolerances."""
    import cvxpy as cp

    z = cp.Variable(len(c))
    constraints = []
    if E is not None:
        constraints.append(E @ z == d)
    if M is not None:
        constraints.append(M @ z <= h)
    objective = cp.Minimize(0.5 * cp.quad_form(z, cp.psd_wrap(Q)) + c @ z)
    problem = cp.Problem(objective, constraints)
    tight = dict(tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12)
    problem.solve(solver=cp.CLARABEL, **tight)
    assert problem.status == "optimal", problem.status
    nu = constraints[0].dual_value if E is not None else np.zeros(0)
    lam = constraints[-1].dual_value if M is not None else np.zeros(0)
    return z.value, np.atleast_1d(nu), np.atleast_1d(lam)


def active_set_qp(data: dict, active) -> jax.Array:
    """The QP's minimiser as a smooth function of its data for a fixed active set
    (`active`: boolean mask of the rows of `M` held as equalities): one dense solve
    of the reduced KKT system, `jnp.linalg.solve`, so that autodiff of it is an exact
    reference for the derivative (at a strictly complementary point)."""
    Q, c, E, d, M, h = (data[k] for k in ("Q", "c", "E", "d", "M", "h"))
    n = Q.shape[0]
    A = jnp.concatenate([E, M[np.asarray(active)]])
    b = jnp.concatenate([d, h[np.asarray(active)]])
    k = A.shape[0]
    kkt = jnp.block([[0.5 * (Q + Q.T), A.T], [A, jnp.zeros((k, k))]])
    return jnp.linalg.solve(kkt, jnp.concatenate([-c, b]))[:n]
