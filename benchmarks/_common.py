"""Shared helpers of the benchmark suite: interleaved timing, environment, output.

Every figure the suite reports is a ratio of contenders timed side by side in one run: the
contenders are interleaved (A, B, C, A, B, C, … with the starting contender rotated every
round) and a ratio is the median over rounds of the ratio within a round, so that a noisy,
shared machine slows both sides alike and the ratio survives where absolute times do not.
Each round's CPU stall (Linux pressure-stall information: time during which a runnable task
waited for a core) is recorded; rounds in which another process took our cores are set aside
when enough quiet rounds exist, and every result says how contended its rounds were.
"""

from __future__ import annotations

import datetime
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "src"))  # run from a checkout without installing

THREADS = 2


def add_threads_arg(ap) -> None:
    ap.add_argument("--threads", type=int, default=None,
                    help=f"intra-op threads (default {THREADS}, or $LEXFORMER_BENCH_THREADS)")


def setup(threads: int | None = None) -> None:
    """Fix the thread count (inherited by worker subprocesses through the environment)."""
    if threads is None:
        threads = int(os.environ.get("LEXFORMER_BENCH_THREADS", THREADS))
    os.environ["LEXFORMER_BENCH_THREADS"] = str(threads)
    torch.set_num_threads(threads)
    torch.manual_seed(0)


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def environment() -> dict:
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "cores_visible": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "loadavg_1_5_15min": os.getloadavg(),
        "cpu_pressure": cpu_pressure(),
    }


def cpu_pressure() -> str | None:
    """Linux PSI line for CPU ("some avg10 avg60 avg300"): % of time runnable tasks waited."""
    try:
        with open("/proc/pressure/cpu") as f:
            return f.readline().strip()
    except OSError:
        return None


def calibrate(fn: Callable[[], object], min_sample_s: float, first_s: float | None = None) -> int:
    """How many calls of ``fn`` make one timed sample of at least ``min_sample_s``.

    ``first_s``: a time already measured for one call (the warm-up); a call that slow is its
    own sample and costs no extra calls here.
    """
    if first_s is not None and first_s >= min_sample_s:
        return 1
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    dt = min(times)
    if dt >= min_sample_s:
        return 1
    return max(1, min(1000, int(min_sample_s / max(dt, 1e-7)) + 1))


def psi_cpu_stall_us() -> int | None:
    """Cumulative µs during which some runnable task of this machine waited for a CPU (PSI)."""
    try:
        with open("/proc/pressure/cpu") as f:
            return int(f.readline().split("total=")[1])
    except (OSError, IndexError, ValueError):
        return None


#: a round in which runnable tasks waited for a CPU more than this fraction of its wall time
#: is "contended": another process took cores from us (our own 2 threads on 2 cores do not
#: wait). Ratios use the quiet rounds when there are at least MIN_QUIET of them.
CONTENDED_STALL = 0.25
MIN_QUIET = 3


def interleaved(
    fns: dict[str, Callable[[], object]],
    rounds: int,
    warmup: int = 1,
    min_sample_s: float = 0.02,
    budget_s: float | None = None,
    min_rounds: int = 3,
) -> dict[str, dict]:
    """Time each contender ``rounds`` times, interleaved; per-call seconds, medians.

    A sample of a fast contender loops it ``n`` times (calibrated once, after warm-up) so
    that timer resolution and call overhead do not dominate. ``budget_s`` stops adding
    rounds (after at least ``min_rounds``) once that much wall time has gone. Each round's
    CPU-stall fraction (Linux PSI) is recorded; when fewer than ``MIN_QUIET`` rounds were
    quiet, up to ``rounds`` more are run while the budget allows.
    """
    names = list(fns)
    last = {}
    for name in names:
        for _ in range(warmup):
            t0 = time.perf_counter()
            fns[name]()
            last[name] = time.perf_counter() - t0
    inner = {name: calibrate(fns[name], min_sample_s, last.get(name)) for name in names}
    samples: dict[str, list[float]] = {name: [] for name in names}
    stall: list[float] = []
    start = time.perf_counter()
    r = 0
    while True:
        order = names[r % len(names):] + names[: r % len(names)]
        gc.collect()
        p0, w0 = psi_cpu_stall_us(), time.perf_counter()
        for name in order:
            fn, n = fns[name], inner[name]
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            samples[name].append((time.perf_counter() - t0) / n)
        p1, w1 = psi_cpu_stall_us(), time.perf_counter()
        stall.append((p1 - p0) / 1e6 / (w1 - w0) if p0 is not None and p1 is not None
                     else float("nan"))
        r += 1
        elapsed = time.perf_counter() - start
        over = budget_s is not None and elapsed > budget_s
        quiet = sum(1 for x in stall if x <= CONTENDED_STALL)
        if r >= min_rounds and over:
            break
        if r >= rounds and (quiet >= MIN_QUIET or r >= 2 * rounds):
            break
    return {
        name: {
            "median_s": statistics.median(s),
            "min_s": min(s),
            "samples": len(s),
            "calls_per_sample": inner[name],
            # spread: interquartile range relative to the median, a noise indicator
            "iqr_rel": _iqr(s) / statistics.median(s),
            "raw_s": s,
            "round_stall": stall,
        }
        for name, s in samples.items()
    }


def rounds_used(timings: dict[str, dict], name: str) -> list[int]:
    """Indices of the rounds ratios are taken over: the quiet ones if enough, else all."""
    stall = timings[name].get("round_stall") or []
    n = len(timings[name]["raw_s"])
    quiet = [i for i, x in enumerate(stall) if x <= CONTENDED_STALL]
    return quiet if len(quiet) >= MIN_QUIET else list(range(n))


def paired_ratio(timings: dict[str, dict], num: str, den: str) -> float:
    """Median over rounds of time(num)/time(den) within the same round (robust to bursts).

    Only quiet rounds (CPU stall ≤ CONTENDED_STALL) are used when there are ≥ MIN_QUIET.
    """
    a, b = timings[num]["raw_s"], timings[den]["raw_s"]
    return statistics.median(a[i] / b[i] for i in rounds_used(timings, num))


def strip_raw(timings: dict[str, dict]) -> dict[str, dict]:
    """Timings without the raw samples, rounded, for compact JSON."""
    return {name: {k: (round(v, 7) if isinstance(v, float) else v)
                   for k, v in t.items() if k not in ("raw_s", "round_stall")}
            for name, t in timings.items()}


def contention(timings: dict[str, dict]) -> dict:
    """How contended the rounds of one interleaved measurement were."""
    stall = next(iter(timings.values())).get("round_stall") or []
    quiet = sum(1 for x in stall if x <= CONTENDED_STALL)
    return {"rounds": len(stall), "quiet_rounds": quiet,
            "median_stall": statistics.median(stall) if stall else None,
            "ratios_from": "quiet rounds" if quiet >= MIN_QUIET else "all rounds"}


def _iqr(s: list[float]) -> float:
    if len(s) < 4:
        return max(s) - min(s)
    q = statistics.quantiles(s, n=4)
    return q[2] - q[0]


def markdown_table(header: list[str], rows: list[list]) -> str:
    def fmt(x):
        if isinstance(x, float):
            if x != x:
                return "—"
            if abs(x) >= 100:
                return f"{x:,.0f}"
            if abs(x) >= 10:
                return f"{x:.1f}"
            return f"{x:.3g}" if abs(x) < 1 else f"{x:.2f}"
        return str(x)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(x) for x in row) + " |" for row in rows]
    return "\n".join(lines)


def results_path(name: str, quick: bool = False) -> Path:
    """benchmarks/results/NAME.json, or NAME.quick.json for --quick runs (kept apart)."""
    return RESULTS / f"{name}{'.quick' if quick else ''}.json"


def write_results(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = results_path(name, bool(payload.get("quick")))
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


def install_timm_stub() -> None:
    """torchscale imports ``timm.models.layers.drop_path``; stand one in (timm not needed)."""
    if "timm.models.layers" in sys.modules:
        return
    try:
        import timm.models.layers  # noqa: F401
        return
    except ImportError:
        pass

    def drop_path(x, drop_prob: float = 0.0, training: bool = False):
        if drop_prob == 0.0 or not training:
            return x
        keep = 1 - drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    timm = types.ModuleType("timm")
    models = types.ModuleType("timm.models")
    layers = types.ModuleType("timm.models.layers")
    layers.drop_path = drop_path
    timm.models, models.layers = models, layers
    sys.modules.update({"timm": timm, "timm.models": models, "timm.models.layers": layers})


def target(metric: str, measured: float, target_text: str, met: bool | None,
           **extra) -> dict:
    """One row of a benchmark's summary: what was measured against which target.

    ``met=None`` marks a figure reported for information, with no target.
    """
    return {"metric": metric, "measured": measured, "target": target_text,
            "met": None if met is None else bool(met), **extra}


def verdict(met: bool | None) -> str:
    return "(info)" if met is None else "met" if met else "NOT met"


def print_summary(summary: list[dict]) -> None:
    for s in summary:
        print(f"- {s['metric']}: {s['measured']:.3g} (target {s['target']}): "
              f"{verdict(s['met'])}")


def malloc_trim() -> None:
    """Give freed heap memory back to the OS, so RSS reflects live memory (glibc only)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def proc_status_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def reset_peak_rss() -> bool:
    """Reset this process's VmHWM to its current RSS (Linux ≥ 4.0); False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False
