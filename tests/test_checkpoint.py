"""runner/checkpoint.py on its own: RNG states round-trip, a checkpoint file round-trips (numpy
state included), and a missing checkpoint is refused in one line. Failed writes are in
tests/test_replay_checkpoint.py."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from runner.checkpoint import (CHECKPOINT, CheckpointWriteError, load_checkpoint, restore_rng_states, rng_states,
                               save_checkpoint)


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


def test_checkpoint_tensors_are_loaded_onto_the_given_device(tmp_path):
    save_checkpoint(tmp_path, {"w": torch.ones(3)})
    assert load_checkpoint(tmp_path)["w"].device == torch.device("cpu")
    assert load_checkpoint(tmp_path, device="meta")["w"].device == torch.device("meta")


def test_cuda_generators_are_saved_and_restored_when_there_is_a_gpu(monkeypatch):
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: ["gpu0-state", "gpu1-state"])
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: restored.append(states))
    states = rng_states()
    assert states["cuda"] == ["gpu0-state", "gpu1-state"]
    restore_rng_states(states)
    assert restored == [["gpu0-state", "gpu1-state"]]
    restore_rng_states({k: v for k, v in states.items() if k != "cuda"})  # a checkpoint written without a GPU
    assert len(restored) == 1
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a GPU checkpoint resumed on the CPU
    restore_rng_states(states)
    assert len(restored) == 1


@pytest.mark.parametrize("error,cause", [
    (OSError(28, "No space left on device"), "No space left on device"),  # the OS's reason
    (OSError("the disk went away"), "the disk went away"),  # an OSError without errno: its text
    (RuntimeError("PytorchStreamWriter failed writing file data/0\nmore detail"), "PytorchStreamWriter failed "
     "writing file data/0"),  # torch's report: its first line
])
def test_a_failed_write_names_the_file_and_the_cause_in_one_line(tmp_path, monkeypatch, error, cause):
    def failing_save(state, f):
        raise error

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(CheckpointWriteError) as err:
        save_checkpoint(tmp_path, {"step": 1})
    final = tmp_path / CHECKPOINT
    assert str(err.value) == f"could not write the checkpoint {final}: {cause}; no checkpoint was written"
    monkeypatch.undo()
    save_checkpoint(tmp_path, {"step": 1})
    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(CheckpointWriteError) as err:
        save_checkpoint(tmp_path, {"step": 2})
    assert str(err.value) == f"could not write the checkpoint {final}: {cause}; the previous checkpoint is unchanged"
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT] and load_checkpoint(tmp_path) == {"step": 1}
