"""Seaquest's object rules over the slot lists: player bullets, divers, enemies, enemy bullets.

Each function takes lists stored field-major with the env dimension last, ``[F, K, N]`` (slot
order = the reference's list order, see :mod:`envs.minatar.slots`), so that every per-slot
expression runs along the contiguous env dimension, and returns new ones; none changes its
inputs. Each reproduces one loop of the reference's ``Env.act``, including which object wins
when several share a cell, without walking the slots: the walk's outcome is written with
counts over the slots.

- :func:`resolve_player_bullets`: the reference walks its bullets last-fired first; each moves
  one cell, leaves if off-screen, else removes the first shark (in list order) on its cell, or
  failing that the first sub, and itself. Bullets on one cell take that cell's enemies in the
  order sharks (oldest first), then subs (oldest first): the bullet with ``r`` bullets on its
  cell walked before it (in later slots) takes the enemy with ``r`` enemies before it in that
  order, if the cell has one.
- :func:`resolve_divers`: walked last-spawned first; a diver on the sub's cell, or moving onto
  it, is picked up while the count is below 6: the candidate with ``a`` candidates in later
  slots is picked when ``diver_count + a < 6``.
- :func:`move_enemies`: the reference walks the subs, then the sharks, each last spawned first;
  one that moves onto a cell holding player bullets takes the first of them still there.
  On one cell the meeting enemies are walked subs (youngest first), then sharks (youngest
  first); the one with ``p`` enemies walked before it takes the bullet with ``p`` live
  bullets before it (in earlier slots) on that cell, if there is one.
- :func:`move_enemy_bullets`: the subs' new bullets join the bullet rows (a bit per cell, left-
  and right-moving apart), which then shift one cell; touching the sub before or after the
  shift ends the game.
"""

from __future__ import annotations

import functools

import torch

from envs.minatar.base import pick
from envs.minatar.slots import DTYPE, anyof, const, cumsum, flag, lanes, truth

GRID = 10
X, Y, DIR, ALIVE, TIMER, SHOT, IS_SUB = range(7)
"""Object fields (first dimension of the slot tensors); every list starts with X, Y, DIR,
ALIVE (0 or 1, as are DIR and IS_SUB, read as masks by :func:`envs.minatar.slots.truth`).
``DIR`` is 1 when heading right (+x); ``TIMER`` counts
down to the next move, ``SHOT`` to a sub's next bullet; ``IS_SUB`` tells subs from sharks."""
DIVER_MOVE_INTERVAL = 5
ENEMY_SHOT_INTERVAL = 10
MAX_DIVERS = 6


def _after(mask: torch.Tensor) -> torch.Tensor:
    """How many entries of ``mask`` (``[..., K, N]`` bool) are set in later slots than each one."""
    count = cumsum(mask, -2)
    return count[..., -1:, :] - count


def _pairs(cell: torch.Tensor, later: bool) -> torch.Tensor:
    """``[B, N]``: for each slot, the slots on the same cell that come later (or earlier)."""
    order = _order(cell.shape[0], cell.shape[1], cell.device, later)
    return ((cell.unsqueeze(1) == cell.unsqueeze(0)) & order).sum(1, dtype=DTYPE)


def _order(b: int, n: int, device: torch.device, later: bool) -> torch.Tensor:
    """``[B, B, N]`` bool: entry ``[i, j]`` is ``j > i`` (``later``) or ``j < i``; cached in eager
    mode (never to be written to)."""
    if not torch.compiler.is_compiling():
        return _cached_order(b, n, device, later)
    slot = torch.arange(b, device=device)
    order = slot.unsqueeze(0) > slot.unsqueeze(1) if later else slot.unsqueeze(0) < slot.unsqueeze(1)
    return order.unsqueeze(-1).expand(b, b, n)


@functools.lru_cache(maxsize=16)
def _cached_order(b: int, n: int, device: torch.device, later: bool) -> torch.Tensor:
    slot = lanes(b, n, torch.int8, device)
    other, this = slot.unsqueeze(0), slot.unsqueeze(1)
    return (other > this if later else other < this).contiguous()


def _inside(x: torch.Tensor) -> torch.Tensor:
    """``0 <= x < GRID`` for int8 ``x``: one unsigned comparison (-1 reads as 255)."""
    if torch.compiler.is_compiling():
        return (x >= 0) & (x < GRID)
    x = x.view(torch.uint8)
    return x < const(GRID, x)


def _cell(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``GRID * y + x``."""
    return y * const(GRID, y) + x


def resolve_player_bullets(bullets: torch.Tensor, enemies: torch.Tensor
                           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Move the player's bullets ``[4, B, N]`` and let them hit the enemies ``[7, K, N]``.
    Returns the new bullets, the enemies still alive (``[K, N]`` bool) and the hits per env."""
    bx, by, heading, b_alive = bullets.unbind(0)
    x = bx + b_alive * (heading + heading - const(1, bx))
    inside = truth(b_alive) & _inside(x)
    cell = pick(flag(inside), _cell(x, by), const(-1, x))
    alive = truth(enemies[ALIVE])
    sub = truth(enemies[IS_SUB])
    on = pick(enemies[ALIVE], _cell(enemies[X], enemies[Y]), const(-2, x)).unsqueeze(0) == cell.unsqueeze(1)
    sharks = cumsum(on & ~sub, 1)
    subs = cumsum(on & sub, 1)
    place = pick(enemies[IS_SUB], sharks[:, -1:] + subs, sharks) - const(1, x)
    taker = on & (place == _pairs(cell, later=True).unsqueeze(1))
    hit = anyof(taker, 1)
    bullets = torch.stack([x, by, heading, flag(inside & ~hit)])
    return bullets, alive & ~anyof(taker, 0), hit.sum(0, dtype=DTYPE)


def resolve_divers(divers: torch.Tensor, px: torch.Tensor, py: torch.Tensor,
                   diver_count: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Move the divers ``[5, D, N]`` and pick up those the sub at ``(px, py)`` (``0 <= px <
    10``) touches; returns the new divers and the divers picked up per env (``[N]`` long)."""
    x, y, heading, alive, timer = divers.unbind(0)
    alive = truth(alive)
    step = heading + heading - const(1, x)
    nx = x + step
    due = timer == const(0, x)
    candidate = alive & (y == py) & ((x == px) | (due & (nx == px)))
    picked = candidate & (_after(candidate) < const(MAX_DIVERS, x) - diver_count)
    rest = alive & ~picked
    moves = rest & due
    timer = pick(flag(moves), const(DIVER_MOVE_INTERVAL, x), timer - flag(rest))
    alive = rest & ~(moves & ~_inside(nx))
    x = x + flag(moves) * step
    return torch.stack([x, y, heading, flag(alive), timer]), picked.sum(0)


def move_enemies(enemies: torch.Tensor, alive: torch.Tensor, bullets: torch.Tensor,
                 px: torch.Tensor, py: torch.Tensor, move_speed: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Step the enemies where ``alive`` ([K, N] bool): touch test, move, leave the screen,
    touch test, meet player bullets; subs count down to their next shot. Returns the new
    enemies, the new bullets, the hits [N], touched [N] bool and ``shots`` [K, N] bool: the subs
    that fire now, from the cell they are on (even one that just left or was hit)."""
    x, y, heading, _, timer, shot, is_sub = enemies.unbind(0)
    zero = const(0, x)
    sub = truth(is_sub)
    row = alive & (y == py)
    moves = alive & (timer == zero)
    timer = pick(flag(moves), move_speed.to(timer.dtype), timer - flag(alive))
    nx = x + flag(moves) * (heading + heading - const(1, x))
    gone = moves & ~_inside(nx)
    onto = moves & row & (nx == px)  # px is on the screen: so is nx
    touched = anyof((row & (x == px)) | onto, 0)
    meets = moves & ~gone & ~onto
    x = nx

    bx, by, b_heading, b_alive = bullets.unbind(0)
    live_b = truth(b_alive)
    b_cell = pick(b_alive, _cell(bx, by), const(-1, x))
    there = pick(flag(meets), _cell(x, y), const(-2, x)).unsqueeze(0) == b_cell.unsqueeze(1)
    subs_there = there & sub
    place = pick(is_sub, _after(subs_there),
                 subs_there.sum(1, keepdim=True, dtype=DTYPE) + _after(there & ~sub))
    taker = there & (place == _pairs(b_cell, later=False).unsqueeze(1))
    hit = anyof(taker, 0)
    bullets = torch.stack([bx, by, b_heading, flag(live_b & ~anyof(taker, 1))])

    armed = alive & sub
    shots = armed & (shot == zero)
    shot = pick(flag(shots), const(ENEMY_SHOT_INTERVAL, x), shot - flag(armed))
    alive = alive & ~gone & ~hit
    enemies = torch.stack([x, y, heading, flag(alive), timer, shot, is_sub])
    return enemies, bullets, hit.sum(0, dtype=DTYPE), touched, shots


def move_enemy_bullets(rows: torch.Tensor, enemies: torch.Tensor, shots: torch.Tensor,
                       px: torch.Tensor, py: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Add the subs' new bullets to ``rows`` (``[2, 10, N]`` int16: bit ``x`` of row ``y``, for
    left- then right-moving bullets) and move every bullet one cell along its heading (a shift
    of its row). Returns the new rows and, per env, whether a bullet touches the sub at
    ``(px, py)`` before or after its move."""
    x, y, heading = enemies[X], enemies[Y], enemies[DIR]
    placed = shots & _inside(x)  # a sub leaving the screen fires off-screen
    bit = flag(placed).to(rows.dtype) << x.clamp(0, GRID - 1).to(rows.dtype)
    row = _cell(y, heading).long()  # row y of the heading's rows
    rows = rows.reshape(2 * GRID, -1).clone()
    for k in range(x.shape[0]):  # slot by slot: two subs may fire from one cell
        at = row[k:k + 1]
        rows.scatter_(0, at, rows.gather(0, at) | bit[k:k + 1])
    py = py.long().unsqueeze(0)
    left = rows.gather(0, py).squeeze(0)
    right = rows.gather(0, py + GRID).squeeze(0)
    # on the sub's cell, or one cell behind it along the bullet's heading (moving onto it)
    near = left | right | (left >> 1) | (right << 1)
    touched = ((near >> px.to(near.dtype)) & const(1, near)).bool()
    moved = torch.cat([rows[:GRID] >> 1, (rows[GRID:] << 1) & ((1 << GRID) - 1)])
    return moved.view(2, GRID, -1), touched
