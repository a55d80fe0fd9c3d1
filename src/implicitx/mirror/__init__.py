"""Mirror maps for mirror descent."""

from .._operator_base import AbstractMirrorMap as AbstractMirrorMap
from ._maps import (
    Euclidean as Euclidean,
    NegativeEntropySimplex as NegativeEntropySimplex,
)
