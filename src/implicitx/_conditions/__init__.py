from ._base import (
    AbstractCompositeCondition as AbstractCompositeCondition,
    AbstractCondition as AbstractCondition,
    AbstractFixedPointCondition as AbstractFixedPointCondition,
    AbstractMirrorDescentCondition as AbstractMirrorDescentCondition,
    AbstractObjectiveCondition as AbstractObjectiveCondition,
)
from ._gradient_descent import GradientDescentFixedPoint as GradientDescentFixedPoint
from ._kkt import KKT as KKT
from ._least_squares import LeastSquaresStationarity as LeastSquaresStationarity
from ._mirror_descent import MirrorDescentFixedPoint as MirrorDescentFixedPoint
from ._newton import NewtonFixedPoint as NewtonFixedPoint
from ._proximal_gradient import (
    BlockProximalGradientFixedPoint as BlockProximalGradientFixedPoint,
    ProjectedGradientFixedPoint as ProjectedGradientFixedPoint,
    ProximalGradientFixedPoint as ProximalGradientFixedPoint,
)
from ._quadratic import QPData as QPData, QuadraticKKT as QuadraticKKT
from ._root import FixedPoint as FixedPoint, Root as Root
from ._stationarity import Stationarity as Stationarity
