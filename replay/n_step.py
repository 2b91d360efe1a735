"""n-step returns over windows of consecutive one-step transitions.

For a transition starting at ``t`` the window holds the one-step rewards and end flags of
steps ``t, t+1, ..., t+n-1``. The window is cut after the first step that ends the episode
(terminated or truncated): with ``m`` the number of steps kept,

    reward   = sum_{k<m} gamma^k * r_{t+k}
    discount = 0            if the episode terminated inside the window
               gamma^m      otherwise (no end, or truncation: the value of s_{t+m} is bootstrapped)

and the DQN target is ``reward + discount * max_a Q_target(s_{t+m})``.
"""

from __future__ import annotations

import torch

TERMINATED, TRUNCATED = 1, 2  # bits of the per-slot end flags a storage keeps


def n_step_window(
    rewards: torch.Tensor, terminated: torch.Tensor, truncated: torch.Tensor, gamma: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Discounted window sums.

    Args:
        rewards: (B, n) float one-step rewards (already clipped if clipping is wanted).
        terminated, truncated: (B, n) bool end flags of each step.
        gamma: discount factor.

    Returns:
        ``(reward, discount, steps)``: (B,) float n-step reward, (B,) float discount, (B,)
        long number of steps ``m`` kept (``1 <= m <= n``); entries past the end of the
        episode may hold anything, they are masked out.
    """
    batch, n = rewards.shape
    ended = terminated | truncated
    # kept[:, k] is True when no step before k ended the episode (step 0 is always kept).
    not_ended_before = torch.cumprod((~ended).to(rewards.dtype), dim=1)
    kept = torch.cat([torch.ones_like(not_ended_before[:, :1]), not_ended_before[:, :-1]], dim=1)
    powers = gamma ** torch.arange(n, dtype=rewards.dtype, device=rewards.device)
    reward = torch.where(kept.bool(), powers * rewards, torch.zeros_like(rewards)).sum(dim=1)
    steps = kept.sum(dim=1).long()
    terminal = (kept.bool() & terminated).any(dim=1)
    discount = torch.where(
        terminal, torch.zeros_like(reward), torch.full_like(reward, gamma) ** steps.to(rewards.dtype)
    )
    return reward, discount, steps
