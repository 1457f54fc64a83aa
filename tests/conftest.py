"""Shared test setup: fixed seeds, one intra-op thread and a quick hypothesis profile.

The float64 reference the tests compare against is ``lexformer.reference``.
"""

from __future__ import annotations

import os

import pytest
import torch

# Tiny tensors: one intra-op thread is as fast, and immune to the spin-wait slowdowns that
# many small parallel regions suffer on a loaded machine (seen: 100x on a shared 2-core box).
torch.set_num_threads(int(os.environ.get("LEXFORMER_TEST_THREADS", "1")))

try:
    from hypothesis import HealthCheck, settings
except ImportError:  # pragma: no cover - hypothesis is a dev dependency
    pass
else:
    settings.register_profile(
        "lexformer", max_examples=20, deadline=None, derandomize=True,
        suppress_health_check=[HealthCheck.too_slow],
    )
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "lexformer"))


#: "1" or "0" makes ``dtype auto`` in this process decide as on a CPU with (AMX, AVX512-BF16)
#: or without (AVX2-only) native bf16, whatever this machine has; unset: this machine decides.
#: CLI tests in a subprocess still follow the real CPU, so where the two disagree a test that
#: compares an in-process run with a subprocess run (the DDP ones) compares two precisions.
_NATIVE_BF16 = os.environ.get("LEXFORMER_TEST_NATIVE_BF16", "")


@pytest.fixture(scope="session", autouse=True)
def _native_bf16():
    """The bf16-or-fp32 choice of ``dtype auto`` as on another CPU kind (see above); session
    scope, so module fixtures that train (``smoke``) see it too."""
    if _NATIVE_BF16 not in ("0", "1"):
        yield
        return
    import lexformer.distributed

    native = _NATIVE_BF16 == "1"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(lexformer.distributed, "native_bf16",
                   lambda device: device.type == "cuda" or native)
        yield


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same RNG state."""
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """A smoke model trained for 10 steps on a corpus in tmp, with its own cache: one per
    test module that asks for it (CLI tests write their outputs beside it)."""
    from text_corpus import write_corpus

    from lexformer.presets import from_preset
    from lexformer.train import train

    base = tmp_path_factory.mktemp("cli")
    corpus = write_corpus(base / "texts", n_docs=8, words_per_doc=3000)
    env = {"LEXFORMER_CACHE": str(base / "cache")}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LEXFORMER_CACHE", env["LEXFORMER_CACHE"])
        cfg = from_preset("smoke", position="xpos", corpus=str(corpus), tokens=8 * 64 * 10)
        train(cfg, base / "model", progress=False)
    return base, env


@pytest.fixture(autouse=True)
def _no_downloads(monkeypatch):
    """Tests download nothing: a pinned package fetched by pip (the built-in model, RULER's
    data) is an error here, unless the test pointed pip at a local folder only
    (PIP_NO_INDEX with PIP_FIND_LINKS, as the fetch tests do)."""
    from lexformer.hf import loading

    real = loading.pip_download_pinned

    def local_only(package, version, *args, **kwargs):
        if os.environ.get("PIP_NO_INDEX") and os.environ.get("PIP_FIND_LINKS"):
            return real(package, version, *args, **kwargs)
        raise AssertionError(f"a test tried to download {package}=={version}")

    monkeypatch.setattr(loading, "pip_download_pinned", local_only)
