"""TaskSchedule: a non-stationary stream of tasks A B C A B C ... over shared vector envs.

The training loop sees one object::

    schedule = TaskSchedule(["atari:Pong", "atari:Breakout"], steps_per_visit=1_000_000,
                            cycles=3, num_envs=8, device="cuda", seed=0)
    obs = schedule.reset()
    while not schedule.finished:
        res = schedule.step(agent.act(obs))
        replay.add(obs, actions, res.next_obs, res.rewards, res.terminated, valid=res.valid)
        for task, env, ret, length in res.episodes: ...   # raw returns
        if res.switch is not None: ...                       # task changed
        obs = res.obs

Semantics:

- **Budget.** Each vector step counts ``num_envs`` env steps, auto-reset steps included.
  A visit lasts ``steps_per_visit`` env steps rounded **up** to a multiple of ``num_envs``
  (``schedule.steps_per_visit`` holds the rounded value). There are
  ``len(tasks) * cycles`` visits, in list order, cycling.
- **Switch.** At the last step of a visit ``truncated`` is forced True for every env (the
  episode is cut by the switch, so it bootstraps; ``terminated`` keeps its value). A
  partial episode cut this way is *not* reported in ``episodes``. The next task's env is
  reset and its first observation is returned in ``res.obs`` (``res.next_obs`` stays the
  true next observation of the old task) with ``res.switch`` set. At the end of the last
  visit the truncation is forced the same way, ``switch`` is None and ``finished`` turns
  True; stepping further raises ``RuntimeError``.
- **Auto-reset.** The envs reset on the next step: after ``terminated | truncated`` in an
  env, the following step returns the first observation of a new episode, ignores the
  action and is not a transition: ``res.valid`` is False exactly there.
- **Envs** are created once per task in the constructor and reused on every revisit.
- **Seeding.** Visit ``v`` resets its task's envs with ``seed=visit_seed(seed, v)``
  (``np.random.SeedSequence([seed, v])``); copy ``i`` gets that seed ``+ i``. The same seed
  and the same actions give the same observations and rewards.
- **Resume.** ``state_dict`` holds the position (visit, steps) and the settings it depends
  on. Emulator state is not saved: after ``load_state_dict``, ``reset()`` restarts the
  current visit's env with a fresh reset seeded by ``SeedSequence([seed, visit, step])``
  (just ``[seed, visit]`` when resuming exactly at a visit boundary, which then replays
  the uninterrupted run exactly).
- **Shifts.** A task id may carry shifts (``"gym:CartPole-v1@permute-obs"``, see
  :mod:`envs.shifts`). Each visit draws its task's shifts from ``(seed, visit)`` at its
  start (dynamics are set before the reset); the actions, rewards (also in ``episodes``)
  and observations of the visit pass through them. A resumed run redraws the same ones.
  ``shift_for(task, visit)`` and ``make_eval_env`` give evaluation the same shifts.
- **Device.** Observations are moved to ``device`` once per step; the small per-env
  arrays (rewards, flags) travel together in one more copy. The only device-to-host copy
  is the actions handed to the emulator.
- **Device-native tasks** (MinAtar: ``minatar:<Game>``) run on ``device`` itself: actions
  stay there, observations (``uint8``, channels padded to 10 in a cycle), rewards and flags are made there,
  and a task switch resets the next game there. Same next-step auto-reset, ``valid``,
  budget, switch and seeding rules as above (the seed reseeds the game's torch generator).
  Finished episodes come back from the device in one copy per report (every step on the
  CPU, every 64 steps and at each visit's end on an accelerator; see
  ``envs/minatar/vector.py``), so on an accelerator ``res.episodes`` arrives in batches.
- **Transitions.** ``res.transitions`` counts the step's transitions as a host number, for
  crediting gradient steps: ``valid``'s count, except on device-native tasks off the CPU,
  where a step counts every env and the auto-reset steps are taken back at the next report
  (in the same copy), so the running total is exact at every report and at a visit's end.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
import torch

from envs.atari import AtariOptions
from envs.eval_envs import DeviceEvalEnvs, HostEvalEnvs
from envs.minatar.vector import MinAtarOptions
from envs.task_envs import TaskEnvs, build_task_envs
from envs.shifts import NO_SHIFT, ShiftedEnv, TaskShift, VisitShift, parse_shifted_tasks
from envs.step_result import Episode, StepResult, TaskSwitch
from envs.tasks import TaskSpec


def visit_seed(seed: int, visit: int, visit_step: int = 0) -> int:
    """Seed of the reset that starts (or, after a resume, restarts) visit ``visit``."""
    entropy = [seed, visit] if visit_step == 0 else [seed, visit, visit_step]
    # 30 bits leaves room for the per-copy offset ``+ i`` inside a C int.
    return int(np.random.SeedSequence(entropy).generate_state(1)[0] >> 2)


class TaskSchedule:
    """Cycle through tasks with a fixed env-step budget per visit (see the module docstring)."""

    def __init__(
        self,
        task_ids: list[str],
        steps_per_visit: int,
        cycles: int,
        num_envs: int = 1,
        device: str | torch.device = "cpu",
        seed: int = 0,
        atari: AtariOptions | None = None,
        minatar: MinAtarOptions | None = None,
    ) -> None:
        for name, value, low in (
            ("steps_per_visit", steps_per_visit, 1),
            ("cycles", cycles, 1),
            ("num_envs", num_envs, 1),
            ("seed", seed, 0),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"{name}={value!r} must be an integer >= {low}")
        specs, shift_specs = parse_shifted_tasks(task_ids)  # "gym:CartPole-v1@permute-obs"
        self.device = torch.device(device)
        self.seed = int(seed)
        self.num_envs = int(num_envs)
        self.cycles = int(cycles)
        self._vsteps_per_visit = -(-int(steps_per_visit) // self.num_envs)
        # Env steps per visit, rounded up to a multiple of num_envs.
        self.steps_per_visit = self._vsteps_per_visit * self.num_envs
        self._task_envs: TaskEnvs = build_task_envs(specs, self.num_envs, atari, device=self.device,
                                                          minatar=minatar)
        self._envs = self._task_envs.envs
        self._sizes = self._task_envs.task_sizes
        self.action_masks = torch.from_numpy(self._task_envs.action_masks()).to(self.device)
        te = self._task_envs
        self._task_shifts = [
            TaskShift(sh, sp.id, te.obs_shape, te.discrete, size, te.action_size, env) if sh else None
            for sp, sh, size, env in zip(specs, shift_specs, self._sizes, self._envs)
        ]
        self._shift: VisitShift = NO_SHIFT  # the current visit's drawn shifts
        self._num_visits = len(specs) * self.cycles
        self._visit = 0
        self._task = 0
        self.steps = 0
        self._vstep = 0
        self._needs_reset = True
        n = self.num_envs
        self._ep_ret = np.zeros(n, dtype=np.float64)
        self._ep_len = np.zeros(n, dtype=np.int64)
        self._valid_next = np.ones(n, dtype=bool)
        # On the CPU, tensors can share memory with the fresh arrays of each step.
        self._zero_copy = self.device.type == "cpu"

    # ------------------------------------------------------------------ layout
    @property
    def tasks(self) -> list[TaskSpec]:
        """The tasks in schedule order."""
        return self._task_envs.specs

    @property
    def obs_shape(self) -> tuple[int, ...]:
        """Shape of one observation, shared by all tasks."""
        return self._task_envs.obs_shape

    @property
    def obs_dtype(self) -> torch.dtype:
        """``torch.uint8`` (Atari frames) or ``torch.float32`` (vectors)."""
        return self._task_envs.obs_dtype

    @property
    def frame_stack(self) -> int:
        """Stacked frames per observation: 4 for Atari by default, 1 otherwise."""
        return self._task_envs.frame_stack

    @property
    def discrete(self) -> bool:
        """Whether actions are discrete."""
        return self._task_envs.discrete

    @property
    def num_actions(self) -> int:
        """Largest number of actions over the tasks (0 for continuous tasks)."""
        return self._task_envs.action_size if self.discrete else 0

    @property
    def action_dim(self) -> int:
        """Largest action dimension over the tasks (0 for discrete tasks)."""
        return 0 if self.discrete else self._task_envs.action_size

    # ---------------------------------------------------------------- position
    @property
    def visit(self) -> int:
        """Index of the current visit (``num_visits`` once finished)."""
        return self._visit

    @property
    def num_visits(self) -> int:
        """Number of visits: ``len(tasks) * cycles``."""
        return self._num_visits

    @property
    def total_steps(self) -> int:
        """Env steps of the whole schedule."""
        return self.num_visits * self.steps_per_visit

    @property
    def finished(self) -> bool:
        """Whether every visit has used its budget."""
        return self._visit >= self._num_visits

    @property
    def task_index(self) -> int:
        """Index of the current visit's task (the last one once finished)."""
        return self._task

    def _set_visit(self, visit: int) -> None:
        """Move to visit ``visit`` (``num_visits`` means finished)."""
        self._visit = visit
        self._task = min(visit, self._num_visits - 1) % len(self._envs)

    @property
    def task(self) -> TaskSpec:
        """The current visit's task."""
        return self.tasks[self.task_index]

    def make_eval_env(self, task: int, visit: int | None = None) -> gymnasium.Env:
        """A single (non-vector) env of task ``task`` with this schedule's layout.

        A task with shifts gets a :class:`envs.shifts.ShiftedEnv` that takes, at every reset,
        ``shift_for(task, visit)``: with ``visit=None`` it follows the run."""
        env = self._task_envs.make_single_env(task)
        if self._task_shifts[task] is None:
            return env
        return ShiftedEnv(env, lambda: self.shift_for(task, visit))

    def shift_for(self, task: int, visit: int | None = None) -> VisitShift:
        """The shifts task ``task`` has at visit ``visit`` (for evaluation envs).

        That is the draw of the task's latest visit ``<= visit`` (its first visit when it has
        not been visited yet). ``visit=None``: the visit of the last step taken, so an
        evaluation right after a switch sees the shifts of the visit that just ended. Apply
        it with ``shift.obs(x)``, ``shift.reward(r)``, ``shift.action(a)`` and
        ``shift.apply_dynamics(env)`` before the env's reset (or use ``make_eval_env``)."""
        ts = self._task_shifts[task]
        if ts is None:
            return NO_SHIFT
        if visit is None:
            visit = self.visit - 1 if self._vstep == 0 and self.visit > 0 else self.visit
        n = len(self._envs)
        visit = min(visit, self._num_visits - 1)
        latest = visit - ((visit - task) % n) if visit >= task else task
        return ts.draw(self.seed, latest, latest // n, 1 << 20)

    def make_eval_envs(self, task: int, num_envs: int) -> HostEvalEnvs | DeviceEvalEnvs:
        """``num_envs`` separate evaluation copies of task ``task`` (see ``envs.eval_envs``): one
        batched game on the device for MinAtar, else a ``SyncVectorEnv`` of ``make_eval_env``;
        either follows the run's shifts (``shift_for(task)`` at each reset)."""
        if self._task_envs.device_native:
            return DeviceEvalEnvs(self._task_envs.make_vector_env(task, num_envs), lambda: self.shift_for(task))
        envs = gymnasium.vector.SyncVectorEnv([lambda: self.make_eval_env(task) for _ in range(num_envs)])
        return HostEvalEnvs(envs, num_envs, self.device)

    # ------------------------------------------------------------------ stepping
    def _start_visit(self) -> torch.Tensor:
        """Reset the current task's env (seeded by position) and return its first obs."""
        seed = visit_seed(self.seed, self.visit, self._vstep)
        ts = self._task_shifts[self.task_index]  # shifts: drawn from (seed, visit); dynamics before the reset
        self._shift = NO_SHIFT if ts is None else ts.draw(self.seed, self.visit, self.visit // len(self._envs), self._vstep)
        self._shift.apply_dynamics(self._envs[self.task_index])
        if self._task_envs.device_native:
            self._needs_reset = False
            return self._shift.obs(self._envs[self.task_index].reset(seed=seed))
        obs, _ = self._envs[self.task_index].reset(seed=seed)
        self._ep_ret[:] = 0.0
        self._ep_len[:] = 0
        self._valid_next = np.ones(self.num_envs, dtype=bool)  # new array: never mutate a returned one
        self._needs_reset = False
        return self._shift.obs(torch.from_numpy(obs).to(self.device))

    def reset(self) -> torch.Tensor:
        """(N, *obs_shape) first observation of the current visit's task, on the device."""
        if self.finished:
            raise RuntimeError("the schedule is finished: no visit left to reset")
        return self._start_visit()

    def _host_actions(self, actions: torch.Tensor | np.ndarray, task: int) -> np.ndarray:
        """Actions as the emulator wants them; one-line ``ValueError`` when invalid."""
        if isinstance(actions, torch.Tensor):
            actions = actions.detach().cpu().numpy()
        a = np.asarray(actions)
        n = self.num_envs
        if self.discrete:
            if a.shape != (n,) or a.dtype.kind not in "iu":
                raise ValueError(
                    f"discrete actions must be an integer tensor of shape ({n},), "
                    f"got {a.dtype} {a.shape}"
                )
            size = self._sizes[task]
            if a.min() < 0 or a.max() >= size:
                bad = a[(a < 0) | (a >= size)]
                raise ValueError(
                    f"action {bad.tolist()} is not valid for task {self.tasks[task].id!r}, "
                    f"which has {size} actions (0..{size - 1}); mask with schedule.action_masks"
                )
            return np.ascontiguousarray(a, dtype=np.int64)
        dim = self._task_envs.action_size
        if a.shape != (n, dim):
            raise ValueError(
                f"continuous actions must have shape ({n}, {dim}), got {tuple(a.shape)}"
            )
        return np.ascontiguousarray(a, dtype=np.float32)

    def step(self, actions: torch.Tensor) -> StepResult:
        """Step every env of the current task once (see the module docstring)."""
        if self._needs_reset:
            raise RuntimeError("call reset() before step() (at the start and after load_state_dict)")
        if self.finished:
            raise RuntimeError("the schedule is finished: check schedule.finished")
        if self._task_envs.device_native:
            return self._step_device(actions)
        task = self._task
        shift = self._shift  # this visit's shifts: action here, reward and observation below
        obs_np, rew, term, trunc, _ = self._envs[task].step(shift.action(self._host_actions(actions, task)))

        valid = self._valid_next
        rew = shift.reward(rew.astype(np.float32, copy=False))
        np.add(self._ep_ret, rew, out=self._ep_ret, where=valid)
        self._ep_len += valid
        done = term | trunc
        episodes: list[Episode] = []
        if done.any():
            for i in np.flatnonzero(done):
                episodes.append(Episode(task, int(i), float(self._ep_ret[i]), int(self._ep_len[i])))
            self._ep_ret[done] = 0.0
            self._ep_len[done] = 0
        self._valid_next = ~done

        self._vstep += 1
        self.steps += self.num_envs
        last = self._vstep == self._vsteps_per_visit
        if last:
            trunc = np.ones(self.num_envs, dtype=bool)

        next_obs = shift.obs(torch.from_numpy(obs_np).to(self.device))
        if self._zero_copy:  # every array here is fresh this step: share, do not copy
            rewards = torch.from_numpy(rew)
            terminated = torch.from_numpy(term)
            truncated = torch.from_numpy(trunc)
            valid_t = torch.from_numpy(valid)
        else:  # one host->device copy for the four small arrays
            small = np.empty((4, self.num_envs), dtype=np.float32)
            small[0], small[1], small[2], small[3] = rew, term, trunc, valid
            small_t = torch.from_numpy(small).to(self.device)
            rewards = small_t[0]
            terminated, truncated, valid_t = (small_t[1:] != 0).unbind(0)

        obs, switch = next_obs, None
        if last:
            self._set_visit(self.visit + 1)
            self._vstep = 0
            if not self.finished:
                switch = TaskSwitch(task, self.task_index, self.visit)
                obs = self._start_visit()
        return StepResult(
            next_obs=next_obs,
            obs=obs,
            rewards=rewards,
            terminated=terminated,
            truncated=truncated,
            valid=valid_t,
            task=task,
            episodes=episodes,
            switch=switch,
            transitions=int(np.count_nonzero(valid)),
        )

    def _step_device(self, actions: torch.Tensor) -> StepResult:
        """``step`` for device-native tasks: no host copy of observations or actions."""
        n, task = self.num_envs, self._task
        if not isinstance(actions, torch.Tensor) or actions.shape != (n,) or actions.is_floating_point():
            got = f"{actions.dtype} {tuple(actions.shape)}" if hasattr(actions, "shape") else type(actions).__name__
            raise ValueError(f"discrete actions must be an integer tensor of shape ({n},), got {got}")
        env = self._envs[task]
        shift = self._shift  # a visit's reward shift is one factor, so an episode's shifted return is its factor times the game's
        last = self._vstep + 1 == self._vsteps_per_visit
        out = env.step(shift.action(actions), report=last)  # a visit's end hands over all its episodes
        self._vstep += 1
        self.steps += n
        episodes = [Episode(task, i, shift.reward(ret), length) for i, ret, length in out.episodes]
        truncated = out.truncated
        next_obs = shift.obs(out.obs)
        obs, switch = next_obs, None
        if last:
            truncated = torch.ones(n, dtype=torch.bool, device=self.device)
            self._set_visit(self.visit + 1)
            self._vstep = 0
            if not self.finished:
                switch = TaskSwitch(task, self.task_index, self.visit)
                obs = self._start_visit()
        return StepResult(next_obs=next_obs, obs=obs, rewards=shift.reward(out.rewards), terminated=out.terminated,
                          truncated=truncated, valid=out.valid, task=task, episodes=episodes, switch=switch,
                          transitions=out.transitions)

    # -------------------------------------------------------------- checkpoint
    def _settings(self) -> dict[str, Any]:
        """What a saved position depends on."""
        return {
            "task_ids": [t.id for t in self.tasks],
            "steps_per_visit": self.steps_per_visit,
            "cycles": self.cycles,
            "num_envs": self.num_envs,
            "seed": self.seed,
        }

    def state_dict(self) -> dict[str, Any]:
        """Position in the schedule (not the emulator state: see the module docstring)."""
        return {**self._settings(), "visit": self.visit, "steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the position; call ``reset()`` next to restart the current visit's env.

        The saved schedule may have fewer cycles than this one (a run extended on resume)."""
        for key, value in self._settings().items():
            if key == "cycles" and isinstance(state.get(key), int) and state[key] <= value:
                continue  # a schedule may be extended by more cycles
            if state.get(key) != value:
                raise ValueError(
                    f"schedule state has {key}={state.get(key)!r} but this schedule has {value!r}"
                )
        visit, steps = int(state["visit"]), int(state["steps"])
        vstep, rem = divmod(steps - visit * self.steps_per_visit, self.num_envs)
        inside = 0 <= visit < self.num_visits and 0 <= vstep < self._vsteps_per_visit
        at_end = visit == self.num_visits and vstep == 0
        if rem != 0 or not (inside or at_end):
            raise ValueError(f"schedule state visit={visit}, steps={steps} is not a valid position")
        self._set_visit(visit)
        self.steps, self._vstep = steps, vstep
        self._needs_reset = True

    def close(self) -> None:
        """Close every env."""
        self._task_envs.close()

    def __enter__(self) -> TaskSchedule:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
