"""The page "Coming from JAXopt" (`docs/migrating.md`) names only things that exist, and
maps every public name of JAXopt.

- Every dotted name of implicitx on the page (`implicitx.X`, `ix.X`, in prose, code
  spans, autorefs and code blocks) resolves by import and attribute access; so do the
  names of the libraries it points to instead (lineax, optimistix, optax, equinox,
  JAX).
- Every public name of JAXopt 0.8.5 appears in a code span, in the section of its
  module.
- The page's code blocks run.
"""

import dataclasses
import importlib
import re
from pathlib import Path

import pytest


PAGE = Path(__file__).parent.parent / "docs" / "migrating.md"

ALIASES = {
    "ix": "implicitx",
    "lx": "lineax",
    "optx": "optimistix",
    "eqx": "equinox",
    "jnp": "jax.numpy",
}
IMPLICITX_ROOTS = ("implicitx", "ix")
OTHER_ROOTS = ("lineax", "lx", "optimistix", "optx", "optax", "equinox", "eqx", "jax")
OTHER_ROOTS += ("jnp",)

# The public names of JAXopt 0.8.5 (its last release; the project is unmaintained),
# by module ("" for the top level), modules themselves excluded.
JAXOPT = {
    "": """AndersonAcceleration AndersonWrapper ArmijoSGD BFGS BacktrackingLineSearch
        Bisection BlockCoordinateDescent BoxCDQP BoxOSQP Broyden CvxpyQP
        EqualityConstrainedQP FixedPointIteration GaussNewton GradientDescent
        HagerZhangLineSearch IterativeRefinement LBFGS LBFGSB LevenbergMarquardt
        MirrorDescent NonlinearCG OSQP OptStep OptaxSolver PolyakSGD ProjectedGradient
        ProximalGradient ScipyBoundedLeastSquares ScipyBoundedMinimize
        ScipyLeastSquares ScipyMinimize ScipyRootFinding ZoomLineSearch""",
    "base": """AutoOrBoolean IterativeSolver KKTSolution LinearOperator OptStep
        StochasticSolver""",
    "cond": "cond",
    "implicit_diff": "custom_fixed_point custom_root root_jvp root_vjp",
    "isotonic": "isotonic_l2_pav",
    "linear_solve": """solve_bicgstab solve_cg solve_cholesky solve_gmres solve_inv
        solve_iterative_refinement solve_lu solve_normal_cg solve_qr""",
    "loop": "while_loop",
    "loss": """binary_hinge_loss binary_logistic_loss binary_perceptron_loss
        binary_sparsemax_loss huber_loss make_fenchel_young_loss multiclass_hinge_loss
        multiclass_logistic_loss multiclass_perceptron_loss multiclass_sparsemax_loss
        sparse_plus sparse_sigmoid""",
    "objective": """CompositeLinearFunction binary_logreg l2_multiclass_logreg
        l2_multiclass_logreg_with_intercept least_squares multiclass_linear_svm_dual
        multiclass_logreg multiclass_logreg_with_intercept ridge_regression""",
    "perturbations": """Gumbel Normal make_perturbed_argmax make_perturbed_fun
        make_perturbed_max""",
    "projection": """kl_projection_birkhoff kl_projection_transport
        projection_affine_set projection_birkhoff projection_box projection_box_section
        projection_halfspace projection_hypercube projection_hyperplane
        projection_l1_ball projection_l1_sphere projection_l2_ball projection_l2_sphere
        projection_linf_ball projection_non_negative projection_polyhedron
        projection_simplex projection_sparse_simplex projection_transport""",
    "prox": """make_prox_from_projection prox_elastic_net prox_group_lasso prox_lasso
        prox_non_negative_lasso prox_non_negative_ridge prox_none prox_ridge""",
    "tree_util": """broadcast_pytrees tree_add tree_add_scalar_mul tree_conj tree_div
        tree_dot tree_imag tree_inf_norm tree_l2_norm tree_map tree_mul tree_negative
        tree_ones_like tree_real tree_reduce tree_scalar_mul tree_sub tree_sum
        tree_vdot tree_vdot_real tree_where tree_zeros_like""",
}
JAXOPT_NAMES = {module: names.split() for module, names in JAXOPT.items()}


def page() -> str:
    return PAGE.read_text()


def dotted_names(text: str, roots: tuple[str, ...]) -> set[str]:
    """Every dotted name `root.a.b...` in `text` (prose, code spans, autoref targets
    and code blocks alike)."""
    alternatives = "|".join(re.escape(root) for root in roots)
    pattern = rf"(?<![\w.])(?:{alternatives})(?:\.[A-Za-z_]\w*)+"
    return set(re.findall(pattern, text))


def resolves(dotted: str) -> bool:
    """Whether `dotted` names a module, an attribute, or a dataclass field (the
    fields of an `equinox.Module` without a default are not class attributes)."""
    parts = dotted.split(".")
    parts = ALIASES.get(parts[0], parts[0]).split(".") + parts[1:]
    for end in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:end]))
        except ImportError:
            continue
        break
    else:
        return False
    rest = parts[end:]
    for i, name in enumerate(rest):
        if hasattr(obj, name):
            obj = getattr(obj, name)
        elif dataclasses.is_dataclass(obj) and i == len(rest) - 1:
            return name in {field.name for field in dataclasses.fields(obj)}
        else:
            return False
    return True


def code_spans(text: str) -> list[str]:
    return re.findall(r"`([^`\n]+)`", text)


def mentions(text: str, name: str) -> bool:
    """Whether `name` is a word of some code span of `text`."""
    word = re.compile(rf"(?<![\w]){re.escape(name)}(?!\w)")
    return any(word.search(span) for span in code_spans(text))


def sections(text: str) -> dict[str, str]:
    """The `###` sections of the page: heading -> body."""
    parts = re.split(r"^### (.+)$", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_the_page_names_implicitx_things():
    names = dotted_names(page(), IMPLICITX_ROOTS)
    assert len(names) > 50, "the page should name implicitx's counterparts"
    missing = sorted(name for name in names if not resolves(name))
    assert not missing, (
        f"docs/migrating.md names what implicitx does not have: {missing}"
    )


def test_the_page_names_other_libraries_things():
    pytest.importorskip("optax")
    names = dotted_names(page(), OTHER_ROOTS)
    assert any(name.startswith("optax.losses.") for name in names)
    missing = sorted(name for name in names if not resolves(name))
    assert not missing, f"docs/migrating.md names what does not exist: {missing}"


def test_every_jaxopt_name_is_mapped():
    text = page()
    by_heading = sections(text)
    for module, names in JAXOPT_NAMES.items():
        if module == "":
            where, body = "the page", text
        else:
            headings = [h for h in by_heading if f"`jaxopt.{module}`" in h]
            assert len(headings) == 1, f"one section for `jaxopt.{module}`"
            where, body = f"section {headings[0]!r}", by_heading[headings[0]]
        unmapped = [name for name in names if not mentions(body, name)]
        assert not unmapped, f"JAXopt names missing from {where}: {unmapped}"


def test_the_list_of_jaxopt_names_is_jaxopts():
    import inspect

    jaxopt = pytest.importorskip("jaxopt")
    for module, names in JAXOPT_NAMES.items():
        mod = importlib.import_module(f"jaxopt.{module}") if module else jaxopt
        public = {
            name
            for name in dir(mod)
            if not name.startswith("_") and not inspect.ismodule(getattr(mod, name))
        }
        assert public == set(names), f"jaxopt.{module}" if module else "jaxopt"


def test_the_resolver_refuses_what_does_not_exist():
    assert resolves("implicitx.projection.Simplex")
    assert resolves("ix.Solution.value")  # an equinox.Module field
    assert resolves("lineax.CG") and resolves("jax.tree_util.tree_map")
    assert not resolves("implicitx.projection.projection_simplex")
    assert not resolves("ix.prox.Lasso")
    assert not resolves("implicitx.Solution.no_such_field")
    assert dotted_names("`ix.prox.L1(0.1)`, [x][implicitx.Root].", IMPLICITX_ROOTS) == {
        "ix.prox.L1",
        "implicitx.Root",
    }


def test_the_examples_run():
    blocks = re.findall(r"```python\n(.*?)```", page(), flags=re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, str(PAGE), "exec"), {})
