"""Freeway, batched: the reference MinAtar rules on N envs at once.

Channels: 0 chicken, 1 car, 2-6 trail of a car whose speed is 1-5 (at the cell behind it).
The chicken stays in column 4, starts on row 9 and moves up/down one row at most every 3
steps. Rows 1-8 hold one car each (car ``i`` on row ``i + 1``), with a speed ``s`` in 1..5
and a direction: the car moves one column every ``s + 1`` steps (its timer counts ``s``
down to 0), wrapping around the edges. Reaching row 0 gives +1, sends the chicken back to
row 9 and redraws every car's speed and direction (positions kept); being on a car's cell
before or after it moves sends the chicken back to row 9. The episode ends after 2501 steps
(a timer from 2500 down to -1). Speeds and directions are drawn as the reference does:
``integers(1, 6, size=8)`` then ``uniform(size=8)``, direction ``sign(u - 0.5)``; a
draw of exactly 0.5 (probability 2^-53 with the reference's floats, 2^-24 with float32)
would give the reference a car with no speed and no trail channel, and gives a left-moving car here.
No difficulty ramp.
"""

from __future__ import annotations

import torch

from envs.minatar.base import DOWN, GRID, UP, BatchedGame, pick

PLAYER_SPEED = 3
TIME_LIMIT = 2500
CARS = 8
CAR_DTYPE = torch.int32
"""The cars' fields (``[N, 8]``: column, timer, signed speed) are int32."""


class Freeway(BatchedGame):
    name = "Freeway"
    num_channels = 7
    draws_per_step = 16  # 8 car speeds and 8 directions when the chicken crosses
    state_names = ("pos", "move_timer", "terminate_timer", "car_x", "car_timer", "car_speed")

    def _init_state(self) -> None:
        n, dev = self.num_envs, self.device
        for name in ("pos", "move_timer", "terminate_timer"):
            setattr(self, name, torch.zeros(n, dtype=torch.long, device=dev))
        for name in ("car_x", "car_timer", "car_speed"):
            setattr(self, name, torch.zeros(n, CARS, dtype=CAR_DTYPE, device=dev))
        self._car_rows = (torch.arange(1, CARS + 1, device=dev) * GRID).expand(n, CARS).contiguous()

    def _draw_speeds(self, mask: torch.Tensor) -> torch.Tensor:
        """``[N, 8]`` signed speeds, as the reference's ``_randomize_cars``."""
        speed = self.random.integers(1, 6, mask, size=CARS)
        left = (self.random.uniform(mask, size=CARS) < 0.5).to(CAR_DTYPE)
        speed = speed.to(CAR_DTYPE)
        return speed - 2 * left * speed

    def _reset(self, mask: torch.Tensor) -> None:
        speed = self._draw_speeds(mask)
        new = mask.to(CAR_DTYPE).unsqueeze(1)
        self.car_x = self.car_x - new * self.car_x
        self.car_timer = pick(new, speed.abs(), self.car_timer)
        self.car_speed = pick(new, speed, self.car_speed)
        self.pos = torch.where(mask, 9, self.pos)
        self.move_timer = torch.where(mask, PLAYER_SPEED, self.move_timer)
        self.terminate_timer = torch.where(mask, TIME_LIMIT, self.terminate_timer)
        self.terminal = self.terminal & ~mask

    def _act(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        live = ~self.terminal
        ready = live & (self.move_timer == 0)
        up = ready & (actions == UP)
        down = ready & (actions == DOWN)
        self.move_timer = torch.where(up | down, PLAYER_SPEED, self.move_timer)
        pos = (self.pos - up.long() + down.long()).clamp(0, 9)

        crossed = live & (pos == 0)
        speed = self._draw_speeds(crossed)
        new = crossed.to(CAR_DTYPE).unsqueeze(1)
        self.car_timer = pick(new, speed.abs(), self.car_timer)
        self.car_speed = pick(new, speed, self.car_speed)
        pos = torch.where(crossed, 9, pos)
        # Only the car on the chicken's row (car pos - 1) can hit it; a hit sends it to row 9,
        # where no car is, so the reference's car-by-car order does not matter.
        slot = (pos - 1).clamp(0, CARS - 1).unsqueeze(1)
        on_road = (pos >= 1) & (pos <= CARS)
        hit_before = on_road & (self.car_x.gather(1, slot).squeeze(1) == 4)
        running = live.to(CAR_DTYPE).unsqueeze(1)
        due = (self.car_timer == 0).to(CAR_DTYPE) * running
        x = (self.car_x + due * self.car_speed.sign()).remainder(GRID)
        hit_after = (on_road & (due.gather(1, slot).squeeze(1) == 1)
                     & (x.gather(1, slot).squeeze(1) == 4))
        self.car_x = x
        timer = self.car_timer - running                 # -1 where a car is due
        self.car_timer = timer + due * (self.car_speed.abs() + 1)
        pos = torch.where(hit_before | hit_after, 9, pos)
        self.pos = torch.where(live, pos, self.pos)
        self.move_timer = self.move_timer - (live & (self.move_timer > 0)).long()
        self.terminate_timer = self.terminate_timer - live.long()
        self.terminal = self.terminal | (live & (self.terminate_timer < 0))
        return crossed.float(), self.terminal.clone()

    def observation(self) -> torch.Tensor:
        # 17 cells per env: the chicken, every car (channel 1, row i + 1) and its trail
        # (channel 1 + |speed|, the cell behind it)
        cells = GRID * GRID
        back = (self.car_x - self.car_speed.sign()).remainder(GRID)
        return self._paint(torch.cat(((self.pos * GRID + 4).unsqueeze(1),
                                      self.car_x + self._car_rows + cells,
                                      back + self._car_rows + (1 + self.car_speed.abs()) * cells), 1))
