"""Forward solvers: they find `x*(theta)` and know nothing about derivatives."""

from ._admm_qp import ADMMQP as ADMMQP
from ._base import (
    AbstractIterativeSolver as AbstractIterativeSolver,
    AbstractIterativeState as AbstractIterativeState,
    AbstractSolver as AbstractSolver,
)
from ._block_coordinate import BlockCoordinateDescent as BlockCoordinateDescent
from ._external import (
    CvxpySolver as CvxpySolver,
    ExternalSolver as ExternalSolver,
    ScipyConstrainedMinimize as ScipyConstrainedMinimize,
    ScipyLinprog as ScipyLinprog,
    ScipyMinimize as ScipyMinimize,
    ScipyRoot as ScipyRoot,
)
from ._external_qp import ExternalQP as ExternalQP
from ._fixed_point import (
    AndersonAcceleration as AndersonAcceleration,
    FixedPointIteration as FixedPointIteration,  # deprecated: `PicardIteration`
    MirrorDescent as MirrorDescent,
    PicardIteration as PicardIteration,
)
from ._function import FunctionSolver as FunctionSolver
from ._mpax_qp import MPAXQP as MPAXQP
from ._optimistix import (
    OptimistixFixedPoint as OptimistixFixedPoint,
    OptimistixLeastSquares as OptimistixLeastSquares,
    OptimistixMinimiser as OptimistixMinimiser,
    OptimistixRootFinder as OptimistixRootFinder,
)
from ._polished import Polished as Polished
from ._proximal_gradient import (
    ProjectedGradient as ProjectedGradient,
    ProximalGradient as ProximalGradient,
)
from ._qp import (
    EqualityConstrainedQP as EqualityConstrainedQP,
    InteriorPointQP as InteriorPointQP,
)
