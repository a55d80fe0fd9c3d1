"""Resolve an operator (prox, projection, mirror map) that may depend on theta."""

from typing import Any, TypeVar


_Op = TypeVar("_Op")


def operator_at(op: Any, kind: type[_Op], theta: Any) -> _Op:
    """`op` is either an operator module (fixed; its array fields are parameters of
    the condition) or a function `theta -> operator` (its hyperparameters come from
    `theta`)."""
    if isinstance(op, kind):
        return op
    if callable(op):
        out = op(theta)
        if not isinstance(out, kind):
            raise TypeError(
                f"A function passed in place of a `{kind.__name__}` must return one "
                f"(got {type(out).__name__})."
            )
        return out
    raise TypeError(
        f"Expected a `{kind.__name__}` or a function `theta -> {kind.__name__}`, got "
        f"{type(op).__name__}."
    )
