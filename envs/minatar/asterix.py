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

**Draws.** Against the reference (a :class:`~envs.minatar.randomness.RecordedRandomness`) a
spawn makes the reference's three calls above. From any other source it takes one uniform
``u``: heading right if ``u < 1/2``; then ``v = frac(2u)`` (uniform in [0, 1) whatever the
heading, exactly), gold if ``v < 1/3``; then ``w = frac(3v)`` (uniform in [0, 1) whatever
the kind), rank ``floor(w * free rows)``: the same distribution, to within the rounding of
``3v`` (about 2^-52) for the rank.

**Layout.** Per env three integers (and ``terminal``):

- ``clock``: which of the timers' joint states (spawn timer, move timer, ramp timer, level,
  spawn and move intervals) the env is in. They change the same way in every live step
  whatever the player does, so from a reset they run through a fixed sequence that ends in a
  cycle (a fixed point with ramping: both intervals 1); :func:`_clock` tables that sequence
  from the rules above (clock 0 is the reset's state), with whether the step spawns and moves;
- ``player = row * 10 + column``;
- ``ents``, the 8 rows' entities as the bytes of one int64 (``ents.view(torch.uint8)`` reads
  them in order on a little-endian machine): byte ``i`` (row ``i + 1``) is
  ``f | right << 4 | gold << 5``, where ``f`` counts the cells the entity has left to cross:
  10 at its spawn, then one less at each of its moves (its column is ``10 - f`` heading
  right, ``f - 1`` heading left), 0 once it has left or where there is none (the other bits
  may then keep a gone entity's heading and kind, which nothing reads).

Byte-wise arithmetic on ``ents`` (no carry ever crosses a byte): bit 4 of
``(ents & 0x0f..0f) + 0x0f..0f`` is set in the bytes of live entities, so moving them all is
``ents - (those bits >> 4)``, and those bits folded down to one byte are the occupied rows. A
spawn puts its byte at the ``rank``-th free row, read from a table over (occupied rows,
rank). Only the entity of the player's row can touch the player: that byte,
``ents >> 8 (row - 1) & 255``, goes through a table over (byte, player cell, terminal,
whether entities move) that applies the step's touch, move and second touch to it; the
other rows just move.
"""

from __future__ import annotations

import functools

import torch

from envs.minatar.base import DOWN, GRID, LEFT, NUM_ACTIONS, RIGHT, UP, BatchedGame, pick

RAMP_INTERVAL = 100
INIT_SPAWN_SPEED = 10
INIT_MOVE_INTERVAL = 5
SLOTS = 8
MAX_CLOCK = 4096
"""A bound on the timers' joint states from a reset (the rules' sequence has 919 with ramping,
11 without), past which building the clock table stops with an error."""
START = 5 * GRID + 5
"""The player's cell at a reset."""
LOW = 0x0F0F0F0F0F0F0F0F
BIT4 = 0x1010101010101010
FIELDS = ("spawn_timer", "move_timer", "ramp_timer", "ramp_index", "spawn_speed", "move_speed")
"""The reference's timer fields, in the order :func:`_timers` keeps them."""


def _timers(state: tuple[int, ...], ramping: bool) -> tuple[tuple[int, ...], bool, bool]:
    """One live step of the timers (``FIELDS``): ``(next state, spawns, moves)``."""
    spawn_timer, move_timer, ramp_timer, level, spawn_speed, move_speed = state
    spawns, moves = spawn_timer == 0, move_timer == 0
    spawn_timer = (spawn_speed if spawns else spawn_timer) - 1
    move_timer = (move_speed if moves else move_timer) - 1
    if ramping and (spawn_speed > 1 or move_speed > 1):
        if ramp_timer >= 0:
            ramp_timer -= 1
        else:
            if move_speed > 1 and level % 2:
                move_speed -= 1
            if spawn_speed > 1:
                spawn_speed -= 1
            level += 1
            ramp_timer = RAMP_INTERVAL
    return (spawn_timer, move_timer, ramp_timer, level, spawn_speed, move_speed), spawns, moves


def _entity(byte: int) -> tuple[int, int, int]:
    """``(x, right, gold)`` of an entity byte (``x = -1`` for no entity): ``f = byte & 15``
    counts down the cells left to cross, from 10 at the spawn to 1, 0 for no entity."""
    f, right = byte & 15, byte >> 4 & 1
    return (-1 if f == 0 else 10 - f if right else f - 1), right, byte >> 5 & 1


def _player_row(byte: int, column: int, moves: int) -> int:
    """The entity ``byte`` of the player's row after a step's touch, move (when ``moves``) and
    touch again, the player in ``column`` (-1: terminal, no touch):
    ``byte | gold taken << 8 | enemy met << 9``."""

    def touch(byte: int) -> tuple[int, int, int]:
        x, _, gold = _entity(byte)
        if column < 0 or x != column:
            return byte, 0, 0
        return (0, 1, 0) if gold else (byte, 0, 1)

    byte, got, met = touch(byte)
    if moves and byte & 15:
        byte -= 1
    byte, got2, met2 = touch(byte)  # (without a move, the first touch again: nothing new)
    return byte | (got | got2) << 8 | (met | met2) << 9


@functools.lru_cache(maxsize=8)
def _clock(ramping: bool, device: torch.device) -> dict[str, torch.Tensor]:
    """The timers' sequence from a reset (see the module docstring): ``step[clock + S *
    terminal] = next clock * 4 + spawns * 2 + moves`` (a terminal env keeps its clock and does
    neither), and each ``FIELDS`` entry per clock."""
    start = (INIT_SPAWN_SPEED, INIT_MOVE_INTERVAL, RAMP_INTERVAL, 0, INIT_SPAWN_SPEED, INIT_MOVE_INTERVAL)
    states, index = [start], {start: 0}
    steps = []
    while len(steps) < len(states):
        nxt, spawns, moves = _timers(states[len(steps)], ramping)
        if nxt not in index:
            if len(states) == MAX_CLOCK:
                raise RuntimeError(f"Asterix's timers reach no cycle within {MAX_CLOCK} steps of a reset")
            index[nxt] = len(states)
            states.append(nxt)
        steps.append(index[nxt] * 4 + spawns * 2 + moves)
    steps += [c * 4 for c in range(len(states))]
    table = {"step": torch.tensor(steps, device=device)}
    for j, name in enumerate(FIELDS):
        table[name] = torch.tensor([s[j] for s in states], device=device)
    return table


@functools.lru_cache(maxsize=2)
def _clock_index(ramping: bool) -> dict[tuple[int, ...], int]:
    """The clock of each joint timer state (``FIELDS``) the rules reach from a reset."""
    table = _clock(ramping, torch.device("cpu"))
    states = zip(*(table[name].tolist() for name in FIELDS))
    return {state: clock for clock, state in enumerate(states)}


def _pack_entities(entities) -> int:
    """The reference's 8 rows of entities (``None`` or ``[x, y, right, gold]``) as ``ents``
    (byte ``slot``: cells left to cross, ``right << 4``, ``gold << 5``)."""
    if len(entities) != SLOTS:
        raise ValueError(f"Asterix entities: {len(entities)} rows given, expected {SLOTS}")
    word = 0
    for slot, entity in enumerate(entities):
        if entity is None:
            continue
        x, y, right, gold = (int(v) for v in entity)
        if y != slot + 1 or not 0 <= x < GRID:
            raise ValueError(f"Asterix entity {list(entity)} in row slot {slot}: valid are "
                             f"x 0-9 and y = slot + 1 = {slot + 1}")
        left_to_cross = GRID - x if right else x + 1
        word |= (left_to_cross | bool(right) << 4 | bool(gold) << 5) << (8 * slot)
    return word


@functools.lru_cache(maxsize=8)
def _tables(device: torch.device) -> dict[str, torch.Tensor]:
    """The player's moves, touches, spawns and observation cells (see :class:`Asterix`)."""
    cells = GRID * GRID
    move = []  # [(cell * 6 + action) * 2 + terminal] -> next cell
    for cell in range(cells):
        y, x = divmod(cell, GRID)
        for a in range(NUM_ACTIONS):
            nx = min(max(x - (a == LEFT) + (a == RIGHT), 0), 9)
            ny = min(max(y - (a == UP) + (a == DOWN), 1), 8)
            move += [ny * GRID + nx, cell]
    rows = []  # [byte << 9 | (cell + 100 * terminal) << 1 | moves] -> byte | gold taken << 8 | enemy met << 9
    for byte in range(64):
        for key in range(512):
            cell, moves = key >> 1, key & 1
            rows.append(_player_row(byte, cell % GRID if cell < cells else -1, moves))
    paint = []  # [slot * 64 + byte] -> entity cell | trail cell << 16, cell 0 (row 0) for none
    for slot in range(SLOTS):
        row = (slot + 1) * GRID
        for byte in range(64):
            x, right, gold = _entity(byte)
            back = x - 1 if right else x + 1
            paint.append(((3 if gold else 1) * cells + row + x if x >= 0 else 0)
                         | (2 * cells + row + back if x >= 0 and 0 <= back < GRID else 0) << 16)
    bits = 1 - ((torch.arange(256).unsqueeze(1) >> torch.arange(SLOTS)) & 1)  # [occupied rows, slot] free
    rank = bits.cumsum(1) - 1  # free slots before each slot
    select = torch.zeros(256, SLOTS, dtype=torch.long)  # [occupied rows, rank] -> 8 * slot
    for slot in range(SLOTS):
        hit = bits[:, slot].bool()
        select[hit, rank[hit, slot]] = 8 * slot
    as_long = functools.partial(torch.tensor, dtype=torch.long, device=device)
    return {"move": as_long(move), "row": torch.tensor(rows, dtype=torch.int16, device=device),
            "paint": torch.tensor(paint, dtype=torch.int32, device=device),
            "shift": as_long([8 * (c // GRID - 1) if GRID <= c < 9 * GRID else 0 for c in range(cells)]),
            "count": bits.sum(1).to(device), "select": select.view(-1).to(device),
            "column": as_long([_entity(byte)[0] for byte in range(64)])}


class Asterix(BatchedGame):
    """N Asterix games: ``clock``, ``player`` and ``ents`` per env (module docstring)."""

    name = "Asterix"
    num_channels = 4
    draws_per_step = 1  # an entity's heading, kind and free slot, from one uniform (module docstring)
    state_names = ("clock", "player", "ents")
    views = ("player_x", "player_y", "ent_x", "ent_right", "ent_gold", "ent_alive", *FIELDS)

    def _init_state(self) -> None:
        n, dev = self.num_envs, self.device
        for name in self.state_names:
            setattr(self, name, torch.zeros(n, dtype=torch.long, device=dev))
        self._clock = _clock(self.difficulty_ramping, self.device)
        self._tables = _tables(self.device)
        self._states = len(self._clock["spawn_timer"])
        # 64 * slot for each byte of ents (materialised: a broadcast along the last dimension is slow)
        self._slot_keys = (torch.arange(SLOTS, device=dev, dtype=torch.int32) * 64).repeat(n)

    # the reference's fields, decoded
    player_x = property(lambda self: self.player % GRID)
    player_y = property(lambda self: self.player // GRID)
    _bytes = property(lambda self: self.ents.view(torch.uint8).view(self.num_envs, SLOTS).long())
    ent_alive = property(lambda self: (self._bytes & 15) != 0)
    ent_x = property(lambda self: self._tables["column"][self._bytes])
    ent_right = property(lambda self: self.ent_alive & ((self._bytes & 16) != 0))
    ent_gold = property(lambda self: self.ent_alive & ((self._bytes & 32) != 0))
    spawn_timer = property(lambda self: self._timer("spawn_timer"))
    move_timer = property(lambda self: self._timer("move_timer"))
    ramp_timer = property(lambda self: self._timer("ramp_timer"))
    ramp_index = property(lambda self: self._timer("ramp_index"))
    spawn_speed = property(lambda self: self._timer("spawn_speed"))
    move_speed = property(lambda self: self._timer("move_speed"))

    def _timer(self, name: str) -> torch.Tensor:
        return self._clock[name].index_select(0, self.clock)

    def set_env(self, i: int, name: str, value) -> None:
        """Set reference field ``name`` of env ``i``: ``player_x`` (0-9), ``player_y`` (1-8),
        ``entities`` (the reference's list of 8: ``None`` or ``[x, y, right, gold]`` with ``y``
        the row ``slot + 1``), ``terminal``, or a timer field (``FIELDS``). The timers are one
        joint state (``clock``): setting one keeps the others, and the result must be a state
        the rules reach from a reset; :meth:`set_env_fields` sets several at once."""
        self.set_env_fields(i, {name: value})

    def set_env_fields(self, i: int, fields: dict) -> None:
        fields = dict(fields)
        timers = {name: int(fields.pop(name)) for name in FIELDS if name in fields}
        if timers:
            joint = tuple(timers.get(name, int(self._timer(name)[i])) for name in FIELDS)
            clock = _clock_index(self.difficulty_ramping).get(joint)
            if clock is None:
                shown = ", ".join(f"{name}={v}" for name, v in zip(FIELDS, joint))
                raise ValueError(f"Asterix timers ({shown}) are not a state the rules reach from "
                                 f"a reset{'' if self.difficulty_ramping else ' without ramping'}")
            self.clock[i] = clock
        for name, value in fields.items():
            if name in ("player_x", "player_y"):
                low, high = (0, GRID - 1) if name == "player_x" else (1, SLOTS)
                if not low <= int(value) <= high:
                    raise ValueError(f"Asterix {name}={value}: valid values are {low}-{high}")
                at = {"player_x": int(self.player_x[i]), "player_y": int(self.player_y[i]),
                      name: int(value)}
                self.player[i] = at["player_y"] * GRID + at["player_x"]
            elif name == "entities":
                self.ents[i] = _pack_entities(value)
            elif name == "terminal":
                self.terminal[i] = bool(value)
            else:
                raise ValueError(f"Asterix has no field {name!r}; fields: player_x, player_y, "
                                 f"entities, terminal, {', '.join(FIELDS)}")

    def _reset(self, mask: torch.Tensor) -> None:
        keep = ~mask
        self.clock = self.clock * keep
        self.ents = self.ents * keep
        self.player = pick(mask, START, self.player)
        self.terminal = self.terminal & keep

    def difficulty(self) -> torch.Tensor:
        return self._timer("ramp_index")

    def _act(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = self._tables
        terminal = self.terminal
        timers = self._clock["step"].index_select(0, self.clock + self._states * terminal)
        self.clock = timers >> 2
        spawn = (timers & 2) != 0
        ents = self.ents

        # spawn: the occupied rows as 8 bits (bit 4 of byte i folded down to bit 4 + i), then
        # the rank-th free one; its byte is cleared (it may hold a gone entity's heading and kind)
        random = self.random
        if random.replays_reference:
            right = random.uniform(spawn) < 1 / 2
            gold = random.uniform(spawn) < 1 / 3
        else:  # one uniform for the three draws (module docstring)
            u = random.uniform(spawn)
            right = u < 1 / 2
            v = (2 * u).frac()
            gold = v < 1 / 3
            w = (3 * v).frac()
        occupied = ((ents & LOW) + LOW) & BIT4
        occupied = occupied | (occupied >> 7)
        occupied = occupied | (occupied >> 14)
        occupied = ((occupied | (occupied >> 28)) >> 4) & 255
        num_free = t["count"].index_select(0, occupied)
        can = spawn & (num_free > 0)
        rank = random.integers(0, num_free, can) if random.replays_reference else (w * num_free).long()
        at = t["select"].index_select(0, occupied * SLOTS + rank)
        clear = (can * 255) << at
        ents = ((ents | clear) ^ clear) | ((can * (10 + 16 * right + 32 * gold)) << at)

        player = t["move"].index_select(0, (self.player * NUM_ACTIONS + actions) * 2 + terminal)
        self.player = player
        shift = t["shift"].index_select(0, player)
        # the player's row by a table (touch, move, touch); the other rows move by f - 1 (at 0
        # the entity left) when the move timer is up
        byte = (ents >> shift) & 255
        ents = ents ^ (byte << shift)
        moves = timers & 1
        ents = ents - moves * ((((ents & LOW) + LOW) & BIT4) >> 4)
        key = (byte << 9) | ((player + GRID * GRID * terminal) << 1) | moves
        row = t["row"].index_select(0, key).long()
        self.ents = ents | ((row & 255) << shift)
        self.terminal = terminal | (row >= 512)
        return ((row >> 8) & 1).float(), self.terminal.clone()

    def observation(self) -> torch.Tensor:
        # the player, then every live entity (channel 1 enemy or 3 gold, row i + 1) and its
        # trail (channel 2, the cell it came from); no entity and trails off the grid paint
        # channel 0's cell 0 (row 0, where the player never is), cleared last
        n = self.num_envs
        key = self.ents.view(torch.uint8).int() + self._slot_keys
        cells = self._tables["paint"].index_select(0, key).view(torch.int16)  # little-endian pairs
        obs = self._paint(cells.view(n, 2 * SLOTS))
        obs.view(-1).index_fill_(0, self.player + self._env_cells.view(-1), True)
        obs[:, 0, 0, 0] = False
        return obs
