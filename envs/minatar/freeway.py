"""Freeway, batched: the reference MinAtar rules on N envs at once.

Channels: 0 chicken, 1 car, 2-6 trail of a car whose speed is 1-5 (at the cell behind it).
The chicken stays in column 4, starts on row 9 and moves up/down one row at most every 3
steps. Rows 1-8 hold one car each (car ``i`` on row ``i + 1``), with a speed ``s`` in 1..5
and a direction: the car moves one column every ``s + 1`` steps (its timer counts ``s``
down to 0), wrapping around the edges. Reaching row 0 gives +1, sends the chicken back to
row 9 and redraws every car's speed and direction (positions kept); being on a car's cell
before or after it moves sends the chicken back to row 9. The episode ends after 2501 steps
(a timer from 2500 down to -1). No difficulty ramp.

**Draws.** Against the reference (a :class:`~envs.minatar.randomness.RecordedRandomness`),
speeds and directions are drawn as the reference does: ``integers(1, 6, size=8)`` then
``uniform(size=8)``, direction ``sign(u - 0.5)`` (a draw of exactly 0.5, probability 2^-53,
would give the reference a car with no speed and no trail channel, and gives a right-moving
car here). From any other source they take one draw ``integers(0, 5^4 * 16, size=2)``:
entry ``j`` is ``digits * 16 + bits`` for cars ``4j`` to ``4j + 3``, base-5 digit ``i`` of
``digits`` the speed minus 1 and bit ``i`` of ``bits`` whether it heads left, which is the
same distribution (each speed uniform in 1..5, each direction a fair coin, all independent).

**Layout.** Per env: ``chicken = row * 4 + move timer``, ``terminate_timer``, and ``cars``,
``[N, 8]`` int16 codes ``(timer * 11 + speed + 5) << 4 | column`` (``speed`` signed,
negative heading left). A car's step, its cells in the observation and whether it hits a
chicken in its row are tables over its code; the chicken's move (and whether it crossed) a
table over (chicken, action, terminal). A crossing keeps each code's column and ORs in the
new ``(timer * 11 + speed + 5) << 4``, read for four cars at once (four int16 in an int64,
little-endian) from a table over such a draw.
"""

from __future__ import annotations

import functools

import torch

from envs.minatar.base import DOWN, GRID, NUM_ACTIONS, UP, BatchedGame, pick

PLAYER_SPEED = 3
TIME_LIMIT = 2500
CARS = 8
CODES = 66 << 4
"""Car codes: (timer 0-5, speed + 5 in 0-10) x column."""
START = 9 * 4 + PLAYER_SPEED
"""The chicken at a reset: row 9, move timer 3."""


def _code(column: int, timer: int, speed: int) -> int:
    return (timer * 11 + speed + 5) << 4 | column


def _code_of(car, k: int) -> int:
    """The code of the reference's car ``k``, ``[x, y, timer, speed]``."""
    x, y, timer, speed = (int(v) for v in car)
    if y != k + 1 or not 0 <= x < GRID or not 0 <= timer <= 5 or not 1 <= abs(speed) <= 5:
        raise ValueError(f"Freeway car {k} = {list(car)}: valid are x 0-9, y = car + 1 = {k + 1}, "
                         f"timer 0-5 and speed ±1-5")
    return _code(x, timer, speed)


def _car(code: int) -> tuple[int, int, int]:
    """``(column, timer, signed speed)`` of a code."""
    high, column = divmod(code, 16)
    timer, speed = divmod(high, 11)
    return column, timer, speed - 5


@functools.lru_cache(maxsize=8)
def _tables(device: torch.device) -> dict[str, torch.Tensor]:
    """The cars' and the chicken's step tables (see the module docstring)."""
    cells = GRID * GRID
    step, hit, paint = [], [], []
    for code in range(CODES):
        x, timer, speed = _car(code)
        if timer == 0:
            nx = (x + (1 if speed > 0 else -1)) % GRID
            step.append(_code(nx, abs(speed), speed))
        else:
            nx = x
            step.append(_code(x, timer - 1, speed))
        hit.append(int(x == 4 or nx == 4))  # on the chicken's cell before or after moving
    for car in range(CARS):
        row = (car + 1) * GRID
        for code in range(CODES):
            x, _, speed = _car(code)
            back = (x - (1 if speed > 0 else -1)) % GRID
            paint.append((cells + row + x) | ((1 + abs(speed)) * cells + row + back) << 16)
    chicken = []  # [(chicken * 6 + action) * 2 + terminal] -> next chicken * 2 + crossed
    for c in range(GRID * 4):
        pos, timer = divmod(c, 4)
        for a in range(NUM_ACTIONS):
            npos, ntimer = pos, timer
            if timer == 0 and a in (UP, DOWN):
                npos, ntimer = min(max(pos + (1 if a == DOWN else -1), 0), 9), PLAYER_SPEED
            crossed = npos == 0
            npos = 9 if crossed else npos
            ntimer -= ntimer > 0
            chicken += [(npos * 4 + ntimer) * 2 + crossed, c * 2]
    on_road = [int(1 <= c // 4 <= CARS) for c in range(GRID * 4)] + [0] * (GRID * 4)  # [+ 40 * terminal]
    speeds = []  # [digits * 16 + bits] -> four (timer * 11 + speed + 5) << 4 as int16, car 0 lowest
    for digits in range(5 ** 4):
        for bits in range(16):
            word = 0
            for i in range(4):
                speed = digits // 5 ** i % 5 + 1
                speed = -speed if bits >> i & 1 else speed
                word |= _code(0, abs(speed), speed) << (16 * i)
            speeds.append(word)
    long = functools.partial(torch.tensor, dtype=torch.long, device=device)
    return {"step": torch.tensor(step, dtype=torch.int16, device=device), "hit": long(hit),
            "paint": torch.tensor(paint, dtype=torch.int32, device=device), "chicken": long(chicken),
            "on_road": long(on_road), "slot": long([min(max(c // 4 - 1, 0), CARS - 1) for c in range(GRID * 4)]),
            "cell": long([c // 4 * GRID + 4 for c in range(GRID * 4)]), "speeds": long(speeds)}


class Freeway(BatchedGame):
    """N Freeway games: ``chicken``, ``terminate_timer`` and ``cars`` per env (module docstring)."""

    name = "Freeway"
    num_channels = 7
    draws_per_step = 2  # car speeds and directions when the chicken crosses, packed (module docstring)
    state_names = ("chicken", "terminate_timer", "cars")
    views = ("pos", "move_timer", "car_x", "car_timer", "car_speed")

    def _init_state(self) -> None:
        n, dev = self.num_envs, self.device
        self.chicken = torch.zeros(n, dtype=torch.long, device=dev)
        self.terminate_timer = torch.zeros(n, dtype=torch.long, device=dev)
        self.cars = torch.zeros(n, CARS, dtype=torch.int16, device=dev)
        self._tables = _tables(self.device)
        # CODES * car for each car (materialised: a broadcast along the last dimension is slow)
        self._car_keys = (torch.arange(CARS, device=dev, dtype=torch.int32) * CODES).repeat(n)

    # the reference's fields, decoded
    pos = property(lambda self: self.chicken // 4)
    move_timer = property(lambda self: self.chicken % 4)
    car_x = property(lambda self: self.cars.long() % 16)
    car_timer = property(lambda self: self.cars.long() // 16 // 11)
    car_speed = property(lambda self: self.cars.long() // 16 % 11 - 5)

    def set_env(self, i: int, name: str, value) -> None:
        """Set reference field ``name`` of env ``i``: ``pos`` (0-9), ``move_timer`` (0-3),
        ``terminate_timer``, ``cars`` (the reference's list of 8 ``[x, y, timer, speed]``: ``y``
        the row ``car + 1``, ``x`` 0-9, ``timer`` 0-5, ``speed`` ±1-5) or ``terminal``."""
        if name in ("pos", "move_timer"):
            high = GRID - 1 if name == "pos" else PLAYER_SPEED
            if not 0 <= int(value) <= high:
                raise ValueError(f"Freeway {name}={value}: valid values are 0-{high}")
            values = {"pos": int(self.pos[i]), "move_timer": int(self.move_timer[i]),
                      name: int(value)}
            self.chicken[i] = values["pos"] * 4 + values["move_timer"]
        elif name == "cars":
            if len(value) != CARS:
                raise ValueError(f"Freeway cars: {len(value)} given, expected {CARS}")
            self.cars[i] = torch.tensor([_code_of(car, k) for k, car in enumerate(value)],
                                        dtype=torch.int16)
        elif name in ("terminate_timer", "terminal"):
            getattr(self, name)[i] = int(value)
        else:
            raise ValueError(f"Freeway has no field {name!r}; fields: pos, move_timer, "
                             f"terminate_timer, cars, terminal")

    def _draw_speeds(self, mask: torch.Tensor) -> torch.Tensor:
        """``[N, 2]`` int64: each env's 8 new ``(timer * 11 + speed + 5) << 4`` (as int16)."""
        random = self.random
        if random.replays_reference:  # the reference's calls
            speed = random.integers(1, 6, mask, size=CARS)
            left = random.uniform(mask, size=CARS) < 0.5
            sp = (speed * 11 + speed - 2 * left * speed + 5) << 4
            return sp.to(torch.int16).view(torch.int64)
        keys = random.integers(0, 5 ** 4 * 16, mask, size=2)  # [digits * 16 + bits] for cars 0-3, 4-7
        return self._tables["speeds"].index_select(0, keys.view(-1)).view(-1, 2)

    def _reset(self, mask: torch.Tensor) -> None:
        new = self._draw_speeds(mask)  # column 0
        cars = self.cars.view(torch.int64)
        self.cars = pick(mask.unsqueeze(1), new, cars).view(torch.int16)
        self.chicken = pick(mask, START, self.chicken)
        self.terminate_timer = pick(mask, TIME_LIMIT, self.terminate_timer)
        self.terminal = self.terminal & ~mask

    def _act(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = self._tables
        terminal = self.terminal
        live = ~terminal
        chicken = t["chicken"].index_select(0, (self.chicken * NUM_ACTIONS + actions) * 2 + terminal)
        crossed = chicken & 1
        chicken = chicken >> 1
        new = self._draw_speeds(crossed.bool())
        cars = self.cars.view(torch.int64)
        cars = pick(crossed.unsqueeze(1), (cars & 0x000F000F000F000F) | new, cars)
        # only the car on the chicken's row can hit it; a hit sends it to row 9, where no car is
        code = cars.view(torch.int16).gather(1, t["slot"].index_select(0, chicken).unsqueeze(1))
        on_road = t["on_road"].index_select(0, chicken + 4 * GRID * terminal)
        hit = t["hit"].index_select(0, code.view(-1).long()) * on_road
        self.chicken = pick(hit, 9 * 4 + (chicken & 3), chicken)  # row 9, same move timer
        moved = t["step"].index_select(0, cars.view(torch.int16).view(-1).int()).view(-1, CARS).view(torch.int64)
        self.cars = pick(live.unsqueeze(1), moved, cars).view(torch.int16)
        self.terminate_timer = self.terminate_timer - live.long()
        self.terminal = terminal | (self.terminate_timer < 0)
        return crossed.float(), self.terminal.clone()

    def observation(self) -> torch.Tensor:
        # 17 cells per env: the chicken, every car (channel 1, row i + 1) and its trail
        # (channel 1 + |speed|, the cell behind it)
        n = self.num_envs
        key = self.cars.view(-1).int() + self._car_keys
        cells = self._tables["paint"].index_select(0, key).view(torch.int16)  # little-endian pairs
        obs = self._paint(cells.view(n, 2 * CARS))
        chicken = self._tables["cell"].index_select(0, self.chicken)
        obs.view(-1).index_fill_(0, chicken + self._env_cells.view(-1), True)
        return obs
