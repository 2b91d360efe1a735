"""SpaceInvaders as a batched tensor program: the reference ``minatar`` rules, N envs at once.

The cannon moves along row 9 and fires upward (one bullet per 5 steps; bullets move one row
per step). A block of 4 x 6 aliens starts in rows 0-3, columns 2-7, heading left; every
``min(aliens left, enemy_move_interval)`` steps (12 at start) it moves one column, or, when
an alien is already at the edge it heads for, one row down (reversing). Every 11 steps the
alien nearest the cannon's column (fewest columns away, the leftmost on a tie; its lowest
alien) drops a bullet that falls one row per step. A bullet meeting an alien removes both:
reward +1. A cleared wave is replaced by a new one, and with difficulty ramping the new one
moves faster (``enemy_move_interval`` down by 1, to 6). The episode ends when an alien or an
alien bullet reaches the cannon, or when the block must step down with an alien in row 9
(that step's observation shows the block wrapped round to row 0, as ``numpy.roll`` does in
the reference).

SpaceInvaders draws no random numbers of its own; only sticky actions are random.

**Layout.** The three maps (aliens, player bullets, alien bullets) are ``[N, 10]`` int16:
entry ``[i, y]`` is row ``y`` of env ``i`` as a 10-bit mask, bit ``x`` = column ``x``
(:func:`to_rows` / :func:`to_grid` convert from and to ``[..., 10, 10]`` bool). A column
move is a shift of every row, a row move a shift along the row dimension, the occupied
columns the OR of the rows. The alien nearest the cannon is found by a table over
(cannon column, occupied columns) and the observation is one lookup of every row's 10 cells
in a ``[1024, 10]`` bool table. A step computes every env's next state and keeps the old one
where the env was terminal.

Observation channels (``[N, 6, 10, 10]``): 0 cannon, 1 alien, 2 alien while the block heads
left, 3 alien while it heads right, 4 player bullet, 5 alien bullet.
"""

from __future__ import annotations

import torch

from envs.minatar.base import FIRE, GRID, LEFT, RIGHT, BatchedGame, pick

SHOT_COOL_DOWN = 5
ENEMY_MOVE_INTERVAL = 12
ENEMY_SHOT_INTERVAL = 10
FASTEST_MOVE_INTERVAL = 6
"""Ramping stops once ``enemy_move_interval`` is down to this."""
WAVE_ROW = 0b0011111100
"""Rows 0-3 of a new wave: columns 2-7."""
ROWS = torch.int16
MAPS = ("alien_map", "f_bullet_map", "e_bullet_map")


def to_rows(grid: torch.Tensor) -> torch.Tensor:
    """``[..., 10, 10]`` bool (row, column) -> ``[..., 10]`` int16 row masks (bit = column)."""
    bits = 1 << torch.arange(GRID, device=grid.device)
    return (grid.long() * bits).sum(-1).to(ROWS)


def to_grid(rows: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`to_rows`."""
    return ((rows.long().unsqueeze(-1) >> torch.arange(GRID, device=rows.device)) & 1).bool()


class SpaceInvaders(BatchedGame):
    """N SpaceInvaders games; state is the reference's, one tensor per field (maps as rows)."""

    name = "SpaceInvaders"
    num_channels = 6
    state_names = (
        "pos", "f_bullet_map", "e_bullet_map", "alien_map", "alien_dir", "enemy_move_interval",
        "alien_move_timer", "alien_shot_timer", "ramp_index", "shot_timer",
    )

    def _init_state(self) -> None:
        n, dev = self.num_envs, self.device
        for name in self.state_names:
            setattr(self, name, torch.zeros(n, dtype=torch.long, device=dev))
        for name in MAPS:
            setattr(self, name, torch.zeros(n, GRID, dtype=ROWS, device=dev))
        self._wave = torch.tensor([WAVE_ROW] * 4 + [0] * 6, dtype=ROWS, device=dev)
        col = torch.arange(GRID, device=dev)
        self._bit = (1 << col).to(ROWS)
        self._cells = to_grid(torch.arange(1 << GRID, device=dev))             # [1024, 10]
        self._popcount = self._cells.sum(1).to(ROWS)                           # [1024]
        # a row's 10 cells as 5 int16 words (one index_select of whole words paints a row)
        self._row_cells = self._cells.view(torch.uint8).view(torch.int16)      # [1024, 5]
        # nearest occupied column to the cannon: fewest columns away, the leftmost on a tie
        key = (col.view(GRID, 1) - col).abs() * GRID + col                      # [pos, column]
        key = torch.where(self._cells.unsqueeze(0), key.unsqueeze(1), GRID ** 3)  # [pos, mask, column]
        self._nearest = key.argmin(2).view(-1)                                   # [pos * 1024 + mask]
        self._row_lane = (col + 1).to(ROWS)

    def set_env(self, i: int, name: str, value) -> None:
        """Set field ``name`` of env ``i`` from a reference value (maps as 10 x 10 arrays); a
        position off the grid, a heading other than -1 or 1, a map of another shape or a
        negative timer is refused in one line, and nothing is written."""
        if name in MAPS:
            grid = torch.as_tensor(value)
            if grid.shape != (GRID, GRID):
                raise ValueError(f"SpaceInvaders {name} of shape {tuple(grid.shape)}: valid is 10 x 10")
            return super().set_env(i, name, to_rows(grid.ne(0)))
        valid = {"pos": range(GRID), "alien_dir": (-1, 1)}.get(name)
        if valid is not None:
            if int(value) not in valid:
                raise ValueError(f"SpaceInvaders {name}={value}: valid values are "
                                 + ("0-9" if name == "pos" else "-1 and 1"))
        elif name in self.state_names and int(value) < 0:
            raise ValueError(f"SpaceInvaders {name}={value}: valid values are >= 0")
        super().set_env(i, name, value)

    def grid(self, name: str) -> torch.Tensor:
        """Map ``name`` as ``[N, 10, 10]`` bool."""
        return to_grid(getattr(self, name))

    def difficulty(self) -> torch.Tensor:
        return self.ramp_index

    def _reset(self, mask: torch.Tensor) -> None:
        for name, value in (
            ("pos", 5), ("alien_dir", -1), ("enemy_move_interval", ENEMY_MOVE_INTERVAL),
            ("alien_move_timer", ENEMY_MOVE_INTERVAL), ("alien_shot_timer", ENEMY_SHOT_INTERVAL),
            ("ramp_index", 0), ("shot_timer", 0), ("terminal", False),
        ):
            setattr(self, name, torch.where(mask, value, getattr(self, name)))
        keep = (~mask).to(ROWS).unsqueeze(1)
        self.f_bullet_map = self.f_bullet_map * keep
        self.e_bullet_map = self.e_bullet_map * keep
        self.alien_map = pick(keep, self.alien_map, self._wave)

    def _act(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        live = ~self.terminal
        aliens, f_old, e_old = self.alien_map, self.f_bullet_map, self.e_bullet_map
        zero = f_old[:, :1].new_zeros(())

        fire = (actions == FIRE) & (self.shot_timer == 0)
        cannon = self._bit.index_select(0, self.pos)
        # player's bullets up one row (the new one from row 9 to row 8), aliens' down one row
        f_bullets = torch.cat((f_old[:, 1:GRID - 1], (f_old[:, GRID - 1] | (cannon * fire)).unsqueeze(1),
                               zero.expand(self.num_envs, 1)), 1)
        e_bullets = torch.cat((zero.expand(self.num_envs, 1), e_old[:, :GRID - 1]), 1)
        shot_timer = torch.where(fire, SHOT_COOL_DOWN, self.shot_timer)
        pos = (self.pos - (actions == LEFT).long() + (actions == RIGHT).long()).clamp(0, GRID - 1)
        cannon = self._bit.index_select(0, pos)
        end = ((e_bullets[:, GRID - 1] | aliens[:, GRID - 1]) & cannon) != 0

        moves = self.alien_move_timer == 0
        count = self._popcount.index_select(0, aliens.view(-1).long()).view(-1, GRID).sum(1)
        move_timer = torch.where(moves, torch.minimum(count, self.enemy_move_interval),
                                 self.alien_move_timer)
        heads_left = self.alien_dir < 0
        edge = torch.where(heads_left, 1, 1 << (GRID - 1)).to(ROWS)
        down = moves & ((aliens & edge.unsqueeze(1)).amax(1) != 0)
        sideways = (moves & ~down).to(ROWS).unsqueeze(1)
        alien_dir = torch.where(down, -self.alien_dir, self.alien_dir)
        end |= down & (aliens[:, GRID - 1] != 0)
        left = heads_left.to(ROWS).unsqueeze(1)
        shifted = (aliens << 1) + left * ((aliens >> 1) - (aliens << 1))
        moved = pick(sideways, shifted, aliens)
        aliens = torch.where(down.unsqueeze(1), aliens.roll(1, 1), moved)
        end |= moves & ((aliens[:, GRID - 1] & cannon) != 0)

        shoots = self.alien_shot_timer == 0
        shot_timer_a = torch.where(shoots, ENEMY_SHOT_INTERVAL, self.alien_shot_timer)
        half = aliens[:, :5] | aliens[:, 5:]
        columns = half[:, 0] | half[:, 1] | half[:, 2] | half[:, 3] | half[:, 4]
        column = self._nearest.index_select(0, pos * (1 << GRID) + columns.long())
        in_column = (aliens >> column.to(ROWS).unsqueeze(1)) & 1
        lowest = (in_column * self._row_lane).amax(1, keepdim=True)      # row + 1
        drop = (self._row_lane == lowest) & shoots.unsqueeze(1)
        e_bullets = e_bullets | (drop.to(ROWS) * self._bit.index_select(0, column).unsqueeze(1))

        kills = aliens & f_bullets
        reward = self._popcount.index_select(0, kills.view(-1).long()).view(-1, GRID).sum(1).float()
        aliens = aliens & ~kills
        f_bullets = f_bullets & ~kills

        cleared = aliens.amax(1) == 0
        ramp = (cleared & self.difficulty_ramping & (self.enemy_move_interval > FASTEST_MOVE_INTERVAL)).long()
        aliens = aliens | (cleared.to(ROWS).unsqueeze(1) * self._wave)

        # terminal envs keep their state
        row_live = live.to(ROWS).unsqueeze(1)
        one = live.long()
        self.alien_map = pick(row_live, aliens, self.alien_map)
        self.f_bullet_map = pick(row_live, f_bullets, f_old)
        self.e_bullet_map = pick(row_live, e_bullets, e_old)
        self.pos = pick(one, pos, self.pos)
        self.alien_dir = pick(one, alien_dir, self.alien_dir)
        shot_timer = shot_timer - (shot_timer > 0).long()
        self.shot_timer = pick(one, shot_timer, self.shot_timer)
        self.alien_move_timer = pick(one, move_timer - 1, self.alien_move_timer)
        self.alien_shot_timer = pick(one, shot_timer_a - 1, self.alien_shot_timer)
        ramp = ramp * one
        self.enemy_move_interval = self.enemy_move_interval - ramp
        self.ramp_index = self.ramp_index + ramp
        self.terminal = self.terminal | (live & end)
        return reward * live, self.terminal.clone()

    def observation(self) -> torch.Tensor:
        n = self.num_envs
        aliens = self.alien_map
        left = (self.alien_dir < 0).to(ROWS).unsqueeze(1)
        cannon = torch.zeros(n, GRID, dtype=ROWS, device=self.device)
        cannon[:, GRID - 1] = self._bit.index_select(0, self.pos)
        rows = torch.cat((cannon, aliens, aliens * left, aliens - aliens * left,
                          self.f_bullet_map, self.e_bullet_map), 1)
        cells = self._row_cells.index_select(0, rows.view(-1).long())
        return cells.view(torch.bool).view(n, self.num_channels, GRID, GRID)
