"""Run the whole benchmark suite and print one summary table of targets met / not met.

    python benchmarks/run_all.py [--quick] [--only NAME ...]

Each benchmark runs as its own subprocess (in ``--quick`` mode with ``--quick``), writes
``benchmarks/results/NAME.json`` (``NAME.quick.json`` with ``--quick``), and this script
gathers their ``summary`` entries into ``benchmarks/results/summary.json`` (or
``summary.quick.json``), one markdown table, and ``report.md`` (``report.quick.md``), a
fragment per benchmark with its command, machine, date, load and tables. Timings come from a shared
2-core machine: every figure is a ratio of contenders measured side by side in one run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import _common as C

HERE = Path(__file__).resolve().parent
BENCHMARKS = (
    "bench_positions_model",
    "bench_xpos_peers",
    "bench_attention",
    "bench_generate",
    "bench_train_throughput",
    "bench_alibi",
    "bench_compile",  # compiles 2 models first: ~2-4 min on 2 cores before any timing
)


def _cpu_times() -> tuple[int, int]:
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return fields[3] + fields[4], sum(fields)  # idle + iowait, total


def wait_quiet(limit_s: float, window_s: float = 10.0) -> float:
    """Wait until the CPUs were ≥ 95% idle over ``window_s`` (/proc/stat), or ``limit_s``."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < limit_s:
        i0, a0 = _cpu_times()
        time.sleep(window_s)
        i1, a1 = _cpu_times()
        if (i1 - i0) / max(1, a1 - a0) >= 0.95:
            break
    return time.perf_counter() - t0


def report_markdown(runs: dict, quick: bool) -> str:
    """A markdown fragment per benchmark: command, machine, date, contention, tables."""
    out = []
    for name, run in runs.items():
        path = C.results_path(name, quick)
        out.append(f"### {name}\n\n`{run['command']}` (wall {run['wall_s']} s)\n")
        if run["returncode"] or not path.exists():
            out.append("FAILED\n")
            continue
        data = json.loads(path.read_text())
        env = data["env"]
        out.append(f"Machine: {env['cpu']}, {env['threads']} threads, torch {env['torch']}; "
                   f"finished {env['date']}; load average (1/5/15 min) at the end "
                   f"{', '.join(f'{x:.2f}' for x in env['loadavg_1_5_15min'])}; CPU "
                   f"pressure at the end: {env['cpu_pressure']}\n")
        for key in ("table", "parity_table"):
            if key in data:
                out.append(data[key] + "\n")
        for s in data["summary"]:
            m = s["measured"]
            out.append(f"- {s['metric']}: {m:.3g} (target {s['target']}): "
                       f"{C.verdict(s['met'])}")
        out.append("")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", nargs="+", choices=BENCHMARKS)
    C.add_threads_arg(ap)
    ap.add_argument("--wait-quiet", type=float, default=0.0, metavar="S",
                    help="before each benchmark, wait up to S seconds for the CPU to be idle "
                         "(CPUs >= 95%% idle over 10 s)")
    args = ap.parse_args()
    names = args.only or BENCHMARKS
    env = C.environment()
    rows, entries, runs = [], [], {}
    for name in names:
        extra = (["--quick"] if args.quick else []) + (
            ["--threads", str(args.threads)] if args.threads else [])
        cmd = [sys.executable, str(HERE / f"{name}.py")] + extra
        if args.wait_quiet:
            waited = wait_quiet(args.wait_quiet)
            print(f"(waited {waited:.0f} s for a quiet CPU)", flush=True)
        print(f"=== {name} {' '.join(extra)}", flush=True)
        t0 = time.perf_counter()
        res = subprocess.run(cmd, text=True)
        wall = time.perf_counter() - t0
        runs[name] = {"returncode": res.returncode, "wall_s": round(wall, 1),
                      "command": " ".join(["python", f"benchmarks/{name}.py", *extra])}
        if res.returncode:
            rows.append([name, "FAILED", "—", "—", "not met"])
            entries.append({"benchmark": name, "metric": "run", "measured": None,
                            "target": "runs", "met": False})
            continue
        data = json.loads(C.results_path(name, args.quick).read_text())
        runs[name]["env"] = data.get("env")
        for s in data["summary"]:
            entries.append({"benchmark": name, **s})
            m = s["measured"]
            rows.append([name, s["metric"], m if isinstance(m, float) else str(m), s["target"],
                         C.verdict(s["met"])])
        print(f"=== {name}: {wall:.0f} s\n", flush=True)

    table = C.markdown_table(["benchmark", "metric", "measured", "target", "result"], rows)
    judged = [e for e in entries if e["met"] is not None]
    met = sum(e["met"] for e in judged)
    print("\nSummary (ratios measured side by side; shared, noisy 2-core machine)\n")
    print(table)
    print(f"\n{met} of {len(judged)} targets met")
    C.RESULTS.mkdir(parents=True, exist_ok=True)
    suffix = ".quick" if args.quick else ""
    (C.RESULTS / f"summary{suffix}.json").write_text(json.dumps(
        {"env_at_start": env, "env_at_end": C.environment(), "quick": args.quick,
         "runs": runs, "summary": entries, "table": table}, indent=2, default=str) + "\n")
    (C.RESULTS / f"report{suffix}.md").write_text(
        "## Summary\n\n" + table + "\n\n" + report_markdown(runs, args.quick) + "\n")


if __name__ == "__main__":
    main()
