"""runner/checkpoint.py on its own: RNG states round-trip, a checkpoint file round-trips (numpy
state included), and a missing checkpoint is refused in one line. Failed writes are in
tests/test_replay_checkpoint.py."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from runner.checkpoint import CHECKPOINT, load_checkpoint, restore_rng_states, rng_states, save_checkpoint


def draws() -> tuple:
    return random.random(), float(np.random.rand()), float(torch.rand(()))


def test_restored_rng_states_repeat_every_stream():
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    states = rng_states()
    assert set(states) == ({"python", "numpy", "torch", "cuda"} if torch.cuda.is_available()
                           else {"python", "numpy", "torch"})
    first = draws()
    draws()  # move every stream on
    restore_rng_states(states)
    assert draws() == first
    # each stream is restored from its own entry (not re-seeded, not shared)
    random.seed(7)
    restore_rng_states({**states, "python": random.getstate()})
    assert draws()[0] == random.Random(7).random()


def test_checkpoint_round_trips_through_the_file(tmp_path):
    state = {"step": 5, "weights": torch.arange(4.0), "rng": rng_states()}
    path = save_checkpoint(tmp_path, state)
    assert path == tmp_path / CHECKPOINT and path.is_file()
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT]  # the temporary file is renamed, none left
    loaded = load_checkpoint(tmp_path)
    assert loaded["step"] == 5 and torch.equal(loaded["weights"], state["weights"])
    # numpy's RNG state (arrays, tuples) loads too: the checkpoint is not restricted to weights
    assert np.array_equal(loaded["rng"]["numpy"][1], state["rng"]["numpy"][1])
    assert loaded["rng"]["python"] == state["rng"]["python"]
    save_checkpoint(tmp_path, {"step": 6})  # replaces the previous one
    assert load_checkpoint(str(tmp_path)) == {"step": 6}


def test_resume_from_a_directory_without_a_checkpoint_says_so(tmp_path):
    with pytest.raises(ValueError) as err:
        load_checkpoint(tmp_path)
    assert str(err.value) == f"--resume {tmp_path}: no {CHECKPOINT} there (is it a run directory?)"
    (tmp_path / CHECKPOINT).mkdir()  # a directory of that name is not a checkpoint either
    with pytest.raises(ValueError, match="no checkpoint.pt there"):
        load_checkpoint(tmp_path)
