class _Tag:
    def __init__(self, name: str):
        self._name = name

    def __repr__(self) -> str:
        return self._name


# A lineax tag for `A = I - dT/dx` of a fixed point of a proximal, projection or
# mirror step; its meaning, and how the default backward solver uses it, are explained
# once, in docs/api/adjoints.md ("Choosing the backward solver").
active_set_tag = _Tag("active_set_tag")

# A lineax tag for the saddle-point (KKT) matrix of a constrained problem: indefinite
# and often ill-conditioned, where unpreconditioned Krylov methods stall; the default
# backward solver stays dense for it up to a larger size (docs/api/adjoints.md).
saddle_point_tag = _Tag("saddle_point_tag")
