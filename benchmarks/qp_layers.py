"""Differentiable QP layers side by side: a batch of random strictly convex QPs,
forward solve and gradient of a loss `sum_b w_b . z_b*` with respect to `c` and `h`,
by implicitx's `QuadraticProgram` against qpax, qpth (PyTorch), cvxpylayers (JAX
interface) and JAXopt's OSQP, each gradient's error against the exact active-set
reference beside its time; then how implicitx's cost (and qpax's) grows with the size
and with the batch.

    python benchmarks/qp_layers.py [--quick]

A peer that is not installed is reported as skipped (`pip install qpax cvxpylayers`;
qpth needs PyTorch: `pip install torch qpth`).
"""

import argparse
import importlib
import time
import traceback

import jax
import jax.numpy as jnp
import numpy as np

import implicitx as ix
from _common import QpLayerRow, QpScalingRow, results_name, time_calls, write_results


jax.config.update("jax_enable_x64", True)


def random_qps(batch, n, p, m, seed=0):
    """A batch of feasible, strictly convex QPs (`min 0.5 z^T Q z + c^T z`, `E z = d`,
    `M z <= h`): `h` leaves a known point `z0` slack in `[0, 1)`, so that some
    inequalities are active at the solution and some are not."""
    rng = np.random.default_rng(seed)
    L = rng.standard_normal((batch, n, n))
    Q = L @ np.swapaxes(L, 1, 2) / n + 0.5 * np.eye(n)
    z0 = rng.standard_normal((batch, n))
    E = rng.standard_normal((batch, p, n))
    M = rng.standard_normal((batch, m, n))
    return dict(
        Q=Q,
        c=2 * rng.standard_normal((batch, n)),
        E=E,
        d=np.einsum("bpn,bn->bp", E, z0),
        M=M,
        h=np.einsum("bmn,bn->bm", M, z0) + rng.random((batch, m)),
    )


def reference_gradients(data, weights):
    """The exact gradients of `w . z*` in `(c, h)`, one QP at a time: the active set
    from a tight solve, then the adjoint of the reduced KKT system (NumPy)."""
    layer = ix.QuadraticProgram(solver=ix.solvers.ExternalQP("clarabel"))
    grads_c, grads_h = [], []
    for b in range(data["c"].shape[0]):
        one = {k: jnp.asarray(v[b]) for k, v in data.items()}
        z = np.asarray(layer(**one).z)
        Q, E, M, h = (data[k][b] for k in ("Q", "E", "M", "h"))
        active = h - M @ z < 1e-7 * (1 + np.abs(h))
        A = np.vstack([E, M[active]])
        k, n = A.shape[0], z.shape[0]
        kkt = np.block([[Q, A.T], [A, np.zeros((k, k))]])
        adjoint = np.linalg.solve(kkt.T, np.concatenate([weights[b], np.zeros(k)]))
        # z = [I 0] K^{-1} [-c; d; h_A]: d(w.z)/dc = -adjoint_z, d/dh_A = adjoint_A.
        grad_h = np.zeros_like(h)
        grad_h[active] = adjoint[n + E.shape[0] :]
        grads_c.append(-adjoint[:n])
        grads_h.append(grad_h)
    return np.stack(grads_c), np.stack(grads_h)


# --- The methods: each returns a function of no arguments giving (grad_c, grad_h). ----


def _jax_layer_fn(solve_z, data, weights, dtype):
    """`jax.jit(jax.vmap(jax.grad))` of `w . solve_z(Q, c, E, d, M, h)` in `(c, h)`."""
    arrays = {k: jnp.asarray(v, dtype) for k, v in data.items()}
    w = jnp.asarray(weights, dtype)

    def loss(c, h, Q, E, d, M, w):
        return w @ solve_z(Q, c, E, d, M, h)

    grad = jax.jit(jax.vmap(jax.grad(loss, argnums=(0, 1))))
    args = (arrays["c"], arrays["h"], arrays["Q"], arrays["E"], arrays["d"])
    return lambda: grad(*args, arrays["M"], w)


def implicitx_fn(data, weights, dtype):
    layer = ix.QuadraticProgram()
    return _jax_layer_fn(lambda *qp: layer(*qp).z, data, weights, dtype)


def qpax_fn(data, weights, dtype):
    qpax = importlib.import_module("qpax")
    return _jax_layer_fn(qpax.solve_qp_primal, data, weights, dtype)


def jaxopt_osqp_fn(data, weights, dtype):
    solver = importlib.import_module("jaxopt").OSQP()

    def solve_z(Q, c, E, d, M, h):
        sol = solver.run(params_obj=(Q, c), params_eq=(E, d), params_ineq=(M, h))
        return sol.params.primal

    return _jax_layer_fn(solve_z, data, weights, dtype)


def cvxpylayers_fn(data, weights, dtype):
    cp = importlib.import_module("cvxpy")
    layers = importlib.import_module("cvxpylayers.jax")
    batch, n = data["c"].shape
    p, m = data["d"].shape[1], data["h"].shape[1]
    z = cp.Variable(n)
    L, c, E, d = (
        cp.Parameter((n, n)),
        cp.Parameter(n),
        cp.Parameter((p, n)),
        cp.Parameter(p),
    )
    M, h = cp.Parameter((m, n)), cp.Parameter(m)
    # DPP: the quadratic as 0.5 |L^T z|^2 with Q = L L^T.
    objective = cp.Minimize(0.5 * cp.sum_squares(L.T @ z) + c @ z)
    problem = cp.Problem(objective, [E @ z == d, M @ z <= h])
    layer = layers.CvxpyLayer(problem, parameters=[L, c, E, d, M, h], variables=[z])
    chol = jnp.asarray(np.linalg.cholesky(data["Q"]), dtype)
    arrays = {k: jnp.asarray(v, dtype) for k, v in data.items()}
    w = jnp.asarray(weights, dtype)

    def loss(c, h):
        (zs,) = layer(chol, c, arrays["E"], arrays["d"], arrays["M"], h)
        return jnp.sum(w * zs)

    grad = jax.grad(loss, argnums=(0, 1))  # its default path cannot be jitted
    return lambda: grad(arrays["c"], arrays["h"])


def qpth_fn(data, weights, dtype):
    torch = importlib.import_module("torch")
    QPFunction = importlib.import_module("qpth.qp").QPFunction
    tdtype = {jnp.float64: torch.float64, jnp.float32: torch.float32}[dtype]
    t = {k: torch.tensor(v, dtype=tdtype) for k, v in data.items()}
    w = torch.tensor(weights, dtype=tdtype)
    qp = QPFunction(verbose=-1)

    def run():
        c = t["c"].clone().requires_grad_(True)
        h = t["h"].clone().requires_grad_(True)
        zs = qp(t["Q"], c, t["M"], h, t["E"], t["d"])
        (w * zs).sum().backward()
        return c.grad.numpy(), h.grad.numpy()

    return run


PEERS = {
    "qpax": qpax_fn,
    "qpth": qpth_fn,
    "cvxpylayers": cvxpylayers_fn,
    "JAXopt OSQP": jaxopt_osqp_fn,
}


def _error(grads, reference):
    (gc, gh), (rc, rh) = grads, reference
    got = np.concatenate([np.ravel(gc), np.ravel(gh)])
    want = np.concatenate([np.ravel(rc), np.ravel(rh)])
    return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))


def compare(batch, n, p, m, dtypes, repeats):
    data = random_qps(batch, n, p, m)
    weights = np.random.default_rng(1).standard_normal((batch, n))
    reference = reference_gradients(data, weights)
    rows = []
    for dtype in dtypes:
        dtype_name = jnp.dtype(dtype).name
        fns, skipped = (
            {"implicitx (interior point)": implicitx_fn(data, weights, dtype)},
            {},
        )
        for name, make in PEERS.items():
            if name == "cvxpylayers" and dtype != jnp.float64:
                skipped[name] = "- (float64 only)"
                continue
            try:
                fns[name] = make(data, weights, dtype)
            except ImportError as e:
                skipped[name] = f"not installed ({e.name})"
        times, grads = {}, {}
        for name, fn in fns.items():  # the first call compiles; failures are rows
            try:
                start = time.perf_counter()
                grads[name] = jax.block_until_ready(fn())
                times[name] = time.perf_counter() - start
            except Exception as e:
                traceback.print_exc()
                skipped[name] = f"error: {type(e).__name__}"
        timed = time_calls({k: fns[k] for k in grads}, repeats=repeats)
        base = timed["implicitx (interior point)"][1]
        for name in fns.keys() | skipped.keys():
            if name in skipped:
                rows.append([batch, n, dtype_name, name, skipped[name], "-", "-", "-"])
                continue
            run = timed[name][1]
            error = _error(grads[name], reference)
            rows.append(
                [batch, n, dtype_name, name, 1e3 * run, base / run, error, times[name]]
            )
            print(
                f"{dtype_name} {name:28s} run {1e3 * run:9.2f} ms  implicitx/peer "
                f"{base / run:7.3f}  gradient error {error:.1e}  first call "
                f"{times[name]:.2f} s"
            )
    return rows


# qpax's vmapped solve never returned from its second call at batch 256 here (CPU):
# XLA:CPU's thread pool deadlocked in a batched LAPACK kernel, as implicitx's own
# backward LU once did (see `implicitx._batch_safe_lu`).
QPAX_MAX_BATCH = 32


def sweep(sizes, batches, repeats):
    rows = []
    for batch, n in [(1, n) for n in sizes] + [(b, 50) for b in batches]:
        p, m = n // 5, n // 2
        data = random_qps(batch, n, p, m, seed=2)
        weights = np.random.default_rng(3).standard_normal((batch, n))
        fns = {"implicitx": implicitx_fn(data, weights, jnp.float64)}
        if batch > QPAX_MAX_BATCH:
            rows.append([batch, n, "qpax", "not run (hangs)", "-", "-"])
        else:
            try:
                fns["qpax"] = qpax_fn(data, weights, jnp.float64)
            except ImportError:
                rows.append([batch, n, "qpax", "not installed", "-", "-"])
        timed = time_calls(fns, repeats=repeats)
        for name, (first, run) in timed.items():
            rows.append([batch, n, name, 1e3 * run, 1e3 * run / batch, first])
            print(f"batch {batch:5d} n {n:4d} {name:10s} run {1e3 * run:9.2f} ms")
    return rows


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="small sizes (CI)")
    args = parser.parse_args()
    if args.quick:
        batch, n, p, m, repeats = 4, 8, 2, 4, 2
        dtypes, sizes, batches = (jnp.float64,), (5, 10), (1, 4)
    else:
        batch, n, p, m, repeats = 32, 50, 10, 25, 11
        dtypes, sizes, batches = (
            (jnp.float64, jnp.float32),
            (10, 50, 100, 200, 500),
            (1, 32, 256, 1024),
        )
    rows = compare(batch, n, p, m, dtypes, repeats)
    write_results(
        results_name(QpLayerRow.FILE, args.quick),
        f"QP layers: batch of {batch} random QPs, n = {n}, {p} equalities, {m} "
        "inequalities, forward + gradient",
        QpLayerRow.header(),
        rows,
        "Gradient of `sum_b w_b . z_b*` with respect to `c` and `h` (random `w`), "
        "forward solve included, on the CPU. implicitx: `QuadraticProgram()` (the "
        "interior-point solver, exact KKT derivatives), `jax.jit(jax.vmap(jax.grad))`; "
        "qpax 'solve_qp_primal' and JAXopt's OSQP the same way, with their default "
        "settings; cvxpylayers through its JAX interface (default solver and "
        "backward; its default path cannot be jitted); qpth (PyTorch, batched, its "
        "defaults). Run: median of the calls after the first, interleaved; 'first "
        "call' includes compilation. Gradient error: max abs difference to the exact "
        "active-set gradient (reduced KKT adjoint, float64), relative to the largest "
        "entry; a smoothed or early-stopped backward pass shows here.",
    )
    scaling = sweep(sizes, batches, max(repeats // 2, 2))
    write_results(
        results_name(QpScalingRow.FILE, args.quick),
        "QP layers: cost against size (batch 1) and batch (n = 50), float64",
        QpScalingRow.header(),
        scaling,
        "Random QPs with n/5 equalities and n/2 inequalities; forward + gradient as "
        "above; implicitx and qpax (the other JAX layer that runs under jit/vmap). "
        f"qpax is not run above batch {QPAX_MAX_BATCH}: at batch 256 its second call "
        "never returned (a deadlock of XLA:CPU's thread pool in a batched LAPACK "
        "kernel).",
    )


if __name__ == "__main__":
    main()
