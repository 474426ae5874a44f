"""Feed-forward actor-critic controller with its own observation normaliser."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class RunningNorm(nn.Module):
    """Normalises observations by running mean and variance (Chan et al. parallel update).

    The statistics are buffers, so they are saved with the controller and restored on
    resume; `update` is called by the trainer on rollout data, never inside `forward`.

    Args:
        size: D, observation size.
        clip: normalised values are clamped to [-clip, clip].
    """

    def __init__(self, size: int, clip: float = 10.0, eps: float = 1e-8) -> None:
        super().__init__()
        self.clip = clip
        self.eps = eps
        self.register_buffer("mean", torch.zeros(size))
        self.register_buffer("var", torch.ones(size))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))

    @torch.no_grad()
    def update(self, mean: torch.Tensor, var: torch.Tensor, count: torch.Tensor) -> None:
        """Fold the moments of a batch into the running statistics.

        Args:
            mean: [D] batch mean.
            var: [D] batch variance (biased).
            count: scalar number of samples in the batch.
        """
        count = count.to(self.count.dtype)
        total = self.count + count
        delta = mean.to(self.mean.dtype) - self.mean
        m2 = self.var * self.count + var.to(self.var.dtype) * count + delta.square() * (self.count * count / total)
        self.mean += delta * (count / total).to(self.mean.dtype)
        self.var.copy_((m2 / total).to(self.var.dtype))
        self.count.copy_(total)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised ``x`` [..., D]."""
        return ((x - self.mean) / torch.sqrt(self.var + self.eps)).clamp(-self.clip, self.clip)


def mlp(sizes: Sequence[int], activation: type[nn.Module] = nn.Tanh) -> nn.Sequential:
    """Linear layers of the given sizes with ``activation`` between them (none at the end)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


class MLPController(nn.Module):
    """Actor-critic MLP for muscle control: observations in, excitations in 0..1 out.

    The actor gives the mean of a Gaussian over pre-squash actions and a learned,
    state-independent log standard deviation; actions are ``sigmoid``-like squashed into
    the muscles' 0..1 range by TorchRL's ``TanhNormal(low=0, high=1)`` during training and
    by `forward` for deterministic use. The critic estimates the state value.

    Args:
        observation_size: D, size of the flat observation.
        action_size: nu, number of muscles.
        hidden_sizes: widths of the hidden layers of actor and critic.
        init_log_std: initial log standard deviation of the pre-squash action noise.
    """

    def __init__(
        self,
        observation_size: int,
        action_size: int,
        hidden_sizes: Sequence[int] = (256, 256),
        init_log_std: float = -0.5,
    ) -> None:
        super().__init__()
        self.observation_size = observation_size
        self.action_size = action_size
        self.obs_norm = RunningNorm(observation_size)
        self.actor = mlp([observation_size, *hidden_sizes, action_size])
        self.critic = mlp([observation_size, *hidden_sizes, 1])
        self.log_std = nn.Parameter(torch.full((action_size,), float(init_log_std)))
        # Small last actor layer: the initial policy sits at mid-range excitation.
        nn.init.orthogonal_(self.actor[-1].weight, gain=0.01)
        nn.init.zeros_(self.actor[-1].bias)

    def action_distribution_params(self, observation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pre-squash Gaussian mean and standard deviation, each [..., nu]."""
        loc = self.actor(self.obs_norm(observation))
        return loc, self.log_std.exp().expand_as(loc)

    def value(self, observation: torch.Tensor) -> torch.Tensor:
        """State value [..., 1]."""
        return self.critic(self.obs_norm(observation))

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        """Deterministic muscle excitations [..., nu] in 0..1 for observations [..., D]."""
        loc, _ = self.action_distribution_params(observation)
        return 0.5 * (torch.tanh(loc) + 1.0)
