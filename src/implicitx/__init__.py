from importlib import metadata as _metadata

from . import (
    mirror as mirror,
    projection as projection,
    prox as prox,
    solvers as solvers,
)
from ._adjoint import (
    AbstractAdjoint as AbstractAdjoint,
    ImplicitAdjoint as ImplicitAdjoint,
    OneStepAdjoint as OneStepAdjoint,
    UnrolledAdjoint as UnrolledAdjoint,
)
from ._argmin import ImplicitArgmin as ImplicitArgmin
from ._conditions import (
    AbstractCompositeCondition as AbstractCompositeCondition,
    AbstractCondition as AbstractCondition,
    AbstractFixedPointCondition as AbstractFixedPointCondition,
    AbstractMirrorDescentCondition as AbstractMirrorDescentCondition,
    AbstractObjectiveCondition as AbstractObjectiveCondition,
    BlockProximalGradientFixedPoint as BlockProximalGradientFixedPoint,
    FixedPoint as FixedPoint,
    GradientDescentFixedPoint as GradientDescentFixedPoint,
    KKT as KKT,
    LeastSquaresStationarity as LeastSquaresStationarity,
    MirrorDescentFixedPoint as MirrorDescentFixedPoint,
    NewtonFixedPoint as NewtonFixedPoint,
    ProjectedGradientFixedPoint as ProjectedGradientFixedPoint,
    ProximalGradientFixedPoint as ProximalGradientFixedPoint,
    QPData as QPData,
    QuadraticKKT as QuadraticKKT,
    Root as Root,
    Stationarity as Stationarity,
)
from ._custom_root import (
    custom_fixed_point as custom_fixed_point,
    custom_root as custom_root,
)
from ._jacobians import jacobian_operators as jacobian_operators
from ._quadratic_program import (
    QPSolution as QPSolution,
    QuadraticProgram as QuadraticProgram,
)
from ._results import RESULTS as RESULTS
from ._solution import Solution as Solution
from ._tags import (
    active_set_tag as active_set_tag,
    saddle_point_tag as saddle_point_tag,
)


__version__ = _metadata.version("implicitx")


def _check_platform() -> None:
    from ._platform import warn_if_known_bad

    warn_if_known_bad(_metadata.version("jaxlib"))


_check_platform()
