"""The benchmarks' headline table reads the results files by typed rows: a missing
file, a renamed column or a missing row is an error naming it, never a cell that
silently reads "not run". Synthetic results files; no benchmark is run."""

import dataclasses
import importlib
import json
from pathlib import Path

import pytest


BENCHMARKS = Path(__file__).parent.parent / "benchmarks"


@pytest.fixture
def run_all(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module("run_all")


def _row(table, **cells):
    """A row of `table` (a `ResultRow` class) in its header's order, "-" where not
    given."""
    header = table.header()
    by_field = dict(
        zip([f.name for f in dataclasses.fields(table)], header, strict=True)
    )
    unknown = set(cells) - set(by_field)
    assert not unknown, unknown
    return [cells.get(name, "-") for name in by_field]


def _write(results_dir, table, rows, header=None):
    payload = {
        "title": table.FILE,
        "machine": "test",
        "header": header or table.header(),
        "rows": rows,
    }
    (results_dir / f"{table.FILE}.json").write_text(json.dumps(payload))


def _complete_results(common, results_dir):
    """One results file per table that the headline reads, with every row it
    needs."""
    dtypes = ("float64", "float32")
    ridge = [
        _row(common.RidgeOverheadRow, d=500, dtype=dt, method=m, ratio_to_closed_form=r)
        for dt, shift in zip(dtypes, (0.0, -0.5), strict=True)
        for m, r in (
            ("forward solve alone (no gradient)", 0.5),
            ("closed form (autodiff)", 1.0),
            ("custom_root, default (dense LU)", 1.8 + shift),
            ("Stationarity convex, CG rtol=1e-10", 1.6 + shift),
        )
    ]
    _write(results_dir, common.RidgeOverheadRow, ridge)
    svm = [
        _row(
            common.SvmFeaturesRow,
            p=1000,
            dtype=dt,
            method=method,
            run_ms=run_ms,
            time_over_forward=1.5,
            unrolled_time_over_time=2.0,
        )
        for dt in dtypes
        for method, run_ms in (
            ("implicit (default: GMRES)", 60.0),
            ("implicit (GMRES, no uniqueness probe)", 50.0),
            ("implicit (default, timed again)", 61.2),
            ("implicit, forward mode (jax.jacfwd)", 58.0),
            ("implicit, forward mode, no uniqueness probe", 50.0),
        )
    ]
    _write(results_dir, common.SvmFeaturesRow, svm)
    memory = [
        _row(common.SvmMemoryRow, iterations=i, method=m, memory_mib=mib)
        for i in (10, 1000)
        for m, mib in (
            ("forward solve alone", 0.8),
            ("implicit (default: GMRES)", 2.6),
            ("unrolled", 2.7 if i == 10 else 30.0),
        )
    ]
    _write(results_dir, common.SvmMemoryRow, memory)
    peers = [
        _row(
            common.PeersRow,
            problem="lasso n=50 d=20 (FISTA, line search)",
            dtype=dt,
            peer="JAXopt 0.8.5",
            backward_solve="defaults: ix dense LU / JAXopt solve_normal_cg",
            ratio=ratio,
        )
        for dt, ratio in zip(dtypes, (0.5, "-"), strict=True)  # float32: skipped
    ]
    _write(results_dir, common.PeersRow, peers)
    solvers = [
        _row(
            common.SolversRow,
            problem="lasso n=50 d=30",
            dtype=dt,
            solver="proximal gradient (FISTA)",
            ratio=0.004,
        )
        for dt in dtypes
    ]
    _write(results_dir, common.SolversRow, solvers)
    qp = [
        _row(
            common.QpLayerRow,
            batch=32,
            n=50,
            dtype=dt,
            method=method,
            ratio=ratio if dt == "float64" or method != "cvxpylayers" else "-",
            gradient_error=error,
        )
        for dt in dtypes
        for method, ratio, error in (
            ("implicitx (interior point)", 1.0, 1e-12),
            ("qpax", 0.8, 1e-2),
            ("qpth", 0.5, 1e-8),
            ("cvxpylayers", 0.05, 1e-5),
            ("JAXopt OSQP", 1.5, 1e-3),
        )
    ]
    _write(results_dir, common.QpLayerRow, qp)


def test_headline_from_complete_results(run_all, tmp_path):
    _complete_results(run_all, tmp_path)
    cells = run_all.headline_cells(run_all.headline(tmp_path))
    assert [row[1:] for row in cells] == [
        ["1.60", "1.10", "≤ 1.2 (float32)", "yes"],
        ["1.50", "1.50", "≤ 1.2", "no (float64, float32)"],
        ["1.20", "1.20", "≤ 1.05 (noise)", "no (float64, float32)"],  # 60 / 50 ms
        ["1.16", "1.16", "-", "-"],  # 58 ms / 50 ms
        ["1.02", "1.02", "1 ± noise", "-"],  # 61.2 ms / 60 ms
        ["0.50", "0.50", "≤ 0.55", "yes"],
        ["-", "2.6 / 2.7, 2.6 / 30", "implicit flat", "yes"],
        ["0.50", "not run", "≤ 1.0", "yes"],  # a skipped peer: there, not a number
        ["0.80", "0.80", "≤ 1.0", "yes"],
        ["0.50", "0.50", "≤ 1.0", "yes"],
        ["0.05", "not run", "≤ 0.1", "yes"],  # cvxpylayers: float64 only
        ["1.50", "1.50", "≤ 1.0", "no (float64, float32)"],
        ["1.0e-12", "1.0e-12", "≤ 1e-6 (float64)", "yes"],
        ["4.0e-03", "4.0e-03", "≤ 1.0", "yes"],
    ]
    assert cells[6][0].endswith("at 10 and 1000 iterations")


def test_renamed_column_is_an_error(run_all, tmp_path):
    _complete_results(run_all, tmp_path)
    table = run_all.RidgeOverheadRow
    header = [
        "ratio vs closed form" if h == "ratio to closed form" else h
        for h in table.header()
    ]
    rows = json.loads((tmp_path / "ridge_overhead.json").read_text())["rows"]
    _write(tmp_path, table, rows, header=header)
    with pytest.raises(
        run_all.MissingResult, match="ridge_overhead.json has no column 'ratio to"
    ):
        run_all.headline(tmp_path)
    with pytest.raises(run_all.MissingResult, match="ratio to closed form"):
        run_all.check_tables(tmp_path)


def test_missing_file_is_an_error(run_all, tmp_path):
    _complete_results(run_all, tmp_path)
    (tmp_path / "solvers_vs_jaxopt.json").unlink()
    with pytest.raises(
        run_all.MissingResult,
        match=r"solvers_vs_jaxopt.json does not exist: run .*solvers_vs_jaxopt.py",
    ):
        run_all.headline(tmp_path)


@pytest.mark.parametrize(
    "table, keep, match",
    [
        (
            "SvmFeaturesRow",
            lambda r: r[1] == "float64",
            "svm_implicit_vs_unrolled: no row with p = 1000, dtype = 'float32'",
        ),
        (
            "RidgeOverheadRow",
            lambda r: r[0] != 500,
            "ridge_overhead: no row with d = 500",
        ),
        (
            "SvmMemoryRow",
            lambda r: r[1] != "unrolled",
            r"svm_memory_vs_iterations: no row with iterations = 10, method matching "
            r"'unrolled …'",
        ),
    ],
)
def test_missing_row_is_an_error(run_all, tmp_path, table, keep, match):
    _complete_results(run_all, tmp_path)
    table = getattr(run_all, table)
    path = tmp_path / f"{table.FILE}.json"
    rows = [r for r in json.loads(path.read_text())["rows"] if keep(r)]
    _write(tmp_path, table, rows)
    with pytest.raises(run_all.MissingResult, match=match):
        run_all.headline(tmp_path)


def test_committed_headline_is_read_from_the_committed_results(run_all):
    # The table in `results/headline.md` is what the typed reader builds from the
    # committed results files (the measurement line above it aside).
    results = BENCHMARKS / "results"
    table = (results / "headline.md").read_text().splitlines()[4:]
    cells = run_all.headline_cells(run_all.headline(results))
    assert table == ["| " + " | ".join(row) + " |" for row in cells]
