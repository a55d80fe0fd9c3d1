import abc

import equinox as eqx
from jaxtyping import Array, Float


class AbstractMirrorMap(eqx.Module):
    """A mirror map for mirror descent on a convex set `C`: a strictly convex function
    `phi` (the distance-generating function) with its gradient, and the mirror
    projection that maps a dual point `z` back to `C`:
    `project(z) = argmin_{x in C} phi(x) - <z, x>`.

    A mirror-descent step is `x+ = project(gradient(x) - stepsize * grad f(x))`; its
    fixed points are the solutions of `min_{x in C} f(x)`.
    """

    @abc.abstractmethod
    def gradient(self, x: Float[Array, "..."]) -> Float[Array, "..."]:
        """`grad phi(x)`, mapping a primal point to the dual space."""

    @abc.abstractmethod
    def project(self, z: Float[Array, "..."]) -> Float[Array, "..."]:
        """`argmin_{x in C} phi(x) - <z, x>`, mapping a dual point into `C`."""

    def step(
        self,
        x: Float[Array, "..."],
        direction: Float[Array, "..."],
        stepsize: float | Float[Array, ""],
    ) -> Float[Array, "..."]:
        """One mirror-descent step, `project(gradient(x) - stepsize * direction)`.
        Subclasses may override it with an equivalent, better-behaved formula."""
        return self.project(self.gradient(x) - stepsize * direction)
