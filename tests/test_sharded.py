"""A batched implicit hypergradient with its batch sharded over host devices.

The multiclass SVM dual, differentiated through `custom_fixed_point` (projected
gradient onto simplices), as `jax.jit(jax.vmap(jax.grad(...)))` with the batch sharded
over 4 host devices. Its backward system is solved by dense LU; jaxlib's batched CPU
LAPACK kernels block XLA:CPU's thread-pool threads, and once one runs per device the
program deadlocked (issue 9, item 11). The case runs in a subprocess (the device
count is fixed when JAX starts) with a timeout, repeatedly, and its hypergradient is
compared with the unsharded one and with a plain-JAX implicit hypergradient.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest


_SCRIPT = textwrap.dedent(
    """
    import json

    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_numpy_dtype_promotion", "strict")
    import implicitx as ix

    n, p, k, batch, iters, repeats = 20, 30, 3, 16, 300, 5
    rng = np.random.default_rng(0)
    X, X_val = (jnp.asarray(rng.normal(size=(n, p))) for _ in range(2))
    Y, Y_val = (jnp.asarray(np.eye(k)[rng.integers(0, k, n)]) for _ in range(2))
    sq_norm = float(np.linalg.norm(np.asarray(X), 2) ** 2)


    def simplex_jnp(v):  # sort-based projection of each row onto the simplex
        u = -jnp.sort(-v, axis=-1)
        css = jnp.cumsum(u, axis=-1) - 1.0
        ind = jnp.arange(1, v.shape[-1] + 1, dtype=v.dtype)
        rho = jnp.sum(u - css / ind > 0, axis=-1, keepdims=True)
        theta = jnp.take_along_axis(css, rho - 1, axis=-1) / rho.astype(v.dtype)
        return jnp.maximum(v - theta, 0.0)


    def dual(beta, lam):
        return 0.5 / lam * jnp.sum((X.T @ (Y - beta)) ** 2) + jnp.sum(beta * Y)


    def val_loss(beta, lam):
        logits = X_val @ (X.T @ (Y - beta) / lam)
        return -jnp.mean(jnp.sum(Y_val * jax.nn.log_softmax(logits), axis=1))


    def make(project):
        def T(beta, lam):  # projected-gradient fixed point map (on flat beta)
            beta = beta.reshape(n, k)
            eta = jax.lax.stop_gradient(lam) / sq_norm
            return project(beta - eta * jax.grad(dual)(beta, lam)).reshape(-1)

        def forward(lam):
            beta0 = jnp.full(n * k, 1.0 / k)
            return jax.lax.fori_loop(0, iters, lambda _, b: T(b, lam), beta0)

        solve = ix.custom_fixed_point(T)(forward)

        def implicit(log_lam):
            lam = jnp.exp(log_lam)
            return val_loss(solve(lam).reshape(n, k), lam)

        def reference(log_lam):  # plain JAX: jacfwd of the map + jnp.linalg.solve
            lam = jnp.exp(log_lam)
            beta = jax.lax.stop_gradient(forward(lam))
            a = jnp.eye(n * k) - jax.jacfwd(T, 0)(beta, lam)
            w = jnp.linalg.solve(a.T, jax.grad(val_loss, 0)(beta.reshape(n, k), lam)
                                 .reshape(-1))
            dlam = w @ jax.jacfwd(T, 1)(beta, lam) + jax.grad(val_loss, 1)(
                beta.reshape(n, k), lam)
            return dlam * lam

        return T, implicit, reference


    mesh = Mesh(np.array(jax.devices()[:4]), ("batch",))
    log_lams = jnp.linspace(4.0, 5.5, batch)
    sharded = jax.device_put(log_lams, NamedSharding(mesh, PartitionSpec("batch")))
    out = {}
    projections = {
        "jnp": simplex_jnp,
        "ix": ix.projection.RowWise(ix.projection.Simplex()),
    }
    for name, project in projections.items():
        T, implicit, reference = make(project)
        hypergrad = jax.jit(jax.vmap(jax.grad(implicit)))
        runs = [np.asarray(jax.block_until_ready(hypergrad(sharded))).tolist()
                for _ in range(repeats)]
        out[name] = {
            "sharded": runs,
            "unsharded": np.asarray(hypergrad(log_lams)).tolist(),
            "reference": np.asarray(jax.jit(jax.vmap(reference))(log_lams)).tolist(),
        }
    print("RESULT " + json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def sharded_results():
    env = dict(os.environ)
    env["XLA_FLAGS"] = (
        env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
    ).strip()
    env.pop("JAX_PLATFORMS", None)
    env["JAX_PLATFORMS"] = "cpu"
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _SCRIPT],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,  # it takes ~15 s; a deadlocked run never ends
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the sharded implicit hypergradient hangs (no result in 180 s)")
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT ") :])


@pytest.mark.parametrize("projection", ["jnp", "ix"])
def test_sharded_hypergradient_completes_and_matches(sharded_results, projection):
    result = sharded_results[projection]
    unsharded = np.asarray(result["unsharded"])
    reference = np.asarray(result["reference"])
    assert unsharded.shape == (16,)
    assert np.all(np.isfinite(unsharded))
    # Not in the hard-margin regime, where the hypergradient is ~0.
    assert np.max(np.abs(reference)) > 1e-3
    np.testing.assert_allclose(unsharded, reference, rtol=1e-6, atol=1e-10)
    assert len(result["sharded"]) == 5
    for run in result["sharded"]:
        np.testing.assert_allclose(np.asarray(run), unsharded, rtol=1e-10, atol=1e-14)
