"""The device-native MinAtar path: vector env conventions, schedule, task ids, network, preset."""

import numpy as np
import pytest
import torch

from agents.networks import MinAtarCNN, default_encoder, make_encoder
from envs.minatar.breakout import Breakout
from envs.minatar.vector import MinAtarGymEnv, MinAtarVectorEnv
from envs.schedule import TaskSchedule
from envs.tasks import parse_task, parse_tasks


def test_task_ids_parse_case_insensitively_and_refuse_unknown_games_and_mixing():
    assert parse_task("minatar:space_invaders").id == "minatar:SpaceInvaders"
    assert parse_task("MinAtar:breakout").target == "Breakout"
    with pytest.raises(ValueError, match="unknown MinAtar game 'Pong'.*valid games: Asterix"):
        parse_task("minatar:Pong")
    with pytest.raises(ValueError, match="cannot mix MinAtar tasks"):
        parse_tasks(["minatar:Breakout", "gym:CartPole-v1"])


def test_a_terminal_env_stands_still_until_reset():
    game = Breakout(2, seed=0, sticky_action_prob=0.0)
    for _ in range(200):
        _, done = game.step(torch.tensor([0, 0]))
        if done.all():
            break
    assert done.all()
    before = {k: v.clone() for k, v in game.state_dict().items() if k != "random"}
    reward, done = game.step(torch.tensor([1, 3]))
    assert reward.tolist() == [0.0, 0.0] and done.all()
    after = game.state_dict()
    for name in before:
        if name != "last_action":
            assert torch.equal(before[name], after[name]), name


def test_next_step_auto_reset_and_episode_reports():
    env = MinAtarVectorEnv("Breakout", 3, channels=10, seed=0)
    obs = env.reset(seed=4)
    assert obs.shape == (3, 10, 10, 10) and obs.dtype == torch.uint8
    assert obs[:, 4:].sum() == 0  # padded channels are zero
    length = torch.zeros(3, dtype=torch.long)
    ret = torch.zeros(3)
    prev_done = torch.zeros(3, dtype=torch.bool)
    seen = []
    for _ in range(300):
        out = env.step(torch.randint(0, 6, (3,)))
        # the step after an episode's end resets: not a transition, reward 0, no flags
        assert torch.equal(out.valid, ~prev_done)
        assert not out.rewards[prev_done].any() and not out.terminated[prev_done].any()
        fresh = out.obs[prev_done]
        assert (fresh[:, 0, 9, 4] == 1).all() and (fresh[:, 1, 3].sum(-1) == 1).all()  # paddle, ball row 3
        ret += out.rewards
        length += out.valid.long()
        done = out.terminated | out.truncated
        expected = [(i, float(ret[i]), int(length[i])) for i in torch.nonzero(done).flatten().tolist()]
        assert out.episodes == expected  # reported each step on the CPU
        seen += out.episodes
        ret[done], length[done] = 0, 0
        prev_done = done
    assert len(seen) > 20


def test_on_a_cpu_the_game_resets_only_on_steps_where_an_env_resets(monkeypatch):
    env = MinAtarVectorEnv("Breakout", 3, seed=0)
    env.reset(seed=1)
    calls = []
    reset = env.game.reset
    monkeypatch.setattr(env.game, "reset", lambda mask=None: (calls.append(mask.clone()), reset(mask)))
    prev_done = torch.zeros(3, dtype=torch.bool)
    resets = 0
    for _ in range(300):
        out = env.step(torch.randint(0, 6, (3,)))
        if prev_done.any():
            assert torch.equal(calls.pop(), prev_done)  # exactly the envs that ended, once
            resets += 1
        assert not calls  # nothing else reset, and no empty reset on the other steps
        prev_done = out.terminated | out.truncated
    assert resets > 5


@pytest.mark.parametrize("cap", [None, 9])
def test_the_accelerator_bookkeeping_equals_the_cpu_shortcuts_step_for_step(cap):
    # the full bookkeeping every step (as on an accelerator, where reading would wait for the
    # device) against the CPU's shortcuts; Seaquest's reset draws nothing, so the empty resets
    # the accelerator's path runs leave both on one stream of draws
    envs = [MinAtarVectorEnv("Seaquest", 8, seed=0, max_episode_steps=cap, report_every=1) for _ in range(2)]
    envs[1].reads_are_free = False
    for env in envs:
        env.reset(seed=3)
    gen = torch.Generator().manual_seed(0)
    ended = 0
    for _ in range(400):
        actions = torch.randint(0, 6, (8,), generator=gen)
        a, b = (env.step(actions) for env in envs)
        for field in ("obs", "rewards", "terminated", "truncated", "valid"):
            assert torch.equal(getattr(a, field), getattr(b, field)), field
        assert a.episodes == b.episodes
        # reporting every step, both count exactly the step's transitions
        assert a.transitions == b.transitions == int(a.valid.sum())
        ended += len(a.episodes)
    assert ended > 20


def test_transitions_are_counted_on_the_host_exactly_at_every_report():
    # where reads are free a step counts its valid transitions; elsewhere it counts every env
    # and takes the auto-reset steps back at the next report (every 16 steps here; Breakout's
    # reset draws, so the two envs' streams part: each is checked against its own `valid`)
    envs = [MinAtarVectorEnv("Breakout", 8, seed=0, report_every=16) for _ in range(2)]
    envs[1].reads_are_free = False
    for env in envs:
        env.reset(seed=1)
    gen = torch.Generator().manual_seed(0)
    exact = counted = resets = since_report = 0
    for t in range(160):
        actions = torch.randint(0, 6, (8,), generator=gen)
        a, b = (env.step(actions) for env in envs)
        assert isinstance(a.transitions, int) and isinstance(b.transitions, int)
        assert a.transitions == int(a.valid.sum())
        exact, counted = exact + int(b.valid.sum()), counted + b.transitions
        since_report += int((~b.valid).sum())
        if (t + 1) % 16 == 0:
            assert counted == exact
            resets, since_report = resets + since_report, 0
        else:
            assert b.transitions == 8 and counted - exact == since_report
    assert resets > 20  # Breakout's random episodes are short: many steps to take back
    # a reset forgets the auto-reset steps counted before it
    env = envs[1]
    env.report_every = 10_000
    while bool(env.step(torch.zeros(8, dtype=torch.long)).valid.all()):
        pass
    env.reset(seed=2)
    env.step(torch.zeros(8, dtype=torch.long))  # no env resets on the first step after a reset
    assert env.take_report().resets == 0


def test_reports_in_batches_when_asked_and_time_cap_truncates():
    env = MinAtarVectorEnv("Freeway", 2, report_every=50, max_episode_steps=30, seed=0)
    env.reset(seed=0)
    reports = []
    for t in range(100):
        out = env.step(torch.full((2,), 2))
        if out.truncated.any():
            assert not out.terminated.any()
        reports.append(len(out.episodes))
    # episodes of 30 steps + 1 reset step: 3 per env ended in 100 steps, handed over at steps 50 and 100
    assert [i for i, n in enumerate(reports) if n] == [49, 99]
    assert sum(reports) == 6


def test_gym_env_layout_matches_the_schedule():
    env = MinAtarGymEnv("Asterix", channels=10)
    obs, _ = env.reset(seed=3)
    assert obs.shape == (10, 10, 10) and obs.dtype == np.uint8 and obs[0].sum() == 1
    obs2, reward, terminated, truncated, _ = env.step(1)
    assert isinstance(reward, float) and not truncated


def test_schedule_cycles_minatar_on_the_device_with_padded_channels():
    sched = TaskSchedule(["minatar:Breakout", "minatar:Freeway"], steps_per_visit=64, cycles=2,
                         num_envs=4, seed=0)
    assert sched.obs_shape == (10, 10, 10) and sched.obs_dtype == torch.uint8 and sched.num_actions == 6
    assert TaskSchedule(["minatar:Freeway"], 8, 1).obs_shape == (7, 10, 10)  # a single game: its own channels
    obs = sched.reset()
    switches = []
    while not sched.finished:
        res = sched.step(torch.randint(0, 6, (4,)))
        assert res.next_obs.dtype == torch.uint8 and res.next_obs.shape == (4, 10, 10, 10)
        assert not res.next_obs[:, 7:].any()  # padding
        if res.switch is not None:
            switches.append((res.switch.previous, res.switch.current))
            assert res.truncated.all()
            # the next game's first observation: Freeway's chicken in row 9, column 4
            if res.switch.current == 1:
                assert (res.obs[:, 0, 9, 4] == 1).all() and res.obs[:, 0].sum() == 4
    assert switches == [(0, 1), (1, 0), (0, 1)]


def test_a_reward_shift_is_in_the_device_tasks_rewards_and_episode_returns():
    # reward-flip: r' = -r on the task's 2nd visit; an episode's return is the sum of the rewards it was given
    sched = TaskSchedule(["minatar:Breakout@reward-flip"], steps_per_visit=600, cycles=2, num_envs=3, seed=0)
    sched.reset()
    running = torch.zeros(3)
    returns = {0: [], 1: []}
    gen = torch.Generator().manual_seed(0)
    while not sched.finished:
        visit = sched.visit
        res = sched.step(torch.randint(0, 6, (3,), generator=gen))
        running += res.rewards
        for ep in res.episodes:
            assert ep.ret == pytest.approx(float(running[ep.env]))
            returns[visit].append(ep.ret)
            running[ep.env] = 0.0
        if res.switch is not None:
            running.zero_()  # the visit's open episodes end unreported
    assert len(returns[0]) > 10 and len(returns[1]) > 10
    assert max(returns[0]) > 0 and max(returns[1]) <= 0 < -min(returns[1])


def test_schedule_refuses_malformed_actions_in_one_line():
    sched = TaskSchedule(["minatar:Breakout"], 8, 1, num_envs=2)
    sched.reset()
    with pytest.raises(ValueError, match=r"integer tensor of shape \(2,\), got torch.int64 \(3,\)"):
        sched.step(torch.zeros(3, dtype=torch.long))


def test_schedule_same_seed_same_stream():
    def run(seed):
        sched = TaskSchedule(["minatar:Asterix"], steps_per_visit=200, cycles=1, num_envs=4, seed=seed)
        gen = torch.Generator().manual_seed(0)
        obs = [sched.reset()]
        while not sched.finished:
            obs.append(sched.step(torch.randint(0, 6, (4,), generator=gen)).next_obs)
        return torch.stack(obs)

    a, b, c = run(1), run(1), run(2)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_minatar_network_shape_and_default():
    assert default_encoder((10, 10, 10)) == "minatar_cnn"
    assert default_encoder((4, 84, 84)) == "nature_cnn" and default_encoder((6,)) == "mlp"
    enc = make_encoder("minatar_cnn", (10, 10, 10))
    assert isinstance(enc, MinAtarCNN) and enc.out_dim == 128
    convs = [m for m in enc if isinstance(m, torch.nn.Conv2d)]
    linears = [m for m in enc if isinstance(m, torch.nn.Linear)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [(10, 16, (3, 3))]
    assert [(l.in_features, l.out_features) for l in linears] == [(16 * 8 * 8, 128)]
    x = torch.zeros(2, 10, 10, 10, dtype=torch.uint8)
    x[0, 0, 5, 5] = 1
    out = enc(x)
    assert out.shape == (2, 128)
    assert torch.allclose(enc(x.float()), out)  # 0/1 cells are not rescaled


def test_dqn_keeps_the_minatar_network_channels_first_and_the_atari_cnn_channels_last():
    from agents.dqn import DQN, DQNConfig

    masks = torch.ones(1, 6, dtype=torch.bool)
    minatar = DQN(DQNConfig(encoder="minatar_cnn"), (10, 10, 10), 6, masks)
    atari = DQN(DQNConfig(encoder="nature_cnn"), (4, 84, 84), 6, masks)
    conv = next(m for m in minatar.q.modules() if isinstance(m, torch.nn.Conv2d)).weight
    assert minatar.memory_format == torch.contiguous_format and conv.is_contiguous()
    conv = next(m for m in atari.q.modules() if isinstance(m, torch.nn.Conv2d)).weight
    assert atari.memory_format == torch.channels_last and not conv.is_contiguous()
    assert conv.is_contiguous(memory_format=torch.channels_last)


def test_minatar_cycle_preset_names_the_c_chain_order():
    from runner.presets import preset

    cfg = preset("minatar-cycle")
    assert cfg.env.task_ids() == ["minatar:SpaceInvaders", "minatar:Asterix", "minatar:Seaquest"]
    assert cfg.dqn.encoder == "minatar_cnn"


def test_jax_and_gymnax_stay_out_of_runtime_and_test_dependencies():
    import sys
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    runtime_and_test = project["dependencies"] + project["optional-dependencies"]["dev"]
    assert not [d for d in runtime_and_test if d.split(">")[0].split("=")[0].strip() in ("jax", "gymnax")]
    import agents.networks  # noqa: F401
    import envs.minatar.asterix  # noqa: F401
    import envs.minatar.breakout  # noqa: F401
    import envs.minatar.freeway  # noqa: F401
    import envs.minatar.reference  # noqa: F401
    import envs.minatar.vector  # noqa: F401

    assert not [m for m in sys.modules if m.split(".")[0] in ("jax", "gymnax")]


def test_eval_vector_env_is_a_separate_batched_instance():
    sched = TaskSchedule(["minatar:Breakout", "minatar:Asterix"], steps_per_visit=32, cycles=1, num_envs=2, seed=0)
    sched.reset()
    train_state = sched._envs[0].game.state_dict()
    ev = sched.make_eval_envs(1, 5).env
    obs = ev.reset(seed=9)
    assert obs.shape == (5, 10, 10, 10) and ev.game.name == "Asterix"
    for _ in range(20):
        ev.step(torch.randint(0, 6, (5,)))
    after = sched._envs[0].game.state_dict()
    assert all(torch.equal(train_state[k], after[k]) for k in train_state if k != "random")
    with pytest.raises(ValueError, match="for MinAtar tasks"):
        TaskSchedule(["gym:CartPole-v1"], 8, 1)._task_envs.make_vector_env(0, 2)
