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

Observation channels (``[N, 6, 10, 10]``): 0 cannon, 1 alien, 2 alien while the block heads
left, 3 alien while it heads right, 4 player bullet, 5 alien bullet.
"""

from __future__ import annotations

import torch

from envs.minatar.base import FIRE, GRID, LEFT, RIGHT, BatchedGame

SHOT_COOL_DOWN = 5
ENEMY_MOVE_INTERVAL = 12
ENEMY_SHOT_INTERVAL = 10
FASTEST_MOVE_INTERVAL = 6
"""Ramping stops once ``enemy_move_interval`` is down to this."""


class SpaceInvaders(BatchedGame):
    """N SpaceInvaders games; state is the reference's, one tensor per field (maps ``[N, 10, 10]``)."""

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
        for name in ("f_bullet_map", "e_bullet_map", "alien_map"):
            setattr(self, name, torch.zeros(n, GRID, GRID, dtype=torch.bool, device=dev))
        self._wave = torch.zeros(GRID, GRID, dtype=torch.bool, device=dev)
        self._wave[0:4, 2:8] = True
        col = torch.arange(GRID, device=dev)
        self._col = col
        self._row = col.view(1, GRID, 1)

    def difficulty(self) -> torch.Tensor:
        return self.ramp_index

    def _reset(self, mask: torch.Tensor) -> None:
        for name, value in (
            ("pos", 5), ("alien_dir", -1), ("enemy_move_interval", ENEMY_MOVE_INTERVAL),
            ("alien_move_timer", ENEMY_MOVE_INTERVAL), ("alien_shot_timer", ENEMY_SHOT_INTERVAL),
            ("ramp_index", 0), ("shot_timer", 0), ("terminal", False),
        ):
            setattr(self, name, torch.where(mask, value, getattr(self, name)))
        grid_mask = mask.view(-1, 1, 1)
        self.f_bullet_map = self.f_bullet_map & ~grid_mask
        self.e_bullet_map = self.e_bullet_map & ~grid_mask
        self.alien_map = torch.where(grid_mask, self._wave, self.alien_map)

    def _at_cannon(self, grid_row: torch.Tensor) -> torch.Tensor:
        """``grid_row`` ([N, 10]) at the cannon's column."""
        return grid_row.gather(1, self.pos.unsqueeze(1)).squeeze(1)

    def _act(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        live = ~self.terminal
        cells = live.view(-1, 1, 1)
        terminal = self.terminal.clone()

        fire = live & (actions == FIRE) & (self.shot_timer == 0)
        cannon = self._col == self.pos.unsqueeze(1)
        f_bullets = self.f_bullet_map.clone()
        f_bullets[:, GRID - 1] |= cannon & fire.unsqueeze(1)
        self.shot_timer = torch.where(fire, SHOT_COOL_DOWN, self.shot_timer)
        self.pos = torch.where(live & (actions == LEFT), (self.pos - 1).clamp(min=0), self.pos)
        self.pos = torch.where(live & (actions == RIGHT), (self.pos + 1).clamp(max=GRID - 1),
                               self.pos)

        # bullets: player's up one row, aliens' down one row (leaving at the edge)
        moved = torch.zeros_like(f_bullets)
        moved[:, : GRID - 1] = f_bullets[:, 1:]
        f_bullets = torch.where(cells, moved, f_bullets)
        moved = torch.zeros_like(self.e_bullet_map)
        moved[:, 1:] = self.e_bullet_map[:, : GRID - 1]
        e_bullets = torch.where(cells, moved, self.e_bullet_map)
        terminal |= live & self._at_cannon(e_bullets[:, GRID - 1])

        aliens = self.alien_map
        terminal |= live & self._at_cannon(aliens[:, GRID - 1])
        moves = live & (self.alien_move_timer == 0)
        count = aliens.sum((1, 2))
        self.alien_move_timer = torch.where(
            moves, torch.minimum(count, self.enemy_move_interval), self.alien_move_timer)
        at_edge = ((aliens[:, :, 0].any(1) & (self.alien_dir < 0))
                   | (aliens[:, :, GRID - 1].any(1) & (self.alien_dir > 0)))
        down = moves & at_edge
        sideways = moves & ~at_edge
        self.alien_dir = torch.where(down, -self.alien_dir, self.alien_dir)
        terminal |= down & aliens[:, GRID - 1].any(1)
        shifted = torch.where((self.alien_dir < 0).view(-1, 1, 1), aliens.roll(-1, 2),
                              aliens.roll(1, 2))
        aliens = torch.where(down.view(-1, 1, 1), aliens.roll(1, 1),
                             torch.where(sideways.view(-1, 1, 1), shifted, aliens))
        terminal |= moves & self._at_cannon(aliens[:, GRID - 1])

        shoots = live & (self.alien_shot_timer == 0)
        self.alien_shot_timer = torch.where(shoots, ENEMY_SHOT_INTERVAL, self.alien_shot_timer)
        e_bullets = e_bullets | (self._nearest_alien(aliens) & shoots.view(-1, 1, 1))

        kills = aliens & f_bullets & cells
        reward = kills.sum((1, 2)).float()
        aliens = aliens & ~kills
        self.f_bullet_map = f_bullets & ~kills
        self.e_bullet_map = e_bullets

        self.shot_timer = self.shot_timer - (live & (self.shot_timer > 0)).long()
        self.alien_move_timer = self.alien_move_timer - live.long()
        self.alien_shot_timer = self.alien_shot_timer - live.long()
        cleared = live & ~aliens.any(2).any(1)
        ramp = cleared & self.difficulty_ramping & (self.enemy_move_interval > FASTEST_MOVE_INTERVAL)
        self.enemy_move_interval = self.enemy_move_interval - ramp.long()
        self.ramp_index = self.ramp_index + ramp.long()
        self.alien_map = aliens | (self._wave & cleared.view(-1, 1, 1))
        self.terminal = terminal
        return reward, terminal.clone()

    def _nearest_alien(self, aliens: torch.Tensor) -> torch.Tensor:
        """``[N, 10, 10]`` one-hot: the lowest alien of the column nearest the cannon
        (fewest columns away, the leftmost on a tie)."""
        occupied = aliens.any(1)  # [N, 10] columns
        distance = (self._col - self.pos.unsqueeze(1)).abs() * GRID + self._col
        key = torch.where(occupied, distance, GRID * GRID * GRID)
        column = key.argmin(1, keepdim=True)
        in_column = aliens.gather(2, column.view(-1, 1, 1).expand(-1, GRID, 1)).squeeze(2)
        lowest = torch.where(in_column, self._row.squeeze(2), -1).argmax(1, keepdim=True)
        return ((self._row == lowest.view(-1, 1, 1))
                & (self._col.view(1, 1, GRID) == column.view(-1, 1, 1)))

    def observation(self) -> torch.Tensor:
        n = self.num_envs
        obs = torch.zeros(n, self.num_channels, GRID, GRID, dtype=torch.bool, device=self.device)
        obs[:, 0, GRID - 1] = self._col == self.pos.unsqueeze(1)
        obs[:, 1] = self.alien_map
        left = (self.alien_dir < 0).view(-1, 1, 1)
        obs[:, 2] = self.alien_map & left
        obs[:, 3] = self.alien_map & ~left
        obs[:, 4] = self.f_bullet_map
        obs[:, 5] = self.e_bullet_map
        return obs
