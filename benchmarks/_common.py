"""Shared timing and reporting helpers for the benchmarks."""

import dataclasses
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import ClassVar, Self

import jax


RESULTS_DIR = Path(__file__).parent / "results"


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    device = jax.devices()[0]
    return (
        f"{_cpu()} ({os.cpu_count()} cores), "
        f"{jax.device_count()} {device.platform} device(s) ({device.device_kind}), "
        f"jax {jax.__version__}"
    )


def time_call(fn, *args, repeats: int = 7) -> tuple[float, float]:
    """Compile time (first call) and median run time (seconds) of a jitted `fn`."""
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    compile_time = time.perf_counter() - start
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        runs.append(time.perf_counter() - start)
    return compile_time, statistics.median(runs)


def time_calls(fns: dict, *args, repeats: int = 9) -> dict[str, tuple[float, float]]:
    """Like `time_call` for several jitted functions of the same arguments, with the
    runs interleaved (one call of each per round), so that a slow spell of a shared
    machine affects every method alike and their ratios stay meaningful."""
    out, runs = {}, {name: [] for name in fns}
    for name, fn in fns.items():
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        out[name] = time.perf_counter() - start
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            jax.block_until_ready(fn(*args))
            runs[name].append(time.perf_counter() - start)
    return {name: (out[name], statistics.median(runs[name])) for name in fns}


def memory_bytes(fn, *args) -> int:
    """Peak memory XLA plans for one call of `jax.jit(fn)` (temporaries + outputs +
    arguments, bytes), from the compiled program's own memory analysis."""
    analysis = jax.jit(fn).lower(*args).compile().memory_analysis()
    return int(
        analysis.temp_size_in_bytes
        + analysis.output_size_in_bytes
        + analysis.argument_size_in_bytes
    )


def results_name(name: str, quick: bool) -> str:
    """`--quick` runs write `<name>_quick.*` (not committed), so CI never overwrites
    the committed full results."""
    return name + ("_quick" if quick else "")


def write_results(
    name: str, title: str, header: list[str], rows: list[list], notes: str
):
    """Writes `results/<name>.json` and `results/<name>.md` (a Markdown table)."""
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"{name}: a row of {len(row)} cells for {header}: {row}")
    RESULTS_DIR.mkdir(exist_ok=True)
    payload = {"title": title, "machine": machine(), "header": header, "rows": rows}
    (RESULTS_DIR / f"{name}.json").write_text(json.dumps(payload, indent=2) + "\n")
    lines = [f"### {title}", "", f"Measured on: {machine()}.", "", notes, ""]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(" --- " for _ in header) + "|")
    for row in rows:
        lines.append("| " + " | ".join(_fmt(c) for c in row) + " |")
    (RESULTS_DIR / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


# --- The results tables, typed --------------------------------------------------------
#
# Each results file's columns are named once, here: its script writes its header from
# `header()` and `run_all.py` reads its rows by attribute (`Row.load`), so that a
# renamed or missing column, file or row is an error naming it, never a headline cell
# that silently reads "not run".


class MissingResult(LookupError):
    """A result that the headline reads is not in the results files."""


Cell = float | int | str  # a number, or why there is none ("-", "skipped", "error: …")


def column(header: str):
    """A field of a results row, stored under the column `header`."""
    return dataclasses.field(metadata={"header": header})


class ResultRow:
    """One row of a results file; subclasses are frozen dataclasses, one field per
    column (in the file's order), and name the file (`FILE`, without `_quick`) and
    the script that writes it (`SCRIPT`)."""

    FILE: ClassVar[str]
    SCRIPT: ClassVar[str]

    @classmethod
    def header(cls) -> list[str]:
        return [f.metadata["header"] for f in dataclasses.fields(cls)]

    @classmethod
    def load(cls, results_dir: Path = RESULTS_DIR, quick: bool = False) -> list[Self]:
        """The rows of `results_dir/<FILE>.json`, read by column name; raises
        `MissingResult` naming the file or the columns it lacks."""
        path = Path(results_dir) / f"{results_name(cls.FILE, quick)}.json"
        if not path.exists():
            raise MissingResult(
                f"{path} does not exist: run `python benchmarks/{cls.SCRIPT}`"
            )
        payload = json.loads(path.read_text())
        header = payload["header"]
        missing = [h for h in cls.header() if h not in header]
        if missing:
            raise MissingResult(
                f"{path.name} has no column {', '.join(map(repr, missing))} (its "
                f"columns: {header}); renamed in `{cls.SCRIPT}`? The columns are "
                f"named in `{cls.__name__}` (benchmarks/_common.py)."
            )
        index = {h: i for i, h in enumerate(header)}
        out = []
        for row in payload["rows"]:
            if len(row) != len(header):
                raise MissingResult(f"{path.name}: a row of {len(row)} cells: {row}")
            cells = {
                f.name: row[index[f.metadata["header"]]]
                for f in dataclasses.fields(cls)
            }
            out.append(cls(**cells))
        return out


@dataclasses.dataclass(frozen=True)
class RidgeOverheadRow(ResultRow):
    FILE = "ridge_overhead"
    SCRIPT = "ridge_overhead.py"
    d: int = column("d")
    dtype: str = column("dtype")
    method: str = column("method")
    run_ms: Cell = column("run (ms)")
    ratio_to_closed_form: Cell = column("ratio to closed form")
    relative_error: Cell = column("relative error")
    compile_s: Cell = column("compile (s)")


@dataclasses.dataclass(frozen=True)
class SvmFeaturesRow(ResultRow):
    FILE = "svm_implicit_vs_unrolled"
    SCRIPT = "svm_implicit_vs_unrolled.py"
    p: int = column("p")
    dtype: str = column("dtype")
    method: str = column("method")
    run_ms: Cell = column("run (ms)")
    time_over_forward: Cell = column("time / forward")
    unrolled_time_over_time: Cell = column("unrolled time / time")
    memory_mib: Cell = column("memory (MiB)")
    memory_over_forward: Cell = column("memory / forward")
    compile_s: Cell = column("compile (s)")
    hypergradient: Cell = column("d loss / d log lam")
    rel_diff_to_unrolled: Cell = column("rel. diff to unrolled")
    forward_residual: Cell = column("forward residual")


@dataclasses.dataclass(frozen=True)
class SvmMemoryRow(ResultRow):
    FILE = "svm_memory_vs_iterations"
    SCRIPT = "svm_implicit_vs_unrolled.py"
    iterations: int = column("iterations")
    method: str = column("method")
    run_ms: Cell = column("run (ms)")
    time_over_forward: Cell = column("time / forward")
    memory_mib: Cell = column("memory (MiB)")
    memory_over_forward: Cell = column("memory / forward")
    compile_s: Cell = column("compile (s)")
    forward_residual: Cell = column("forward residual")


@dataclasses.dataclass(frozen=True)
class PeersRow(ResultRow):
    FILE = "hypergradients_vs_peers"
    SCRIPT = "hypergradients_vs_peers.py"
    problem: str = column("problem")
    dtype: str = column("dtype")
    peer: str = column("peer")
    backward_solve: str = column("backward solve")
    forward_steps: str = column("forward steps (ix / peer)")
    implicitx_run_ms: Cell = column("implicitx run (ms)")
    peer_run_ms: Cell = column("peer run (ms)")
    ratio: Cell = column("ratio implicitx/peer")
    gradient_rel_diff: Cell = column("gradient rel. diff")
    implicitx_vs_reference: Cell = column("implicitx vs reference")
    peer_vs_reference: Cell = column("peer vs reference")
    implicitx_compile_s: Cell = column("implicitx compile (s)")
    peer_compile_s: Cell = column("peer compile (s)")


@dataclasses.dataclass(frozen=True)
class SolversRow(ResultRow):
    FILE = "solvers_vs_jaxopt"
    SCRIPT = "solvers_vs_jaxopt.py"
    problem: str = column("problem")
    dtype: str = column("dtype")
    solver: str = column("solver")
    implicitx_run_ms: Cell = column("implicitx run (ms)")
    jaxopt_run_ms: Cell = column("JAXopt run (ms)")
    ratio: Cell = column("ratio implicitx/JAXopt")
    implicitx_error: Cell = column("implicitx error")
    jaxopt_error: Cell = column("JAXopt error")
    implicitx_compile_s: Cell = column("implicitx compile (s)")
    jaxopt_compile_s: Cell = column("JAXopt compile (s)")


@dataclasses.dataclass(frozen=True)
class ScalingSizeRow(ResultRow):
    FILE = "scaling_size"
    SCRIPT = "scaling.py"
    problem: str = column("problem")
    dtype: str = column("dtype")
    d: int = column("d")
    forward_ms: Cell = column("forward (ms)")
    hypergradient_ms: Cell = column("hypergradient (ms)")
    ratio: Cell = column("ratio")
    compile_s: Cell = column("compile (s)")
    trace_s: Cell = column("trace (s)")
    lower_s: Cell = column("lower (s)")
    backward_solver: str = column("backward solver")
    relative_error: Cell = column("relative error")


@dataclasses.dataclass(frozen=True)
class ScalingBatchRow(ResultRow):
    FILE = "scaling_batch"
    SCRIPT = "scaling.py"
    problem: str = column("problem")
    dtype: str = column("dtype")
    method: str = column("method")
    B: int = column("B")
    total_ms: Cell = column("total (ms)")
    per_element_ms: Cell = column("per element (ms)")
    per_element_over_single: Cell = column("per element / B = 1")
    compile_s: Cell = column("compile (s)")


@dataclasses.dataclass(frozen=True)
class QpLayerRow(ResultRow):
    FILE = "qp_layers"
    SCRIPT = "qp_layers.py"
    batch: int = column("batch")
    n: int = column("n")
    dtype: str = column("dtype")
    method: str = column("method")
    run_ms: Cell = column("run (ms)")
    ratio: Cell = column("ratio implicitx/method")
    gradient_error: Cell = column("gradient error")
    first_call_s: Cell = column("first call (s)")


@dataclasses.dataclass(frozen=True)
class QpScalingRow(ResultRow):
    FILE = "qp_scaling"
    SCRIPT = "qp_layers.py"
    batch: int = column("batch")
    n: int = column("n")
    method: str = column("method")
    run_ms: Cell = column("run (ms)")
    ms_per_problem: Cell = column("ms per problem")
    first_call_s: Cell = column("first call (s)")


TABLES: tuple[type[ResultRow], ...] = (
    RidgeOverheadRow,
    SvmFeaturesRow,
    SvmMemoryRow,
    PeersRow,
    SolversRow,
    ScalingSizeRow,
    ScalingBatchRow,
    QpLayerRow,
    QpScalingRow,
)
