from ._base import (
    AbstractCondition as AbstractCondition,
    AbstractFixedPointCondition as AbstractFixedPointCondition,
    AbstractObjectiveCondition as AbstractObjectiveCondition,
)
from ._gradient_descent import GradientDescentFixedPoint as GradientDescentFixedPoint
from ._newton import NewtonFixedPoint as NewtonFixedPoint
from ._root import FixedPoint as FixedPoint, Root as Root
from ._stationarity import Stationarity as Stationarity
