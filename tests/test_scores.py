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


# One task, one visit, first gap 10: a training curve's AUC is its time-average / 10.
ONE_VISIT = {"tasks": ["A"], "random": [0.0], "visits": [{"task": 0}], "matrix": [[10.0]]}

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
    assert capsys.readouterr().err == f"error: run directory {str(tmp_path / 'nope')!r} does not exist\n"
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "results.json" in err
    assert main([]) == 2


def test_missing_and_non_numeric_returns_count_as_not_measured() -> None:
    # null, NaN, infinity, a bool or a string in the matrix or the random returns is "not measured"
    results = {"tasks": ["A", "B"], "random": [0.0, True],
               "visits": [{"task": 0}, {"task": 1}, {"task": 0}],
               "matrix": [[4.0, 1.0], [float("nan"), 2.0], ["8", 3.0]]}
    s = compute_scores(results)
    assert s["final"] == [None, None]  # A's last row is a string; B has no random return
    assert s["forgetting"][0] == {1: None}  # the row before A's return is NaN
    assert s["average_final"] is None
    results["matrix"][2][0] = float("inf")
    assert compute_scores(results)["plasticity"][0] == {2: None}
    results["matrix"][2][0] = 6
    s = compute_scores(results)
    assert s["plasticity"][0] == {2: 1.5} and s["final"][0] == 1.5  # ints are returns too


def test_a_training_curve_is_averaged_over_env_steps_in_step_order() -> None:
    # out of order: sorted first; 100 steps at a mean of 5, then 300 at a mean of 15 -> 5000 / 400
    curve = [[400, 20.0], [0, 0.0], [100, 10.0]]
    assert compute_scores({**ONE_VISIT, "train_curve": [curve]})["auc"] == [pytest.approx(5000 / 400 / 10)]
    # every episode at one step: the plain mean
    assert compute_scores({**ONE_VISIT, "train_curve": [[[7, 2.0], [7, 4.0]]]})["auc"] == [pytest.approx(0.3)]
    assert compute_scores({**ONE_VISIT, "train_curve": [[]]})["auc"] == [None]
    with pytest.raises(ValueError, match=r"^train_curve must be a list of \[step, return\] pairs, got \[\[1, 'x'\]\]\.\.\.$"):
        compute_scores({**ONE_VISIT, "train_curve": [[[1, "x"]]]})


@pytest.mark.parametrize("results, message", [
    ([], "results must be a JSON object with tasks, random, visits and matrix"),
    ({"tasks": ["A"], "random": [0], "visits": [{"task": 0}]}, "results has no list 'matrix' (needs tasks, random, visits, matrix)"),
    ({"tasks": ["A"], "random": [0, 1], "visits": [], "matrix": []}, "results has 2 random returns for 1 tasks"),
    ({"tasks": ["A", "B"], "random": [0, 1], "visits": [{"task": True}], "matrix": []},
     "visit 0 has task True; expected an index in 0..1"),
    ({"tasks": ["A"], "random": [0], "visits": [{"task": 0}, 0], "matrix": []}, "visit 1 has task None; expected an index in 0..0"),
    ({"tasks": ["A"], "random": [0], "visits": [{"task": 0}], "matrix": [[1], [2]]}, "matrix has 2 rows but only 1 visits"),
    ({"tasks": ["A"], "random": [0], "visits": [{"task": 0}], "matrix": [3]}, "matrix row 0 must be a list of 1 returns"),
])
def test_each_malformed_results_file_is_refused_in_its_own_words(results, message) -> None:
    with pytest.raises(ValueError) as info:
        compute_scores(results)
    assert str(info.value) == message


def test_main_refuses_bad_arguments_and_a_broken_file_in_one_line(tmp_path, capsys) -> None:
    for argv in ([], ["a", "b"], ["--verbose"], ["scores"]):
        assert main(argv) == 2
        assert capsys.readouterr().err == "error: usage: python train.py scores RUN_DIR [--json]\n"
    (tmp_path / "results.json").write_text("{not json")
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path / 'results.json'} is not valid JSON (") and err.count("\n") == 1
    (tmp_path / "results.json").write_text(json.dumps({"tasks": []}))
    assert main([str(tmp_path)]) == 2
    assert capsys.readouterr().err == "error: results has no list 'random' (needs tasks, random, visits, matrix)\n"


def test_the_table_has_a_column_per_revisit_and_a_row_per_task() -> None:
    from runner.scores import format_scores

    assert format_scores(compute_scores(RESULTS), RESULTS).splitlines() == [
        "task     random    final    plast k=2   forget k=1",
        "A          10.0    0.600        1.250        0.750",
        "B        -100.0    0.750        0.750        0.500",
        "C           5.0        -            -            -",
        "average final: 0.675",
        "normalised training AUC per visit: 0:A=0.583  1:B=0.000  2:C=-  3:A=0.750  4:B=-",
    ]
    # a third visit of A adds plasticity k=3 and forgetting k=2 columns; a null random return prints "-"
    longer = {**RESULTS, "random": [10.0, None, 5.0], "visits": [*RESULTS["visits"], {"task": 0}],
              "matrix": [*RESULTS["matrix"], [30.0, -70.0, 6.0]]}
    lines = format_scores(compute_scores(longer), longer).splitlines()
    assert lines[0] == "task     random    final    plast k=2    plast k=3   forget k=1   forget k=2"
    assert lines[1] == "A          10.0    0.500        1.250        0.500        0.750        0.520"  # (60 - 34) / 50
    assert lines[2] == "B             -        -            -            -            -            -"


def test_small_denominators_still_give_scores_and_a_task_not_yet_evaluated_gives_none() -> None:
    # A's first gap is 0.5 (any positive gap is a scale); B's first visit has no row yet
    results = {"tasks": ["A", "B"], "random": [0.0, 0.0], "visits": [{"task": 0}, {"task": 1}],
               "matrix": [[0.5, 9.0]], "train_curve": [[[0, 0.25]], [[0, 4.0]]]}
    s = compute_scores(results)
    assert s["final"] == [1.0, None] and s["plasticity"] == [{}, {}] and s["forgetting"] == [{}, {}]
    assert s["auc"] == [0.5, None]


def test_the_curve_average_weights_each_stretch_by_its_steps_even_with_shared_steps() -> None:
    # two episodes at step 0, then one at 100: 100 * (10 + 20) / 2 over 100 steps = 15
    assert compute_scores({**ONE_VISIT, "train_curve": [[[0, 0.0], [0, 10.0], [100, 20.0]]]})["auc"] == [1.5]
    # two at step 100: 100 * (0 + 10) / 2 over 100 steps = 5
    assert compute_scores({**ONE_VISIT, "train_curve": [[[0, 0.0], [100, 10.0], [100, 20.0]]]})["auc"] == [0.5]
    with pytest.raises(ValueError, match=r"got \[\[1, 2\], \[3, 'x'\]\]\.\.\.$"):  # the first two pairs
        compute_scores({**ONE_VISIT, "train_curve": [[[1, 2], [3, "x"], [5, 6]]]})


def test_a_visit_of_a_task_past_the_last_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^visit 1 has task 2; expected an index in 0\.\.1$"):
        compute_scores({"tasks": ["A", "B"], "random": [0, 0], "visits": [{"task": 1}, {"task": 2}], "matrix": []})


def test_a_run_without_revisits_has_no_plasticity_or_forgetting_columns() -> None:
    from runner.scores import format_scores

    results = {"tasks": ["A", "B"], "random": [0.0, 1.0], "visits": [{"task": 0}, {"task": 1}],
               "matrix": [[2.0, 1.0], [1.0, 3.0]]}
    assert format_scores(compute_scores(results), results).splitlines()[:3] == [
        "task     random    final", "A           0.0    0.500", "B           1.0    1.000"]


def test_a_results_file_before_any_evaluation_scores_nothing() -> None:
    s = compute_scores({"tasks": ["A", "B"], "random": [0.0, 1.0], "visits": [{"task": 0}, {"task": 1}],
                        "matrix": []})
    assert s["final"] == [None, None] and s["average_final"] is None and s["auc"] == [None, None]
