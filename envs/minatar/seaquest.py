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
(:mod:`envs.minatar.slots`): player bullets ``[N, 3, 4]`` and divers ``[N, 4, 5]``
(compacted after each step), enemies (sharks and subs in one list, which keeps each kind's
own order) ``[N, 32, 7]`` as a ring whose list order starts at ``enemy_head``; enemy bullets
as two ``[10, 10]`` planes per env (left-, right-moving), since they only ever meet the
player. Capacities follow from the rules: a player bullet lives at most 10 steps and one is
fired at most every 5; a diver lives 60 steps and one spawns every 30; an enemy lives at
most ``10 * (move_speed + 1) <= 30`` steps once spawns come every step (``move_speed`` is 2
by then, and at most 60 steps with one spawn per 20 before), so no enemy outlives 32 spawns
and the ring never overwrites a live one.
"""

from __future__ import annotations

import torch

from envs.minatar import slots
from envs.minatar.base import DOWN, FIRE, GRID, LEFT, RIGHT, UP, BatchedGame
from envs.minatar.seaquest_rules import (
    ALIVE, DIR, DIVER_MOVE_INTERVAL, ENEMY_SHOT_INTERVAL, IS_SUB, MAX_DIVERS, X, Y,
    move_enemies, resolve_divers, resolve_player_bullets,
)

MAX_OXYGEN = 200
INIT_SPAWN_SPEED = 20
DIVER_SPAWN_SPEED = 30
INIT_MOVE_INTERVAL = 5
SHOT_COOL_DOWN = 5
BULLET_SLOTS, ENEMY_SLOTS, DIVER_SLOTS = 3, 32, 4


class Seaquest(BatchedGame):
    """N Seaquest games (see the module docstring for the rules and the state layout)."""

    name = "Seaquest"
    num_channels = 10
    draws_per_step = 5  # an enemy's heading, kind and row; a diver's heading and row
    state_names = (
        "sub_x", "sub_y", "sub_or", "oxygen", "diver_count", "e_spawn_speed", "e_spawn_timer",
        "d_spawn_timer", "move_speed", "ramp_index", "shot_timer", "surface",
        "f_bullets", "enemies", "enemy_head", "divers", "e_bullets",
    )

    def _init_state(self) -> None:
        n, dev = self.num_envs, self.device
        for name in self.state_names[:12]:
            setattr(self, name, torch.zeros(n, dtype=torch.long, device=dev))
        self.sub_or = torch.zeros(n, dtype=torch.bool, device=dev)
        self.surface = torch.zeros(n, dtype=torch.bool, device=dev)
        self.f_bullets = slots.empty(n, BULLET_SLOTS, 4, dev)
        self.enemies = slots.empty(n, ENEMY_SLOTS, 7, dev)
        self.enemy_head = torch.zeros(n, dtype=torch.long, device=dev)
        self.divers = slots.empty(n, DIVER_SLOTS, 5, dev)
        self.e_bullets = torch.zeros(n, 2, GRID, GRID, dtype=torch.bool, device=dev)
        self._cell = torch.arange(GRID * GRID, device=dev)
        self._col = torch.arange(GRID, device=dev)

    def difficulty(self) -> torch.Tensor:
        return self.ramp_index

    def _reset(self, mask: torch.Tensor) -> None:
        def put(name: str, value: int | bool) -> None:
            setattr(self, name, torch.where(mask, value, getattr(self, name)))

        for name, value in (
            ("oxygen", MAX_OXYGEN), ("diver_count", 0), ("sub_x", 5), ("sub_y", 0),
            ("sub_or", False), ("e_spawn_speed", INIT_SPAWN_SPEED),
            ("e_spawn_timer", INIT_SPAWN_SPEED), ("d_spawn_timer", DIVER_SPAWN_SPEED),
            ("move_speed", INIT_MOVE_INTERVAL), ("ramp_index", 0), ("shot_timer", 0),
            ("surface", True), ("terminal", False),
        ):
            put(name, value)
        keep = (~mask).long()
        self.f_bullets = self.f_bullets * keep[:, None, None]
        self.enemies[:, :, ALIVE] *= keep.unsqueeze(1)
        self.enemy_head = self.enemy_head * keep
        self.divers = self.divers * keep[:, None, None]
        self.e_bullets = self.e_bullets & ~mask[:, None, None, None]

    # ------------------------------------------------------------------ step
    def _act(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        live = ~self.terminal
        self._spawn(live)
        self._move_player(actions, live)
        reward = torch.zeros(self.num_envs, dtype=torch.long, device=self.device)
        terminal = self.terminal.clone()

        # The rule functions update these copies of the object lists in place.
        bullets, enemies, divers = self.f_bullets.clone(), self.enemies, self.divers.clone()
        age = slots.ring_age(self.enemy_head, ENEMY_SLOTS)
        player = (self.sub_x, self.sub_y)
        reward += resolve_player_bullets(bullets, enemies, age, live)
        self.diver_count = resolve_divers(divers, player, self.diver_count, live)
        subs = live.unsqueeze(1) & (enemies[:, :, ALIVE] == 1) & (enemies[:, :, IS_SUB] == 1)
        hits, touched, shots = move_enemies(enemies, subs, age, bullets, player,
                                            self.move_speed, shoot=True)
        reward += hits
        terminal |= touched
        terminal |= self._move_enemy_bullets(enemies, shots, live)
        fish = live.unsqueeze(1) & (enemies[:, :, ALIVE] == 1) & (enemies[:, :, IS_SUB] == 0)
        hits, touched, _ = move_enemies(enemies, fish, age, bullets, player, self.move_speed,
                                        shoot=False)
        reward += hits
        terminal |= touched

        self.e_spawn_timer = self.e_spawn_timer - (live & (self.e_spawn_timer > 0)).long()
        self.d_spawn_timer = self.d_spawn_timer - (live & (self.d_spawn_timer > 0)).long()
        self.shot_timer = self.shot_timer - (live & (self.shot_timer > 0)).long()
        terminal |= live & (self.oxygen <= 0)
        reward += self._oxygen_and_surface(live, terminal)

        self.f_bullets = slots.compact(bullets, ALIVE)
        self.divers = slots.compact(divers, ALIVE)
        self.terminal = terminal
        return reward.float(), terminal.clone()

    def _spawn(self, live: torch.Tensor) -> None:
        """Spawn an enemy and/or a diver where their timers are up (the reference's draws,
        in its order: enemy heading, enemy kind, enemy row; diver heading, diver row)."""
        spawn = live & (self.e_spawn_timer == 0)
        rightward = self.random.uniform(spawn) < 1 / 2
        is_sub = self.random.uniform(spawn) < 1 / 3
        row = self.random.integers(1, 9, spawn)
        en = self.enemies
        clash = ((en[:, :, ALIVE] == 1) & (en[:, :, Y] == row.unsqueeze(1))
                 & (en[:, :, DIR] != rightward.long().unsqueeze(1))).any(1)
        zero = torch.zeros_like(row)
        enemy = torch.stack([
            torch.where(rightward, 0, GRID - 1), row, rightward.long(), zero + 1,
            self.move_speed, zero + ENEMY_SHOT_INTERVAL, is_sub.long(),
        ], 1)
        self.enemy_head = slots.ring_append(en, self.enemy_head, spawn & ~clash, enemy)
        self.e_spawn_timer = torch.where(spawn, self.e_spawn_speed, self.e_spawn_timer)

        spawn = live & (self.d_spawn_timer == 0)
        rightward = self.random.uniform(spawn) < 1 / 2
        row = self.random.integers(1, 9, spawn)
        zero = torch.zeros_like(row)
        diver = torch.stack([torch.where(rightward, 0, GRID - 1), row, rightward.long(),
                             zero + 1, zero + DIVER_MOVE_INTERVAL], 1)
        self.divers = slots.append(self.divers, ALIVE, spawn, diver)
        self.d_spawn_timer = torch.where(spawn, DIVER_SPAWN_SPEED, self.d_spawn_timer)

    def _move_player(self, actions: torch.Tensor, live: torch.Tensor) -> None:
        fire = live & (actions == FIRE) & (self.shot_timer == 0)
        zero = torch.zeros_like(self.sub_x)
        bullet = torch.stack([self.sub_x, self.sub_y, self.sub_or.long(), zero + 1], 1)
        self.f_bullets = slots.append(self.f_bullets, ALIVE, fire, bullet)
        self.shot_timer = torch.where(fire, SHOT_COOL_DOWN, self.shot_timer)
        left, right = live & (actions == LEFT), live & (actions == RIGHT)
        self.sub_x = torch.where(left, (self.sub_x - 1).clamp(min=0), self.sub_x)
        self.sub_x = torch.where(right, (self.sub_x + 1).clamp(max=GRID - 1), self.sub_x)
        self.sub_or = torch.where(left, False, torch.where(right, True, self.sub_or))
        self.sub_y = torch.where(live & (actions == UP), (self.sub_y - 1).clamp(min=0), self.sub_y)
        self.sub_y = torch.where(live & (actions == DOWN), (self.sub_y + 1).clamp(max=GRID - 2),
                                 self.sub_y)

    def _move_enemy_bullets(self, enemies: torch.Tensor, shots: torch.Tensor,
                            live: torch.Tensor) -> torch.Tensor:
        """Add the subs' new bullets, move every enemy bullet one cell along its heading;
        True where one touches the submarine before or after its move."""
        n = self.num_envs
        x, y, heading = enemies[:, :, X], enemies[:, :, Y], enemies[:, :, DIR]
        placed = shots & (x >= 0) & (x < GRID)  # a sub leaving the screen fires off-screen
        dump = 2 * GRID * GRID
        index = torch.where(placed, heading * GRID * GRID + y * GRID + x, dump)
        new = torch.zeros(n, dump + 1, dtype=torch.uint8, device=self.device)
        new.scatter_(1, index, 1)
        planes = self.e_bullets | new[:, :dump].view(n, 2, GRID, GRID).bool()
        player_cell = self.sub_y * GRID + self.sub_x
        def at_player(p: torch.Tensor) -> torch.Tensor:
            return p.view(n, 2, GRID * GRID).any(1).gather(1, player_cell.unsqueeze(1)).squeeze(1)
        touched = at_player(planes)
        moved = torch.zeros_like(planes)
        moved[:, 0, :, : GRID - 1] = planes[:, 0, :, 1:]
        moved[:, 1, :, 1:] = planes[:, 1, :, : GRID - 1]
        touched |= at_player(moved)
        self.e_bullets = torch.where(live[:, None, None, None], moved, self.e_bullets)
        return live & touched

    def _oxygen_and_surface(self, live: torch.Tensor, terminal: torch.Tensor) -> torch.Tensor:
        """Oxygen use below the surface; surfacing (refill, divers off, bonus, ramp).
        Updates ``terminal`` in place; returns the surfacing reward."""
        below = live & (self.sub_y > 0)
        self.oxygen = self.oxygen - below.long()
        arrived = live & ~below & ~self.surface
        self.surface = self.surface & ~below
        terminal |= arrived & (self.diver_count == 0)
        up = arrived & (self.diver_count != 0)
        full = up & (self.diver_count == MAX_DIVERS)
        reward = torch.where(full, self.oxygen * 10 // MAX_OXYGEN, 0)
        self.diver_count = torch.where(up, torch.where(full, 0, self.diver_count) - 1,
                                       self.diver_count)
        self.oxygen = torch.where(up, MAX_OXYGEN, self.oxygen)
        self.surface = self.surface | up
        ramp = up & self.difficulty_ramping & ((self.e_spawn_speed > 1) | (self.move_speed > 2))
        faster = ramp & (self.move_speed > 2) & (self.ramp_index % 2 == 1)
        self.move_speed = self.move_speed - faster.long()
        self.e_spawn_speed = self.e_spawn_speed - (ramp & (self.e_spawn_speed > 1)).long()
        self.ramp_index = self.ramp_index + ramp.long()
        return reward

    # ----------------------------------------------------------- observation
    def observation(self) -> torch.Tensor:
        n, cells = self.num_envs, GRID * GRID
        obs = torch.zeros(n, self.num_channels, cells + 1, dtype=torch.uint8, device=self.device)

        def paint(channel: int, x: torch.Tensor, y: torch.Tensor, on: torch.Tensor) -> None:
            index = torch.where(on, y * GRID + x, cells).reshape(n, -1)
            obs[:, channel].scatter_(1, index, 1)

        paint(0, self.sub_x, self.sub_y, self.all_envs)
        back = torch.where(self.sub_or, self.sub_x - 1, self.sub_x + 1)
        paint(1, back % GRID, self.sub_y, self.all_envs)
        for channel, objects in ((2, self.f_bullets), (9, self.divers)):
            paint(channel, objects[:, :, X], objects[:, :, Y], objects[:, :, ALIVE] == 1)
        en = self.enemies
        alive = en[:, :, ALIVE] == 1
        paint(5, en[:, :, X], en[:, :, Y], alive & (en[:, :, IS_SUB] == 0))
        paint(6, en[:, :, X], en[:, :, Y], alive & (en[:, :, IS_SUB] == 1))
        for objects in (en, self.divers):
            tail = objects[:, :, X] + 1 - 2 * objects[:, :, DIR]
            on = (objects[:, :, ALIVE] == 1) & (tail >= 0) & (tail < GRID)
            paint(3, tail, objects[:, :, Y], on)
        out = obs[:, :, :cells].bool().reshape(n, self.num_channels, GRID, GRID)
        out[:, 4] = self.e_bullets.any(1)
        oxygen_cells = self.oxygen.clamp(min=0) * 10 // MAX_OXYGEN
        out[:, 7, GRID - 1] = self._col < oxygen_cells.unsqueeze(1)
        divers_from = (GRID - 1 - self.diver_count).unsqueeze(1)
        out[:, 8, GRID - 1] = (self._col >= divers_from) & (self._col < GRID - 1)
        return out
