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


class Breakout(BatchedGame):
    name = "Breakout"
    num_channels = 4
    state_names = ("ball_x", "ball_y", "ball_dir", "pos", "last_x", "last_y", "strike", "brick_map")

    def _init_state(self) -> None:
        n, dev = self.num_envs, self.device
        for name in ("ball_x", "ball_y", "ball_dir", "pos", "last_x", "last_y"):
            setattr(self, name, torch.zeros(n, dtype=torch.long, device=dev))
        self.strike = torch.zeros(n, dtype=torch.bool, device=dev)
        self.brick_map = torch.zeros(n, GRID, GRID, dtype=torch.bool, device=dev)
        self._start_bricks = torch.zeros(GRID, GRID, dtype=torch.bool, device=dev)
        self._start_bricks[1:4, :] = True
        dev_long = dict(dtype=torch.long, device=dev)
        self._dx = torch.tensor([-1, 1, 1, -1], **dev_long)
        self._dy = torch.tensor([-1, -1, 1, 1], **dev_long)
        self._flip_x = torch.tensor([1, 0, 3, 2], **dev_long)
        self._flip_y = torch.tensor([3, 2, 1, 0], **dev_long)
        self._flip_xy = torch.tensor([2, 3, 0, 1], **dev_long)

    def _reset(self, mask: torch.Tensor) -> None:
        side = self.random.integers(0, 2, mask)
        x = torch.where(side == 0, 0, 9)
        d = torch.where(side == 0, 2, 3)
        m = mask
        self.ball_x = torch.where(m, x, self.ball_x)
        self.ball_y = torch.where(m, 3, self.ball_y)
        self.ball_dir = torch.where(m, d, self.ball_dir)
        self.pos = torch.where(m, 4, self.pos)
        self.last_x = torch.where(m, x, self.last_x)
        self.last_y = torch.where(m, 3, self.last_y)
        self.strike = self.strike & ~m
        self.brick_map = torch.where(m[:, None, None], self._start_bricks, self.brick_map)
        self.terminal = self.terminal & ~m

    def _act(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        live = ~self.terminal
        pos = self.pos - (actions == LEFT).long() + (actions == RIGHT).long()
        pos = pos.clamp(0, 9)

        d = self.ball_dir
        new_x = self.ball_x + self._dx[d]
        new_y = self.ball_y + self._dy[d]
        side = (new_x < 0) | (new_x > 9)
        new_x = new_x.clamp(0, 9)
        d = torch.where(side, self._flip_x[d], d)
        top = new_y < 0
        new_y = new_y.clamp(0, 9)  # (a live ball never goes below row 9; a terminal one may try)
        d = torch.where(top, self._flip_y[d], d)

        flat = self.brick_map.view(self.num_envs, GRID * GRID)
        cell = new_y * GRID + new_x
        on_brick = ~top & flat.gather(1, cell[:, None]).squeeze(1)
        hit = on_brick & ~self.strike & live
        flat = flat.scatter(1, cell[:, None], (~hit)[:, None] & flat.gather(1, cell[:, None]))
        new_y = torch.where(hit, self.ball_y, new_y)
        d = torch.where(hit, self._flip_y[d], d)

        bottom = ~top & ~on_brick & (new_y == 9)
        refill = bottom & ~flat.any(1)
        flat = torch.where(refill[:, None], self._start_bricks.view(1, -1), flat)
        above = bottom & (self.ball_x == pos)
        lands = bottom & ~above & (new_x == pos)
        d = torch.where(above, self._flip_y[d], torch.where(lands, self._flip_xy[d], d))
        new_y = torch.where(above | lands, self.ball_y, new_y)
        ends = bottom & ~above & ~lands

        self.pos = torch.where(live, pos, self.pos)
        self.last_x = torch.where(live, self.ball_x, self.last_x)
        self.last_y = torch.where(live, self.ball_y, self.last_y)
        self.ball_x = torch.where(live, new_x, self.ball_x)
        self.ball_y = torch.where(live, new_y, self.ball_y)
        self.ball_dir = torch.where(live, d, self.ball_dir)
        self.strike = torch.where(live, on_brick, self.strike)
        self.brick_map = torch.where(live[:, None], flat, self.brick_map.view(self.num_envs, -1)).view(
            self.num_envs, GRID, GRID)
        self.terminal = self.terminal | (live & ends)
        return hit.float(), self.terminal.clone()

    def observation(self) -> torch.Tensor:
        obs = self._empty_observation()
        cells = GRID * GRID
        idx = torch.stack((
            self._cells(torch.full_like(self.pos, 9), self.pos),        # 0 paddle
            cells + self._cells(self.ball_y, self.ball_x),               # 1 ball
            2 * cells + self._cells(self.last_y, self.last_x),           # 2 trail
        ), dim=1)
        obs.scatter_(1, idx, True)
        obs[:, 3 * cells:] = self.brick_map.view(self.num_envs, cells)
        return obs.view(self.num_envs, self.num_channels, GRID, GRID)
