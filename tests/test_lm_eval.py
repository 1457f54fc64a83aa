"""``lexformer lm-eval``: lm-evaluation-harness's own command line with the model
``lexformer`` (pretrained=..., method=..., max_length=...), offline, on a tiny random Llama
and a local task YAML: ``method=full`` gives what lm-eval's own ``hf`` model gives, a window
method past the context gives something else, batched, with max_length honoured."""

from __future__ import annotations

import json
import random

import pytest

pytest.importorskip("lm_eval")
pytest.importorskip("transformers")

from cli_harness import run_cli  # noqa: E402
from tiny_hf import CONTEXT, WORDS, write_corpus, write_model  # noqa: E402

TASK = "lexformer_tiny_ll"
OFFLINE = {"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("lm-eval")
    model = write_model(root / "model", write_corpus(root / "corpus"))
    rng = random.Random(0)
    with open(root / "data.jsonl", "w") as f:
        for _ in range(6):  # contexts of ~200 tokens: past the tiny model's L = 64
            context = " ".join(rng.choice(WORDS) for _ in range(120))
            f.write(json.dumps({"context": context, "target": rng.choice(WORDS)}) + "\n")
    tasks = root / "tasks"
    tasks.mkdir()
    (tasks / "tiny.yaml").write_text(
        f"task: {TASK}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
        f"    test: {root / 'data.jsonl'}\ntest_split: test\noutput_type: loglikelihood\n"
        'doc_to_text: "{{context}}"\ndoc_to_target: " {{target}}"\nmetric_list:\n'
        "  - metric: perplexity\n    aggregation: perplexity\n    higher_is_better: false\n"
        "  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n")
    return root, model, tasks


def _perplexity(setup, name: str, model_args: str, *extra: str) -> float:
    root, _, tasks = setup
    out = root / f"out-{name}"
    proc = run_cli("lm-eval", "run", "--model", model_args.split(" ")[0], "--model_args",
                   model_args.split(" ")[1], "--tasks", TASK, "--include_path", tasks,
                   "--batch_size", "2", "--output_path", out, *extra, env=OFFLINE)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (result,) = out.rglob("results_*.json")
    return json.loads(result.read_text())["results"][TASK]["perplexity,none"]


def test_lexformer_model_in_lm_eval_matches_hf_and_runs_a_method_past_the_context(setup):
    _, model, _ = setup
    length = 4 * CONTEXT
    ours = _perplexity(setup, "full", f"lexformer pretrained={model},method=full,"
                                      f"max_length={length}")
    theirs = _perplexity(setup, "hf", f"hf pretrained={model},max_length={length},"
                                      "prefix_token_id=0", "--device", "cpu")
    assert ours == pytest.approx(theirs, rel=1e-5)
    sinks = _perplexity(setup, "sinks", f"lexformer pretrained={model},method=sinks,"
                                        f"max_length={length},sinks=2")
    assert abs(sinks / ours - 1) > 1e-3  # the method is in effect past L
    short = _perplexity(setup, "short", f"lexformer pretrained={model},method=sinks,"
                                        f"max_length={CONTEXT},sinks=2")
    # cut to L by max_length: sinks keeps S + W = L keys, so it is full attention there
    cut = _perplexity(setup, "cut", f"lexformer pretrained={model},method=full,"
                                    f"max_length={CONTEXT}")
    assert short == pytest.approx(cut, rel=1e-5)


def test_unknown_method_is_one_line(setup):
    _, model, tasks = setup
    proc = run_cli("lm-eval", "run", "--model", "lexformer", "--model_args",
                   f"pretrained={model},method=warp-drive", "--tasks", TASK,
                   "--include_path", tasks, env=OFFLINE)
    assert proc.returncode == 2
    assert "warp-drive" in proc.stderr and "blockwise+sinks" in proc.stderr
