"""Molecular dynamics sensitivity: how a relaxed packing moves with a particle size.

A two-dimensional periodic box holds `N` soft spheres of two sizes, half with
diameter `sigma` (the "small" ones, 1.0) and half with diameter 1.4, at packing
fraction 0.95 (above jamming: every particle is caged by its neighbours). The
energy is jax-md's soft-sphere pair potential,

    E(x, sigma) = sum_{i<j} 1/2 (1 - r_ij / sigma_ij)^2   for r_ij < sigma_ij,

with `sigma_ij` the mean diameter of the pair. jax-md's FIRE minimiser relaxes the
configuration to a minimum `x*(sigma)`, and implicitx differentiates the
stationarity condition `grad_x E(x*, sigma) = 0` (`ix.Stationarity`, the FIRE loop
wrapped as an `ix.solvers.FunctionSolver`) to get `dx*/dsigma`, the displacement of
every particle per unit change of the small diameter (the experiment of Blondel et
al., 2021, Section 4). It is checked against central finite differences of the
relaxation itself and drawn as arrows on the packing.

In a periodic box the energy does not change when every particle moves by the same
vector, so the Hessian `A = -hess_x E` is singular along the two rigid translations
and `x*(sigma)` is only defined up to a translation. implicitx refuses that system
by default (`adjoint_singular`: no silently arbitrary answer). The example asks for
the minimum-norm derivative, `ImplicitAdjoint(linear_solver=lineax.SVD())`: the
pseudo-inverse `A^+ B`, the derivative with no component along the translations
(the centroid does not move). It equals the unique derivative of the relaxation
whose centroid is pinned at the box centre, which is the other way of stating the
known null space: add `N/2 |mean(x) - c|^2` to the energy (zero at that solution)
and let the solver put the centroid at `c`; the default dense solver then works.
A Krylov solver (GMRES) gives the same gradients in reverse mode, for losses that
do not change under a translation, and is refused in forward mode, where its answer
would not be unique.

The cost of differentiating through FIRE instead (reverse mode through a `lax.scan`
of the same number of FIRE steps, `ix.UnrolledAdjoint`) grows with the number of
steps times the `N^2` pair interactions that every step stores; the implicit
gradient needs one linear solve (matrix-free GMRES here). Memory is XLA's temporary
buffer size of each compiled gradient; the unrolled one is run only when it fits
in a memory budget. Data: random initial positions (no data set is involved).

Run: python examples/molecular_dynamics.py [--quick] [--out DIR]
"""

import argparse
import json
import pathlib
import time

import jax
import jax.numpy as jnp
import lineax as lx
import matplotlib.pyplot as plt
import numpy as np
from jax_md import energy, minimize, space
from matplotlib.collections import PatchCollection
from matplotlib.patches import Circle
from matplotlib.ticker import NullLocator
from tqdm import tqdm

import implicitx as ix


jax.config.update("jax_enable_x64", True)  # before any array is created
plt.switch_backend("Agg")  # write files, open no window

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--quick", action="store_true", help="small systems, for CI")
parser.add_argument("--out", type=pathlib.Path, default=None, help="output folder")
args = parser.parse_args()
n_main = 32 if args.quick else 128  # particles of the configuration drawn
sizes = [32] if args.quick else [16, 32, 64, 128, 256]  # of the cost comparison
repeats = 1 if args.quick else 3  # timed runs per gradient (median)
memory_budget = 2 * 2**30  # bytes: the unrolled gradient is run only below this

sigma_small, sigma_large, packing_fraction = 1.0, 1.4, 0.95
force_tol = 1e-11  # FIRE stops when every particle's force is below this


def sigma_matrix(sigma):
    """Pair diameters of the two species: the mean of the two particles'."""
    mixed = 0.5 * (sigma + sigma_large)
    return jnp.stack([jnp.stack([sigma, mixed]), jnp.stack([mixed, sigma_large])])


def make_system(n, seed=0):
    """The energy, the FIRE relaxation, and a random start of `n` particles."""
    area = (n // 2) * np.pi * (sigma_small**2 + sigma_large**2) / 4
    side = float(np.sqrt(area / packing_fraction))
    # Unwrapped positions: the energy uses periodic (minimum-image) distances, but
    # positions are not folded back into the box, so they are smooth in sigma.
    displacement, shift = space.periodic(side, wrapped=False)
    species = jnp.asarray(np.repeat([0, 1], n // 2))
    pair_energy = energy.soft_sphere_pair(
        displacement, species=species, sigma=sigma_matrix(jnp.asarray(sigma_small))
    )

    def energy_fn(x, sigma):
        return pair_energy(x, sigma=sigma_matrix(sigma))

    fire_init, fire_step = minimize.fire_descent(
        energy_fn, shift, dt_start=0.05, dt_max=0.2
    )

    def max_force(state):
        return jnp.max(jnp.linalg.norm(state.force, axis=1))

    def relax(sigma, x0, max_steps=100_000):
        """FIRE until every force is below `force_tol`: the forward solver."""

        def keep_going(carry):
            state, step = carry
            return (max_force(state) > force_tol) & (step < max_steps)

        def step(carry):
            state, i = carry
            return fire_step(state, sigma=sigma), i + 1

        state = fire_init(x0, sigma=sigma)
        state, steps = jax.lax.while_loop(keep_going, step, (state, 0))
        return state.position, {"fire_steps": steps, "max_force": max_force(state)}

    def relax_unrolled(steps):
        """A fixed number of FIRE steps, as a scan that reverse mode can go through."""

        def run(sigma, x0):
            state = fire_init(x0, sigma=sigma)
            step = lambda s, _: (fire_step(s, sigma=sigma), None)  # noqa: E731
            return jax.lax.scan(step, state, None, length=steps)[0].position

        return run

    x0 = jax.random.uniform(jax.random.key(seed), (n, 2)) * side
    return energy_fn, relax, relax_unrolled, x0, side, species


def centred(x):
    """Positions relative to their centroid: the rigid translation removed."""
    return x - jnp.mean(x, axis=0)


def translation_component(dx):
    """Norm of the projection of `dx` (n, 2) onto the two rigid translations."""
    return jnp.sqrt(dx.shape[0]) * jnp.linalg.norm(jnp.mean(dx, axis=0))


def compile_and_time(fn, *args, repeats=3):
    """(compile seconds, median seconds of a run, the run's output)."""
    t = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    compile_s = time.perf_counter() - t
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t)
    return compile_s, float(np.median(times)), out


# --- The relaxed packing and dx*/dsigma, four ways of treating the null space. ------
energy_fn, relax, relax_unrolled, x0, side, species = make_system(n_main)
solver = ix.solvers.FunctionSolver(relax, has_aux=True)
condition = ix.Stationarity(energy_fn)
sigma = jnp.asarray(sigma_small)

# The derivative this example returns: the minimum-norm one, A^+ B (SVD).
min_norm = ix.ImplicitArgmin(
    condition, solver, ix.ImplicitAdjoint(linear_solver=lx.SVD()), x0=x0
)
# The default backward solver (dense LU with a singularity check): refused.
default = ix.ImplicitArgmin(condition, solver, x0=x0, throw=False)
# A Krylov solver: refused in forward mode (not unique), fine in reverse mode for a
# translation-invariant loss (see the cost comparison below).
krylov = lx.GMRES(rtol=1e-10, atol=1e-10, restart=50)
gmres = ix.ImplicitArgmin(
    condition, solver, ix.ImplicitAdjoint(linear_solver=krylov), x0=x0, throw=False
)

# The null space stated: pin the centroid at the box centre `c`. The extra term is
# zero at the pinned solution and makes A nonsingular (eigenvalue 1 along each
# translation), so the default solver applies and the derivative is unique.
centre = jnp.full(2, side / 2)


def pinned_energy(x, sigma):
    n = x.shape[0]
    return energy_fn(x, sigma) + 0.5 * n * jnp.sum((jnp.mean(x, axis=0) - centre) ** 2)


def relax_pinned(sigma, x0):
    x, aux = relax(sigma, x0)
    return x - jnp.mean(x, axis=0) + centre, aux  # a translation: still a minimum


pinned = ix.ImplicitArgmin(
    ix.Stationarity(pinned_energy),
    ix.solvers.FunctionSolver(relax_pinned, has_aux=True),
    x0=x0,
)


# The default and GMRES refusals and the pinned check cost three more compilations:
# full runs only.
eps = 1e-4  # of the finite differences
others = {} if args.quick else {"default": default, "gmres": gmres, "pinned": pinned}


@jax.jit
def sensitivities(sigma):
    def solve(sigma):
        sol = min_norm.solve(sigma)
        return sol.value, sol.aux

    # One forward-mode pass: x*, dx*/dsigma (one tangent) and FIRE's statistics.
    x, dx, aux = jax.jvp(solve, (sigma,), (jnp.ones_like(sigma),), has_aux=True)
    # Central finite differences of the relaxation itself, warm-started at x* (both
    # relaxations in one vmapped FIRE loop).
    x_fd, _ = jax.vmap(relax, in_axes=(0, None))(sigma + jnp.array([eps, -eps]), x)
    hessian = jax.hessian(energy_fn)(x, sigma).reshape(2 * n_main, 2 * n_main)
    jacobians = {name: jax.jacfwd(layer)(sigma) for name, layer in others.items()}
    return {
        "x": x,
        "aux": aux,
        "energy": energy_fn(x, sigma),
        "eigenvalues": jnp.linalg.eigvalsh(hessian),
        "min_norm": dx,
        "x_plus": x_fd[0],
        "x_minus": x_fd[1],
        **jacobians,
    }


t0 = time.perf_counter()
res = jax.block_until_ready(sensitivities(sigma))
sensitivities_s = time.perf_counter() - t0
x_star, J = res["x"], res["min_norm"]
eigenvalues = np.asarray(res["eigenvalues"])
n_zero = int(np.sum(eigenvalues < 1e-8 * eigenvalues[-1]))
gap = float(eigenvalues[n_zero])

# The finite differences, with the rigid translation removed from both sides (FIRE
# conserves the centroid, to rounding, but a relaxation need not).
x_plus, x_minus = res["x_plus"], res["x_minus"]
J_fd = (centred(x_plus) - centred(x_minus)) / (2 * eps)
fd_error = float(jnp.linalg.norm(J_fd - J) / jnp.linalg.norm(J))
drift = float(jnp.linalg.norm(jnp.mean(x_plus - x_minus, axis=0)) / (2 * eps))
null_component = float(translation_component(J))
pinned_gap = float("nan")
if "pinned" in res:
    pinned_gap = float(jnp.linalg.norm(res["pinned"] - J) / jnp.linalg.norm(J))
max_force = float(res["aux"]["max_force"])

print(
    f"Relaxed packing: N = {n_main} soft spheres (diameters {sigma_small} and "
    f"{sigma_large}), packing fraction {packing_fraction}, box side {side:.3f}"
)
print(
    f"  FIRE: {int(res['aux']['fire_steps'])} steps, max force {max_force:.1e}, "
    f"energy {float(res['energy']):.6f}"
)
print(
    f"  Hessian: {n_zero} zero eigenvalues (the rigid translations), smallest "
    f"nonzero {gap:.2e}, largest {eigenvalues[-1]:.2f}"
)
print(f"  (sensitivities below: {sensitivities_s:.1f} s, compile included)")
print("dx*/dsigma_small (forward mode), by backward solver:")
rows = [
    ("default (dense LU)", res.get("default"), "refused: A is singular"),
    ("GMRES", res.get("gmres"), "refused: A is singular"),
    ("SVD: minimum norm", J, "returned"),
    ("pinned centroid + LU", res.get("pinned"), f"rel. difference {pinned_gap:.1e}"),
]
print(f"  {'backward solver':<22}{'finite':>7}{'|translation part|':>20}  note")
for name, jac, note in rows:
    if jac is None:
        print(f"  {name:<22}{'':>27}  (full run only)")
        continue
    finite = bool(jnp.all(jnp.isfinite(jac)))
    part = f"{float(translation_component(jac)):.1e}" if finite else "-"
    print(f"  {name:<22}{str(finite):>7}{part:>20}  {note}")
print(
    f"  vs central differences of the relaxation (eps={eps:g}, centred): "
    f"rel. error {fd_error:.1e}"
)
print(f"  centroid drift of the perturbed relaxations: {drift:.1e} per unit sigma")

# --- Cost: implicit (GMRES, matrix-free) vs unrolled FIRE, as N grows. --------------
print("Gradient of a translation-invariant loss w . (x* - mean x*), by N:")
print(
    f"  {'N':>5}{'FIRE':>7}{'implicit':>11}{'unrolled':>11}{'ratio':>8}"
    f"{'implicit':>10}{'unrolled':>10}{'rel.':>9}"
)
print(
    f"  {'':>5}{'steps':>7}{'memory':>11}{'memory':>11}{'(mem.)':>8}{'time (s)':>10}"
    f"{'time (s)':>10}{'diff.':>9}"
)
cost = []
for n in tqdm(sizes, desc="system sizes", disable=None):
    e_n, relax_n, unrolled_n, x0_n, _, _ = make_system(n)
    w = jax.random.normal(jax.random.key(1), (n, 2))
    cond_n = ix.Stationarity(e_n)
    implicit_n = ix.ImplicitArgmin(
        cond_n,
        ix.solvers.FunctionSolver(relax_n, has_aux=True),
        ix.ImplicitAdjoint(linear_solver=krylov),
        x0=x0_n,
    )

    def implicit_loss(sigma, layer=implicit_n, w=w):
        sol = layer.solve(sigma)
        return jnp.sum(w * centred(sol.value)), sol.aux["fire_steps"]

    grad_implicit = jax.jit(jax.grad(implicit_loss, has_aux=True))
    compiled = grad_implicit.lower(sigma).compile()
    mem_i = compiled.memory_analysis().temp_size_in_bytes
    _, time_i, (g_i, steps) = compile_and_time(compiled, sigma, repeats=repeats)
    steps = int(steps)
    # Unrolled: reverse mode through exactly as many FIRE steps, from the same start.
    unrolled = ix.ImplicitArgmin(
        cond_n,
        ix.solvers.FunctionSolver(unrolled_n(steps)),
        ix.UnrolledAdjoint(),
        x0=x0_n,
    )
    grad_unrolled = jax.jit(
        jax.grad(lambda s, layer=unrolled, w=w: jnp.sum(w * centred(layer(s))))
    )
    compiled = grad_unrolled.lower(sigma).compile()
    mem_u = compiled.memory_analysis().temp_size_in_bytes
    time_u, diff = None, None  # not run: over the memory budget
    if mem_u < memory_budget:
        _, time_u, g_u = compile_and_time(compiled, sigma, repeats=repeats)
        diff = float(abs(g_u - g_i) / abs(g_i))
    row = {
        "n": n,
        "fire_steps": steps,
        "implicit_bytes": mem_i,
        "unrolled_bytes": mem_u,
        "implicit_s": time_i,
        "unrolled_s": time_u,
        "difference": diff,
        "grad": float(g_i),
    }
    if n == n_main:  # the Krylov gradient against the minimum-norm Jacobian
        row["vs_min_norm"] = float(abs(g_i - jnp.sum(w * J)) / abs(g_i))
    cost.append(row)
    ratio = mem_u / mem_i
    run_u = f"{time_u:10.3f}" if mem_u < memory_budget else f"{'(too big)':>10}"
    diff_s = f"{diff:9.1e}" if mem_u < memory_budget else f"{'-':>9}"
    print(
        f"  {n:5d}{steps:7d}{mem_i / 2**20:8.1f} MiB{mem_u / 2**20:8.0f} MiB"
        f"{ratio:8.0f}{time_i:10.3f}{run_u}{diff_s}"
    )
print(
    f"  (memory: XLA temporary buffers of the compiled gradient; the unrolled one "
    f"is run only below {memory_budget / 2**30:.0f} GiB)"
)
main_row = next(r for r in cost if r["n"] == n_main)
print(
    f"  at N = {n_main}: GMRES reverse-mode gradient vs the SVD Jacobian: rel. "
    f"difference {main_row['vs_min_norm']:.1e}"
)

# --- Figure: the packing with its sensitivity arrows; memory and time against N. ----
out_dir = args.out or pathlib.Path(__file__).parent / "out"
out_dir.mkdir(parents=True, exist_ok=True)
out = out_dir / "molecular_dynamics.png"
fig, (ax1, ax2, ax3) = plt.subplots(
    1, 3, figsize=(15, 4.8), gridspec_kw={"width_ratios": [1.2, 1, 1]}
)
xy = np.asarray(x_star) % side  # folded into the box, for drawing
radii = np.where(np.asarray(species) == 0, sigma_small, sigma_large) / 2
circles, colours = [], []
for shift_x in (-side, 0.0, side):  # periodic images, so that edges look whole
    for shift_y in (-side, 0.0, side):
        for (px, py), r, s in zip(xy, radii, np.asarray(species), strict=True):
            circles.append(Circle((px + shift_x, py + shift_y), r))
            colours.append("tab:orange" if s == 0 else "tab:blue")
ax1.add_collection(
    PatchCollection(circles, facecolor=colours, edgecolor="k", lw=0.4, alpha=0.45)
)
Jn = np.asarray(J)
scale = 1.0 / np.max(np.linalg.norm(Jn, axis=1))  # longest arrow: 1 unit
ax1.quiver(
    xy[:, 0], xy[:, 1], Jn[:, 0], Jn[:, 1], angles="xy", scale_units="xy",
    scale=1 / scale, width=0.004, color="k",
)  # fmt: skip
ax1.set(xlim=(0, side), ylim=(0, side), aspect="equal", xticks=[], yticks=[])
ax1.set_title(
    f"dx*/d(small diameter), minimum norm\n(orange: small, blue: large; "
    f"N = {n_main}, FD error {fd_error:.0e})",
    fontsize=10,
)
ns = np.array([r["n"] for r in cost])
mem_i = np.array([r["implicit_bytes"] for r in cost]) / 2**20
mem_u = np.array([r["unrolled_bytes"] for r in cost]) / 2**20
ax2.loglog(ns, mem_i, "o-", label="implicit (GMRES)")
ax2.loglog(ns, mem_u, "s-", label="unrolled FIRE")
ax2.axhline(memory_budget / 2**20, color="gray", ls="--", lw=1, label="budget here")
ax2.set(xlabel="number of particles N", ylabel="temporary memory (MiB)")
ax2.set_title("Memory of one gradient")
ax2.legend()
time_i = np.array([r["implicit_s"] for r in cost])
time_u = np.array(
    [np.nan if r["unrolled_s"] is None else r["unrolled_s"] for r in cost]
)
ax3.loglog(ns, time_i, "o-", label="implicit (GMRES)")
ran = np.isfinite(time_u)
ax3.loglog(ns[ran], time_u[ran], "s-", label="unrolled FIRE")
if not ran.all():  # where the unrolled gradient did not fit
    first = int(np.argmin(ran))
    ax3.annotate(f"unrolled: over the memory\nbudget from N = {ns[first]}",
                 (ns[first], time_i[first]), textcoords="offset points",
                 xytext=(-90, 30), fontsize=8, color="tab:orange")  # fmt: skip
ax3.set(xlabel="number of particles N", ylabel="seconds (forward + backward)")
ax3.set_title("Time of one gradient")
ax3.legend()
for ax in (ax2, ax3):  # one tick per size
    ax.set_xticks(ns, [str(n) for n in ns])
    ax.xaxis.set_minor_locator(NullLocator())
fig.tight_layout()
fig.savefig(out, dpi=120)
largest_run = [r for r in cost if r["unrolled_s"] is not None][-1]
results = {
    "n_particles": n_main,
    "fire_steps": int(res["aux"]["fire_steps"]),
    "max_force": max_force,
    "zero_eigenvalues": n_zero,
    "smallest_nonzero_eigenvalue": gap,
    "fd_relative_error": fd_error,
    "null_space_component": null_component,
    **{
        f"{name}_refused": bool(not jnp.all(jnp.isfinite(res[name])))
        for name in ("default", "gmres")
        if name in res
    },
    **({"pinned_vs_min_norm": pinned_gap} if "pinned" in res else {}),
    "gmres_reverse_vs_min_norm": main_row["vs_min_norm"],
    "memory_ratio_largest": cost[-1]["unrolled_bytes"] / cost[-1]["implicit_bytes"],
    "implicit_mib_largest": cost[-1]["implicit_bytes"] / 2**20,
    "unrolled_mib_largest": cost[-1]["unrolled_bytes"] / 2**20,
    "n_largest": cost[-1]["n"],
    "unrolled_largest_run_n": largest_run["n"],
    "implicit_vs_unrolled_difference": largest_run["difference"],
    "cost": cost,
}
(out_dir / "molecular_dynamics.json").write_text(json.dumps(results, indent=1))
print(f"Saved {out}")
