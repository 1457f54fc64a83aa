"""The experiments' stage runner: a saved result is reused only when its key is unchanged,
an older or damaged file is measured again, and timings and progress are kept as before."""

from __future__ import annotations

import json

import pytest

from lexformer.experiments.stages import JsonCodec, Runner, Stage

CODEC = JsonCodec(lambda r: {"value": r}, lambda d: d["value"], key_field="key")


def _stage(tmp_path, key, value, calls, name="eval/x"):
    def compute():
        calls.append(value)
        return value

    return Stage(name, f"measure {name}", compute, key=key, codec=CODEC,
                 path=tmp_path / "eval" / "x.json", reused="    x: reused")


def test_saved_result_is_reused_only_for_an_equal_key(tmp_path, capsys):
    calls = []
    runner = Runner(3, tmp_path / "timings.json")
    assert runner.run(_stage(tmp_path, {"step": 1}, 10, calls)) == 10
    assert json.loads((tmp_path / "eval" / "x.json").read_text()) == {"value": 10,
                                                                      "key": {"step": 1}}
    assert runner.run(_stage(tmp_path, {"step": 1}, 20, calls)) == 10  # reused
    assert runner.run(_stage(tmp_path, {"step": 2}, 30, calls)) == 30  # another key
    assert calls == [10, 30]
    err = capsys.readouterr().err
    assert "[1/3] measure eval/x" in err and "[3/3]" in err and "elapsed" in err
    assert err.count("x: reused") == 1


def test_damaged_or_older_file_is_measured_again(tmp_path):
    calls = []
    path = tmp_path / "eval" / "x.json"
    path.parent.mkdir()
    for content in ("{not json", json.dumps({"value": 1})):  # damaged; saved without a key
        path.write_text(content)
        assert Runner(1).run(_stage(tmp_path, {"step": 1}, 5, calls)) == 5
    assert calls == [5, 5]


def test_timings_are_kept_across_runs_and_a_stage_without_codec_keeps_its_first_time(
        tmp_path):
    timings = tmp_path / "timings.json"
    runner = Runner(2, timings)
    runner.run(Stage("data", "data", lambda: None))
    runner.run(_stage(tmp_path, 1, 1, []))
    first = json.loads(timings.read_text())
    assert set(first) == {"data", "eval/x"}
    again = Runner(2, timings)
    assert again.timings == first  # read back: a resumed run reports earlier stage times
    again.timings["data"] = 99.0  # as if the first run's data stage took 99 s
    again.run(Stage("data", "data", lambda: None))  # runs again, its first time is kept
    again.run(Stage("", "report", lambda: None))  # untimed
    assert again.timings["data"] == 99.0
    assert json.loads(timings.read_text()) == first  # nothing rewritten


def test_claim_refuses_another_commands_folder_and_names_it(tmp_path):
    from lexformer.errors import LexformerError
    from lexformer.experiments.stages import claim_out_folder

    out = tmp_path / "run"
    claim_out_folder(out, "extend", signature=("eval",))  # a new folder: created and marked
    claim_out_folder(out, "extend", signature=("eval",))  # the same command again: accepted
    with pytest.raises(LexformerError, match="output of extend, not of lexformer reproduce"):
        claim_out_folder(out, "reproduce", signature=("models",))
    empty = tmp_path / "empty"
    empty.mkdir()
    claim_out_folder(empty, "reproduce", signature=("models",))
    assert (empty / "lexformer-run.json").is_file()


def test_a_changed_key_names_the_fields_that_differ():
    from lexformer.experiments.stages import changed_fields

    assert changed_fields({"step": 1, "corpus": "a"}, {"step": 1, "corpus": "b"}) == ["corpus"]
    assert changed_fields({"step": 1}, {"step": 1, "corpus_fingerprint": "f"}) == [
        "corpus_fingerprint"]
    assert changed_fields(True, False) == ["inputs"]
