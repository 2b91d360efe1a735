"""The replay through a real checkpoint file: a resumed buffer samples what an uninterrupted
one samples, the file grows with the data (not the capacity), and a failed write keeps the
previous checkpoint."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import torch
from test_replay_reference import FakeStackedVectorEnv

from replay import Batch, make_replay
from runner.checkpoint import CHECKPOINT, CheckpointWriteError, load_checkpoint, save_checkpoint


def fake_steps(num_envs: int, steps: int, seed: int) -> list[tuple]:
    """A recorded fake vector-env stream: (obs, actions, rewards, next_obs, terminated, truncated, valid)."""
    env = FakeStackedVectorEnv(num_envs=num_envs, stack=4, max_len=9, seed=seed)
    obs, prev_done, out = torch.as_tensor(env.obs.copy()), torch.zeros(num_envs, dtype=torch.bool), []
    for t in range(steps):
        next_obs, rewards, terminated, truncated = (torch.as_tensor(x) for x in env.step())
        out.append((obs, torch.arange(num_envs) + t * num_envs, rewards, next_obs, terminated, truncated, ~prev_done))
        prev_done = (terminated | truncated) & ~prev_done
        obs = next_obs
    return out


def make(kind: str, capacity: int = 2 * 200):
    return make_replay(kind, capacity, 2, (4, 3), torch.float32, 4, n_step=3, gamma=0.9, seed=7)


def feed(buf, steps) -> None:
    for t, step in enumerate(steps):
        buf.add(*step, task=t // 70)


def assert_same_batches(a, b, k: int, kind: str) -> None:
    for i in range(k):
        x, y = a.sample(32), b.sample(32)
        for name in Batch.__dataclass_fields__:
            assert torch.equal(getattr(x, name), getattr(y, name)), (i, name)
        td = x.rewards.abs() + i  # the same priority updates on both sides
        a.update_priorities(x.indices, td)
        b.update_priorities(y.indices, td)
    assert torch.equal(a.sampler.generator.get_state(), b.sampler.generator.get_state())
    if kind == "prioritized":
        assert torch.equal(a.sampler.tree.tree, b.sampler.tree.tree)
        assert a.sampler.sample_calls == b.sampler.sample_calls


@pytest.mark.parametrize("steps_before", [150, 400], ids=["ring-not-full", "ring-wrapped"])
@pytest.mark.parametrize("kind", ["uniform", "prioritized"])
def test_resumed_buffer_samples_the_same_batches(tmp_path, kind, steps_before):
    steps = fake_steps(2, steps_before + 120, seed=3)
    live = make(kind)
    feed(live, steps[:steps_before])
    assert_same_batches(live, live, 0, kind)
    for _ in range(5):  # the sampler's generator and priorities are past their initial state
        batch = live.sample(16)
        live.update_priorities(batch.indices, torch.rand(16, generator=torch.Generator().manual_seed(1)))
    save_checkpoint(tmp_path, {"replay": live.state_dict()})
    resumed = make(kind)
    resumed.load_state_dict(load_checkpoint(tmp_path)["replay"])
    assert len(resumed) == len(live) > 0
    assert_same_batches(live, resumed, 6, kind)
    # both keep going the same way: more adds (growing, then wrapping the ring) and samples
    for step in steps[steps_before:]:
        live.add(*step, task=9)
        resumed.add(*step, task=9)
    assert_same_batches(live, resumed, 6, kind)


@pytest.mark.parametrize("kind", ["uniform", "prioritized"])
def test_checkpoint_grows_with_the_data_not_the_capacity(tmp_path, kind):
    frame = 84 * 84

    def checkpoint_bytes(adds: int) -> int:
        buf = make_replay(kind, 1_000_000, 1, (4, 84, 84), torch.uint8, 4, n_step=3)
        obs = torch.ones(1, 4, 84, 84, dtype=torch.uint8)
        no = torch.zeros(1, dtype=torch.bool)
        for t in range(adds):
            buf.add(obs, torch.tensor([t % 18]), torch.ones(1), obs, no, no, ~no, 0)
        buf.sample(8)
        run = tmp_path / f"{adds}"
        run.mkdir()
        return save_checkpoint(run, {"replay": buf.state_dict()}).stat().st_size

    small, large = checkpoint_bytes(500), checkpoint_bytes(1500)
    # 1M capacity would be 7 GB; 500 frames (+3 padding) are 3.5 MB
    assert 500 * frame < small < 500 * frame * 1.1 + 100_000
    assert (large - small) == pytest.approx(1000 * (frame + 8 + 4 + 3 + (8 if kind == "prioritized" else 0)),
                                            rel=0.01)


def good_checkpoint(run: Path) -> dict:
    state = {"step": 3, "weights": torch.arange(10.0)}
    save_checkpoint(run, state)
    return state


def assert_previous_kept(run: Path, state: dict, err: pytest.ExceptionInfo) -> None:
    message = str(err.value)
    assert "\n" not in message and str(run / CHECKPOINT) in message and "previous checkpoint is unchanged" in message
    loaded = load_checkpoint(run)
    assert loaded["step"] == state["step"] and torch.equal(loaded["weights"], state["weights"])
    assert sorted(p.name for p in run.iterdir()) == [CHECKPOINT]  # no temporary file left


def test_failed_write_on_a_full_disk_keeps_the_previous_checkpoint(tmp_path):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    state = good_checkpoint(tmp_path)
    # the temporary file lands on /dev/full: every write fails with ENOSPC, as on a full disk
    (tmp_path / f".{CHECKPOINT}.tmp-{os.getpid()}").symlink_to("/dev/full")
    with pytest.raises(CheckpointWriteError) as err:
        save_checkpoint(tmp_path, {"step": 4, "weights": torch.zeros(100_000)})
    assert_previous_kept(tmp_path, state, err)


def _writable(directory: Path) -> bool:
    probe = directory / "probe"
    try:
        probe.touch()
    except OSError:
        return False
    probe.unlink()
    return True


def test_failed_write_in_a_read_only_directory_keeps_the_previous_checkpoint(tmp_path):
    state = good_checkpoint(tmp_path)
    tmp_path.chmod(0o555)
    immutable = False
    try:
        if _writable(tmp_path):  # root ignores the mode bits; the immutable attribute binds root too
            immutable = subprocess.run(["chattr", "+i", str(tmp_path)], capture_output=True).returncode == 0
            if not immutable or _writable(tmp_path):
                pytest.skip("cannot make a directory read-only for this user here")
        with pytest.raises(CheckpointWriteError) as err:
            save_checkpoint(tmp_path, {"step": 4, "weights": torch.zeros(3)})
        assert ("Permission denied" if not immutable else "Operation not permitted") in str(err.value)
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(tmp_path)], check=True)
        tmp_path.chmod(0o755)
    assert_previous_kept(tmp_path, state, err)


def test_failed_write_without_a_previous_checkpoint_says_so(tmp_path):
    (tmp_path / f".{CHECKPOINT}.tmp-{os.getpid()}").symlink_to("/dev/full")
    with pytest.raises(CheckpointWriteError, match="no checkpoint was written"):
        save_checkpoint(tmp_path, {"weights": torch.zeros(100_000)})
    assert list(tmp_path.iterdir()) == []
