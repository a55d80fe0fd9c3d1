"""Euclidean projections (and KL projections, where named) onto sets, as differentiable
modules."""

from ._affine import (
    AffineSet as AffineSet,
    Halfspace as Halfspace,
    Hyperplane as Hyperplane,
)
from ._base import AbstractProjection as AbstractProjection, RowWise as RowWise
from ._box import Box as Box, Hypercube as Hypercube
from ._box_section import BoxSection as BoxSection
from ._cones import (
    ExponentialCone as ExponentialCone,
    PSDCone as PSDCone,
    SecondOrderCone as SecondOrderCone,
)
from ._l1 import L1Ball as L1Ball, L1Sphere as L1Sphere
from ._l2 import L2Ball as L2Ball, L2Sphere as L2Sphere
from ._linf import LInfBall as LInfBall
from ._orthant import NonNegative as NonNegative
from ._polyhedron import Polyhedron as Polyhedron
from ._power_cone import PowerCone as PowerCone
from ._simplex import Simplex as Simplex, SparseSimplex as SparseSimplex
from ._transport import (
    BirkhoffPolytope as BirkhoffPolytope,
    KLBirkhoffPolytope as KLBirkhoffPolytope,
    KLTransportPolytope as KLTransportPolytope,
    TransportPolytope as TransportPolytope,
)
