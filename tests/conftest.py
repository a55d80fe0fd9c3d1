import jax


# Every test runs in float64 with strict dtype and rank promotion; float32 cases ask
# for float32 explicitly. Shape checking (jaxtyping + beartype) is switched on for the
# package by `--jaxtyping-packages` in pyproject.toml.
jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")
