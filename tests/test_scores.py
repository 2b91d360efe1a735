"""Continual scores against a hand computation; ``scores`` command-line entry."""

from __future__ import annotations

import json

import pytest

from runner.scores import compute_scores, main

# Three tasks; A and B are visited twice, C once (never revisited). B's returns are negative.
# rand = [10, -100, 5]. The run evaluated all five visits.
RESULTS = {
    "tasks": ["A", "B", "C"],
    "random": [10.0, -100.0, 5.0],
    "visits": [
        {"task": 0, "start": 0, "end": 100},
        {"task": 1, "start": 100, "end": 200},
        {"task": 2, "start": 200, "end": 300},
        {"task": 0, "start": 300, "end": 400, "train_curve": [[700, 20.0], [900, 60.0]]},
        {"task": 1, "start": 400, "end": 500},
    ],
    "matrix": [
        [50.0, -100.0, 5.0],  # v0: end of A's 1st visit
        [30.0, -60.0, 5.0],   # v1: end of B's 1st visit
        [20.0, -80.0, 5.0],   # v2: end of C's only visit (C at its random return)
        [60.0, -80.0, 7.0],   # v3: end of A's 2nd visit
        [34.0, -70.0, 6.0],   # v4: end of B's 2nd visit
    ],
    "train_curve": [
        [[0, 10.0], [100, 30.0], [300, 50.0]],  # v0
        [[400, -100.0]],                        # v1
        [[600, 9.0]],                           # v2
    ],
}


def test_scores_equal_hand_computation() -> None:
    s = compute_scores(RESULTS)
    # A: v_1 = 0, v_2 = 3; first gap R[0][0] - 10 = 40.
    #   final = (R[4][0] - 10) / 40 = 24 / 40 = 0.6
    #   plasticity[2] = (R[3][0] - 10) / 40 = 50 / 40 = 1.25
    #   forgetting[1] = (R[0][0] - R[3-1][0]) / 40 = (50 - 20) / 40 = 0.75
    # B: v_1 = 1, v_2 = 4; first gap -60 - (-100) = 40.
    #   final = (-70 + 100) / 40 = 0.75; plasticity[2] = the same row: 0.75
    #   forgetting[1] = (R[1][1] - R[3][1]) / 40 = (-60 + 80) / 40 = 0.5
    # C: first gap 5 - 5 = 0: final is null, no revisit so no plasticity or forgetting.
    assert s["tasks"] == ["A", "B", "C"]
    assert s["final"] == pytest.approx([0.6, 0.75, None])
    assert s["final"][2] is None
    assert s["average_final"] == pytest.approx((0.6 + 0.75) / 2)  # 0.675
    assert s["plasticity"] == [{2: pytest.approx(1.25)}, {2: pytest.approx(0.75)}, {}]
    assert s["forgetting"] == [{1: pytest.approx(0.75)}, {1: pytest.approx(0.5)}, {}]
    # AUC (time-average of the training curve, normalised like final):
    #   v0 (A): trapezoid 100 * (10 + 30) / 2 + 200 * (30 + 50) / 2 = 10000 over 300 steps
    #           -> 33.333; (33.333 - 10) / 40 = 0.58333
    #   v1 (B): one episode, -100: (-100 + 100) / 40 = 0
    #   v2 (C): denominator 0 -> null
    #   v3 (A): from the visit's own key: (200 * (20 + 60) / 2) / 200 = 40; (40 - 10) / 40 = 0.75
    #   v4 (B): no curve -> null
    assert s["auc"][0] == pytest.approx((10000 / 300 - 10) / 40)
    assert s["auc"][1] == pytest.approx(0.0)
    assert s["auc"][2] is None and s["auc"][4] is None
    assert s["auc"][3] == pytest.approx(0.75)


def test_negative_denominator_and_unfinished_run() -> None:
    # Task 0 ends its first visit below random (-5 - 0 < 0): every score of it is null.
    # Only two of four visits are evaluated: task 1's second visit has no row yet, so no
    # plasticity for it; forgetting[1] of task 0 needs row v_2 - 1 = 1, which exists.
    results = {
        "tasks": ["X", "Y"], "random": [0.0, 1.0],
        "visits": [{"task": 0}, {"task": 1}, {"task": 0}, {"task": 1}],
        "matrix": [[-5.0, 1.0], [-7.0, 3.0]],
    }
    s = compute_scores(results)
    assert s["final"] == [None, pytest.approx((3.0 - 1.0) / (3.0 - 1.0))]
    assert s["forgetting"][0] == {1: None}  # (-5 - -7) / (-5 - 0): denominator < 0
    assert s["plasticity"] == [{}, {}]
    assert s["forgetting"][1] == {}
    assert s["average_final"] == pytest.approx(1.0)


def test_bad_results_are_one_line_errors() -> None:
    with pytest.raises(ValueError, match="matrix row 0"):
        compute_scores({"tasks": ["A"], "random": [0], "visits": [{"task": 0}], "matrix": [[1, 2]]})
    with pytest.raises(ValueError, match="visit 0 has task 3"):
        compute_scores({"tasks": ["A"], "random": [0], "visits": [{"task": 3}], "matrix": []})


def test_main_prints_json_and_table(tmp_path, capsys) -> None:
    (tmp_path / "results.json").write_text(json.dumps(RESULTS))
    assert main([str(tmp_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["final"] == pytest.approx([0.6, 0.75, None])
    assert out["plasticity"][0] == {"2": pytest.approx(1.25)}
    assert out["forgetting"][1] == {"1": pytest.approx(0.5)}
    assert out["average_final"] == pytest.approx(0.675)
    assert main(["scores", str(tmp_path)]) == 0
    table = capsys.readouterr().out
    assert "average final: 0.675" in table and "1.250" in table


def test_main_refuses_a_bad_run_dir(tmp_path, capsys) -> None:
    assert main([str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "results.json" in err
    assert main([]) == 2
