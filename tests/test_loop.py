"""The training loop in-process against tiny fakes (as Acme tests its loops): the exact sequence
of acts, stores, updates, task switches, evaluations and checkpoints."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

import train
from envs.schedule import Episode, StepResult, TaskSwitch
from host_reads import HostReads
from runner.build import RunParts
from runner.config import EnvConfig, EvalConfig, TrainConfig
from runner.logger import RunLogger

N_ENVS, VSTEPS, TASKS, CYCLES = 2, 3, ("A", "B"), 2  # 3 vector steps of 2 envs per visit, 4 visits
INVALID_AT = {2, 6, 10}  # vector steps whose env 0 is an auto-reset step (not a transition)
EPISODE_ENDS = {1: 1.5, 5: 5.5, 9: 9.5}  # vector step -> return of env 0's episode ending there


class FakeSchedule:
    def __init__(self):
        self.tasks = [SimpleNamespace(name=n, id=f"fake:{n}") for n in TASKS]
        self.num_visits = len(TASKS) * CYCLES
        self.visit, self.steps, self.vstep = 0, 0, 0
        self.total_steps = self.num_visits * VSTEPS * N_ENVS
        self.closed = False
        self.deferred, self.resets = False, 0

    @property
    def finished(self):
        return self.visit >= self.num_visits

    @property
    def task_index(self):
        return self.visit % len(TASKS)

    def reset(self):
        return torch.zeros(N_ENVS, 3)

    def step(self, actions):
        i = self.steps // N_ENVS  # vector step index
        task = self.task_index
        valid = torch.tensor([i not in INVALID_AT, True])
        episodes = [Episode(task, 0, EPISODE_ENDS[i], 2)] if i in EPISODE_ENDS else []
        self.steps += N_ENVS
        self.vstep += 1
        switch = None
        if self.vstep == VSTEPS:
            self.visit, self.vstep = self.visit + 1, 0
            if not self.finished:
                switch = TaskSwitch(task, self.task_index, self.visit)
        obs = torch.full((N_ENVS, 3), float(i + 1))
        zeros = torch.zeros(N_ENVS)
        transitions = N_ENVS - (i in INVALID_AT)
        if self.deferred:  # as a device-native task off the CPU: every env counts now ...
            self.resets += N_ENVS - transitions
            transitions = N_ENVS
            if self.vstep == 0:  # ... and the auto-reset steps are taken back at a visit's end
                transitions -= self.resets
                self.resets = 0
        return StepResult(next_obs=obs, obs=obs, rewards=zeros, terminated=zeros.bool(), truncated=zeros.bool(),
                          valid=valid, task=task, episodes=episodes, switch=switch, transitions=transitions)

    def state_dict(self):
        return {"visit": self.visit, "steps": self.steps}

    def close(self):
        self.closed = True


class FakeAgent:
    batch_size, learning_starts, updates_per_env_step = 1, 4, 0.5

    def __init__(self):
        self.acts, self.updates_at, self.switches = [], [], []
        self.updates = 0
        self.learnables = {}
        self.step = 0

    def act(self, obs, task, step):
        self.acts.append((task, step))
        self.step = step
        return torch.zeros(obs.shape[0], dtype=torch.long)

    def update(self, batch):
        self.updates += 1
        self.updates_at.append(self.step)
        return {"loss": torch.tensor(1.0), "td_abs": torch.zeros(1)}

    def on_task_switch(self, task, step):
        self.switches.append((task, step))

    def log_scalars(self, step):
        return {"charts/epsilon": 0.5}

    def intervention_metrics(self):
        return {}

    def state_dict(self):
        return {"updates": self.updates}


class FakeReplay:
    def __init__(self):
        self.stored = []

    def add(self, obs, actions, rewards, next_obs, terminated, truncated, valid, task):
        self.stored.append((task, valid.tolist()))

    def __len__(self):
        return sum(sum(v) for _, v in self.stored)

    def sample(self, n):
        return SimpleNamespace(indices=torch.zeros(n, dtype=torch.long))

    def state_dict(self):
        return {"stored": len(self.stored)}


class FakeEvaluator:
    enabled = True

    def __init__(self):
        self.calls = 0

    def evaluate_all(self, agent):
        self.calls += 1
        return [10.0 * self.calls, -1.0 * self.calls]

    def random_baselines(self):
        return [0.0, -5.0]

    def state_dict(self):
        return {"calls": self.calls}

    def close(self):
        pass


class FakeMonitoring:
    def __init__(self):
        self.steps = []

    def after_update(self, replay, writer, step):
        self.steps.append(step)

    def state_dict(self):
        return {}


def run(tmp_path, schedule=None, **overrides):
    cfg = TrainConfig(env=EnvConfig(), eval=EvalConfig(episodes=1), log_every=4, checkpoint_every=10,
                      progress=False, **overrides)
    parts = RunParts(schedule or FakeSchedule(), FakeAgent(), FakeReplay(), FakeEvaluator(), FakeMonitoring())
    saved = []
    log = RunLogger(str(tmp_path), list(TASKS), parts.schedule.total_steps, progress=False)
    try:
        results = train.train(cfg, parts, log, tmp_path, save=lambda state: saved.append(state))
    finally:
        log.close()
    return parts, results, saved


def test_loop_acts_stores_and_updates_exactly(tmp_path):
    parts, results, saved = run(tmp_path)
    agent = parts.agent
    # one act and one store per vector step, with the task of the visit and the step before it
    assert agent.acts == [(t, 2 * i) for i, t in enumerate([0, 0, 0, 1, 1, 1, 0, 0, 0, 1, 1, 1])]
    assert [task for task, _ in parts.replay.stored] == [0, 0, 0, 1, 1, 1, 0, 0, 0, 1, 1, 1]
    # credit: 0.5 update per *valid* transition once step >= learning_starts (4); auto-reset
    # steps (2, 6, 10) bring one transition instead of two
    assert agent.updates_at == [2, 6, 8, 10, 12, 14, 16, 18, 22]
    assert parts.monitoring.steps == [4, 8, 10, 12, 14, 16, 18, 20, 24]
    # the agent hears of every switch, with the step it happened at
    assert agent.switches == [(1, 6), (0, 12), (1, 18)]
    # every task is evaluated at every visit's end; checkpoints every 10 steps and at the end
    assert parts.evaluator.calls == 4
    assert results.matrix == [[10.0, -1.0], [20.0, -2.0], [30.0, -3.0], [40.0, -4.0]]
    assert [(v["task"], v["start"], v["end"]) for v in results.visits] == [(0, 0, 6), (1, 6, 12), (0, 12, 18), (1, 18, 24)]
    assert [s["step"] for s in saved] == [10, 20, 24]
    assert saved[-1]["agent"] == {"updates": 9}
    # training returns land in the visit they ended in
    assert results.train_curve == [[[4, 1.5]], [[12, 5.5]], [], [[20, 9.5]]]
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["finished"] is True and on_disk["random"] == [0.0, -5.0] and on_disk["matrix"] == results.matrix


def test_gradient_steps_follow_the_transitions_the_schedule_counts(tmp_path):
    # a schedule that counts every env's step and takes the auto-reset steps back at a visit's
    # end (a device-native task off the CPU): the credit follows its count, not `valid`
    schedule = FakeSchedule()
    schedule.deferred = True
    parts, _, _ = run(tmp_path, schedule=schedule)
    # the auto-reset step of the last visit (vector step 10) counts both envs there and is taken
    # back at the visit's end: that visit's last update comes one step earlier than with
    # `valid`'s count (20, not 22), and the total is the same 9
    assert parts.agent.updates_at == [2, 6, 8, 10, 12, 14, 16, 18, 20]
    assert parts.agent.updates == 9


def test_no_step_of_the_loop_reads_a_value_on_the_host(tmp_path, monkeypatch):
    # on an accelerator a read waits for the device: no step of the loop reads a value (the
    # gradient credit counts `res.transitions`, a host number). What a CPU cannot show: the
    # copies to the host of the log steps (the finite check, the averaged losses)
    reads_before_act = []
    act = FakeAgent.act

    def counting_act(self, obs, task, step):
        reads_before_act.append((step, len(reads.calls)))
        return act(self, obs, task, step)

    monkeypatch.setattr(FakeAgent, "act", counting_act)
    with HostReads() as reads:
        run(tmp_path)
    counts = [n for _, n in reads_before_act] + [len(reads.calls)]
    reading_steps = [step for (step, _), before, after in zip(reads_before_act, counts, counts[1:])
                     if after > before]
    assert len(reads_before_act) == 12 and reading_steps == [], reads.calls


def test_hidden_boundaries_tell_the_agent_nothing_but_record_the_switches(tmp_path):
    parts, results, _ = run(tmp_path, task_boundaries=False)
    assert parts.agent.switches == []
    assert [(v["task"], v["start"]) for v in results.visits] == [(0, 0), (1, 6), (0, 12), (1, 18)]
    assert len(results.matrix) == 4


def test_interrupt_writes_a_checkpoint_and_exits_130(tmp_path):
    cfg = TrainConfig(eval=EvalConfig(episodes=0), log_every=4, checkpoint_every=0, progress=False)
    parts = RunParts(FakeSchedule(), FakeAgent(), FakeReplay(), FakeEvaluator(), FakeMonitoring())
    calls = {"n": 0}

    def act(obs, task, step):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return torch.zeros(obs.shape[0], dtype=torch.long)

    parts.agent.act = act
    saved = []
    log = RunLogger(str(tmp_path), list(TASKS), 24, progress=False)
    with pytest.raises(SystemExit) as exit_info:
        train.train(cfg, parts, log, tmp_path, save=lambda s: saved.append(s))
    log.close()
    assert exit_info.value.code == 130
    assert [s["step"] for s in saved] == [8]


def test_results_record_the_seconds_of_the_loop_and_of_evaluation(tmp_path, monkeypatch):
    """results.json's `seconds`: a fake clock advances 7 s per evaluation of all tasks, 3 s for the
    random baselines and 1 s per loop step, so the evaluation share is known exactly."""
    now = [100.0]
    monkeypatch.setattr(train.time, "perf_counter", lambda: now[0])
    evaluate_all, random_baselines, step = FakeEvaluator.evaluate_all, FakeEvaluator.random_baselines, FakeSchedule.step

    def slow(method, seconds):
        def call(self, *args):
            now[0] += seconds
            return method(self, *args)
        return call

    monkeypatch.setattr(FakeEvaluator, "evaluate_all", slow(evaluate_all, 7.0))
    monkeypatch.setattr(FakeEvaluator, "random_baselines", slow(random_baselines, 3.0))
    monkeypatch.setattr(FakeSchedule, "step", slow(step, 1.0))
    _, results, saved = run(tmp_path)
    # 12 vector steps, 4 evaluations (one per visit end), the baselines once
    assert results.seconds == {"run": 12 + 4 * 7 + 3, "evaluation": 4 * 7, "random": 3}
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["seconds"] == results.seconds
    # the checkpoint at step 10 (5 vector steps, one evaluation) carries the seconds so far
    assert saved[0]["step"] == 10
    assert saved[0]["results"]["seconds"] == {"run": 3 + 5 + 7, "evaluation": 7, "random": 3}


def test_progress_advances_by_the_envs_of_every_step(tmp_path, monkeypatch):
    advanced = []
    monkeypatch.setattr(RunLogger, "advance", lambda self, steps: advanced.append(steps))
    run(tmp_path)
    assert advanced == [N_ENVS] * (len(TASKS) * CYCLES * VSTEPS)


def test_results_are_written_at_every_visit_end_with_that_step(tmp_path, monkeypatch):
    from runner.results import RunResults

    written = []
    write = RunResults.write

    def recording(self, run_dir):
        written.append((self.step, self.finished, len(self.matrix)))
        return write(self, run_dir)

    monkeypatch.setattr(RunResults, "write", recording)
    _, _, saved = run(tmp_path)
    assert written == [(6, False, 1), (12, False, 2), (18, False, 3), (24, False, 4), (24, True, 4)]
    assert [(s["step"], s["results"]["step"]) for s in saved] == [(10, 10), (20, 20), (24, 24)]


class Nets:
    """A learnable whose weight becomes NaN at the update taken while acting at step `at`."""

    def __init__(self, agent, at):
        self.module = torch.nn.Linear(1, 1)
        update = agent.update

        def poisoning(batch):
            out = update(batch)
            if agent.step == at:
                with torch.no_grad():
                    self.module.weight.fill_(float("nan"))
            return out

        agent.update = poisoning
        agent.learnables = {"q": self}


@pytest.mark.parametrize("at,log_every,checkpoint_every,since,step", [
    (2, 4, 10, 0, 4),  # the first log flush, before any check
    (6, 4, 10, 4, 8),  # a log flush after a log flush
    (8, 4, 10, 8, 10),  # a checkpoint after a log flush
    (22, 100, 0, 0, 24),  # the end of the run, nothing checked before
])
def test_non_finite_parameters_stop_the_loop_naming_the_steps_between_checks(tmp_path, at, log_every,
                                                                             checkpoint_every, since, step):
    cfg = TrainConfig(eval=EvalConfig(episodes=0), log_every=log_every, checkpoint_every=checkpoint_every,
                      progress=False)
    parts = RunParts(FakeSchedule(), FakeAgent(), FakeReplay(), FakeEvaluator(), FakeMonitoring())
    Nets(parts.agent, at)
    saved = []
    log = RunLogger(str(tmp_path), list(TASKS), 24, progress=False)
    try:
        with pytest.raises(train.NonFiniteError) as err:
            train.train(cfg, parts, log, tmp_path, save=lambda s: saved.append(s["step"]))
    finally:
        log.close()
    assert str(err.value) == f"the parameters of network 'q' became non-finite between step {since} and step {step}"
    assert all(s < step for s in saved)  # nothing non-finite is checkpointed


def test_check_finite_names_the_loss_before_the_networks(tmp_path):
    log = RunLogger(str(tmp_path), list(TASKS), 24, progress=False)
    try:
        agent = SimpleNamespace(learnables={"actor": SimpleNamespace(module=torch.nn.Linear(1, 1)),
                                            "empty": SimpleNamespace(module=torch.nn.ReLU())})
        train.check_finite(agent, log, 3, 7)  # finite, and a network without parameters is fine
        log.accumulate({"td_loss": torch.tensor(float("inf")), "q": torch.tensor(1.0)})
        with pytest.raises(train.NonFiniteError, match="^losses/td_loss became inf in the updates between step 3 "
                                                       "and step 7$"):
            train.check_finite(agent, log, 3, 7)
    finally:
        log.close()
