"""Known-bad releases of what the library runs on."""

import warnings


# jaxlib releases whose XLA:CPU computes a product with a constant matrix followed by
# a reduction wrongly, with garbage values that change from one compilation to the
# next (jax-ml/jax#39103). implicitx's checks of the backward system reduce such
# products: under these releases they refuse good derivatives at random.
_MISCOMPILING_JAXLIB = frozenset({"0.10.2"})


def warn_if_known_bad(jaxlib_version: str) -> None:
    """Warns if `jaxlib_version` is a release known to miscompile on CPU."""
    if jaxlib_version in _MISCOMPILING_JAXLIB:
        warnings.warn(
            f"jaxlib {jaxlib_version} miscompiles matrix products followed by "
            "reductions on CPU (jax-ml/jax#39103): results, derivatives and "
            "implicitx's checks may be silently wrong. Install another release, "
            "e.g. `pip install 'jax==0.10.1' 'jaxlib==0.10.1'`.",
            RuntimeWarning,
            stacklevel=3,
        )
