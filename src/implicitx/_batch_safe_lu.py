"""`lineax.LU`, except that a *batch* of matrices never reaches LAPACK as one call.

jaxlib's CPU LAPACK kernels (`getrf`, `trsm`, ...; jax 0.10) split a batched call
whose cost (batch x n^3) exceeds a threshold into chunks scheduled on XLA:CPU's
intra-op thread pool, and block the pool thread running the kernel until the chunks
are done. When as many such kernels run at once as the pool has threads (for example
one per device, with a `vmap` whose batch is sharded over host devices), every thread
waits for chunks that no thread is left to run: the program hangs. One matrix at a time
runs inline, without the pool.

So under `vmap` over the matrix, the factorisation and the solves run one matrix at a
time (`lax.map`), each an ordinary LAPACK call. Nested `vmap`s peel one batch axis
each. A batch of right-hand sides for one matrix stays one solve with more columns.
"""

from typing import Any, TypeAlias

import equinox.internal as eqxi
import jax
import jax.flatten_util as jfu
import jax.lax as lax
import jax.numpy as jnp
import jax.scipy as jsp
import lineax as lx
from jaxtyping import Array, PyTree


@jax.custom_batching.custom_vmap
def lu_factor(matrix):
    """`jax.scipy.linalg.lu_factor`, batched one matrix at a time."""
    return jsp.linalg.lu_factor(matrix)


@lu_factor.def_vmap
def _lu_factor_batched(axis_size, in_batched, matrix):
    del axis_size, in_batched  # the one argument is batched
    return lax.map(lu_factor, matrix), (True, True)


def _make_lu_solve(trans: int):
    @jax.custom_batching.custom_vmap
    def solve(lu, piv, b):
        return jsp.linalg.lu_solve((lu, piv), b, trans=trans)

    @solve.def_vmap
    def _solve_batched(axis_size, in_batched, lu, piv, b):
        lu_batched, piv_batched, b_batched = in_batched
        if lu_batched or piv_batched:
            lu, piv, b = (
                x if batched else jnp.broadcast_to(x, (axis_size, *x.shape))
                for x, batched in zip((lu, piv, b), in_batched, strict=True)
            )
            return lax.map(lambda args: solve(*args), (lu, piv, b)), True
        del b_batched
        # One matrix, a batch of right-hand sides: one solve with more columns, still
        # through `solve`, so that an enclosing `vmap` over the matrix comes here too.
        columns = jnp.moveaxis(b, 0, -1)
        x = solve(lu, piv, columns.reshape(columns.shape[0], -1))
        return jnp.moveaxis(x.reshape(columns.shape), -1, 0), True

    return solve


_LU_SOLVE = (_make_lu_solve(0), _make_lu_solve(1))


_State: TypeAlias = tuple[tuple[Array, Array], eqxi.Static]


class BatchSafeLU(lx.AbstractLinearSolver[_State]):
    """`lineax.LU` for square systems, safe to `vmap` over the matrix on a CPU whose
    batch is sharded over host devices (see the module docstring)."""

    def init(
        self, operator: lx.AbstractLinearOperator, options: dict[str, Any]
    ) -> _State:
        del options
        if operator.in_size() != operator.out_size():
            raise ValueError("`LU` may only be used for square linear systems.")
        structures = (operator.in_structure(), operator.out_structure())
        return lu_factor(operator.as_matrix()), eqxi.Static((structures, False))

    def compute(
        self, state: _State, vector: PyTree[Array], options: dict[str, Any]
    ) -> tuple[PyTree[Array], lx.RESULTS, dict[str, Any]]:
        del options
        (lu, piv), static = state
        (in_structure, out_structure), transpose = static.value
        flat, _ = jfu.ravel_pytree(vector)
        solution = _LU_SOLVE[1 if transpose else 0](lu, piv, flat)
        like = out_structure if transpose else in_structure
        zeros = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), like)
        _, unravel = jfu.ravel_pytree(zeros)
        return unravel(solution), lx.RESULTS.successful, {}

    def transpose(self, state: _State, options: dict[str, Any]):
        del options
        lu_and_piv, static = state
        structures, transpose = static.value
        return (lu_and_piv, eqxi.Static((structures, not transpose))), {}

    def conj(self, state: _State, options: dict[str, Any]):
        del options
        (lu, piv), static = state
        structures, transpose = static.value
        return ((lu.conj(), piv), eqxi.Static((structures, not transpose))), {}

    def assume_full_rank(self):
        return True
