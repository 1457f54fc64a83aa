"""``lexformer export RUN --format hf OUT``: a lexformer checkpoint loaded by transformers'
own ``AutoModelForCausalLM.from_pretrained`` (no remote code), with lexformer's logits, and
its ``generate`` — full and blockwise — equal to lexformer's greedy decoding."""

from __future__ import annotations

import json
import random

import pytest
import torch

transformers = pytest.importorskip("transformers")

from cli_harness import assert_clean_failure, run_cli  # noqa: E402

from lexformer.checkpoint import load, save_checkpoint  # noqa: E402
from lexformer.data.tokenizer import train_bpe_tokenizer  # noqa: E402
from lexformer.model import TransformerLM  # noqa: E402
from lexformer.presets import from_preset  # noqa: E402

WORDS = "the king and queen went to the castle where a storm was rising".split()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A small XPOS checkpoint with a BPE tokenizer, random weights (the export is what is
    tested, not the training)."""
    rng = random.Random(0)
    text = [" ".join(rng.choice(WORDS) for _ in range(400)) for _ in range(4)]
    tokenizer = train_bpe_tokenizer(text, vocab_size=300, progress=False)
    cfg = from_preset("smoke", d_model=32, n_head=4, d_ff=64, n_layer=2, train_length=32,
                      block_size=16).with_vocab_size(tokenizer.vocab_size)
    torch.manual_seed(0)
    model = TransformerLM(cfg.model)
    meta = {"model": cfg.model.to_dict(), "train": cfg.to_dict(), "step": 1,
            "corpus": {"name": "test", "fingerprint": "abc"}, "last_loss": 1.0}
    root = tmp_path_factory.mktemp("export-run")
    save_checkpoint(root, model, meta, tokenizer, {"optimizer": {}, "sampler": {"step": 1},
                                                   "rng": {}, "step": 1})
    return root


@pytest.mark.parametrize("attention", ["full", "blockwise"])
def test_exported_folder_loads_with_lexformers_logits_and_generates(run, tmp_path, attention):
    import lexformer.hf.export  # noqa: F401  (registers the model type with transformers)

    out = tmp_path / "hf"
    proc = run_cli("export", run, out, "--format", "hf", "--attention", attention)
    assert proc.returncode == 0, proc.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "lexformer" and "auto_map" not in config  # no remote code
    model = transformers.AutoModelForCausalLM.from_pretrained(out, trust_remote_code=False)
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    ckpt = load(run)
    ids = torch.tensor([ckpt.tokenizer.encode(" ".join(WORDS * 6))])  # past L = 32
    assert ids.shape[1] > 2 * ckpt.config.train_length
    assert tokenizer(" ".join(WORDS), add_special_tokens=False)["input_ids"] == \
        ckpt.tokenizer.encode(" ".join(WORDS))
    with torch.no_grad():
        theirs = model(input_ids=ids).logits
        ours = ckpt.model(ids, attention=attention)
    assert (theirs - ours).abs().max().item() <= 1e-5
    prompt = ids[:, :20]
    with torch.no_grad():
        generated = model.generate(prompt, max_new_tokens=12, do_sample=False)
    from lexformer.lm import LexformerLM

    greedy = LexformerLM.from_checkpoint(run).greedy(prompt, 12, attention)
    assert torch.equal(generated[0, 20:], greedy[0])


def test_export_refuses_a_folder_in_use_and_a_missing_run(run, tmp_path):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "mine.txt").write_text("keep me")
    assert_clean_failure(run_cli("export", run, busy), "not empty")
    assert (busy / "mine.txt").read_text() == "keep me"
    assert_clean_failure(run_cli("export", tmp_path / "no-run", tmp_path / "o"), "not found")
    assert not (tmp_path / "o").exists()
