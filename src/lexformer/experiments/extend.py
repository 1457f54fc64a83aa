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

from ..errors import LexformerError
from ..evaluate import (
    EVAL_BATCH_TOKENS,
    LengthResult,
    PerplexityResult,
    check_lengths,
    corpus_fingerprint,
    document_nll,
    evaluation_documents,
    length_result,
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
from .stages import JsonCodec, Runner, Stage, claim_out_folder, command_line, say

#: the default run: the model as is, the paper's blockwise attention, blockwise attention that
#: keeps the first tokens (the sinks pretrained models attend to) and a RoPE rescaling (YaRN),
#: at L/4, L and 2L on one document of 2L tokens: 12 measurements of 16,384 tokens for
#: SmolLM2 (L = 8192). The measured time of this default is in the committed report
#: (docs/extend/report.md). More methods (--methods), lengths (--lengths) or documents
#: (--max-docs) add their cells' cost; lengths past 2L lengthen every cell's document.
#: Which methods these are is each method's record's word (``HFMethod.extend_default``).
DEFAULT_METHODS = tuple(name for name, m in HF_METHODS.items() if m.extend_default)
#: lengths as multiples of the declared context L (the default run: L/4, L, 2L)
DEFAULT_SCALES = (0.25, 1.0, 2.0)
DEFAULT_FULL_UP_TO = 2.0
DEFAULT_MAX_DOCS = 1
DEFAULT_CORPUS = "shakespeare"
SPLIT = "test"


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
    split: str = SPLIT
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
    progress: bool = field(default=True, metadata=option("--no-progress"))
    device: str | None = field(default=None, metadata=option(
        "--device", DEVICE_OPTION_HELP, metavar="DEVICE", parse=parse_device))
    dtype: str | None = field(default=None, metadata=option(
        "--dtype", DTYPE_OPTION_HELP, metavar="DTYPE", parse=parse_dtype))


def check_settings(s: ExtendSettings) -> None:
    """Every user error in the settings alone, before the model is loaded."""
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
    from .extend_report import PLOT

    out = ensure_writable_dir(s.out, "--out folder")
    for folder in ("eval", "plots"):
        ensure_writable_dir(out / folder, f"--out's {folder} folder")
    stages = [f"eval/{_file_name(m)}.json" for m in (s.methods or DEFAULT_METHODS)]
    for name in ("report.md", PLOT, *stages):
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
    options = asdict(s.method_options) if s.method_options is not None else None
    return {"model": model_id, "corpus": s.corpus, "corpus_fingerprint": fingerprint,
            "split": s.split, "documents": n_docs, "document_tokens": top, "lengths": lengths,
            "method_options": options, **placement_key(s.device, s.dtype)}


def _record_json(record: StageRecord) -> dict[str, Any]:
    return {**record.result.to_json(), "method": record.method,
            "stage_seconds": record.seconds, "peak_rss_mb": record.peak_rss_mb,
            "memory_measure": record.memory_measure, "stop_reason": record.stop_reason}


def _record_from_json(data: dict[str, Any]) -> StageRecord:
    return StageRecord(data["method"], PerplexityResult.from_json(data),
                       float(data["stage_seconds"]), float(data["peak_rss_mb"]),
                       str(data["memory_measure"]), str(data.get("stop_reason", "")),
                       reused=True)


#: a method's stage file: its results, cost and stop reason, with its key in "settings"
STAGE_CODEC = JsonCodec(_record_json, _record_from_json, key_field="settings")


def measure(model, docs, lengths: list[int], method: str, progress: bool
            ) -> dict[int, LengthResult]:
    """Perplexity of ``method`` at each of ``lengths`` over ALL N tokens of every document
    (N = the documents' length, which may exceed max(lengths)), so that every method scores
    the same tokens at a given length and two methods are compared on matched documents."""
    import numpy as np
    import torch

    from ..stats import resample_indices

    tokens = torch.from_numpy(np.stack([np.asarray(d, dtype=np.int64) for d in docs]))
    n_docs, top = tokens.shape
    indices = resample_indices(n_docs) if n_docs > 1 else None  # the same for every method
    bar = _bar(len(lengths) * top * n_docs, method, progress)
    out = {n: length_result(_document_nll(model, tokens, n, method, bar), n, top, indices)
           for n in lengths}
    if bar is not None:
        bar.close()
    return out


def _document_nll(model, tokens, n: int, method: str, bar):
    """:func:`lexformer.evaluate.document_nll` a slice of whole chunks at a time, so the
    progress bar moves during a long measurement (each document's NLL is the sum over its
    chunks either way)."""
    n_docs, top = tokens.shape
    step = max(n, EVAL_BATCH_TOKENS // n * n)
    total = 0.0
    for start in range(0, top, step):
        total = total + document_nll(model, tokens[:, start:start + step], n, method)
        if bar is not None:
            bar.update(min(step, top - start) * n_docs)
            bar.set_postfix(length=n)
    return total


def _bar(total: int, method: str, progress: bool):
    from ..progress import progress_bar

    return progress_bar(total, method, progress, unit="tok", unit_scale=True, leave=False)


def measure_stage(model, method: str, docs, lengths: list[int], stop: str,
                  settings: dict[str, Any], progress: bool) -> StageRecord:
    """Measure ``method`` at ``lengths``, with the stage's time and peak memory."""
    resettable = _reset_peak_rss()
    before = _peak_rss_mb()
    t0 = time.time()
    results = {method: measure(model, docs, lengths, method, progress)}
    seconds = time.time() - t0
    peak = _peak_rss_mb()
    how = ("peak RSS during the stage (VmHWM, reset before it)" if resettable else
           "growth of the process's peak RSS during the stage (ru_maxrss delta)")
    peak_mb = peak if resettable else max(0.0, peak - before)
    result = PerplexityResult(model=model.name, corpus=settings["corpus"],
                              split=settings["split"], results=results, seconds=seconds)
    return StageRecord(method, result, seconds, peak_mb, how, stop)


def method_stage(model, method: str, docs, lengths: list[int], stop: str, path: Path,
                 settings: dict[str, Any], progress: bool, options: Any = None
                 ) -> Stage[StageRecord]:
    """Measure ``method`` at ``lengths`` (with ``options``) into ``path`` (or reuse the stage
    saved there)."""
    def compute() -> StageRecord:
        _use_options(model, options)
        return measure_stage(model, method, docs, lengths, stop, settings, progress)

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


def run_extend(s: ExtendSettings) -> Path:
    """Measure every method (or reuse its stage) and write ``report.md``; returns its path."""
    from ..models import open_model
    from .extend_report import write_report

    started = time.time()
    check_settings(s)
    claim_out_folder(Path(s.out), "extend", signature=("eval",))
    model = open_model(s.model, s.method_options, device=s.device, dtype=s.dtype)
    lengths = check_lengths(s.lengths if s.lengths is not None
                            else default_lengths(model.context_length))
    plan = plan_methods(model, s, lengths)
    runner = Runner(len(plan) + 2, started=started)  # documents, one per method, report
    docs = runner.run(documents_stage(s, model, lengths[-1]))
    model_id, fingerprint = model_identity(s.model), corpus_fingerprint(s.corpus)
    stages = []
    for method, kept, stop in plan:
        options = method_options_for(s, method, model.context_length, lengths)
        stages.append(runner.run(method_stage(
            model, method, docs, kept, stop, Path(s.out) / "eval" / f"{_file_name(method)}.json",
            stage_settings(dataclasses.replace(s, method_options=options), model_id, kept,
                           len(docs), lengths[-1], fingerprint), s.progress, options)))
    run = ExtendRun(s, model.name, model.context_length, lengths, len(docs), stages,
                    command=command_line(), wall=runner.elapsed, started=started)
    report = runner.run(Stage("", "report and plot", lambda: write_report(Path(s.out), run)))
    say(f"done: {report}")
    return report


def _file_name(method: str) -> str:
    return method.replace("+", "-plus-")


__all__ = ["DEFAULT_FULL_UP_TO", "DEFAULT_MAX_DOCS", "DEFAULT_METHODS",
           "DEFAULT_SCALES", "ExtendRun", "ExtendSettings", "StageRecord", "check_settings",
           "default_lengths", "is_quadratic", "method_lengths", "plan_methods", "run_extend"]
