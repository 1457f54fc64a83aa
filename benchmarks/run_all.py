"""Run the whole benchmark suite and print one summary table of targets met / not met.

    python benchmarks/run_all.py [--quick] [--only NAME ...] [--repeat N --gap S]

Each benchmark runs as its own subprocess (in ``--quick`` mode with ``--quick``), writes
``benchmarks/results/NAME.json`` (``NAME.quick.json`` with ``--quick``), and this script
gathers their ``summary`` entries into ``benchmarks/results/summary.json`` (or
``summary.quick.json``), one markdown table, and ``report.md`` (``report.quick.md``), a
fragment per benchmark with its command, machine, date, load and tables. Timings come from a shared
2-core machine: every figure is a ratio of contenders measured side by side in one run.

``--repeat N`` runs the whole suite N times, ``--gap S`` seconds apart, keeping each run's
summary (``summary.runK.json``) and reporting every metric as the **median and the range over
the N runs** (``summary.repeat.json``, ``report.repeat.md``; ``.quick`` before ``.json``/``.md``
with ``--quick``). A run-to-run median says more than one run on a machine whose speed moves
between minutes: a target counts as met when the median meets it.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
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
    "bench_bidirectional",
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


def judge(value: float, target: str) -> bool | None:
    """Does ``value`` meet a target written as "<= 1.3", ">= 4", "< 1" or "0"? None for
    targets that are not a comparison with a number ("(info)", "constant")."""
    m = re.match(r"\s*(<=|>=|<|>|==)?\s*(-?[0-9.]+(?:e-?[0-9]+)?)", target)
    if not m:
        return None
    op, bound = m.group(1) or "==", float(m.group(2))
    return {"<=": value <= bound, ">=": value >= bound, "<": value < bound, ">": value > bound,
            "==": value == bound}[op]


def metric_key(metric: str) -> str:
    """A metric's name without the part that names where a run found its minimum ("… (at
    T=8192, torchscale)"), so that the same metric of several runs is gathered in one row."""
    return re.sub(r"\s*\(at [^)]*\)", "", metric)


def aggregate(runs: list[list[dict]]) -> list[dict]:
    """Per (benchmark, metric): median and range of ``measured`` over the runs, how many runs
    met the target, and the verdict of the median (of the run count where the target is not
    a number)."""
    keyed: dict[tuple[str, str], list[dict]] = {}
    for entries in runs:
        for e in entries:
            keyed.setdefault((e["benchmark"], metric_key(e["metric"])), []).append(e)
    out = []
    for (bench, metric), es in keyed.items():
        values = [e["measured"] for e in es if isinstance(e["measured"], (int, float))]
        judged = [e["met"] for e in es if e["met"] is not None]
        median = statistics.median(values) if values else None
        met = judge(median, es[0]["target"]) if median is not None else None
        if met is None and judged and es[0]["met"] is not None:
            met = sum(judged) * 2 > len(judged)  # a majority of the runs
        out.append({"benchmark": bench, "metric": metric, "runs": len(es),
                    "median": median, "min": min(values) if values else None,
                    "max": max(values) if values else None, "target": es[0]["target"],
                    "met_in_runs": sum(judged) if judged else None,
                    "met": None if es[0]["met"] is None else met})
    return out


def aggregate_table(rows: list[dict], n_runs: int) -> str:
    def fmt(x):
        return "—" if x is None else f"{x:.3g}"

    return C.markdown_table(
        ["benchmark", "metric", "median", "range", "target", f"runs met (of {n_runs})",
         "result (median)"],
        [[r["benchmark"], r["metric"], fmt(r["median"]), f"{fmt(r['min'])} – {fmt(r['max'])}",
          r["target"], "—" if r["met_in_runs"] is None else r["met_in_runs"],
          C.verdict(r["met"])] for r in rows])


def write_aggregate(all_entries: list[list[dict]], started: list, suffix: str) -> None:
    rows = aggregate(all_entries)
    table = aggregate_table(rows, len(all_entries))
    judged = [r for r in rows if r["met"] is not None]
    print(f"\nOver {len(all_entries)} runs (started {', '.join(map(str, started))}): median "
          "and range of each ratio\n")
    print(table)
    print(f"\n{sum(r['met'] for r in judged)} of {len(judged)} targets met by the median")
    (C.RESULTS / f"summary.repeat{suffix}.json").write_text(json.dumps(
        {"started": started, "rows": rows, "table": table}, indent=2, default=str) + "\n")
    (C.RESULTS / f"report.repeat{suffix}.md").write_text(
        f"## Median and range over {len(all_entries)} runs\n\nRuns started: "
        f"{', '.join(map(str, started))}\n\n{table}\n")


def run_suite(names, args) -> tuple[list[dict], dict, str]:
    """Every benchmark in ``names`` once: (summary entries, per-run records, table)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", nargs="+", choices=BENCHMARKS)
    C.add_threads_arg(ap)
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
    return entries, runs, table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", nargs="+", choices=BENCHMARKS)
    C.add_threads_arg(ap)
    ap.add_argument("--wait-quiet", type=float, default=0.0, metavar="S",
                    help="before each benchmark, wait up to S seconds for the CPU to be idle "
                         "(CPUs >= 95%% idle over 10 s)")
    ap.add_argument("--repeat", type=int, default=1, metavar="N",
                    help="run the whole suite N times and report each metric's median and "
                         "range over the runs")
    ap.add_argument("--gap", type=float, default=120.0, metavar="S",
                    help="with --repeat: seconds to wait between runs")
    ap.add_argument("--aggregate", nargs="+", metavar="JSON",
                    help="run nothing: gather saved run summaries (summary.runK.json) into the "
                         "median-and-range report; a benchmark missing from a run may be "
                         "added from its own results JSON (bench_NAME.json)")
    args = ap.parse_args()
    if args.repeat < 1 or args.gap < 0:
        ap.error("--repeat must be >= 1 and --gap >= 0")
    names = args.only or BENCHMARKS
    C.RESULTS.mkdir(parents=True, exist_ok=True)
    suffix = ".quick" if args.quick else ""
    if args.aggregate:
        gathered, started = [], []
        for path in args.aggregate:
            data = json.loads(Path(path).read_text())
            if "runs" in data:  # a whole run of the suite
                gathered.append([e for e in data["summary"] if e["metric"] != "run"])
                started.append(data["env_at_start"].get("date"))
            else:  # one benchmark's results: added to the earliest run that lacks it
                name = Path(path).name.split(".")[0]
                target = next(g for g in gathered if all(e["benchmark"] != name for e in g))
                target.extend({"benchmark": name, **e} for e in data["summary"])
        write_aggregate(gathered, started, suffix)
        return
    all_entries, started = [], []
    for k in range(1, args.repeat + 1):
        if k > 1:
            print(f"(waiting {args.gap:.0f} s before run {k} of {args.repeat})", flush=True)
            time.sleep(args.gap)
        env = C.environment()
        started.append(env.get("date"))
        entries, runs, table = run_suite(names, args)
        record = {"env_at_start": env, "env_at_end": C.environment(), "quick": args.quick,
                  "runs": runs, "summary": entries, "table": table}
        text = "## Summary\n\n" + table + "\n\n" + report_markdown(runs, args.quick) + "\n"
        (C.RESULTS / f"summary{suffix}.json").write_text(
            json.dumps(record, indent=2, default=str) + "\n")
        (C.RESULTS / f"report{suffix}.md").write_text(text)
        if args.repeat > 1:
            (C.RESULTS / f"summary.run{k}{suffix}.json").write_text(
                json.dumps(record, indent=2, default=str) + "\n")
            (C.RESULTS / f"report.run{k}{suffix}.md").write_text(text)
        all_entries.append(entries)
    if args.repeat > 1:
        write_aggregate(all_entries, started, suffix)


if __name__ == "__main__":
    main()
