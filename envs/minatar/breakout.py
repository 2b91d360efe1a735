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

**Layout.** Per env: ``ball = strike * 400 + direction * 100 + row * 10 + column`` (the
ball's cell, heading and whether it struck a brick last step), ``trail`` the previous cell
``row * 10 + column``, ``pos`` the paddle's column and ``bricks`` a 30-bit mask (bit
``(row - 1) * 10 + column`` for rows 1-3, where bricks only ever are). Everything the ball
does in a step depends only on ``ball``, whether a brick sits on the cell it heads for, the
paddle's new column and whether the env is terminal, so a step is a few lookups in tables
over ``key = ball * 40 + brick * 20 + paddle * 2 + terminal`` (built once from the rules
above by :func:`_transitions`): the next ``ball``, the reward, the brick bit removed, the
episode's end, and whether the ball reached row 9 (where an empty wall is refilled).
"""

from __future__ import annotations

import functools

import torch

from envs.minatar.base import GRID, LEFT, RIGHT, BatchedGame

BRICK_ROWS = (1, 4)
"""Bricks only ever occupy rows 1-3 (placed there at reset and at a refill)."""
ALL_BRICKS = (1 << 30) - 1
BALLS = 800
"""Values of ``ball``: strike (2) x direction (4) x cell (100)."""


def _ball_step(ball: int, brick: bool, pos: int) -> tuple[int, int, int, bool, bool]:
    """One live step of the ball under the rules of the module docstring (``pos`` the paddle's
    new column, ``brick`` whether a brick sits on the cell the ball heads for):
    ``(next ball, brick bit hit or -1, reward, episode ends, reached row 9)``."""
    strike, d, y, x = ball // 400, ball // 100 % 4, ball // 10 % 10, ball % 10
    nx, ny = x + (1 if d in (1, 2) else -1), y + (-1 if d < 2 else 1)
    if nx < 0 or nx > 9:
        nx, d = min(max(nx, 0), 9), d ^ 1
    ny = min(ny, 9)  # (a live ball never goes below row 9)
    hit, ends, bottom, toggle = -1, False, False, False
    if ny < 0:
        ny, d = 0, 3 - d
    elif brick:
        toggle = True
        if not strike:
            hit, strike = (ny - BRICK_ROWS[0]) * GRID + nx, 1
            ny, d = y, 3 - d
    elif ny == 9:
        bottom = True
        if x == pos:
            ny, d = y, 3 - d
        elif nx == pos:
            ny, d = y, d ^ 2
        else:
            ends = True
    strike = strike if toggle else 0
    return strike * 400 + d * 100 + ny * 10 + nx, hit, int(hit >= 0), ends, bottom


def _target_bit(ball: int) -> int:
    """Brick bit of the cell the ball heads for (after a side wall), -1 outside rows 1-3."""
    d, y, x = ball // 100 % 4, ball // 10 % 10, ball % 10
    nx, ny = min(max(x + (1 if d in (1, 2) else -1), 0), 9), y + (-1 if d < 2 else 1)
    return (ny - BRICK_ROWS[0]) * GRID + nx if BRICK_ROWS[0] <= ny < BRICK_ROWS[1] else -1


@functools.lru_cache(maxsize=8)
def _transitions(device: torch.device) -> dict[str, torch.Tensor]:
    """The step's tables (see the module docstring), on ``device``."""
    nxt, removed, reward, ends, bottom = [], [], [], [], []
    for ball in range(BALLS):
        for brick in (0, 1):
            for pos in range(GRID):
                step = _ball_step(ball, bool(brick) and _target_bit(ball) >= 0, pos)
                for terminal in (0, 1):
                    live = not terminal
                    nxt.append(step[0] if live else ball)
                    removed.append(1 << step[1] if live and step[1] >= 0 else 0)
                    reward.append(step[2] if live else 0)
                    ends.append(step[3] and live)
                    bottom.append(step[4] and live)
    paddle = [[[(min(max(p - (a == LEFT) + (a == RIGHT), 0), 9) if not t else p) for a in range(6)]
               for p in range(GRID)] for t in (0, 1)]
    paddle = torch.tensor(paddle).view(-1)
    target = [_target_bit(ball) for ball in range(BALLS)]
    as_long = functools.partial(torch.tensor, dtype=torch.long, device=device)
    return {
        "next": as_long(nxt), "removed": as_long(removed), "ends": as_long(ends).bool(),
        "reward": as_long(reward).float(), "bottom": as_long(bottom).bool(),
        "paddle": paddle.to(device),
        "paddle_key": (paddle * 2 + torch.arange(2).repeat_interleave(60)).to(device),
        "target": as_long([1 << b if b >= 0 else 0 for b in target]),
        "cell": as_long([ball % 100 for ball in range(BALLS)]),
    }


class Breakout(BatchedGame):
    """N Breakout games: ``ball``, ``trail``, ``pos`` and ``bricks`` per env (module docstring)."""

    name = "Breakout"
    num_channels = 4
    state_names = ("ball", "trail", "pos", "bricks")

    def _init_state(self) -> None:
        n, dev = self.num_envs, self.device
        for name in self.state_names:
            setattr(self, name, torch.zeros(n, dtype=torch.long, device=dev))
        self._tables = _transitions(self.device)
        self._shifts = torch.arange(0, 30, GRID, device=dev)
        cells = ((torch.arange(1 << GRID).unsqueeze(1) >> torch.arange(GRID)) & 1).bool()
        self._row_cells = cells.view(torch.uint8).view(torch.int16).to(dev)   # [1024, 5]
        # where the paddle (row 9 of channel 0), ball (channel 1) and trail (channel 2) cells of
        # each env start in the flat batch: add the column, the cell and the cell
        self._paint_base = self._env_cells + torch.tensor([9 * GRID, GRID * GRID, 2 * GRID * GRID], device=dev)

    # the reference's fields, decoded
    ball_x = property(lambda self: self.ball % GRID)
    ball_y = property(lambda self: self.ball // GRID % GRID)
    ball_dir = property(lambda self: self.ball // 100 % 4)
    strike = property(lambda self: self.ball >= 400)
    last_x = property(lambda self: self.trail % GRID)
    last_y = property(lambda self: self.trail // GRID)

    def set_env(self, i: int, name: str, value) -> None:
        """Set reference field ``name`` of env ``i``: ``ball_x``, ``ball_y``, ``last_x``,
        ``last_y``, ``pos`` (0-9), ``ball_dir`` (0-3), ``strike``, ``brick_map`` (10 x 10, bricks
        in rows 1-3 only) or ``terminal``."""
        sizes = {"ball_x": GRID, "ball_y": GRID, "ball_dir": 4, "strike": 2, "last_x": GRID,
                 "last_y": GRID, "pos": GRID}
        if name == "brick_map":
            grid = torch.as_tensor(value).ne(0)
            rows = grid[BRICK_ROWS[0]:BRICK_ROWS[1]].reshape(-1)
            if tuple(grid.shape) != (GRID, GRID) or int(grid.sum()) != int(rows.sum()):
                raise ValueError(f"Breakout brick_map: valid is a 10 x 10 map with bricks in rows "
                                 f"{BRICK_ROWS[0]}-{BRICK_ROWS[1] - 1} only")
            self.bricks[i] = int((rows.long() << torch.arange(rows.numel())).sum())
        elif name == "terminal":
            self.terminal[i] = bool(value)
        elif name in sizes:
            value = int(value)
            if not 0 <= value < sizes[name]:
                raise ValueError(f"Breakout {name}={value}: valid values are 0-{sizes[name] - 1}")
            values = {key: int(getattr(self, key)[i]) for key in sizes} | {name: value}
            self.ball[i] = (values["strike"] * 400 + values["ball_dir"] * 100
                            + values["ball_y"] * GRID + values["ball_x"])
            self.trail[i] = values["last_y"] * GRID + values["last_x"]
            self.pos[i] = values["pos"]
        else:
            raise ValueError(f"Breakout has no field {name!r}; fields: {', '.join(sizes)}, "
                             f"brick_map, terminal")

    def _reset(self, mask: torch.Tensor) -> None:
        side = self.random.integers(0, 2, mask)
        # side 0: column 0 heading down-right (2); side 1: column 9 heading down-left (3); row 3
        self.ball = torch.where(mask, 230 + 109 * side, self.ball)
        self.trail = torch.where(mask, 30 + 9 * side, self.trail)
        self.pos = torch.where(mask, 4, self.pos)
        self.bricks = torch.where(mask, ALL_BRICKS, self.bricks)
        self.terminal = self.terminal & ~mask

    def _act(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = self._tables
        terminal = self.terminal
        at = terminal.long() * 60 + self.pos * 6 + actions
        target = t["target"].index_select(0, self.ball)
        key = self.ball * 40 + ((self.bricks & target) != 0) * 20 + t["paddle_key"].index_select(0, at)
        self.pos = t["paddle"].index_select(0, at)
        bricks = self.bricks - t["removed"].index_select(0, key)
        self.bricks = torch.where(t["bottom"].index_select(0, key) & (bricks == 0), ALL_BRICKS, bricks)
        self.trail = torch.where(terminal, self.trail, t["cell"].index_select(0, self.ball))
        self.ball = t["next"].index_select(0, key)
        self.terminal = terminal | t["ends"].index_select(0, key)
        return t["reward"].index_select(0, key), self.terminal.clone()

    def observation(self) -> torch.Tensor:
        n, cells = self.num_envs, GRID * GRID
        obs = self._zeros()
        rows = (self.bricks.unsqueeze(1) >> self._shifts) & ((1 << GRID) - 1)
        # channel 3, rows 1-3 are the int16 words 155-169 of an env's 400 cells
        first = (3 * cells + BRICK_ROWS[0] * GRID) // 2
        obs.view(torch.int16)[:, first:first + 15] = (
            self._row_cells.index_select(0, rows.view(-1)).view(n, 15))
        ball = self._tables["cell"].index_select(0, self.ball)
        painted = torch.stack((self.pos, ball, self.trail), 1) + self._paint_base
        obs.view(-1).index_fill_(0, painted.view(-1), True)
        return obs.view(n, self.num_channels, GRID, GRID)
