"""Asterix, batched: the reference MinAtar rules on N envs at once.

Channels: 0 player, 1 enemy, 2 trail (the cell an entity came from), 3 gold.
The player starts at (row 5, column 5) and moves one cell per step (rows 1-8, columns 0-9).
Rows 1-8 each hold at most one entity (slot ``i`` is row ``i + 1``), moving left or right
by one cell every ``move_speed`` steps and leaving at the edge. When the spawn timer is 0,
an entity is spawned: draws ``uniform() < 1/2`` (it enters at column 0 heading right, else
at column 9 heading left) and ``uniform() < 1/3`` (gold, else enemy), then, if any row is
free, ``integers(0, number of free rows)`` picks the free row by rank. Touching gold gives
+1 and removes it; touching an enemy ends the episode. Collisions are checked after the
player moves and again after the entities move. Difficulty ramp (``difficulty_ramping``):
every 101 steps (a timer from 100 down to -1) the spawn interval shrinks by one (from 10
down to 1) and every second time the move interval too (from 5 down to 1); the level is
``difficulty()``.
"""

from __future__ import annotations

import torch

from envs.minatar.base import DOWN, GRID, LEFT, RIGHT, UP, BatchedGame, pick

RAMP_INTERVAL = 100
INIT_SPAWN_SPEED = 10
INIT_MOVE_INTERVAL = 5
SLOTS = 8
SLOT_DTYPE = torch.int32
"""The entities' columns (``[N, 8]``) are int32."""


class Asterix(BatchedGame):
    name = "Asterix"
    num_channels = 4
    draws_per_step = 3  # an entity's heading, kind and free slot
    state_names = ("player_x", "player_y", "ent_x", "ent_right", "ent_gold", "ent_alive",
                   "spawn_speed", "spawn_timer", "move_speed", "move_timer", "ramp_timer", "ramp_index")

    def _init_state(self) -> None:
        n, dev = self.num_envs, self.device
        for name in ("player_x", "player_y", "spawn_speed", "spawn_timer", "move_speed",
                     "move_timer", "ramp_timer", "ramp_index"):
            setattr(self, name, torch.zeros(n, dtype=torch.long, device=dev))
        self.ent_x = torch.zeros(n, SLOTS, dtype=SLOT_DTYPE, device=dev)
        for name in ("ent_right", "ent_gold", "ent_alive"):
            setattr(self, name, torch.zeros(n, SLOTS, dtype=torch.bool, device=dev))
        rows = torch.arange(1, SLOTS + 1, device=dev, dtype=SLOT_DTYPE) * GRID
        self._ent_rows = rows.expand(n, SLOTS).contiguous()

    def _reset(self, mask: torch.Tensor) -> None:
        m = mask

        def put(name: str, value: int) -> None:
            setattr(self, name, torch.where(m, value, getattr(self, name)))

        put("player_x", 5)
        put("player_y", 5)
        put("spawn_speed", INIT_SPAWN_SPEED)
        put("spawn_timer", INIT_SPAWN_SPEED)
        put("move_speed", INIT_MOVE_INTERVAL)
        put("move_timer", INIT_MOVE_INTERVAL)
        put("ramp_timer", RAMP_INTERVAL)
        put("ramp_index", 0)
        self.ent_alive = self.ent_alive & ~m[:, None]
        self.terminal = self.terminal & ~m

    def difficulty(self) -> torch.Tensor:
        return self.ramp_index

    def _spawn(self, spawn: torch.Tensor) -> None:
        """The reference's ``_spawn_entity`` where ``spawn`` is True."""
        right = self.random.uniform(spawn) < 1 / 2
        gold = self.random.uniform(spawn) < 1 / 3
        free = ~self.ent_alive
        num_free = free.sum(1)
        can = spawn & (num_free > 0)
        rank = self.random.integers(0, num_free, can)
        before = free.to(SLOT_DTYPE).cumsum(1, dtype=SLOT_DTYPE)  # free slots up to each slot
        chosen = free & (before == (rank + 1).to(SLOT_DTYPE)[:, None]) & can[:, None]
        self.ent_alive = self.ent_alive | chosen
        start = (9 - 9 * right.to(SLOT_DTYPE)).unsqueeze(1)  # column 0 heading right, else 9
        self.ent_x = pick(chosen.to(SLOT_DTYPE), start, self.ent_x)
        self.ent_right = (self.ent_right & ~chosen) | (chosen & right.unsqueeze(1))
        self.ent_gold = (self.ent_gold & ~chosen) | (chosen & gold.unsqueeze(1))

    def _act(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        live = ~self.terminal
        spawn = live & (self.spawn_timer == 0)
        self._spawn(spawn)
        self.spawn_timer = torch.where(spawn, self.spawn_speed, self.spawn_timer)

        px = (self.player_x - (actions == LEFT).long() + (actions == RIGHT).long()).clamp(0, 9)
        py = (self.player_y - (actions == UP).long() + (actions == DOWN).long()).clamp(1, 8)
        px = torch.where(live, px, self.player_x)
        py = torch.where(live, py, self.player_y)
        self.player_x, self.player_y = px, py
        # The player's row holds slot py - 1: only that entity can touch the player.
        slot = (py - 1).unsqueeze(1)
        gold = self.ent_gold.gather(1, slot).squeeze(1)

        def collide(alive: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            here = alive.gather(1, slot).squeeze(1)
            touch = live & here & (x.gather(1, slot).squeeze(1) == px)
            got = touch & gold
            return alive.scatter(1, slot, (here & ~got).unsqueeze(1)), got, touch & ~gold

        alive, reward, dead = collide(self.ent_alive, self.ent_x)
        move = live & (self.move_timer == 0)
        self.move_timer = torch.where(move, self.move_speed, self.move_timer)
        moving = (alive & move.unsqueeze(1)).to(SLOT_DTYPE)
        x = self.ent_x + moving * (2 * self.ent_right.to(SLOT_DTYPE) - 1)
        alive = alive & (x >= 0) & (x <= 9)
        self.ent_x = x
        alive, reward2, dead2 = collide(alive, x)
        self.ent_alive = alive
        self.terminal = self.terminal | dead | dead2

        self.spawn_timer = self.spawn_timer - live.long()
        self.move_timer = self.move_timer - live.long()
        if self.difficulty_ramping:
            self._ramp(live)
        return reward.float() + reward2.float(), self.terminal.clone()

    def _ramp(self, live: torch.Tensor) -> None:
        ramping = live & ((self.spawn_speed > 1) | (self.move_speed > 1))
        wait = ramping & (self.ramp_timer >= 0)
        level_up = ramping & ~wait
        self.ramp_timer = self.ramp_timer - wait.long()
        faster_move = level_up & (self.move_speed > 1) & (self.ramp_index % 2 == 1)
        self.move_speed = self.move_speed - faster_move.long()
        self.spawn_speed = self.spawn_speed - (level_up & (self.spawn_speed > 1)).long()
        self.ramp_index = self.ramp_index + level_up.long()
        self.ramp_timer = torch.where(level_up, RAMP_INTERVAL, self.ramp_timer)

    def observation(self) -> torch.Tensor:
        # 17 cells per env: the player, every live entity (channel 1 enemy or 3 gold, row
        # i + 1) and its trail (channel 2, the cell it came from); dead entities and trails off
        # the grid paint the player's cell again
        cells = GRID * GRID
        x, alive, i32 = self.ent_x, self.ent_alive, SLOT_DTYPE
        back = x + 1 - 2 * self.ent_right.to(i32)
        row = self._ent_rows                                       # [N, 8] int32
        at = x + row + cells + self.ent_gold.to(i32) * (2 * cells)
        trail = back + row + 2 * cells
        on_grid = alive & (back >= 0) & (back < GRID)
        player = (self.player_y * GRID + self.player_x).to(i32).unsqueeze(1)
        return self._paint(torch.cat((player, player + alive.to(i32) * (at - player),
                                      player + on_grid.to(i32) * (trail - player)), 1))
