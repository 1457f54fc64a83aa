"""``lexformer eval --model`` on a pretrained (Hugging Face) model: a tiny random Llama with its
own tokenizer, saved locally (no network, no hub), through the real CLI."""

from __future__ import annotations

import json
import math

import pytest
import torch

transformers = pytest.importorskip("transformers")

from cli_harness import assert_clean_failure, run_cli  # noqa: E402
from tiny_hf import TEST_FILES, write_corpus, write_model  # noqa: E402

LENGTHS = (16, 32, 64, 128)
METHODS = ("full", "blockwise", "sinks")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(model folder, corpus folder, cache folder)."""
    root = tmp_path_factory.mktemp("eval-hf")
    corpus = write_corpus(root / "corpus")
    return write_model(root / "model", corpus), corpus, root / "cache"


@pytest.fixture(scope="module")
def evaluated(tiny):
    """(the CLI's process, its JSON) for full, blockwise and sinks at LENGTHS."""
    model, corpus, cache = tiny
    out = cache.parent / "eval.json"
    proc = run_cli("eval", "--model", model, "--attention", ",".join(METHODS),
                   "--lengths", ",".join(map(str, LENGTHS)), "--corpus", corpus,
                   "--split", "test", "--json", out, "--no-progress",
                   env={"LEXFORMER_CACHE": str(cache)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, json.loads(out.read_text())


def test_table_and_json_shape(evaluated):
    proc, data = evaluated
    rows = {line.split()[0]: line.split() for line in proc.stdout.splitlines() if line.strip()}
    for method in METHODS:
        assert method in rows, proc.stdout
        assert sum("±" in cell for cell in rows[method]) == len(LENGTHS)  # one cell per length
    assert set(data["results"]) == set(METHODS)
    for per in data["results"].values():
        assert sorted(map(int, per)) == list(LENGTHS)
        for cell in per.values():
            lo, hi = cell["ci95"]
            assert lo <= cell["perplexity"] <= hi
            assert cell["documents"] == len(TEST_FILES)


def test_windows_equal_full_inside_the_context(evaluated):
    """At lengths ≤ L = 64 blockwise (h = 32: a query sees its block and the previous one) and
    sinks (4 sinks + a window of 60) see every earlier key at its true distance: the same
    perplexity as full attention, up to float32 summation order."""
    _, data = evaluated
    r = data["results"]
    for n in ("16", "32", "64"):
        for method in ("blockwise", "sinks"):
            assert r[method][n]["perplexity"] == pytest.approx(r["full"][n]["perplexity"],
                                                               rel=1e-5)


def _test_documents(corpus, tokenizer, n_tokens: int) -> list[list[int]]:
    """The first n_tokens ids of each test-split file (file order), tokenized directly."""
    texts = [(corpus / f"doc{i:02d}.txt").read_text() for i in TEST_FILES]
    return [tokenizer(t, add_special_tokens=False)["input_ids"][:n_tokens] for t in texts]


def test_full_equals_the_unpatched_model(tiny, evaluated):
    """``full`` through ``eval --model`` is the plain transformers model's perplexity on the
    same chunks, computed here without lexformer (float64 sums of float32 NLLs)."""
    model_dir, corpus, _ = tiny
    _, data = evaluated
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    docs = torch.tensor(_test_documents(corpus, tokenizer, LENGTHS[-1]))
    for n in LENGTHS:
        chunks = docs.reshape(-1, n)
        with torch.no_grad():
            logits = model(chunks).logits[:, :-1].float()
        nll = torch.nn.functional.cross_entropy(logits.flatten(0, 1), chunks[:, 1:].flatten(),
                                                reduction="sum").double()
        expected = math.exp(nll.item() / chunks[:, 1:].numel())
        assert data["results"]["full"][str(n)]["perplexity"] == pytest.approx(expected,
                                                                              rel=1e-5)


def test_unknown_method_for_this_model(tiny):
    model, corpus, cache = tiny
    proc = run_cli("eval", "--model", model, "--attention", "full,warp-drive", "--corpus",
                   corpus, env={"LEXFORMER_CACHE": str(cache)})
    assert_clean_failure(proc, "warp-drive", "self-extend")  # names the bad one and the choices


def test_not_a_model(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    proc = run_cli("eval", "--model", tmp_path, "--corpus", tmp_path)
    assert_clean_failure(proc, "not a model lexformer can open")


def test_bad_method_options_fail_at_parse_time(tiny):
    proc = run_cli("eval", "--model", tiny[0], "--method-options", "blok=3")
    assert_clean_failure(proc, "blok", "block")


@pytest.mark.parametrize("attention, options, words", [
    ("self-extend", "neighbours=100000", ["neighbour window (100000)", "context L (64)"]),
    ("yarn", "target_length=32", ["past length 32", "target_length"]),
], ids=["neighbours_past_context", "rope_target_short"])
def test_knobs_past_what_the_model_takes_are_named(tiny, attention, options, words):
    """Said in the method's terms (a neighbour window past L gave "cannot evaluate past
    length -699488 … the 'learned' scheme")."""
    model, corpus, cache = tiny
    proc = run_cli("eval", "--model", model, "--attention", attention, "--lengths", "64",
                   "--method-options", options, "--corpus", corpus, "--no-progress",
                   env={"LEXFORMER_CACHE": str(cache)})
    assert_clean_failure(proc, *words)
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def _damaged_copy(tiny, tmp_path, damage):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(tiny[0], folder)
    damage(folder)
    return folder


def _zero_context(folder):
    config = json.loads((folder / "config.json").read_text())
    config["max_position_embeddings"] = 0
    (folder / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("damage, words", [
    (lambda f: (f / "tokenizer.json").write_text('{"broken'),
     ["cannot read the tokenizer", "tokenizer.json"]),
    (_zero_context, ["context of 0", "max_position_embeddings"]),
], ids=["broken_tokenizer_json", "context_zero"])
def test_damaged_model_folders_are_named_in_one_line(tiny, tmp_path, damage, words):
    """The message names what is wrong (not "has no tokenizer", not a sinks/block clash),
    and transformers' "Loading weights" bar does not come before it."""
    folder = _damaged_copy(tiny, tmp_path, damage)
    proc = run_cli("eval", "--model", folder, "--corpus", tiny[1], "--lengths", "32",
                   env={"LEXFORMER_CACHE": str(tiny[2])})
    assert_clean_failure(proc, *words)
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "no tokenizer" not in proc.stderr and "sinks" not in proc.stderr


def test_missing_transformers_is_one_line(tiny, tmp_path):
    """A ``transformers`` that cannot be imported (shadowed by one that raises) ends in the
    install hint, not a traceback."""
    shim = tmp_path / "shim" / "transformers"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ImportError('simulated: no transformers')\n")
    proc = run_cli("eval", "--model", tiny[0], "--corpus", tiny[1],
                   env={"PYTHONPATH": str(shim.parent), "LEXFORMER_CACHE": str(tiny[2])})
    assert_clean_failure(proc, "lexformer[hf]")
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_importing_lexformer_models_does_not_import_transformers():
    import subprocess
    import sys

    code = ("import sys, lexformer.models, lexformer.evaluate, lexformer.cli; "
            "print('transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr


def _one_long_file(tiny, tmp_path):
    """Every corpus file joined into one text file (the issue's "novel.txt")."""
    _, corpus, _ = tiny
    novel = tmp_path / "novel.txt"
    novel.write_text("".join(p.read_text() for p in sorted(corpus.glob("*.txt"))))
    return novel


def test_one_long_file_is_scored_whole_by_default(tiny, tmp_path):
    """The issue's example: one file, a length longer than any of its test parts. With
    ``--split test`` it is refused (the file is cut into 14 parts); by default (``all`` for
    the user's files) the whole file is one document and the length is scored."""
    model, _, cache = tiny
    novel, out = _one_long_file(tiny, tmp_path), tmp_path / "eval.json"
    args = ("eval", "--model", model, "--attention", "full", "--lengths", "4096",
            "--corpus", novel, "--no-progress")
    env = {"LEXFORMER_CACHE": str(cache)}
    assert_clean_failure(run_cli(*args, "--split", "test", env=env), "no document has 4096")
    proc = run_cli(*args, "--json", out, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["split"] == "all"
    assert data["results"]["full"]["4096"]["documents"] == 1


def test_split_all_keeps_every_jsonl_record_whole(tiny, tmp_path):
    """Three records, each its own document, none cut and none left out (with ``test`` a
    corpus of fewer than five documents is cut into parts)."""
    model, corpus, cache = tiny
    texts = [(corpus / f"doc{i:02d}.txt").read_text() for i in range(3)]
    records = tmp_path / "mine.jsonl"
    records.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    out = tmp_path / "eval.json"
    proc = run_cli("eval", "--model", model, "--attention", "full", "--lengths", "256",
                   "--corpus", records, "--split", "all", "--json", out, "--no-progress",
                   env={"LEXFORMER_CACHE": str(cache)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(out.read_text())["results"]["full"]["256"]["documents"] == 3


@pytest.mark.parametrize("command", ["eval", "extend"])
def test_split_all_on_a_built_in_corpus_is_refused_before_loading(tiny, tmp_path, command):
    """A built-in corpus keeps its held-out split: ``all`` would score its train text too.
    Refused in one line before the model is loaded (nothing is downloaded)."""
    model, _, cache = tiny
    extra = ("--out", tmp_path / "out") if command == "extend" else ()
    proc = run_cli(command, "--model", model, "--corpus", "shakespeare", "--split", "all",
                   *extra, env={"LEXFORMER_CACHE": str(cache)})
    assert_clean_failure(proc, "'all'", "shakespeare", "held-out split")
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Loading weights" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_eval_in_bf16_records_its_dtype_and_device(tiny, tmp_path):
    """--dtype bf16 loads the weights in bf16 and says so in the JSON; the perplexity stays
    within bf16's rounding of the float32 run (rel 5e-2: docs/reproducibility.md)."""
    model, corpus, cache = tiny
    runs = {}
    for dtype in ("bf16", "fp32"):
        out = tmp_path / f"{dtype}.json"
        proc = run_cli("eval", "--model", model, "--attention", "full", "--lengths", "32",
                       "--corpus", corpus, "--dtype", dtype, "--device", "cpu", "--json", out,
                       "--no-progress", env={"LEXFORMER_CACHE": str(cache)})
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[dtype] = json.loads(out.read_text())
    assert runs["bf16"]["dtype"] == "bfloat16" and runs["fp32"]["dtype"] == "float32"
    assert runs["bf16"]["device"] == "cpu" and runs["bf16"]["devices"] == ["cpu"]
    ppl = {d: r["results"]["full"]["32"]["perplexity"] for d, r in runs.items()}
    assert ppl["bf16"] == pytest.approx(ppl["fp32"], rel=5e-2)


# --------------------------------------------------------------------------- generate
def test_generate_serves_a_pretrained_model_with_any_of_its_methods(tiny):
    """--model (alias --checkpoint) takes a HF folder; greedy is the model's own argmax
    continuation; sampling is seeded (same seed, same text; another seed, other text); every
    method of the model is accepted, an unknown one refused before loading."""
    from lexformer.hf import open_hf_model

    model_dir = tiny[0]
    lm = open_hf_model(str(model_dir))
    ids = torch.tensor([lm.encode("the king and")])
    with torch.no_grad():
        own = lm.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=8,
                                do_sample=False, pad_token_id=0, eos_token_id=None)
    want = "the king and" + lm.decode(own[0, ids.shape[1]:].tolist())
    greedy = run_cli("generate", "--model", model_dir, "--prompt", "the king and",
                     "--max-new-tokens", "8", "--temperature", "0")
    assert greedy.returncode == 0, greedy.stderr
    assert greedy.stdout == want + "\n"

    def sampled(seed: str, attention: str = "sinks") -> str:
        proc = run_cli("generate", "--checkpoint", model_dir, "--prompt", "the king and",
                       "--max-new-tokens", "12", "--attention", attention, "--seed", seed)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    assert sampled("1") == sampled("1") and sampled("1") != sampled("2")
    assert sampled("1", "blockwise+sinks").startswith("the king and")
    proc = run_cli("generate", "--model", model_dir, "--attention", "warp-drive")
    assert_clean_failure(proc, "unknown attention method", "warp-drive", "blockwise+sinks")
