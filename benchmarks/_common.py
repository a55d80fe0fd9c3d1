"""Shared timing and reporting helpers for the benchmarks."""

import json
import os
import platform
import statistics
import time
from pathlib import Path

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
