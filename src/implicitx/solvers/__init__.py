"""Forward solvers: they find `x*(theta)` and know nothing about derivatives."""

from ._base import AbstractSolver as AbstractSolver
from ._function import FunctionSolver as FunctionSolver
from ._optimistix import (
    OptimistixFixedPoint as OptimistixFixedPoint,
    OptimistixMinimiser as OptimistixMinimiser,
    OptimistixRootFinder as OptimistixRootFinder,
)
