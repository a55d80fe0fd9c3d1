class _Tag:
    def __init__(self, name: str):
        self._name = name

    def __repr__(self) -> str:
        return self._name


# A lineax tag for `A = -dF/dx` of a fixed point of a proximal, projection or mirror
# step: `A = I - dT/dx`, where `dT/dx` vanishes on the coordinates held at the boundary
# (zero lasso coefficients, simplex vertices, active bounds). `A` is then the identity
# plus a part whose rank is at most the size of the free set, and Krylov solvers
# (GMRES) reach the solution in about that many products with `A`: cheaper than
# forming and factorising `A` for all but small systems. The default backward solver
# uses it to switch to GMRES above `ACTIVE_SET_DENSE_MAX_SIZE` rather than above
# `dense_max_size`.
active_set_tag = _Tag("active_set_tag")
