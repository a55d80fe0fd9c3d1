"""Runs every benchmark, one fresh process each, then writes the headline table
(`results/headline.md`, shown by the docs) and copies it into the README.

    python benchmarks/run_all.py [--quick]

`--quick` runs small sizes (as CI does, to keep the scripts working); its results go to
`results/*_quick.*`, and neither the headline nor the README is touched. Results are
read by the typed rows of `_common.py`: a results file, column or row that the headline
needs and cannot find is an error (`MissingResult`) naming it; `--quick` checks that
every file it wrote has its columns.
"""

import argparse
import dataclasses
import json
import math
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from _common import (
    machine,
    MissingResult,
    PeersRow,
    QpLayerRow,
    RESULTS_DIR,
    RidgeOverheadRow,
    SolversRow,
    SvmFeaturesRow,
    SvmMemoryRow,
    TABLES,
)


HERE = Path(__file__).parent
README = HERE.parent / "README.md"
SCRIPTS = [
    "ridge_overhead.py",
    "svm_implicit_vs_unrolled.py",
    "hypergradients_vs_peers.py",
    "solvers_vs_jaxopt.py",
    "scaling.py",
    "qp_layers.py",
]
BEGIN, END = "<!-- headline:begin -->", "<!-- headline:end -->"
DTYPES = ("float64", "float32")  # the order of the columns


@dataclasses.dataclass(frozen=True)
class HeadlineRow:
    """One row of the headline table. `float64` and `float32` are the measured
    ratios, `None` where the result exists but is not a number (a peer skipped or
    failed: shown as "not run"), or text; `met` is the verdict, computed from
    `target` (`≤ x`) unless given."""

    comparison: str
    float64: float | str | None
    float32: float | str | None
    target: str
    met: str | None = None


def _matches(value, want) -> bool:
    return want(value) if callable(want) else value == want


def _select(table, rows, **where) -> list:
    """The rows (of `table`) whose fields match `where` (a value, or a predicate on
    the field); `MissingResult` naming the file and the filter if there are none."""
    out = [r for r in rows if all(_matches(getattr(r, k), w) for k, w in where.items())]
    if not out:
        wanted = ", ".join(f"{k} {_describe(w)}" for k, w in where.items())
        raise MissingResult(f"{table.FILE}: no row with {wanted}")
    return out


def _describe(want) -> str:
    if callable(want):
        return "matching " + getattr(want, "label", "a predicate")
    return f"= {want!r}"


def _first_number(rows, field: str) -> float | None:
    """The first numeric `field` among `rows`, else `None` (not run)."""
    return next(
        (v for v in (_number(getattr(r, field)) for r in rows) if v is not None), None
    )


def _number(value) -> float | None:
    """A cell's value if it is a number, else `None` (a result that was not run)."""
    return value if isinstance(value, (int, float)) else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a / b


def _prefix(text: str):
    """A predicate `field.startswith(text)`, labelled for error messages."""

    def test(value):
        return value.startswith(text)

    test.label = repr(text + "…")
    return test


def headline(results_dir: Path = RESULTS_DIR) -> list[HeadlineRow]:
    """The headline rows, read from the results files in `results_dir` by the typed
    rows of `_common.py`; `MissingResult` names any file, column or row missing."""
    out = []
    ridge = RidgeOverheadRow.load(results_dir)

    def implicit(m):
        return not m.startswith(("closed form", "forward"))

    implicit.label = "an implicit method"
    cells = []
    for dtype in DTYPES:
        rows = _select(RidgeOverheadRow, ridge, d=500, dtype=dtype, method=implicit)
        ratios = [_number(r.ratio_to_closed_form) for r in rows]
        ratios = [r for r in ratios if r is not None]
        cells.append(min(ratios) if ratios else None)
    out.append(
        HeadlineRow(
            "Ridge hypergradient, d = 500: best implicit backward solver / "
            "autodiff of the closed form",
            *cells,
            "≤ 1.2 (float32)",
        )
    )

    svm = SvmFeaturesRow.load(results_dir)
    default = _prefix("implicit (default:")

    def svm_cells(field):
        return [
            _first_number(
                _select(SvmFeaturesRow, svm, p=1000, dtype=dt, method=default), field
            )
            for dt in DTYPES
        ]

    out.append(
        HeadlineRow(
            "SVM hypergradient, p = 1000, 100 iterations: implicit / forward solve",
            *svm_cells("time_over_forward"),
            "≤ 1.2",
        )
    )

    def run_ratio(method, reference):
        return [
            _ratio(
                _first_number(
                    _select(SvmFeaturesRow, svm, p=1000, dtype=dt, method=method),
                    "run_ms",
                ),
                _first_number(
                    _select(SvmFeaturesRow, svm, p=1000, dtype=dt, method=reference),
                    "run_ms",
                ),
            )
            for dt in DTYPES
        ]

    out.append(
        HeadlineRow(
            "SVM hypergradient, p = 1000, reverse mode: implicit default / the same "
            "without the Krylov uniqueness probe (the cost of the check: it runs "
            "only to name a failed solve)",
            *run_ratio(default, "implicit (GMRES, no uniqueness probe)"),
            "≤ 1.05 (noise)",
        )
    )
    out.append(
        HeadlineRow(
            "SVM hypergradient, p = 1000, forward mode: the same ratio (one loose "
            "Krylov solve per point, which forward mode needs: an ambiguous tangent "
            "solves its system too)",
            *run_ratio(
                "implicit, forward mode (jax.jacfwd)",
                "implicit, forward mode, no uniqueness probe",
            ),
            "-",
            met="-",
        )
    )
    out.append(
        HeadlineRow(
            "SVM hypergradient, p = 1000: implicit default / the same compiled and "
            "timed again (the noise of a ratio in this run)",
            *run_ratio("implicit (default, timed again)", default),
            "1 ± noise",
            met="-",
        )
    )
    speedups = svm_cells("unrolled_time_over_time")
    out.append(
        HeadlineRow(
            "SVM hypergradient, p = 1000: implicit / unrolled",
            *[None if ratio is None else 1.0 / ratio for ratio in speedups],
            "≤ 0.55",
        )
    )

    memory = SvmMemoryRow.load(results_dir)
    if not memory:
        raise MissingResult(f"{SvmMemoryRow.FILE}: no rows")
    top = max(r.iterations for r in memory)
    low = min(r.iterations for r in memory)

    def mem(iterations, method):
        def kind(m):  # the method's first word
            return m.split(" ")[0] == method

        kind.label = repr(method + " …")
        return _select(SvmMemoryRow, memory, iterations=iterations, method=kind)[
            -1
        ].memory_mib

    out.append(
        HeadlineRow(
            f"SVM, p = 1000, float32: memory (MiB) implicit / unrolled at {low} "
            f"and {top} iterations",
            "-",
            f"{mem(low, 'implicit'):.2g} / {mem(low, 'unrolled'):.2g}, "
            f"{mem(top, 'implicit'):.2g} / {mem(top, 'unrolled'):.2g}",
            "implicit flat",
            "yes" if mem(top, "implicit") <= 1.05 * mem(low, "implicit") else "no",
        )
    )

    # Against JAXopt and optimistix: each library with its default backward solver,
    # and the ridge problem with the same (LU) backward solver on both sides.
    peers = [
        r
        for r in PeersRow.load(results_dir)
        if r.backward_solve.startswith("defaults")
        or (r.problem.startswith("ridge") and r.backward_solve == "both LU")
    ]
    if not peers:
        raise MissingResult(f"{PeersRow.FILE}: no row with default or LU solves")
    problems = []
    for r in peers:
        same = "defaults" if r.backward_solve.startswith("defaults") else "both LU"
        if (r.problem, same, r.peer) not in problems:
            problems.append((r.problem, same, r.peer))
    for problem, same, peer in problems:
        cells = [
            _first_number(
                _select(
                    PeersRow,
                    peers,
                    problem=problem,
                    dtype=dt,
                    peer=peer,
                    backward_solve=_prefix(same),
                ),
                "ratio",
            )
            for dt in DTYPES
        ]
        backward = "default backward solves" if same == "defaults" else "both LU"
        out.append(
            HeadlineRow(
                f"Hypergradient vs {peer}: {problem}, {backward}; implicitx / peer",
                *cells,
                "≤ 1.0",
            )
        )

    out += _qp_rows(results_dir)

    solvers = SolversRow.load(results_dir)
    if not solvers:
        raise MissingResult(f"{SolversRow.FILE}: no rows")
    seen = []
    for r in solvers:
        if (r.problem, r.solver) in seen:
            continue
        seen.append((r.problem, r.solver))
        cells = [
            _first_number(
                _select(
                    SolversRow, solvers, problem=r.problem, solver=r.solver, dtype=dt
                ),
                "ratio",
            )
            for dt in DTYPES
        ]
        out.append(
            HeadlineRow(
                f"Forward solver vs JAXopt 0.8.5: {r.problem}, {r.solver}; "
                "implicitx / JAXopt",
                *cells,
                "≤ 1.0",
            )
        )
    return out


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "not run"
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) >= 0.01 else f"{value:.1e}"
    return str(value)


def _met(row: HeadlineRow) -> str:
    """Whether the measured ratios meet a `≤ x` target, per dtype (or the verdict
    given in the row)."""
    if row.met is not None:
        return row.met
    if not row.target.startswith("≤"):
        return "see row"
    bound = float(row.target[1:].split()[0])
    only = "float32" if "float32" in row.target else None
    misses = [
        name
        for name, value in (("float64", row.float64), ("float32", row.float32))
        if isinstance(value, float)
        and (only is None or name == only)
        and not value <= bound
    ]
    return "yes" if not misses else "no (" + ", ".join(misses) + ")"


def _qp_rows(results_dir: Path) -> list[HeadlineRow]:
    """The QP layer against its peers (time ratios) and its gradient error."""
    rows = QpLayerRow.load(results_dir)
    if not rows:
        raise MissingResult(f"{QpLayerRow.FILE}: no rows")
    batch, n = rows[0].batch, rows[0].n
    own = "implicitx (interior point)"
    where = f"QP layer, batch {batch}, n = {n}, forward + gradient"

    def cells(method, field):
        return [
            _first_number(
                _select(QpLayerRow, rows, dtype=dt, method=method)
                if any(r.dtype == dt for r in rows)
                else [],
                field,
            )
            for dt in DTYPES
        ]

    out = []
    for peer, target in (
        ("qpax", "≤ 1.0"),
        ("qpth", "≤ 1.0"),
        ("cvxpylayers", "≤ 0.1"),
        ("JAXopt OSQP", "≤ 1.0"),
    ):
        out.append(
            HeadlineRow(f"{where}: implicitx / {peer}", *cells(peer, "ratio"), target)
        )
    errors = cells(own, "gradient_error")
    out.append(
        HeadlineRow(
            f"{where}: implicitx's gradient error against the exact active-set "
            "gradient (relative)",
            *errors,
            "≤ 1e-6 (float64)",
            met="-" if errors[0] is None else ("yes" if errors[0] <= 1e-6 else "no"),
        )
    )
    return out


def headline_cells(rows: list[HeadlineRow]) -> list[list[str]]:
    """The table's cells: comparison, float64, float32, target, met."""
    return [
        [_fmt(c) for c in (r.comparison, r.float64, r.float32, r.target)] + [_met(r)]
        for r in rows
    ]


def check_tables(results_dir: Path = RESULTS_DIR, quick: bool = False) -> None:
    """Reads every results file by its typed row: `MissingResult` if one is missing
    or lacks a column (what `--quick` checks, as its small runs lack the headline's
    sizes)."""
    for table in TABLES:
        table.load(results_dir, quick=quick)


def measured_on(results_dir: Path = RESULTS_DIR) -> str:
    """The machine(s) the results were measured on, as their files record it (a
    benchmark rerun alone may have run on another machine than the rest)."""
    files: dict[str, list[str]] = {}
    for table in TABLES:
        path = results_dir / f"{table.FILE}.json"
        if path.exists():
            recorded = json.loads(path.read_text()).get("machine", "unknown")
            files.setdefault(recorded, []).append(table.FILE)
    if len(files) <= 1:
        return next(iter(files), machine())
    return "; ".join(f"{m} ({', '.join(names)})" for m, names in files.items())


def write_headline() -> str:
    lines = [
        f"Measured on: {measured_on()}, by `python benchmarks/run_all.py` "
        f"({time.strftime('%Y-%m-%d')}). Every ratio is a time, implicitx over the "
        "reference named in its row: below 1, implicitx is faster.",
        "",
        "| comparison | float64 | float32 | target | met |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in headline_cells(headline())]
    text = "\n".join(lines) + "\n"
    (RESULTS_DIR / "headline.md").write_text(text)
    readme = README.read_text()
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
    if pattern.search(readme):
        README.write_text(pattern.sub(lambda _: f"{BEGIN}\n{text}{END}", readme))
    return text


def run_scripts(options: list[str], jobs: int) -> None:
    """Runs every script, `jobs` at a time; each one's output is printed when it ends
    (a failing script stops the run with its output shown)."""
    waiting = list(SCRIPTS)
    running: list[tuple[str, subprocess.Popen, float]] = []
    while waiting or running:
        while waiting and len(running) < jobs:
            script = waiting.pop(0)
            process = subprocess.Popen(
                [sys.executable, script, *options],
                cwd=HERE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            running.append((script, process, time.perf_counter()))
        script, process, start = running.pop(0)
        output, _ = process.communicate()
        print(f"== {' '.join([script, *options])}\n{output}", end="", flush=True)
        if process.returncode != 0:
            for _, other, _ in running:
                other.kill()
            raise subprocess.CalledProcessError(process.returncode, script)
        print(f"== {script}: {time.perf_counter() - start:.0f} s", flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="small sizes (CI)")
    parser.add_argument(
        "--headline-only", action="store_true", help="rebuild the headline table"
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="scripts run at once (with --quick only: timings need a quiet machine)",
    )
    args = parser.parse_args()
    if args.jobs > 1 and not args.quick:
        parser.error("--jobs > 1 needs --quick: the full runs time things")
    if not args.headline_only:
        run_scripts(["--quick"] if args.quick else [], args.jobs)
        check_tables(quick=args.quick)
    if not args.quick:
        # The docs show the figures: copy them where mkdocs finds them.
        figures = HERE.parent / "docs" / "benchmarks"
        figures.mkdir(exist_ok=True)
        for png in RESULTS_DIR.glob("*.png"):
            if not png.stem.endswith("_quick"):
                shutil.copy(png, figures / png.name)
        print(write_headline())


if __name__ == "__main__":
    main()
