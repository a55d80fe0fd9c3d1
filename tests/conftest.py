import jax
import pytest


# Every test runs in float64 with strict dtype and rank promotion; float32 cases ask
# for float32 explicitly. Shape checking (jaxtyping + beartype) is switched on for the
# package by `--jaxtyping-packages` in pyproject.toml.
jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture(autouse=True, scope="module")
def _fresh_compilation_caches():
    # A test worker compiles thousands of programs; dropping them between modules
    # keeps its memory flat (XLA:CPU once crashed compiling, late in a long run).
    yield
    jax.clear_caches()
