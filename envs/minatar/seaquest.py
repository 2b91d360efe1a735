"""Seaquest as a batched tensor program: the reference ``minatar`` rules, N envs at once.

The player's submarine (front and back cell, so its heading shows) moves in rows 0-8 and
fires bullets along its heading (cool-down 5 steps). Enemies enter at column 0 or 9 of a
random row 1-8 (a new one every ``e_spawn_speed`` steps, 20 at start; a third of them are
submarines, which fire a bullet every 11 steps, the rest sharks) and move one cell every
``move_speed + 1`` steps (5 at start); a spawn is skipped if its row holds an enemy heading
the other way. A player bullet that reaches an enemy removes both: reward +1. Divers
(one every 30 steps, moving every 6 steps) are picked up by touching them, at most 6 on
board. Oxygen (200) falls by 1 per step below the surface. Reaching row 0 from below with
at least one diver refills the oxygen and takes one diver off; with 6 divers it takes all of
them off and pays ``oxygen * 10 // 200``, and every surfacing ramps the difficulty
(``e_spawn_speed`` down by 1 to 1; ``move_speed`` down by 1 at odd ramp levels, to 2).
The episode ends when an enemy or enemy bullet touches the submarine, when oxygen has run
out, or on reaching the surface with no diver.

As in the reference, surfacing with 6 divers leaves the diver count at -1 (it is zeroed,
then decremented), so the next surfacing with no diver picked up does not end the episode.

Observation channels (``[N, 10, 10, 10]``): 0 sub front, 1 sub back, 2 player bullet,
3 trail (the cell behind each enemy and diver), 4 enemy bullet, 5 shark, 6 enemy sub,
7 oxygen gauge (row 9), 8 diver gauge (row 9), 9 diver.

State: scalars per env, and the reference's object lists as ordered slot tensors
(:mod:`envs.minatar.slots`), compacted after each step: player bullets ``[N, 3, 4]``, enemies
(sharks and subs in one list, which keeps each kind's own order) ``[N, 32, 7]`` and divers
``[N, 4, 5]``, all int8; enemy bullets, which only ever meet the player, as bit rows
``[N, 2, 10]`` int16 (bit ``x`` of row ``y``, left-moving then right-moving), a move being a
shift. The slot lists and bullet rows are stored env-last (``[F, K, N]``, ``[2, 10, N]``) so
that per-slot work runs along contiguous memory; the attributes above are views of them.
Capacities follow from the rules: a player bullet lives at most 10 steps and one is fired at
most every 5; a diver lives 60 steps and one spawns every 30; an enemy lives at most
``10 * (move_speed + 1) <= 30`` steps once spawns come every step (``move_speed`` is 2 by then,
and at most 60 steps with one spawn per 20 before), so at most 32 enemies are alive at once.
An eager step works on the first ``u + 1`` enemy slots, ``u`` the most enemies any env has
(``enemy_count.max()``); a compiled one on all 32, its shapes being fixed.

A step avoids walking slots in Python, ``torch.where`` over slot tensors (an integer select is
``b + mask * (a - b)``), ``any`` over bool masks (the max of their bytes), operands broadcast
along the env dimension (:func:`envs.minatar.slots.lanes`), Python numbers as operands
(:func:`envs.minatar.slots.const`: ``[N]`` tensors), mixed dtypes (bool masks are read as the
lists' int8 0/1 and back, :func:`envs.minatar.slots.flag` and ``truth``) and ``cumsum`` over a
few slots (:func:`envs.minatar.slots.cumsum`), all slow paths of the CPU kernels. Which cells
an object paints in the observation is looked up by a key per object (a weighted sum of its
fields) in tables built once.
"""

from __future__ import annotations

import torch

from envs.minatar import slots
from envs.minatar.base import GRID, BatchedGame, pick
from envs.minatar.slots import const, truth
from envs.minatar.seaquest_rules import (
    ALIVE, DIR, DIVER_MOVE_INTERVAL, ENEMY_SHOT_INTERVAL, IS_SUB, MAX_DIVERS, Y,
    move_enemies, move_enemy_bullets, resolve_divers, resolve_player_bullets,
)

MAX_OXYGEN = 200
INIT_SPAWN_SPEED = 20
DIVER_SPAWN_SPEED = 30
INIT_MOVE_INTERVAL = 5
SHOT_COOL_DOWN = 5
BULLET_SLOTS, ENEMY_SLOTS, DIVER_SLOTS = 3, 32, 4
_OBJECT_FIELDS = {"f_bullets": (3, BULLET_SLOTS), "e_bullets": (3, None), "e_fish": (4, ENEMY_SLOTS),
                  "e_subs": (5, ENEMY_SLOTS), "divers": (4, DIVER_SLOTS)}
"""The reference's object lists: numbers per object, and the slots our lists have for them."""
_TIMER_MAX = torch.iinfo(slots.DTYPE).max
"""The largest timer a slot's field holds (127 in int8)."""


def _env_first(name: str, dims: tuple[int, int, int] = (2, 1, 0)) -> property:
    """A tensor stored env-last (e.g. a slot list ``[F, K, N]``) as its env-first view
    (``[N, K, F]``): ``stored.permute(dims)``."""
    back = tuple(dims.index(d) for d in range(3))

    def get(self) -> torch.Tensor:
        return getattr(self, name).permute(dims)

    def put(self, value: torch.Tensor) -> None:
        setattr(self, name, value.permute(back).contiguous())

    return property(get, put)


class Seaquest(BatchedGame):
    """N Seaquest games (see the module docstring for the rules and the state layout)."""

    name = "Seaquest"
    num_channels = 10
    draws_per_step = 5  # an enemy's heading, kind and row; a diver's heading and row
    state_names = (
        "sub_x", "sub_y", "sub_or", "oxygen", "diver_count", "e_spawn_speed", "e_spawn_timer",
        "d_spawn_timer", "move_speed", "ramp_index", "shot_timer", "surface",
        "f_bullets", "enemies", "enemy_count", "divers", "e_bullets",
    )
    number_names = state_names[:12]
    """The reference's numbers, one per env (the rest of the state is object lists)."""
    f_bullets = _env_first("_f_bullets")
    enemies = _env_first("_enemies")
    divers = _env_first("_divers")
    e_bullets = _env_first("_e_bullets", (2, 0, 1))
    _stored = tuple(f"_{name}" if name in ("f_bullets", "enemies", "divers", "e_bullets")
                    else name for name in state_names)
    """The attributes holding the state (slot lists and bullet rows env-last, the rest [N])."""

    def _init_state(self) -> None:
        n, dev = self.num_envs, self.device
        for name in self.number_names:
            setattr(self, name, torch.zeros(n, dtype=torch.long, device=dev))
        self.sub_or = torch.zeros(n, dtype=torch.bool, device=dev)
        self.surface = torch.zeros(n, dtype=torch.bool, device=dev)
        self._f_bullets = slots.empty(n, BULLET_SLOTS, 4, dev)
        self._enemies = slots.empty(n, ENEMY_SLOTS, 7, dev)
        self.enemy_count = torch.zeros(n, dtype=torch.long, device=dev)
        self._divers = slots.empty(n, DIVER_SLOTS, 5, dev)
        self._e_bullets = torch.zeros(2, GRID, n, dtype=torch.int16, device=dev)
        col, lit = torch.arange(GRID, device=dev), torch.arange(GRID + 1, device=dev).unsqueeze(1)
        oxygen_gauge = col < lit  # row k: k cells lit from the left
        diver_gauge = (col >= GRID - 1 - lit) & (col < GRID - 1)  # k cells lit leftwards from 8
        self._gauges = torch.stack([oxygen_gauge.repeat_interleave(GRID + 1, 0),
                                    diver_gauge.repeat(GRID + 1, 1)], 1)
        """Row ``11 * o + d``: row 9 of channels 7 and 8 with ``o`` oxygen cells and ``d`` divers
        (``[121, 2, 10]`` bool)."""
        # per action (no-op, left, up, right, down, fire): dx, dy; fires, keeps heading, right
        self._action_moves = torch.tensor([[0, -1, 0, 1, 0, 0], [0, 0, -1, 0, 1, 0]], device=dev)
        self._action_flags = torch.tensor([[0, 0, 0, 0, 0, 1], [1, 0, 1, 0, 1, 1],
                                           [0, 0, 0, 1, 0, 0]], dtype=torch.bool, device=dev)
        self._tables = _paint_tables(dev)
        self._bit_row = (torch.arange(1 << GRID, device=dev).unsqueeze(1) >> col) & 1 == 1
        """Row ``r``: the cells of a 10-bit row ``r`` (``[1024, 10]`` bool)."""

    def difficulty(self) -> torch.Tensor:
        return self.ramp_index

    def set_env(self, i: int, name: str, value) -> None:
        """Set field ``name`` of env ``i`` from a reference value. The object lists take the
        reference's lists of lists: ``f_bullets`` and ``e_bullets`` ``[x, y, heads_right]``,
        ``e_fish`` ``[x, y, heads_right, move_timer]``, ``e_subs`` the same and ``shot_timer``,
        ``divers`` ``[x, y, heads_right, move_timer]``; setting one kind of enemy keeps the
        other (each kind keeps its own order, which is all the rules read). A list longer than
        its slots, or an object off the grid, is refused and nothing is written."""
        if name not in _OBJECT_FIELDS:
            if name in ("enemies", "enemy_count"):  # ours, not the reference's
                fields = (*self.number_names, "terminal", *_OBJECT_FIELDS)
                raise ValueError(f"Seaquest has no field {name!r}; fields: {', '.join(fields)}")
            return super().set_env(i, name, value)
        rows = [[int(v) for v in row] for row in value]
        width, capacity = _OBJECT_FIELDS[name]
        for row in rows:
            if len(row) != width or not (0 <= row[0] < GRID and 0 <= row[1] < GRID and row[2] in (0, 1)) \
                    or any(not 0 <= v <= _TIMER_MAX for v in row[3:]):
                raise ValueError(f"Seaquest {name} entry {row}: valid is [x 0-9, y 0-9, heading 0/1"
                                 + ", timers 0-127" * (width > 3) + f"] ({width} numbers)")
        if name == "e_bullets":
            bits = torch.zeros(2, GRID, dtype=torch.int16)
            for x, y, right in rows:
                bits[right, y] |= 1 << x
            self._e_bullets[:, :, i] = bits.to(self.device)
            return
        if name in ("e_fish", "e_subs"):
            enemies = self.enemies[i]
            keep = enemies[:, ALIVE].bool() & (enemies[:, IS_SUB].bool() == (name == "e_fish"))
            kept = [[int(v) for v in obj] for obj in enemies[keep].tolist()]
            sub = int(name == "e_subs")
            if len(rows) + len(kept) > capacity:
                other = "e_fish" if sub else "e_subs"
                raise ValueError(f"Seaquest {name}: {len(rows)} given and {len(kept)} {other} kept "
                                 f"make {len(rows) + len(kept)} enemies, valid are at most {capacity}")
            rows = [row[:4] + [row[4] if sub else 0, sub] for row in rows]
            rows = [[x, y, d, 1, t, s, k] for x, y, d, t, s, k in rows] + kept
            self.enemy_count[i] = len(rows)
        else:
            if len(rows) > capacity:
                raise ValueError(f"Seaquest {name}: {len(rows)} given, valid are at most {capacity}")
            rows = [row[:3] + [1] + row[3:] for row in rows]
        slot_list = {"f_bullets": self._f_bullets, "divers": self._divers}.get(name, self._enemies)
        slot_list[:, :, i] = 0
        if rows:
            values = torch.tensor(rows, dtype=slot_list.dtype, device=self.device).t()
            slot_list[:, :len(rows), i] = values

    def _reset(self, mask: torch.Tensor) -> None:
        """Where reads are free, fills the listed envs (``index_fill_``, skipped when there are
        none); elsewhere masked fills, which read nothing on the host."""
        if self.reads_are_free:
            envs = mask.nonzero().squeeze(1)
            if envs.numel() == 0:
                return

            def fill(tensor: torch.Tensor, dim: int, value) -> None:
                tensor.index_fill_(dim, envs, value)
        else:
            def fill(tensor: torch.Tensor, dim: int, value) -> None:
                shape = [1] * tensor.dim()
                shape[dim] = -1
                tensor.masked_fill_(mask.view(shape), value)
        for name, value in (
            ("oxygen", MAX_OXYGEN), ("diver_count", 0), ("sub_x", 5), ("sub_y", 0),
            ("sub_or", False), ("e_spawn_speed", INIT_SPAWN_SPEED),
            ("e_spawn_timer", INIT_SPAWN_SPEED), ("d_spawn_timer", DIVER_SPAWN_SPEED),
            ("move_speed", INIT_MOVE_INTERVAL), ("ramp_index", 0), ("shot_timer", 0),
            ("surface", True), ("terminal", False), ("enemy_count", 0), ("e_bullets", 0),
        ):
            fill(getattr(self, name), 0, value)
        for objects in (self._f_bullets, self._enemies, self._divers):
            fill(objects, 2, 0)

    def _reads_values(self) -> bool:
        """Whether a step may branch on values read on the host: reads are free and the step
        is not being compiled (a compiled graph has fixed shapes and no host reads)."""
        return self.reads_are_free and not torch.compiler.is_compiling()

    def _enemy_slots(self, spare: int) -> int:
        """How many enemy slots a step works on: all unless it reads values (see
        :meth:`_reads_values`), else the slots in use plus ``spare`` (a compacted list's live
        enemies fill a prefix)."""
        if not self._reads_values():
            return ENEMY_SLOTS
        return min(ENEMY_SLOTS, int(self.enemy_count.max()) + spare)

    # ------------------------------------------------------------------ step
    def _act(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        live = ~self.terminal
        before = {name: getattr(self, name) for name in self._stored}
        window = self._enemy_slots(spare=1)
        enemies = self._spawn(self._enemies[:, :window], live)
        self._move_player(actions)
        px, py = self.sub_x.to(slots.DTYPE), self.sub_y.to(slots.DTYPE)
        bullets, alive, reward = resolve_player_bullets(self._f_bullets, enemies)
        self._divers, picked = resolve_divers(self._divers, px, py, self.diver_count.to(slots.DTYPE))
        self.diver_count = self.diver_count + picked
        enemies, bullets, hits, terminal, shots = move_enemies(enemies, alive, bullets, px, py,
                                                               self.move_speed)
        reward = reward + hits
        self._e_bullets, touched = move_enemy_bullets(self._e_bullets, enemies, shots, px, py)
        one = const(1, self.oxygen)
        terminal = terminal | touched | (self.oxygen < one)
        # timers (never negative) count down to 0
        self.e_spawn_timer = (self.e_spawn_timer - one).clamp_(min=0)
        self.d_spawn_timer = (self.d_spawn_timer - one).clamp_(min=0)
        self.shot_timer = (self.shot_timer - one).clamp_(min=0)
        reward = reward + self._oxygen_and_surface(terminal)
        self._f_bullets = slots.compact(bullets, ALIVE)
        self._divers = slots.compact(self._divers, ALIVE)
        self._enemies, count = slots.compact(enemies, ALIVE, count=True)
        self.enemy_count = count.long()
        every_slot = before["_enemies"]
        if not self._reads_values() or not bool(live.all()):
            # terminal envs change nothing: put their state back (every state tensor has the
            # env dimension last, so ``live`` broadcasts)
            before["_enemies"] = every_slot[:, :window]
            for name, old in before.items():
                setattr(self, name, torch.where(live, getattr(self, name), old))
            reward = torch.where(live, reward, 0)
            terminal = terminal | ~live
        if window < ENEMY_SLOTS:  # the slots past the window hold no enemy, in any env
            every_slot[:, :window] = self._enemies
            self._enemies = every_slot
        self.terminal = terminal
        return reward.float(), terminal.clone()

    def _spawn(self, enemies: torch.Tensor, live: torch.Tensor) -> torch.Tensor:
        """Spawn an enemy and/or a diver where their timers are up (the reference's draws,
        in its order: enemy heading, enemy kind, enemy row; diver heading, diver row).
        Returns the enemies with the new one appended."""
        i8, ready = slots.DTYPE, const(0, self.e_spawn_timer)
        spawn = live & (self.e_spawn_timer == ready)
        u = self.random.uniform(spawn)
        rightward = slots.flag(u < const(1 / 2, u))
        u = self.random.uniform(spawn)
        is_sub = slots.flag(u < const(1 / 3, u))
        row = self.random.integers(1, 9, spawn).to(i8)
        clash = truth(enemies[ALIVE]) & (enemies[Y] == row) & (enemies[DIR] != rightward)
        clash = slots.anyof(clash, 0)
        one = const(1, row)
        edge = (one - rightward) * const(GRID - 1, row)  # column 0 heading right, else 9
        enemy = torch.stack([edge, row, rightward, one, self.move_speed.to(i8),
                             const(ENEMY_SHOT_INTERVAL, row), is_sub])
        enemies = slots.append(enemies, self.enemy_count, spawn & ~clash, enemy)
        self.e_spawn_timer = pick(spawn, self.e_spawn_speed, self.e_spawn_timer)

        spawn = live & (self.d_spawn_timer == ready)
        u = self.random.uniform(spawn)
        rightward = slots.flag(u < const(1 / 2, u))
        row = self.random.integers(1, 9, spawn).to(i8)
        diver = torch.stack([(one - rightward) * const(GRID - 1, row), row, rightward, one,
                             const(DIVER_MOVE_INTERVAL, row)])
        self._divers = slots.append(self._divers, ALIVE, spawn, diver)
        self.d_spawn_timer = pick(spawn, const(DIVER_SPAWN_SPEED, ready), self.d_spawn_timer)
        return enemies

    def _move_player(self, actions: torch.Tensor) -> None:
        """Fire (when the cool-down is over) or move the sub, for every env (the terminal ones
        are put back at the end of the step). What an action does is read from two tables
        over the six actions: (dx, dy) and (fires, keeps the heading, heads right)."""
        dx, dy = self._action_moves.index_select(1, actions)
        fires, keep, right = self._action_flags.index_select(1, actions)
        fire = fires & (self.shot_timer == const(0, self.shot_timer))
        bullet = torch.stack([self.sub_x, self.sub_y, self.sub_or.long(), const(1, self.sub_x)])
        self._f_bullets = slots.append(self._f_bullets, ALIVE, fire, bullet)
        self.shot_timer = pick(fire, const(SHOT_COOL_DOWN, self.shot_timer), self.shot_timer)
        self.sub_x = (self.sub_x + dx).clamp(0, GRID - 1)
        self.sub_or = (self.sub_or & keep) | right
        self.sub_y = (self.sub_y + dy).clamp(0, GRID - 2)

    def _oxygen_and_surface(self, terminal: torch.Tensor) -> torch.Tensor:
        """Oxygen use below the surface; surfacing (refill, divers off, bonus, ramp).
        Updates ``terminal`` in place; returns the surfacing reward."""
        zero = const(0, self.oxygen)
        below = self.sub_y > zero
        self.oxygen = self.oxygen - below.long()
        arrived = ~below & ~self.surface
        self.surface = self.surface & ~below
        divers = self.diver_count
        empty = divers == zero
        terminal |= arrived & empty
        up = arrived & ~empty
        full = up & (divers == const(MAX_DIVERS, divers))
        bonus = self.oxygen.div(const(MAX_OXYGEN // 10, divers), rounding_mode="floor")
        reward = full * bonus  # oxygen * 10 // 200
        self.diver_count = divers - up.long() - full * divers  # 6 -> -1, as the reference
        self.oxygen = pick(up, const(MAX_OXYGEN, divers), self.oxygen)
        self.surface = self.surface | up
        if self.difficulty_ramping:
            one, two = const(1, divers), const(2, divers)
            ramp = up & ((self.e_spawn_speed > one) | (self.move_speed > two))
            faster = ramp & (self.move_speed > two) & ((self.ramp_index & one) == one)
            self.move_speed = self.move_speed - faster.long()
            self.e_spawn_speed = self.e_spawn_speed - (ramp & (self.e_spawn_speed > one)).long()
            self.ramp_index = self.ramp_index + ramp.long()
        return reward

    # ----------------------------------------------------------- observation
    def observation(self) -> torch.Tensor:
        """One ``index_fill_`` paints the sub and every object at the cell indices ``channel *
        100 + 10 * y + x`` looked up by a key per object (a weighted sum of its fields, see
        :func:`_paint_tables`); an object that paints nothing paints a cell of channel 4 (enemy
        bullets) instead, which is written whole afterwards (a lookup of each bullet row's 10
        cells), as are both gauges (one lookup of (oxygen cells, divers))."""
        n, tables = self.num_envs, self._tables
        front = self.sub_y * const(GRID, self.sub_y) + self.sub_x
        back = tables["sub"].index_select(0, front + self.sub_or * const(GRID * GRID, front))
        index = [front.unsqueeze(0), back.unsqueeze(0)]
        window = self._enemy_slots(spare=0)
        for name, objects in (("bullet", self._f_bullets), ("enemy", self._enemies[:, :window]),
                              ("diver", self._divers)):
            weights, *paints = tables[name]
            key = (objects.to(torch.int16) * weights).sum(0, dtype=torch.int16)
            key = key.view(-1).long()
            index += [paint.index_select(0, key).view(-1, n) for paint in paints]
        out = self._paint(torch.cat(index), env_last=True)
        rows = (self._e_bullets[0] | self._e_bullets[1]).t().reshape(-1).long()  # env-major
        out[:, 4] = self._bit_row.index_select(0, rows).view(n, GRID, GRID)
        gauges = tables["oxygen"].index_select(0, self.oxygen.clamp(0, MAX_OXYGEN))
        gauges = gauges + self.diver_count.clamp(0, GRID)
        out[:, 7:9, GRID - 1] = self._gauges.index_select(0, gauges)
        return out


def _paint_tables(device: torch.device) -> dict:
    """What :meth:`Seaquest.observation` looks up. For each object list, the weights of its
    fields in its key (``[F, 1, 1]`` int16: ``x + 10 y + 100 dir + 200 alive + 400 is_sub`` for
    enemies, ``x + 10 y + 100 dir + 200 alive`` for divers, ``x + 10 y + 100 alive`` for
    player bullets) and, per key, the cells it paints: its own (channel 5 shark, 6 enemy sub,
    9 diver, 2 bullet) and, for enemies and divers, the trail cell behind it (channel 3, column
    ``x - 1`` heading right, ``x + 1`` heading left, nothing off the grid); a dead object paints
    the dump cell 400. ``sub``: the sub's back cell by ``10 y + x + 100 heading``; ``oxygen``:
    ``11 * (oxygen * 10 // 200)``, the gauge table's row for an oxygen level 0-200."""
    cells, dump = GRID * GRID, 4 * GRID * GRID
    key = torch.arange(8 * cells, device=device)
    x, y, heading = key % GRID, key // GRID % GRID, key // cells % 2
    alive, sub = key // (2 * cells) % 2 == 1, key // (4 * cells)
    cell = y * GRID + x
    tail = x + 1 - 2 * heading
    trail = torch.where(alive & (tail >= 0) & (tail < GRID), 3 * cells + y * GRID + tail, dump)

    def weights(*w: int) -> torch.Tensor:
        return torch.tensor(w, dtype=torch.int16, device=device).view(-1, 1, 1)

    back = (x + 1 - 2 * (key // cells)) % GRID  # heading right: back cell x - 1
    return {
        "enemy": (weights(1, GRID, cells, 2 * cells, 0, 0, 4 * cells),
                  torch.where(alive, (5 + sub) * cells + cell, dump), trail),
        "diver": (weights(1, GRID, cells, 2 * cells, 0), torch.where(alive, 9 * cells + cell, dump)[:4 * cells],
                  trail[:4 * cells]),
        "bullet": (weights(1, GRID, 0, cells), torch.where(key // cells == 1, 2 * cells + cell, dump)[:2 * cells]),
        "sub": (cells + y * GRID + back)[:2 * cells],
        "oxygen": torch.arange(MAX_OXYGEN + 1, device=device) * 10 // MAX_OXYGEN * (GRID + 1),
    }
