"""Seaquest's object rules over the slot lists: player bullets, divers, enemies.

Each function updates the ``[N, K, F]`` lists it is given in place (the game passes copies)
and reproduces one loop of the reference's ``Env.act``, including which object wins when
several share a cell:

- :func:`resolve_player_bullets`: the reference walks its bullets last-fired first; each
  moves one cell, leaves if off-screen, else removes the first shark (in spawn order) on its
  cell, or failing that the first sub, and itself. Few bullets exist (at most 3), so this
  walks the bullet slots; each step is one tensor expression over all envs.
- :func:`resolve_divers`: walked the same way (at most 4 slots), since the 6-diver cap makes
  the order of pick-ups matter.
- :func:`move_enemies`: the reference walks the subs (then, separately, the sharks) last
  spawned first; one that moves onto a cell holding player bullets takes the first of them
  still there. Written without a walk: among the enemies that move onto one cell, the one
  with ``r`` such enemies spawned after it takes the bullet with ``r`` bullets before it on
  that cell, if there is one.
"""

from __future__ import annotations

import torch

from envs.minatar.slots import first

GRID = 10
X, Y, DIR, ALIVE, TIMER, SHOT, IS_SUB = range(7)
"""Object fields (last dimension of the slot tensors); every list starts with X, Y, DIR,
ALIVE. ``DIR`` is 1 when heading right (+x); ``TIMER`` counts down to the next move, ``SHOT``
to a sub's next bullet; ``IS_SUB`` tells subs from sharks."""
DIVER_MOVE_INTERVAL = 5
ENEMY_SHOT_INTERVAL = 10
MAX_DIVERS = 6

Player = tuple[torch.Tensor, torch.Tensor]


def _step(heading: torch.Tensor) -> torch.Tensor:
    return 2 * heading - 1


def resolve_player_bullets(bullets: torch.Tensor, enemies: torch.Tensor, age: torch.Tensor,
                           live: torch.Tensor) -> torch.Tensor:
    """Move the player's bullets and let them hit enemies (``age``: the enemies' list
    order, 0 = oldest); returns the hits per env."""
    hits = torch.zeros_like(live, dtype=torch.long)
    slot = torch.arange(enemies.shape[1], device=enemies.device)
    for k in reversed(range(bullets.shape[1])):
        b = bullets[:, k]
        active = live & (b[:, ALIVE] == 1)
        x = torch.where(active, b[:, X] + _step(b[:, DIR]), b[:, X])
        b[:, X] = x
        inside = active & (x >= 0) & (x < GRID)
        on_cell = ((enemies[:, :, ALIVE] == 1) & (enemies[:, :, X] == x.unsqueeze(1))
                   & (enemies[:, :, Y] == b[:, Y].unsqueeze(1)))
        shark_hit, shark = first(on_cell & (enemies[:, :, IS_SUB] == 0), age)
        sub_hit, sub = first(on_cell & (enemies[:, :, IS_SUB] == 1), age)
        shark_hit &= inside
        sub_hit &= inside & ~shark_hit
        victim = torch.where(shark_hit, shark, sub)
        killed = (slot == victim.unsqueeze(1)) & (shark_hit | sub_hit).unsqueeze(1)
        enemies[:, :, ALIVE] *= (~killed).long()
        b[:, ALIVE] *= (~(active & ~inside) & ~shark_hit & ~sub_hit).long()
        hits += (shark_hit | sub_hit).long()
    return hits


def resolve_divers(divers: torch.Tensor, player: Player, diver_count: torch.Tensor,
                   live: torch.Tensor) -> torch.Tensor:
    """Move the divers and pick up those the sub touches; returns the new diver count."""
    px, py = player
    for k in reversed(range(divers.shape[1])):
        d = divers[:, k]
        active = live & (d[:, ALIVE] == 1)
        picked = active & (d[:, X] == px) & (d[:, Y] == py) & (diver_count < MAX_DIVERS)
        diver_count = diver_count + picked.long()
        rest = active & ~picked
        moves = rest & (d[:, TIMER] == 0)
        d[:, TIMER] = torch.where(moves, DIVER_MOVE_INTERVAL,
                                  torch.where(rest, d[:, TIMER] - 1, d[:, TIMER]))
        x = torch.where(moves, d[:, X] + _step(d[:, DIR]), d[:, X])
        d[:, X] = x
        gone = moves & ((x < 0) | (x >= GRID))
        picked_after = (moves & ~gone & (x == px) & (d[:, Y] == py)
                        & (diver_count < MAX_DIVERS))
        diver_count = diver_count + picked_after.long()
        d[:, ALIVE] *= (~(picked | gone | picked_after)).long()
    return diver_count


def move_enemies(enemies: torch.Tensor, movers: torch.Tensor, age: torch.Tensor,
                 bullets: torch.Tensor, player: Player, move_speed: torch.Tensor, *, shoot: bool
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Step the enemies where ``movers`` ([N, K] bool) is set: touch test, move, leave the
    screen, touch test, meet player bullets; with ``shoot`` (subs), count down to the next
    shot. Returns ``(hits [N], touched [N] bool, shots [N, K] bool)``: ``shots`` marks the
    subs that fire now, from the cell they are on (even one that just left or was hit)."""
    px, py = player
    x, y = enemies[:, :, X], enemies[:, :, Y]
    at_player = (y == py.unsqueeze(1))
    touched = (movers & at_player & (x == px.unsqueeze(1))).any(1)
    moves = movers & (enemies[:, :, TIMER] == 0)
    enemies[:, :, TIMER] = torch.where(moves, move_speed.unsqueeze(1),
                                       enemies[:, :, TIMER] - movers.long())
    x = torch.where(moves, x + _step(enemies[:, :, DIR]), x)
    enemies[:, :, X] = x
    gone = moves & ((x < 0) | (x >= GRID))
    onto_player = moves & ~gone & at_player & (x == px.unsqueeze(1))
    touched |= onto_player.any(1)
    meets = moves & ~gone & ~onto_player
    hit, used = _match_bullets(meets, x, y, age, bullets)
    enemies[:, :, ALIVE] *= (~(gone | hit)).long()
    bullets[:, :, ALIVE] *= (~used).long()
    shots = movers & (enemies[:, :, SHOT] == 0)
    if shoot:
        enemies[:, :, SHOT] = torch.where(shots, ENEMY_SHOT_INTERVAL,
                                          enemies[:, :, SHOT] - movers.long())
    return hit.sum(1), touched, shots & shoot


def _match_bullets(meets: torch.Tensor, x: torch.Tensor, y: torch.Tensor, age: torch.Tensor,
                   bullets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Which of the enemies in ``meets`` ([N, K]) are hit, and which bullets ([N, B]) hit them,
    when the enemies claim, last-spawned first, the first bullet left on their cell.

    Bullet ``b`` with ``q`` live bullets before it on its cell goes to the enemy with ``q``
    enemies meeting on that cell after it (if there is one)."""
    cell = y * GRID + x
    alive = bullets[:, :, ALIVE] == 1
    b_cell = bullets[:, :, Y] * GRID + bullets[:, :, X]
    hit = torch.zeros_like(meets)
    used = torch.zeros_like(alive)
    by_age = age.argsort(1)  # slots oldest first
    for b in range(bullets.shape[1]):
        queue = (alive[:, :b] & (b_cell[:, :b] == b_cell[:, b : b + 1])).sum(1, keepdim=True)
        there = meets & (cell == b_cell[:, b : b + 1]) & alive[:, b : b + 1]
        there = there.gather(1, by_age)  # in list order
        from_end = there.flip(1).cumsum(1).flip(1)  # meeting enemies this old or younger
        taker = (there & (from_end == queue + 1)).gather(1, age)  # back to slots
        hit |= taker
        used[:, b] = taker.any(1)
    return hit, used
