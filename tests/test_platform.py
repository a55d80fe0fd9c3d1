"""The JAX release under the tests computes what the library's checks rely on, and
a release known not to is named at import."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from implicitx._platform import warn_if_known_bad


def test_jit_reduces_a_product_with_a_constant_matrix():
    # The check that `A` is not negligible next to `B` reduces `B` applied to a
    # constant direction: `max |dF/dtheta . ones|`. jaxlib 0.10.2's XLA:CPU computes
    # `max |Z @ ones|` (and its sum) wrongly at this size, with values that change
    # between compilations, so a deep-equilibrium layer's derivative was refused at
    # random. pyproject.toml excludes that release; this pins the arithmetic.
    Z = np.random.default_rng(0).uniform(size=(898, 32))
    ones = jnp.ones((32, 32))
    expected_max = np.max(np.abs(Z @ np.ones((32, 32))))
    expected_sum = np.sum(Z @ np.ones((32, 32)))
    for _ in range(3):  # a fresh compilation each time
        jax.clear_caches()
        got_max = jax.jit(lambda z: jnp.max(jnp.abs(z @ ones)))(Z)
        got_sum = jax.jit(lambda z: jnp.sum(z @ ones))(Z)
        np.testing.assert_allclose(got_max, expected_max, rtol=1e-12)
        np.testing.assert_allclose(got_sum, expected_sum, rtol=1e-12)


def test_known_bad_jaxlib_is_named_at_import():
    with pytest.warns(RuntimeWarning, match=r"jaxlib 0\.10\.2 miscompiles"):
        warn_if_known_bad("0.10.2")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_if_known_bad("0.10.1")
