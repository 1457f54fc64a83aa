"""``lexformer extend``: length-extension methods compared on a pretrained model.

One stage per attention method: the method's perplexity at every length it is run at, on the
same long held-out documents (the first N = max(lengths) tokens of each, chunked at every
length as in :mod:`lexformer.evaluate`), saved to ``out/eval/<method>.json`` with its time and
peak memory. A saved stage is reused only when it was measured with the same settings (model,
corpus, split, documents, lengths, method options); otherwise it is measured again. Then
``report.md`` and ``plots/`` (:mod:`lexformer.extend_report`).

Full attention costs O(n²) per chunk; so do the RoPE rescalings and SelfExtend (every key
stays visible). Those *quadratic* methods run only up to ``full_up_to`` × the declared
context; the window methods (blockwise, sliding, sinks, lambda, blockwise+sinks) cost
O(n·window) and run at every length. A method also stops where it cannot score at all
(``LanguageModel.max_length``: SelfExtend's grouped positions, a fixed RoPE target).
"""

from __future__ import annotations

import dataclasses
import math
import resource
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..config import ALL_SPLIT, EVAL_SPLITS
from ..errors import LexformerError
from ..evaluate import (
    LengthResult,
    PerplexityResult,
    check_lengths,
    corpus_fingerprint,
    evaluation_documents,
)
from ..fileio import ensure_writable_dir, ensure_writable_file
from ..hf.methods import HF_METHODS, check_option_values, get_method, parse_method_options
from ..hf.placement import (
    DEVICE_OPTION_HELP,
    DTYPE_OPTION_HELP,
    parse_device,
    parse_dtype,
    placement_key,
    resolve_placement,
)
from ..typed_fields import option
from .extend_retrieval import (
    DEFAULT_EXTEND_RULER_SAMPLES,
    DEFAULT_RULER_SCALES,
    DEFAULT_RULER_TASKS,
    RetrievalRecord,
    retrieval_key,
    retrieval_stage,
)
from .stages import (
    JsonCodec,
    Runner,
    Stage,
    claim_out_folder,
    command_line,
    machine_load,
    say,
)

#: the default run: the model as is, every window method that bounds what a query sees
#: (the paper's blockwise attention, StreamingLLM's sinks, LM-Infinite, blockwise with sinks),
#: SelfExtend and a RoPE rescaling at a fixed factor (YaRN), at L/4 … 8·L on three documents of
#: 8·L tokens, with RULER's retrieval tasks at 2·L and 4·L. Its measured time is in the
#: committed report (docs/extend/report.md). Which methods these are is each method's
#: record's word (``HFMethod.extend_default``); ``--preset long`` runs them all.
DEFAULT_METHODS = tuple(name for name, m in HF_METHODS.items() if m.extend_default)
#: lengths as multiples of the declared context L (the default run: L/4, L, 2L, 4L, 8L); one
#: pass per document at the longest serves every shorter one (lexformer.prefix_eval)
DEFAULT_SCALES = (0.25, 1.0, 2.0, 4.0, 8.0)
DEFAULT_FULL_UP_TO = 2.0
DEFAULT_MAX_DOCS = 3
DEFAULT_CORPUS = "sword-long"
SPLIT = "test"


def _ruler_tasks(text: str) -> tuple[str, ...]:
    """``--ruler-tasks``: comma-separated RULER task names, ``all`` or ``none``."""
    from ..tasks.ruler import RULER_TASKS

    names = [t.strip() for t in text.split(",") if t.strip()]
    if names == ["all"]:
        return tuple(RULER_TASKS)
    if names == ["none"]:
        return ()
    unknown = [t for t in names if t not in RULER_TASKS]
    if unknown or not names:
        raise LexformerError(f"unknown RULER task(s) {', '.join(unknown) or '(none)'}; choose "
                             f"from {', '.join(RULER_TASKS)}, or all, or none")
    return tuple(dict.fromkeys(names))


@dataclass
class ExtendSettings:
    """What ``lexformer extend`` measures. ``lengths`` None: ``DEFAULT_SCALES`` × context;
    ``methods`` None: ``DEFAULT_METHODS``."""

    model: str = field(default="smollm2", metadata=option(
        "--model", "a Hugging Face model folder, a .gguf file, or smollm2"))
    methods: Sequence[str] | None = field(default=None, metadata=option(
        "--methods", "comma-separated attention methods of the model (any of lexformer.hf."
                     f"HF_METHODS; default: {','.join(DEFAULT_METHODS)}, those the model "
                     "offers)"))
    lengths: Sequence[int] | None = field(default=None, metadata=option(
        "--lengths", "comma-separated lengths (default: the declared context L × "
                     f"{', '.join(f'{k:g}' for k in DEFAULT_SCALES)})"))
    corpus: str = field(default=DEFAULT_CORPUS, metadata=option(
        "--corpus", "corpus of held-out documents"))
    split: str | None = field(default=None, metadata=option(
        "--split", f"the documents to score (default: {SPLIT} for a built-in corpus; "
                   f"{ALL_SPLIT} for your own files: every file or .jsonl record whole)",
        choices=list(EVAL_SPLITS)))
    out: Path = field(default=Path("runs/extend"), metadata=option("--out", "output folder"))
    max_docs: int | None = field(default=DEFAULT_MAX_DOCS, metadata=option(
        "--max-docs", "documents to evaluate on (the first that hold max(lengths) tokens)"))
    full_up_to: float = field(default=DEFAULT_FULL_UP_TO, metadata=option(
        "--full-up-to", "run methods that keep every key visible (full, RoPE rescalings, "
                        "self-extend; O(n²)) only up to this multiple of L"))
    method_options: Any = field(default=None, metadata=option(  # hf.MethodOptions or None
        "--method-options", "knobs of the methods, e.g. block=2048,sinks=4",
        metavar="NAME=N,...", parse=parse_method_options))
    rope_factor: int | None = field(default=None, metadata=option(
        "--rope-factor", "the factor of pi, yarn and llama3, fixed before the input is seen and "
                         "the same at every length (default: the longest length / L, rounded "
                         "up: the run's deployment setting)"))
    rope_oracle: bool = field(default=False, metadata=option(
        "--rope-oracle", "give pi, yarn and llama3 factor = length / L at each length instead: "
                         "an oracle no deployment has, labelled as such in the report"))
    ruler_tasks: Sequence[str] | None = field(default=None, metadata=option(
        "--ruler-tasks", "RULER tasks scored beside perplexity: comma-separated names, all "
                         "(the 13), or none (default: "
                         f"{','.join(DEFAULT_RULER_TASKS)})", parse=_ruler_tasks))
    ruler_lengths: Sequence[int] | None = field(default=None, metadata=option(
        "--ruler-lengths", "comma-separated lengths of the RULER prompts (default: L × "
                           f"{', '.join(f'{k:g}' for k in DEFAULT_RULER_SCALES)})"))
    ruler_methods: Sequence[str] | None = field(default=None, metadata=option(
        "--ruler-methods", "the methods of the run that score RULER too (default: all)"))
    ruler_samples: int = field(default=DEFAULT_EXTEND_RULER_SAMPLES, metadata=option(
        "--ruler-samples", "samples per RULER task and length (the same for every method)"))
    seed: int = field(default=0, metadata=option(
        "--seed", "seed of the RULER samples"))
    preset: str = field(default="default", metadata=option(
        "--preset", "default: the run above; long: every method, every RULER task, more "
                    "documents and samples, quadratic methods to 4·L (options you give win)",
        choices=("default", "long")))
    progress: bool = field(default=True, metadata=option("--no-progress"))
    device: str | None = field(default=None, metadata=option(
        "--device", DEVICE_OPTION_HELP, metavar="DEVICE", parse=parse_device))
    dtype: str | None = field(default="auto", metadata=option(
        "--dtype", DTYPE_OPTION_HELP.replace("default: fp32", "default: auto"),
        metavar="DTYPE", parse=parse_dtype))


#: what ``--preset long`` changes where the options are left at their defaults
LONG_PRESET: dict[str, Any] = {
    "methods": tuple(HF_METHODS), "max_docs": 5, "full_up_to": 4.0,
    "ruler_tasks": "all", "ruler_samples": 10}


def apply_preset(s: ExtendSettings) -> ExtendSettings:
    """``s`` with its preset's values for every field still at its default."""
    if s.preset != "long":
        return s
    defaults = ExtendSettings()
    changes = {k: v for k, v in LONG_PRESET.items() if getattr(s, k) == getattr(defaults, k)}
    if changes.get("ruler_tasks") == "all":
        changes["ruler_tasks"] = _ruler_tasks("all")
    return dataclasses.replace(s, **changes)


def ruler_tasks_of(s: ExtendSettings) -> tuple[str, ...]:
    return tuple(s.ruler_tasks) if s.ruler_tasks is not None else DEFAULT_RULER_TASKS


def check_settings(s: ExtendSettings) -> None:
    """Every user error in the settings alone, before the model is loaded."""
    from ..config import MAX_SEED

    if not 0 <= s.seed <= MAX_SEED:
        raise LexformerError(f"--seed must lie in 0 … {MAX_SEED}, got {s.seed}")
    if s.ruler_samples < 1:
        raise LexformerError(f"--ruler-samples must be at least 1, got {s.ruler_samples}")
    run = set(s.methods) if s.methods is not None else set(DEFAULT_METHODS)
    stray = [m for m in (s.ruler_methods or ()) if m not in run]
    if stray:
        raise LexformerError(f"--ruler-methods names {', '.join(stray)}, not a method of this "
                             "run (--methods)")
    if s.ruler_lengths is not None:
        check_lengths(s.ruler_lengths)
    if s.methods is not None and not list(s.methods):
        raise LexformerError("--methods names no method")
    if s.methods is not None and len(set(s.methods)) != len(list(s.methods)):
        raise LexformerError("a method is listed twice in --methods")
    if s.rope_factor is not None and s.rope_factor < 1:
        raise LexformerError(f"--rope-factor must be at least 1, got {s.rope_factor}")
    if s.rope_oracle and (s.rope_factor or getattr(s.method_options, "rope_factor", None)):
        raise LexformerError("--rope-oracle and a fixed rope factor exclude each other")
    if s.rope_factor and getattr(s.method_options, "rope_factor", None) not in (
            None, s.rope_factor):
        raise LexformerError("--rope-factor and --method-options rope_factor differ")
    if s.max_docs is not None and s.max_docs < 1:
        raise LexformerError(f"--max-docs must be at least 1, got {s.max_docs}")
    if s.split is not None:  # `all` on a built-in corpus is refused before the model loads
        from ..data import check_split

        check_split(s.corpus, s.split)
    if not (s.full_up_to > 0 and math.isfinite(s.full_up_to)):
        raise LexformerError(f"--full-up-to must be a finite positive multiple of L, got "
                             f"{s.full_up_to:g} (a large one, e.g. 64, runs them at every "
                             "length)")
    for method in s.methods or ():  # every model extend runs names its methods from these
        get_method(method)
    check_option_values(s.method_options)
    resolve_placement(s.device, s.dtype)  # fp16 on the CPU, a device not here: refused now
    if s.lengths is not None:
        check_lengths(s.lengths)
    check_outputs(s)


def check_outputs(s: ExtendSettings) -> None:
    """Every path the run will write under --out can be written (a file where a folder
    goes, a folder where a file goes, no rights): refused now, not after the measurements."""
    from .extend_report import PLOT, POSITION_PLOT

    out = ensure_writable_dir(s.out, "--out folder")
    for folder in ("eval", "plots"):
        ensure_writable_dir(out / folder, f"--out's {folder} folder")
    stages = [f"eval/{_file_name(m)}.{suffix}" for m in (s.methods or DEFAULT_METHODS)
              for suffix in ("json", "ruler.json")]
    for name in ("report.md", PLOT, POSITION_PLOT, *stages):
        ensure_writable_file(out / name, "output file")


def is_quadratic(model, method: str) -> bool:
    """Does ``method`` keep every key visible (cost O(n²) per chunk)? True for the model's
    own attention, the RoPE rescalings and SelfExtend; False for the window methods."""
    try:
        return get_method(method).quadratic
    except LexformerError:  # not a Hugging Face method name: assume the worst
        return True


def method_lengths(model, method: str, lengths: Sequence[int], full_up_to: float
                   ) -> tuple[list[int], str]:
    """The lengths ``method`` runs at, and why it stops where it does ("" if it runs at all)."""
    limit, why = None, ""
    if is_quadratic(model, method):
        limit = int(full_up_to * model.context_length)
        why = f"every key visible (O(n²)); run up to {full_up_to:g}·L = {limit} (--full-up-to)"
    own = model.max_length(method)
    if own is not None and (limit is None or own < limit):
        limit, why = own, f"cannot score past {own} tokens"
    kept = [n for n in lengths if limit is None or n <= limit]
    return kept, (why if len(kept) < len(lengths) else "")


@dataclass
class StageRecord:
    """One method's measurement: results plus cost (RSS: resident set size)."""

    method: str
    result: PerplexityResult
    seconds: float
    peak_rss_mb: float
    memory_measure: str
    stop_reason: str = ""
    reused: bool = False
    #: mean NLL by position (bins [2^k, 2^(k+1)), by first position) along the longest input
    position_loss: dict[int, float] = field(default_factory=dict)
    #: the machine's 1-minute load average when the stage ended (None: not recorded): a time
    #: measured while other work shared the cores is slower than the method
    load_average: float | None = None


# --------------------------------------------------------------------------- memory
def _reset_peak_rss() -> bool:
    """Reset the kernel's RSS high-water mark of this process (Linux ≥ 4.0); False where
    that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float:
    """VmHWM from /proc (resettable), else ru_maxrss (KiB on Linux, the process's peak)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --------------------------------------------------------------------------- stages
def model_identity(spec: str) -> str:
    """The spec, plus the size and modification time of every file behind it when it is a
    path: a model folder rewritten in place is not taken for the one measured before."""
    import hashlib

    path = Path(spec).expanduser()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else (
        [path] if path.is_file() else [])
    h = hashlib.sha256(spec.encode())
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(path) if path.is_dir() else f.name}:{st.st_size}:"
                 f"{st.st_mtime_ns}".encode())
    return f"{spec}@{h.hexdigest()[:16]}" if files else spec


def stage_settings(s: ExtendSettings, model_id: str, lengths: list[int], n_docs: int,
                   top: int, fingerprint: str | None = None) -> dict[str, Any]:
    """What a saved stage must match to be reused: model, documents (the corpus by name and
    by content fingerprint), the lengths the method is run at (these follow from --lengths
    and --full-up-to), the method options, and the device and dtype unless CPU and float32
    (the only ones before --device and --dtype: stages saved then stay reusable)."""
    from ..prefix_eval import PROTOCOL

    # only the options that are set: a knob added to MethodOptions later (unset, None) does
    # not make every saved stage look measured with other settings
    options = ({k: v for k, v in asdict(s.method_options).items() if v is not None}
               if s.method_options is not None else None)

    return {"model": model_id, "protocol": PROTOCOL, "corpus": s.corpus,
            "corpus_fingerprint": fingerprint,
            "split": s.split, "documents": n_docs, "document_tokens": top, "lengths": lengths,
            "method_options": options, **placement_key(s.device, s.dtype)}


def _record_json(record: StageRecord) -> dict[str, Any]:
    return {**record.result.to_json(), "method": record.method,
            "stage_seconds": record.seconds, "peak_rss_mb": record.peak_rss_mb,
            "memory_measure": record.memory_measure, "stop_reason": record.stop_reason,
            "position_loss": {str(k): v for k, v in record.position_loss.items()},
            "load_average": record.load_average}


def _record_from_json(data: dict[str, Any]) -> StageRecord:
    return StageRecord(data["method"], PerplexityResult.from_json(data),
                       float(data["stage_seconds"]), float(data["peak_rss_mb"]),
                       str(data["memory_measure"]), str(data.get("stop_reason", "")),
                       reused=True, position_loss={int(k): float(v) for k, v in
                                                   data.get("position_loss", {}).items()},
                       load_average=data.get("load_average"))


#: a method's stage file: its results, cost and stop reason, with its key in "settings"
STAGE_CODEC = JsonCodec(_record_json, _record_from_json, key_field="settings")


def measure(model, docs, lengths: list[int], method: str, progress: bool, options: Any = None
            ) -> tuple[dict[int, LengthResult], dict[int, float]]:
    """Perplexity of ``method`` at each of ``lengths`` on the first n tokens of every document
    (:mod:`lexformer.prefix_eval`: one pass per document where the method does not depend on
    the input's length), and its mean loss by position along the longest input."""
    from ..hf.rope_scaling import length_dependent
    from ..prefix_eval import measure_prefixes, position_loss

    one_pass = not length_dependent(method, options)
    passes = [max(lengths)] if one_pass else lengths
    bar = _bar(sum(passes) * len(docs), method, progress)
    try:
        cells, losses = measure_prefixes(model, docs, lengths, method, one_pass, bar)
    finally:
        if bar is not None:
            bar.close()
    return cells, position_loss(losses)


def _bar(total: int, method: str, progress: bool):
    from ..progress import progress_bar

    return progress_bar(total, method, progress, unit="tok", unit_scale=True, leave=False)


def measure_stage(model, method: str, docs, lengths: list[int], stop: str,
                  settings: dict[str, Any], progress: bool, options: Any = None) -> StageRecord:
    """Measure ``method`` at ``lengths``, with the stage's time and peak memory."""
    resettable = _reset_peak_rss()
    before = _peak_rss_mb()
    t0 = time.time()
    cells, by_position = measure(model, docs, lengths, method, progress, options)
    seconds = time.time() - t0
    peak = _peak_rss_mb()
    how = ("peak RSS during the stage (VmHWM, reset before it)" if resettable else
           "growth of the process's peak RSS during the stage (ru_maxrss delta)")
    peak_mb = peak if resettable else max(0.0, peak - before)
    result = PerplexityResult(model=model.name, corpus=settings["corpus"],
                              split=settings["split"], results={method: cells}, seconds=seconds)
    return StageRecord(method, result, seconds, peak_mb, how, stop, position_loss=by_position,
                       load_average=machine_load())


def method_stage(model, method: str, docs, lengths: list[int], stop: str, path: Path,
                 settings: dict[str, Any], progress: bool, options: Any = None
                 ) -> Stage[StageRecord]:
    """Measure ``method`` at ``lengths`` (with ``options``) into ``path`` (or reuse the stage
    saved there)."""
    def compute() -> StageRecord:
        _use_options(model, options)
        return measure_stage(model, method, docs, lengths, stop, settings, progress, options)

    return Stage("", f"{method} at {', '.join(map(str, lengths))}", compute,
                 key=settings, codec=STAGE_CODEC, path=path,
                 reused=f"    {method}: already measured with these settings, reused")


def method_options_for(s: ExtendSettings, method: str, context: int, lengths: Sequence[int]):
    """The options ``method`` runs with in this run (:func:`lexformer.hf.rope_scaling.
    deployed_options`: one rescaling factor fixed before any input unless --rope-oracle)."""
    from ..hf.rope_scaling import deployed_options

    return deployed_options(method, s.method_options, context, max(lengths),
                            factor=s.rope_factor, oracle=s.rope_oracle)


def _use_options(model, options) -> None:
    """Point a pretrained model's methods at ``options`` for the next stage."""
    if hasattr(model, "options"):
        from ..hf.options import MethodOptions

        model.options = options or MethodOptions()


# --------------------------------------------------------------------------- pipeline
@dataclass
class ExtendRun:
    """Everything the report needs, from one invocation (stages measured or reused)."""

    settings: ExtendSettings
    model_name: str
    context: int
    lengths: list[int]
    documents: int
    stages: list[StageRecord]
    command: str = ""
    wall: float = 0.0
    started: float = field(default_factory=time.time)
    retrieval: list[RetrievalRecord] = field(default_factory=list)

    def options_for(self, method: str):
        """The options ``method`` ran with (:func:`method_options_for`)."""
        return method_options_for(self.settings, method, self.context, self.lengths)


def default_lengths(context: int, scales: Sequence[float] = DEFAULT_SCALES) -> list[int]:
    return [int(context * k) for k in scales if int(context * k) >= 2]


def plan_methods(model, s: ExtendSettings, lengths: list[int]
                 ) -> list[tuple[str, list[int], str]]:
    """(method, the lengths it runs at, why it stops) for every method, all checked against
    the model before any measurement."""
    from ..lm import check_attention

    methods = list(s.methods) if s.methods is not None else [
        m for m in DEFAULT_METHODS if m in model.attention_methods]
    plan = []
    for method in methods:
        check_attention(model, method)
        kept, stop = method_lengths(model, method, lengths, s.full_up_to)
        if not kept:
            raise LexformerError(f"{method} cannot run at any of the lengths ({stop}); "
                                 "leave it out, or raise --full-up-to")
        plan.append((method, kept, stop))
    return plan


def documents_stage(s: ExtendSettings, model, length: int) -> Stage[list]:
    """The held-out documents every method is measured on (their first ``length`` tokens);
    the token cache makes this cheap after the first run, so it is not saved."""
    return Stage("", f"documents: {s.corpus!r} {s.split}, {length} tokens each",
                 lambda: evaluation_documents(s.corpus, model, s.split, length, s.max_docs))


def ruler_lengths(s: ExtendSettings, context: int) -> list[int]:
    """The RULER prompt lengths of the run (none when no task is asked for)."""
    if not ruler_tasks_of(s):
        return []
    if s.ruler_lengths is not None:
        return sorted(set(s.ruler_lengths))
    return default_lengths(context, DEFAULT_RULER_SCALES)


def run_extend(s: ExtendSettings) -> Path:
    """Measure every method (or reuse its stage) and write ``report.md``; returns its path."""
    from ..models import open_model
    from .extend_report import write_report

    started = time.time()
    from ..data import default_split

    s = apply_preset(s)
    check_settings(s)
    s = dataclasses.replace(s, split=s.split or default_split(s.corpus))
    claim_out_folder(Path(s.out), "extend", signature=("eval",))
    model = open_model(s.model, s.method_options, device=s.device, dtype=s.dtype)
    lengths = check_lengths(s.lengths if s.lengths is not None
                            else default_lengths(model.context_length))
    plan = plan_methods(model, s, lengths)
    retrieval = plan_retrieval(model, s, [m for m, _, _ in plan])
    runner = Runner(len(plan) + len(retrieval) + 2, started=started)
    docs = runner.run(documents_stage(s, model, lengths[-1]))
    model_id, fingerprint = model_identity(s.model), corpus_fingerprint(s.corpus)
    stages, keys = [], {}
    for method, kept, stop in plan:
        options = method_options_for(s, method, model.context_length, lengths)
        keys[method] = stage_settings(dataclasses.replace(s, method_options=options), model_id,
                                      kept, len(docs), lengths[-1], fingerprint)
        stages.append(runner.run(method_stage(
            model, method, docs, kept, stop, _stage_path(s, method, "json"), keys[method],
            s.progress, options)))
    scored = [runner.run(retrieval_stage(
        model, method, ruler_tasks_of(s), kept, stop, s.ruler_samples, s.seed,
        _stage_path(s, method, "ruler.json"),
        retrieval_key(keys[method], ruler_tasks_of(s), kept, s.ruler_samples, s.seed),
        s.progress, before=lambda m=method: _use_options(
            model, method_options_for(s, m, model.context_length, lengths))))
        for method, kept, stop in retrieval]
    run = ExtendRun(s, model.name, model.context_length, lengths, len(docs), stages,
                    command=command_line(), wall=runner.elapsed, started=started,
                    retrieval=scored)
    report = runner.run(Stage("", "report and plot", lambda: write_report(Path(s.out), run)))
    say(f"done: {report}")
    return report


def plan_retrieval(model, s: ExtendSettings, methods: Sequence[str]
                   ) -> list[tuple[str, list[int], str]]:
    """(method, RULER lengths, why it stops) for every method that runs RULER at any length,
    checked before any measurement (the same rule as perplexity: quadratic methods up to
    --full-up-to)."""
    lengths = ruler_lengths(s, model.context_length)
    if not lengths:
        return []
    from ..tasks.ruler import check_ruler
    from ..tasks.ruler.scores import bare_tokens, ruler_data

    tasks = ruler_tasks_of(s)
    if s.ruler_lengths is None:  # defaults: keep the lengths that hold every task's text
        lengths = [n for n in lengths if all(
            bare_tokens(t, model.encode, n, ruler_data()) <= n for t in tasks)]
    plan = []
    for method in methods:
        if s.ruler_methods is not None and method not in s.ruler_methods:
            continue
        kept, stop = method_lengths(model, method, lengths, s.full_up_to)
        if kept:
            check_ruler(model, method, tasks, kept)
            plan.append((method, kept, stop))
    return plan


def _stage_path(s: ExtendSettings, method: str, suffix: str) -> Path:
    return Path(s.out) / "eval" / f"{_file_name(method)}.{suffix}"


def _file_name(method: str) -> str:
    return method.replace("+", "-plus-")


__all__ = ["DEFAULT_FULL_UP_TO", "DEFAULT_MAX_DOCS", "DEFAULT_METHODS",
           "DEFAULT_SCALES", "ExtendRun", "ExtendSettings", "StageRecord", "check_settings",
           "default_lengths", "is_quadratic", "method_lengths", "plan_methods", "run_extend"]
