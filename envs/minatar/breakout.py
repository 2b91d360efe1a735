"""Breakout, batched: the reference MinAtar rules on N envs at once.

Channels: 0 paddle, 1 ball, 2 trail (the ball's previous cell), 3 brick.
The paddle sits on row 9 and moves left/right one cell per step; the ball moves one cell
diagonally per step (directions 0: up-left, 1: up-right, 2: down-right, 3: down-left).
Walls reflect it; a brick it enters is removed (+1) and the ball is put back on its previous
row and reflected vertically, except right after another brick strike (then it passes into
the cell, no reward); reaching row 9 refills the three brick rows if none is left, then
bounces off the paddle when the ball was above it (vertical reflection) or lands on it
(horizontal reflection too), else the episode ends. A reset draws the start side:
``integers(0, 2)`` (0: column 0 heading down-right, 1: column 9 heading down-left), row 3.
No difficulty ramp.
"""

from __future__ import annotations

import torch

from envs.minatar.base import GRID, LEFT, RIGHT, BatchedGame


BRICK_ROWS = (1, 4)
"""Bricks only ever occupy rows 1-3 (placed there at reset and at a refill)."""
ALL_BRICKS = (1 << 30) - 1


class Breakout(BatchedGame):
    """Bricks are kept as a 30-bit mask per env (bit ``(row - 1) * 10 + column`` for rows 1-3),
    so every step is a fixed sequence of ``[N]``-sized integer operations."""

    name = "Breakout"
    num_channels = 4
    state_names = ("ball_x", "ball_y", "ball_dir", "pos", "last_x", "last_y", "strike", "bricks")

    def _init_state(self) -> None:
        n, dev = self.num_envs, self.device
        for name in ("ball_x", "ball_y", "ball_dir", "pos", "last_x", "last_y", "bricks"):
            setattr(self, name, torch.zeros(n, dtype=torch.long, device=dev))
        self.strike = torch.zeros(n, dtype=torch.bool, device=dev)
        self._bits = torch.arange(30, device=dev)

    def _reset(self, mask: torch.Tensor) -> None:
        side = self.random.integers(0, 2, mask)
        x = side * 9                        # side 0: column 0 heading down-right (2)
        d = side + 2                        # side 1: column 9 heading down-left (3)
        m = mask
        self.ball_x = torch.where(m, x, self.ball_x)
        self.ball_y = torch.where(m, 3, self.ball_y)
        self.ball_dir = torch.where(m, d, self.ball_dir)
        self.pos = torch.where(m, 4, self.pos)
        self.last_x = torch.where(m, x, self.last_x)
        self.last_y = torch.where(m, 3, self.last_y)
        self.strike = self.strike & ~m
        self.bricks = torch.where(m, ALL_BRICKS, self.bricks)
        self.terminal = self.terminal & ~m

    def _act(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        live = ~self.terminal
        pos = (self.pos - (actions == LEFT).long() + (actions == RIGHT).long()).clamp(0, 9)

        # directions 0: up-left, 1: up-right, 2: down-right, 3: down-left;
        # d ^ 1 reflects horizontally, 3 - d vertically, d ^ 2 both
        d = self.ball_dir
        new_x = self.ball_x + torch.where((d == 1) | (d == 2), 1, -1)
        new_y = self.ball_y + torch.where(d < 2, -1, 1)
        side = (new_x < 0) | (new_x > 9)
        new_x = new_x.clamp(0, 9)
        d = torch.where(side, d ^ 1, d)
        top = new_y < 0
        new_y = new_y.clamp(0, 9)  # (a live ball never goes below row 9; a terminal one may try)
        d = torch.where(top, 3 - d, d)

        in_rows = (new_y >= BRICK_ROWS[0]) & (new_y < BRICK_ROWS[1])
        bit = ((new_y - BRICK_ROWS[0]) * GRID + new_x).clamp(0, 29)
        on_brick = ~top & in_rows & ((self.bricks >> bit) & 1).bool()
        hit = on_brick & ~self.strike & live
        bricks = self.bricks & ~(hit.long() << bit)
        new_y = torch.where(hit, self.ball_y, new_y)
        d = torch.where(hit, 3 - d, d)

        bottom = ~top & ~on_brick & (new_y == 9)
        bricks = torch.where(bottom & (bricks == 0), ALL_BRICKS, bricks)
        above = bottom & (self.ball_x == pos)
        lands = bottom & ~above & (new_x == pos)
        d = torch.where(above, 3 - d, torch.where(lands, d ^ 2, d))
        new_y = torch.where(above | lands, self.ball_y, new_y)
        ends = bottom & ~above & ~lands

        self.pos = torch.where(live, pos, self.pos)
        self.last_x = torch.where(live, self.ball_x, self.last_x)
        self.last_y = torch.where(live, self.ball_y, self.last_y)
        self.ball_x = torch.where(live, new_x, self.ball_x)
        self.ball_y = torch.where(live, new_y, self.ball_y)
        self.ball_dir = torch.where(live, d, self.ball_dir)
        self.strike = torch.where(live, on_brick, self.strike)
        self.bricks = torch.where(live, bricks, self.bricks)
        self.terminal = self.terminal | (live & ends)
        return hit.float(), self.terminal.clone()

    def brick_map(self) -> torch.Tensor:
        """``[N, 10, 10]`` bool: where the bricks are."""
        grid = torch.zeros(self.num_envs, GRID, GRID, dtype=torch.bool, device=self.device)
        rows = ((self.bricks[:, None] >> self._bits) & 1).bool()
        grid[:, BRICK_ROWS[0]:BRICK_ROWS[1]] = rows.view(self.num_envs, 3, GRID)
        return grid

    def observation(self) -> torch.Tensor:
        n, cells = self.num_envs, GRID * GRID
        obs = torch.zeros(n, self.num_channels, GRID, GRID, dtype=torch.bool, device=self.device)
        rows = ((self.bricks[:, None] >> self._bits) & 1).bool()
        obs[:, 3, BRICK_ROWS[0]:BRICK_ROWS[1]] = rows.view(n, 3, GRID)
        idx = torch.stack((
            9 * GRID + self.pos,                                         # 0 paddle
            cells + self.ball_y * GRID + self.ball_x,                    # 1 ball
            2 * cells + self.last_y * GRID + self.last_x,                # 2 trail
        ), dim=1)
        obs.view(n, -1).scatter_(1, idx, True)
        return obs
