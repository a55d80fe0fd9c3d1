"""Runs every benchmark, one fresh process each, then writes the headline table
(`results/headline.md`, shown by the docs) and copies it into the README.

    python benchmarks/run_all.py [--quick]

`--quick` runs small sizes (as CI does, to keep the scripts working); its results go to
`results/*_quick.*`, and neither the headline nor the README is touched.
"""

import argparse
import json
import math
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from _common import machine, RESULTS_DIR


HERE = Path(__file__).parent
README = HERE.parent / "README.md"
SCRIPTS = [
    "ridge_overhead.py",
    "svm_implicit_vs_unrolled.py",
    "hypergradients_vs_peers.py",
    "solvers_vs_jaxopt.py",
    "scaling.py",
]
BEGIN, END = "<!-- headline:begin -->", "<!-- headline:end -->"


def _rows(name: str) -> list[dict]:
    path = RESULTS_DIR / f"{name}.json"
    if not path.exists():
        return []
    payload = json.loads(path.read_text())
    return [dict(zip(payload["header"], row, strict=True)) for row in payload["rows"]]


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "not run"
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) >= 0.01 else f"{value:.1e}"
    return str(value)


def _pick(rows, column, **where):
    values = [
        r[column]
        for r in rows
        if all((w(r[k]) if callable(w) else r[k] == w) for k, w in where.items())
        and isinstance(r[column], (int, float))
    ]
    return values


def headline() -> list[list[str]]:
    out = []
    ridge = _rows("ridge_overhead")
    implicit = lambda m: not m.startswith(("closed form", "forward"))
    cells = []
    for dtype in ("float64", "float32"):  # the order of the columns
        ratios = _pick(
            ridge, "ratio to closed form", d=500, dtype=dtype, method=implicit
        )
        cells.append(min(ratios) if ratios else None)
    out.append(
        [
            "Ridge hypergradient, d = 500: best implicit backward solver / "
            "autodiff of the closed form",
            *cells,
            "≤ 1.2 (float32)",
        ]
    )

    svm = _rows("svm_implicit_vs_unrolled")
    default = lambda m: m.startswith("implicit (default")

    def svm_cell(column, method):
        return [
            next(iter(_pick(svm, column, p=1000, dtype=dt, method=method)), None)
            for dt in ("float64", "float32")
        ]

    out.append(
        [
            "SVM hypergradient, p = 1000, 100 iterations: implicit / forward solve",
            *svm_cell("time / forward", default),
            "≤ 1.2",
        ]
    )
    out.append(
        [
            "SVM hypergradient, p = 1000: implicit / unrolled",
            *[
                None if ratio is None else 1.0 / ratio
                for ratio in svm_cell("unrolled time / time", default)
            ],
            "≤ 0.55",
        ]
    )
    memory = _rows("svm_memory_vs_iterations")
    mem = {
        (r["iterations"], r["method"].split(" ")[0]): r["memory (MiB)"] for r in memory
    }
    if mem:
        top = max(i for i, _ in mem)
        low = min(i for i, _ in mem)
        out.append(
            [
                f"SVM, p = 1000, float32: memory (MiB) implicit / unrolled at {low} "
                f"and {top} iterations",
                "-",
                f"{mem[(low, 'implicit')]:.2g} / {mem[(low, 'unrolled')]:.2g}, "
                f"{mem[(top, 'implicit')]:.2g} / {mem[(top, 'unrolled')]:.2g}",
                "implicit flat",
                "yes"
                if mem[(top, "implicit")] <= 1.05 * mem[(low, "implicit")]
                else "no",
            ]
        )

    # Against JAXopt and optimistix: each library with its default backward solver,
    # and the ridge problem with the same (LU) backward solver on both sides.
    peers = [
        r
        for r in _rows("hypergradients_vs_peers")
        if r["backward solve"].startswith("defaults")
        or (r["problem"].startswith("ridge") and r["backward solve"] == "both LU")
    ]
    problems = []
    for r in peers:
        same = "defaults" if r["backward solve"].startswith("defaults") else "both LU"
        if (r["problem"], same, r["peer"]) not in problems:
            problems.append((r["problem"], same, r["peer"]))
    for problem, same, peer in problems:
        matches = lambda label, same=same: label.startswith(same)
        cells = [
            next(
                iter(
                    _pick(
                        peers,
                        "ratio implicitx/peer",
                        problem=problem,
                        dtype=dt,
                        peer=peer,
                        **{"backward solve": matches},
                    )
                ),
                None,
            )
            for dt in ("float64", "float32")
        ]
        backward = "default backward solves" if same == "defaults" else "both LU"
        out.append(
            [
                f"Hypergradient vs {peer}: {problem}, {backward}; implicitx / peer",
                *cells,
                "≤ 1.0",
            ]
        )

    solvers = _rows("solvers_vs_jaxopt")
    seen = []
    for r in solvers:
        if (r["problem"], r["solver"]) in seen:
            continue
        seen.append((r["problem"], r["solver"]))
        cells = [
            next(
                iter(
                    _pick(
                        solvers,
                        "ratio implicitx/JAXopt",
                        problem=r["problem"],
                        solver=r["solver"],
                        dtype=dt,
                    )
                ),
                None,
            )
            for dt in ("float64", "float32")
        ]
        out.append(
            [
                f"Forward solver vs JAXopt 0.8.5: {r['problem']}, {r['solver']}; "
                "implicitx / JAXopt",
                *cells,
                "≤ 1.0",
            ]
        )
    return [[_fmt(c) for c in row[:4]] + [_met(row)] for row in out]


def _met(row) -> str:
    """Whether the measured ratios meet a `≤ x` target, per dtype (or the verdict
    given as a fifth element)."""
    if len(row) == 5:
        return row[4]
    _, f64, f32, target = row
    if not target.startswith("≤"):
        return "see row"
    bound = float(target[1:].split()[0])
    only = "float32" if "float32" in target else None
    misses = [
        name
        for name, value in (("float64", f64), ("float32", f32))
        if isinstance(value, float)
        and (only is None or name == only)
        and not value <= bound
    ]
    return "yes" if not misses else "no (" + ", ".join(misses) + ")"


def write_headline() -> str:
    lines = [
        f"Measured on: {machine()}, by `python benchmarks/run_all.py` "
        f"({time.strftime('%Y-%m-%d')}). Every ratio is a time, implicitx over the "
        "reference named in its row: below 1, implicitx is faster.",
        "",
        "| comparison | float64 | float32 | target | met |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in headline()]
    text = "\n".join(lines) + "\n"
    (RESULTS_DIR / "headline.md").write_text(text)
    readme = README.read_text()
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
    if pattern.search(readme):
        README.write_text(pattern.sub(lambda _: f"{BEGIN}\n{text}{END}", readme))
    return text


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="small sizes (CI)")
    parser.add_argument(
        "--headline-only", action="store_true", help="rebuild the headline table"
    )
    args = parser.parse_args()
    if not args.headline_only:
        for script in SCRIPTS:
            command = [sys.executable, script] + (["--quick"] if args.quick else [])
            print(f"== {' '.join(command[1:])}", flush=True)
            start = time.perf_counter()
            subprocess.run(command, cwd=HERE, check=True)
            print(f"== {script}: {time.perf_counter() - start:.0f} s", flush=True)
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
