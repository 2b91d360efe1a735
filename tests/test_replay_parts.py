"""replay/buffer.py's own contract: `make_replay`'s defaults and the settings it hands to the
storage and the sampler, every refused argument at its boundary, the batch-size and kind
checks, sizes in bytes, and a restored empty buffer refusing to sample."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from replay import FrameStorage, PrioritizedSampler, UniformSampler, make_replay
from replay.n_step import TERMINATED, TRUNCATED

ARGS = dict(kind="prioritized", capacity=100, num_envs=1, obs_shape=(2,), obs_dtype=torch.float32, frame_stack=1)


def one_step(buf, t: int, terminated: bool = False) -> None:
    no = torch.tensor([False])
    buf.add(torch.tensor([[t, 0.0]]), torch.tensor([t]), torch.tensor([1.0]), torch.tensor([[t + 1, 0.0]]),
            torch.tensor([terminated]), no, ~no, 0)


def test_defaults_reach_the_storage_and_the_sampler():
    buf = make_replay(**ARGS)
    st, sa = buf.storage, buf.sampler
    assert buf.kind == "prioritized" and isinstance(sa, PrioritizedSampler)
    assert (st.n_step, st.gamma, st.reward_clip, st.action_dtype, st.action_shape) == (1, 0.99, None, torch.long, ())
    assert buf.device == st.device == torch.device("cpu")
    assert (sa.alpha, sa.beta0, sa.beta_steps, sa.eps) == (0.6, 0.4, 1_000_000, 1e-6)
    assert sa.tree.size == st.num_starts + 1
    assert torch.equal(sa.generator.get_state(), torch.Generator().manual_seed(0).get_state())
    uni = make_replay(**{**ARGS, "kind": "uniform"})
    assert uni.kind == "uniform" and isinstance(uni.sampler, UniformSampler)
    assert torch.equal(uni.sampler.generator.get_state(), torch.Generator().manual_seed(0).get_state())


def test_settings_are_handed_on():
    buf = make_replay(**{**ARGS, "capacity": 60, "num_envs": 2}, action_shape=(3,), action_dtype=torch.float32,
                      n_step=3, gamma=0.5, reward_clip=2.0, seed=9, alpha=0.3, beta0=0.2, beta_steps=50, eps=0.01)
    st, sa = buf.storage, buf.sampler
    assert (st.num_envs, st.slots, st.n_step, st.gamma, st.reward_clip) == (2, 30, 3, 0.5, 2.0)
    assert st.actions.shape[1:] == (3,) and st.actions.dtype == torch.float32
    assert (sa.alpha, sa.beta0, sa.beta_steps, sa.eps) == (0.3, 0.2, 50, 0.01)
    assert torch.equal(sa.generator.get_state(), torch.Generator().manual_seed(9).get_state())
    uni = make_replay(**{**ARGS, "kind": "uniform"}, seed=9)
    assert torch.equal(uni.sampler.generator.get_state(), torch.Generator().manual_seed(9).get_state())


@pytest.mark.parametrize("kwargs,message", [
    (dict(gamma=-0.01), "gamma must be in [0, 1], got -0.01"),
    (dict(reward_clip=0.0), "reward_clip must be None or > 0, got 0.0"),
    (dict(alpha=-0.1), "alpha must be >= 0, got -0.1"),
    (dict(beta0=-0.1), "beta0 must be in [0, 1], got -0.1"),
    (dict(beta0=1.01), "beta0 must be in [0, 1], got 1.01"),
    (dict(beta_steps=0), "beta_steps must be >= 1, got 0"),
    (dict(eps=0.0), "eps must be > 0, got 0.0"),
    (dict(capacity=0), "capacity must be >= 1, got 0"),
])
def test_each_bad_argument_is_refused_naming_it(kwargs, message):
    with pytest.raises(ValueError) as err:
        make_replay(**{**ARGS, **kwargs})
    assert str(err.value) == message


def test_boundary_values_are_accepted_and_uniform_ignores_the_prioritized_ones():
    for kwargs in (dict(gamma=0.0), dict(gamma=1.0), dict(alpha=0.0), dict(beta0=0.0), dict(beta0=1.0),
                   dict(beta_steps=1), dict(n_step=1), dict(reward_clip=0.5), dict(eps=1e-12)):
        make_replay(**{**ARGS, **kwargs})
    make_replay(**{**ARGS, "kind": "uniform"}, alpha=-1, beta0=2, beta_steps=0, eps=0)


def test_sample_checks_the_batch_size_and_sizes_add_up():
    buf = make_replay(**ARGS)
    one_step(buf, 0)
    with pytest.raises(ValueError, match="^batch_size must be >= 1, got 0$"):
        buf.sample(0)
    batch = buf.sample(1)
    assert batch.indices.tolist() == [0] and batch.actions.tolist() == [0] and batch.weights.tolist() == [1.0]
    assert len(buf) == 1
    assert buf.nbytes() == buf.storage.nbytes() + buf.sampler.nbytes() > buf.storage.nbytes()
    uni = make_replay(**{**ARGS, "kind": "uniform"})
    assert uni.nbytes() == uni.storage.nbytes()


def test_state_of_another_kind_is_refused_and_a_restored_empty_buffer_refuses_to_sample():
    buf = make_replay(**ARGS)
    state = buf.state_dict()
    assert state["kind"] == "prioritized" and set(state) == {"kind", "storage", "sampler"}
    with pytest.raises(ValueError, match="^replay state is for kind='prioritized', this buffer is kind='uniform'$"):
        make_replay(**{**ARGS, "kind": "uniform"}).load_state_dict(state)
    used = make_replay(**ARGS)
    one_step(used, 0)
    used.sample(4)
    used.load_state_dict(state)  # back to empty
    with pytest.raises(RuntimeError, match="empty replay buffer"):
        used.sample(4)
    one_step(used, 5, terminated=True)
    assert used.sample(2).actions.tolist() == [5, 5]


def fake_storage(sampleable: set[int], written: int, latest: int) -> SimpleNamespace:
    return SimpleNamespace(device=torch.device("cpu"), num_starts=written, written_starts=lambda: torch.tensor(written),
                           is_sampleable=lambda s: torch.isin(s, torch.tensor(sorted(sampleable), dtype=torch.long)),
                           latest_start=lambda: torch.tensor(latest))


def test_uniform_defaults_and_the_fallback_when_every_candidate_misses():
    s = UniformSampler()
    assert (s.proposals, s.sync_free, s.nbytes()) == (32, False, 0)  # the host loop on the CPU
    assert torch.equal(s.generator.get_state(), torch.Generator().manual_seed(0).get_state())  # seed 0
    assert UniformSampler(sync_free=True).sync_free and not UniformSampler(sync_free=False).sync_free
    # sync-free: one proposal per row over 8 written starts of which only 5 is sampleable: rows
    # that miss take the latest start (3 here, to tell them apart); hits are 5
    sf = UniformSampler(seed=1, proposals=1, sync_free=True)
    starts, weights = sf.sample(fake_storage({5}, 8, 3), 64)
    assert set(starts.tolist()) == {3, 5} and weights.tolist() == [1.0] * 64
    # with enough proposals every row finds a sampleable start, the first one it drew
    sf = UniformSampler(seed=1, proposals=64, sync_free=True)
    assert set(sf.sample(fake_storage({5}, 8, 3), 64)[0].tolist()) == {5}
    # the host loop redraws until every row hits; it gives up (latest start) only when nothing is sampleable
    host = UniformSampler(seed=2)
    assert set(host.sample(fake_storage({1, 6}, 8, 3), 200)[0].tolist()) == {1, 6}
    assert host.sample(fake_storage(set(), 8, 3), 4)[0].tolist() == [3] * 4
    # candidates come from the written prefix only
    assert set(UniformSampler(seed=3).sample(fake_storage(set(range(100)), 4, 0), 400)[0].tolist()) == {0, 1, 2, 3}
    assert set(UniformSampler(seed=3, sync_free=True).sample(fake_storage(set(range(100)), 4, 0), 400)[0].tolist()) \
        == {0, 1, 2, 3}


def test_uniform_state_restores_the_draws():
    a, b = UniformSampler(seed=4), UniformSampler(seed=5)
    storage = fake_storage(set(range(50)), 50, 0)
    a.sample(storage, 3)
    b.load_state_dict(a.state_dict())
    assert set(a.state_dict()) == {"generator"}
    assert a.sample(storage, 16)[0].tolist() == b.sample(storage, 16)[0].tolist()


@pytest.mark.parametrize("kwargs,message", [
    (dict(num_envs=0), "num_envs must be >= 1, got 0"),
    (dict(frame_stack=0), "frame_stack must be >= 1, got 0"),
    (dict(n_step=0), "n_step must be >= 1, got 0"),
    (dict(frame_stack=4, obs_shape=(3, 5)), "frame_stack=4 needs obs_shape=(frame_stack, *frame_shape), got "
                                            "obs_shape=(3, 5)"),
    (dict(frame_stack=4, obs_shape=(4,)), "frame_stack=4 needs obs_shape=(frame_stack, *frame_shape), got "
                                          "obs_shape=(4,)"),
    (dict(capacity=8, num_envs=2, n_step=2), "capacity=8 is too small: with num_envs=2, frame_stack=1, n_step=2 "
                                              "it must be >= 10 (5 slots per env)"),
])
def test_storage_refuses_bad_layouts_naming_them(kwargs, message):
    args = dict(capacity=100, num_envs=1, obs_shape=(2,), obs_dtype=torch.float32, frame_stack=1)
    with pytest.raises(ValueError) as err:
        FrameStorage(**{**args, **kwargs})
    assert str(err.value) == message


def test_storage_layout_sizes_and_task_range():
    st = FrameStorage(13, 2, (2, 3), torch.float32, 2, n_step=2)  # 2F + n + 1 = 7 slots per env, the least
    assert (st.slots, st.num_starts, st.frame_shape, st.obs_shape) == (7, 14, (3,), (2, 3))
    st = FrameStorage(10, 2, (2,), torch.float32, 1, n_step=2)  # the smallest capacity: 5 slots per env
    assert (st.slots, st.num_starts, st.allocated_slots, st.scratch) == (5, 10, 5, 10)
    assert st.written_starts().item() == 2 and st.written_slots() == 0  # nothing written: one row per env
    rows = 5 * 2 + 1  # allocated slots x envs + the scratch row
    per_slot = rows * (2 * 4 + 8 + 4 + 1 + 1 + 1)  # frames (2 float32), actions (long), reward, flags, task, valid
    stream = 2 * 8 + 2 * 1 + 2 * 8 + 8  # next_slot, episode_open, episode_first, latest start
    constants = 2 * 8 + 1 * 8 + 1 * 8 + 2 * 8 + 2 * 8 + 2 * 1  # env ids, stack offsets/back, overwrite reach, window
    assert st.nbytes() == per_slot + stream + constants
    no = torch.zeros(2, dtype=torch.bool)
    step = (torch.zeros(2, 2), torch.zeros(2, dtype=torch.long), torch.zeros(2), torch.zeros(2, 2), no, no, ~no)
    st.add(*step, task=255)
    assert st.written_slots() == 2 and st.written_starts().item() == 4 and int(st.tasks[0]) == 255
    for bad in (256, -1):
        with pytest.raises(ValueError, match=rf"^task must be in \[0, 255\] \(stored as uint8\), got {bad}$"):
            st.add(*step, task=bad)
    for _ in range(10):
        st.add(*step, task=3)
    assert st.written_slots() == 5 and st.written_starts().item() == 10  # at most the ring


def test_storage_reserve_grows_to_at_most_the_capacity_and_keeps_the_data(monkeypatch):
    monkeypatch.setattr(FrameStorage, "initial_slots", 1)
    st = FrameStorage(200, 1, (2,), torch.float32, 1)  # margin 2F + n + 1 = 4: starts at 8 slots
    assert st.allocated_slots == 8 and st.frames.shape[0] == 9
    no = torch.zeros(1, dtype=torch.bool)
    st.add(torch.ones(1, 2), torch.tensor([7]), torch.tensor([0.5]), torch.full((1, 2), 2.0), no, no, ~no, 0)
    st.reserve(5)  # never shrinks
    assert st.allocated_slots == 8
    st.reserve(20)
    assert st.allocated_slots == 20 and st.frames.shape[0] == 21 and st.rewards.shape[0] == 21
    assert st.frames[:2].tolist() == [[1.0, 1.0], [2.0, 2.0]] and st.actions[0] == 7 and st.rewards[0] == 0.5
    assert st.start_valid[:2].tolist() == [True, False] and not st.start_valid[2:].any()
    st.reserve(10_000)
    assert st.allocated_slots == 200
    state = st.state_dict()
    other = FrameStorage(202, 1, (2,), torch.float32, 1)
    with pytest.raises(ValueError, match=r"^replay state is for \(num_envs, slots per env, frame shape\) = "
                                         r"\(1, 200, \(2,\)\), this buffer has \(1, 202, \(2,\)\)$"):
        other.load_state_dict(state)


@pytest.fixture(params=["host-add", "vectorised-add"])
def both_paths(request, monkeypatch):
    monkeypatch.setattr(FrameStorage, "host_path_default", request.param == "host-add")


def test_latest_start_is_the_newest_sampleable_row_from_row_zero_on(both_paths):
    st = FrameStorage(40, 2, (2,), torch.float32, 1, n_step=2)  # rows are slot * 2 + env
    assert int(st.latest_start()) == -1
    no, yes = torch.zeros(2, dtype=torch.bool), torch.ones(2, dtype=torch.bool)

    def add(valid, terminated=(False, False)):
        st.add(torch.zeros(2, 2), torch.zeros(2, dtype=torch.long), torch.zeros(2), torch.zeros(2, 2),
               torch.tensor(terminated), no, torch.tensor(valid), 0)

    add([True, False])
    assert int(st.latest_start()) == -1  # a 2-step window is not complete after one step
    add([True, False], terminated=(True, False))  # env 0's episode ends: its starts 0 and 1 (rows 0, 2)
    assert int(st.latest_start()) == 2 and st.start_valid[[0, 2]].tolist() == [True, True]
    st2 = FrameStorage(40, 2, (2,), torch.float32, 1, n_step=1)
    st2.add(torch.zeros(2, 2), torch.zeros(2, dtype=torch.long), torch.zeros(2), torch.zeros(2, 2), no, no,
            torch.tensor([True, False]), 0)
    assert int(st2.latest_start()) == 0  # row 0 counts as a start
    st2.add(torch.zeros(2, 2), torch.zeros(2, dtype=torch.long), torch.zeros(2), torch.zeros(2, 2), no, no, yes, 0)
    assert int(st2.latest_start()) == 2  # env 0 at slot 1 (row 2); env 1 starts at slot 0 (row 1)


def test_vector_actions_other_dtypes_and_two_stacked_frames_are_stored_exactly(both_paths):
    st = FrameStorage(40, 2, (2, 3), torch.uint8, 2, action_shape=(2,), action_dtype=torch.float32, n_step=1)
    no = torch.zeros(2, dtype=torch.bool)
    obs = torch.arange(12).reshape(2, 2, 3)  # int64 observations into uint8 frames
    nxt = obs + 100
    st.add(obs, torch.tensor([[0.5, -1.0], [2.0, 3.5]]), torch.ones(2), nxt, no, no, ~no, 0)
    starts = st.sampleable().nonzero().squeeze(1)
    got = st.gather(starts)
    assert got.obs.dtype == torch.uint8 and got.obs.shape == (2, 2, 3)
    assert got.obs.tolist() == obs.tolist() and got.actions.tolist() == [[0.5, -1.0], [2.0, 3.5]]
    assert got.next_obs.tolist() == torch.stack([obs[:, 1], nxt[:, 1]], dim=1).tolist()  # the stack moved by one


def test_buffer_defaults_and_the_empty_buffer_message():
    from replay import ReplayBuffer

    st = FrameStorage(40, 1, (2,), torch.float32, 1, n_step=2)
    buf = ReplayBuffer(st, UniformSampler())
    assert buf.kind == "custom"
    no = torch.tensor([False])
    buf.add(torch.zeros(1, 2), torch.tensor([4]), torch.ones(1), torch.ones(1, 2), no, no, ~no)  # task 0 by default
    with pytest.raises(RuntimeError) as err:
        buf.sample(2)
    assert str(err.value) == ("cannot sample from an empty replay buffer: no transition is complete yet (n_step=2); "
                              "add more steps first")
    buf.add(torch.ones(1, 2), torch.tensor([5]), torch.ones(1), torch.ones(1, 2), ~no, no, ~no)
    assert buf.sample(8).tasks.tolist() == [0] * 8
    with pytest.raises(ValueError) as err:  # one slot is too few for any layout: the storage says why
        make_replay(**{**ARGS, "capacity": 1})
    assert str(err.value).startswith("capacity=1 is too small")


def test_n_step_window_keeps_the_rewards_precision():
    from replay.n_step import n_step_window

    rewards = torch.tensor([[1.0, 1.0, 1.0], [0.3, 0.7, 1.1]], dtype=torch.float64)
    no = torch.zeros(2, 3, dtype=torch.bool)
    truncated = torch.tensor([[False, True, False], [False, False, False]])
    reward, discount, steps = n_step_window(rewards, no, truncated, 0.99)
    assert reward.dtype == discount.dtype == torch.float64 and steps.tolist() == [2, 3]
    assert reward.tolist() == [1.0 + 0.99, 0.3 + 0.99 * 0.7 + 0.99 ** 2 * 1.1]  # float64 exactly
    assert discount.tolist() == pytest.approx([0.99 ** 2, 0.99 ** 3], rel=1e-15)


def test_a_step_both_terminated_and_truncated_keeps_both_flags(both_paths):
    st = FrameStorage(40, 2, (2,), torch.float32, 1, n_step=1)
    yes = torch.ones(2, dtype=torch.bool)
    st.add(torch.zeros(2, 2), torch.zeros(2, dtype=torch.long), torch.zeros(2), torch.zeros(2, 2),
           torch.tensor([True, False]), torch.tensor([True, True]), yes, 0)
    assert st.flags[:2].tolist() == [TERMINATED | TRUNCATED, TRUNCATED]


def test_host_path_takes_numpy_and_python_inputs_like_tensors():
    """A step given as NumPy arrays and Python lists (what a Gymnasium vector env returns) is
    stored as the same step given as tensors."""
    def filled(convert):
        st = FrameStorage(40, 2, (2,), torch.float32, 1, n_step=2, reward_clip=1.0)
        st.host_path = True
        for t in range(3):
            obs = torch.full((2, 2), float(t))
            st.add(*(convert(x) for x in (obs, torch.tensor([1, 0]), torch.tensor([0.5, -3.0], dtype=torch.float64),
                                          obs + 1, torch.tensor([False, t == 1]), torch.tensor([False, False]),
                                          torch.tensor([True, True]))), 0)
        return st
    ref = filled(lambda x: x)
    for convert in (lambda x: x.numpy(), lambda x: x.tolist()):
        st = filled(convert)
        assert torch.equal(st.next_slot, ref.next_slot)
        # the rows written, slot * 2 + env (the rest is uninitialised memory)
        rows = [slot * 2 + e for e in range(2) for slot in range(int(ref.next_slot[e]))]
        for name in ("frames", "actions", "rewards", "flags", "start_valid"):
            assert torch.equal(getattr(st, name)[rows], getattr(ref, name)[rows]), name
    assert ref.rewards[:2].tolist() == [0.5, -1.0]  # float64 rewards clipped and stored as float32


def test_host_path_reuses_its_views_until_the_tensors_are_replaced():
    st = FrameStorage(40, 1, (2,), torch.float32, 1, n_step=1)
    st.host_path = True
    no, yes = torch.zeros(1, dtype=torch.bool), torch.ones(1, dtype=torch.bool)

    def add():
        st.add(torch.zeros(1, 2), torch.zeros(1, dtype=torch.long), torch.zeros(1), torch.zeros(1, 2), no, no, yes, 0)
    add()
    views = st.host_views
    add()
    assert st.host_views is views
    st.frames = st.frames.clone()  # what growing the storage does: new tensors
    add()
    assert st.host_views is not views and st.host_views[0][0] is st.frames
    assert st.frames[:4, 0].tolist() == [0.0, 0.0, 0.0, 0.0] and st.next_slot.tolist() == [4]


def test_a_samplers_generator_is_made_on_the_storages_device_and_seeded(monkeypatch):
    """On a GPU the generator must live on the GPU (a CPU generator cannot draw there): faked
    here, since the machine has none; on the CPU, the seed fixes the draws."""
    from replay import sampler

    made = []

    class FakeGenerator:
        def __init__(self, device=None):
            made.append(torch.device(device) if device is not None else None)

        def manual_seed(self, seed):
            made.append(seed)
            return self

    real = torch.Generator
    assert torch.equal(torch.rand(3, generator=sampler.seeded_generator(torch.device("cpu"), 7)),
                       torch.rand(3, generator=real().manual_seed(7)))
    monkeypatch.setattr(torch, "Generator", FakeGenerator)
    sampler.seeded_generator(torch.device("cuda", 1), 5)
    assert made == [torch.device("cuda", 1), 5]
