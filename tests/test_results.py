"""The continual record of a run (`runner/results.py`): what each call writes, the file, reading it back."""

from __future__ import annotations

import json

import pytest

from runner.results import RESULTS, RunResults, read_results


def test_a_record_of_two_visits_has_every_field_where_the_file_format_says() -> None:
    res = RunResults(["A", "B"])
    assert res.random == [None, None]  # not measured yet
    assert RunResults(["A"], random=[3.5]).random == [3.5]
    res.episode(1.0, 5)  # before any visit: nowhere to put it
    res.start_visit(0, 0)
    assert res.visits == [{"task": 0, "start": 0, "end": None}] and res.current_visit == 0
    res.episode(2, 10)
    res.evaluation(50, [1, 2])  # an --eval.every evaluation inside visit 0
    res.end_visit(100, [4, 0.5])
    res.start_visit(1, 100)
    res.episode(-1.0, 150)
    res.end_visit(200, None)  # not evaluated
    assert res.visits == [{"task": 0, "start": 0, "end": 100}, {"task": 1, "start": 100, "end": 200}]
    assert res.matrix == [[4.0, 0.5]] and all(type(x) is float for x in res.matrix[0])
    assert res.evaluations == [{"step": 50, "visit": 0, "returns": [1.0, 2.0]}]
    assert res.train_curve == [[[10, 2.0]], [[150, -1.0]]]
    assert res.visit_eval(0) == 4.0 and res.visit_eval(1) is None
    assert res.current_visit == 1


def test_the_file_is_written_whole_and_read_back(tmp_path) -> None:
    res = RunResults(["A"], random=[0.5])
    res.start_visit(0, 0)
    res.end_visit(10, [2.0])
    res.step, res.finished = 10, True
    path = res.write(tmp_path)
    assert path == tmp_path / RESULTS and [p.name for p in tmp_path.iterdir()] == [RESULTS]  # no temporary left
    assert read_results(tmp_path) == json.loads(path.read_text()) == res.to_dict()
    assert read_results(tmp_path)["finished"] is True and read_results(tmp_path)["matrix"] == [[2.0]]
    with pytest.raises(ValueError) as info:
        read_results(tmp_path / "nope")
    assert str(info.value) == f"{tmp_path / 'nope'}: no results.json there (is it a run directory of train.py?)"


def test_a_state_saved_without_a_newer_timer_keeps_that_timer_at_zero() -> None:
    res = RunResults(["A"])
    res.load_state_dict({"step": 7, "seconds": {"run": 3.0, "evaluation": 1.0}})  # no "random" timer
    assert res.step == 7 and res.seconds == {"run": 3.0, "evaluation": 1.0, "random": 0.0}
    again = RunResults(["A"])
    again.load_state_dict(res.state_dict())
    assert again.to_dict() == res.to_dict()
