import equinox as eqx
from jaxtyping import Array, Float

from ._kkt import KKT


class QPData(eqx.Module):
    """The data of the quadratic program

    `min_z 0.5 z^T Q z + c^T z  s.t.  E z = d,  M z <= h`,

    every field an array (a group of constraints that is absent has zero rows:
    `E` of shape `(0, n)`, `d` of shape `(0,)`). It is the `theta` of
    [`implicitx.QuadraticKKT`][], so derivatives are taken with respect to every
    field. [`implicitx.QuadraticProgram`][] builds it from optional arguments, box
    bounds and infinite entries.
    """

    Q: Float[Array, "n n"]
    c: Float[Array, " n"]
    E: Float[Array, "p n"]
    d: Float[Array, " p"]
    M: Float[Array, "m n"]
    h: Float[Array, " m"]


class QuadraticKKT(KKT):
    """The KKT conditions ([`implicitx.KKT`][]) of a quadratic program whose data,
    a [`implicitx.QPData`][], is `theta`: over `x = (z, nu, lam)`,

    `Q z + c + E^T nu + M^T lam = 0`,  `E z - d = 0`,  `min(lam, h - M z) = 0`.

    The QP solvers ([`implicitx.solvers.EqualityConstrainedQP`][],
    [`implicitx.solvers.InteriorPointQP`][]) read the data through `qp_at(theta)`.
    Linear programs are the case `Q = 0` (derivatives then need a unique, strictly
    complementary solution).
    """

    def __init__(self):
        self.objective = _quadratic
        self.equalities = _equalities
        self.inequalities = _inequalities

    def qp_at(self, theta: QPData) -> QPData:
        """The problem's data at `theta` (here `theta` itself, checked)."""
        if not isinstance(theta, QPData):
            raise TypeError(
                "A `QuadraticKKT` condition takes its data as `theta`, a "
                f"`implicitx.QPData`; got {type(theta).__name__}."
            )
        return theta

    def __call__(self, x: tuple, theta: QPData) -> tuple:
        return super().__call__(x, self.qp_at(theta))


def _quadratic(z, data: QPData):
    return 0.5 * z @ (data.Q @ z) + data.c @ z


def _equalities(z, data: QPData):
    return data.E @ z - data.d


def _inequalities(z, data: QPData):
    return data.M @ z - data.h
