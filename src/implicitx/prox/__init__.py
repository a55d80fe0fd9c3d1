"""Proximal operators of convex functions, as differentiable modules."""

from .._operator_base import AbstractProx as AbstractProx
from ._basic import (
    NonNegativeRidge as NonNegativeRidge,
    Ridge as Ridge,
    Zero as Zero,
)
from ._group import GroupLasso as GroupLasso
from ._indicator import FromProjection as FromProjection
from ._l1 import ElasticNet as ElasticNet, L1 as L1, NonNegativeL1 as NonNegativeL1
from ._norms import L2Norm as L2Norm, LInfNorm as LInfNorm
