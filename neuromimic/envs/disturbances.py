"""Disturbances while training: observation noise and random pushes of a free root.

A controller fitted to a few clips can lose its balance on a held-out one in a stretch it
never saw (the rat on rat23, README "PPO settings"). The field's remedy is to train it on
states a little off its own: legged-robot and tracking tasks add noise to what the
controller senses and push the body at random times (mjlab's ``push_robot`` event,
DeepMimic's perturbations). Here both act on the training env only; the held-out
evaluation (``make_env(..., evaluation=True)``) sees neither, so its numbers compare
with runs made without them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from neuromimic.errors import ConfigError, check_config
from neuromimic.tasks.base import BodyInfo


@dataclass
class DisturbanceConfig:
    """Disturbances of the training env; one YAML group (``model.env.disturbances``).

    Args:
        observation_noise: ``{observation term: standard deviation}`` of Gaussian noise
            added to that term's blocks at every step, in the term's units (the
            observation layout lists them; a term shown at several future frames gets
            independent noise in each).
        push_rate_hz: mean pushes per second of each body (a free root only; 0: none).
            A push starts on a control step with probability ``rate x control step``
            unless one is under way.
        push_velocity: the root's horizontal speed change a push would give the whole
            body alone, in m/s; the push is the force ``mass x velocity / duration`` on the
            root body, in a random horizontal direction.
        push_duration_s: how long a push lasts (rounded up to whole control steps).
    """

    observation_noise: dict[str, float] = field(default_factory=dict)
    push_rate_hz: float = 0.0
    push_velocity: float = 0.2
    push_duration_s: float = 0.1

    def __post_init__(self) -> None:
        for name, std in self.observation_noise.items():
            check_config(
                isinstance(std, int | float) and std >= 0,
                f"model.env.disturbances.observation_noise.{name}",
                std,
                "a standard deviation >= 0 in the term's units",
            )
        for name in ("push_rate_hz", "push_velocity", "push_duration_s"):
            value = getattr(self, name)
            check_config(
                isinstance(value, int | float) and value >= 0 and math.isfinite(value),
                f"model.env.disturbances.{name}",
                value,
                "a finite number >= 0",
            )
        check_config(
            self.push_duration_s > 0 or self.push_rate_hz == 0,
            "model.env.disturbances.push_duration_s",
            self.push_duration_s,
            "a duration > 0 s while push_rate_hz is above 0",
        )

    @property
    def active(self) -> bool:
        """Whether anything is disturbed."""
        return self.push_rate_hz > 0 or any(std > 0 for std in self.observation_noise.values())


class Disturbances:
    """The disturbances of a `DisturbanceConfig`, bound to one env's backend and layout.

    Random draws come from ``generator`` (the env's clip sampler, which its snapshots
    keep), on the env's device; nothing here reads tensors on the host.

    Args:
        config: what to disturb.
        backend: the env's physics backend (its ``external_force`` carries the pushes).
        body: the body (its free root and length unit).
        observation_layout: the env's ``(block, size, units)`` list.
        term_of_block: the observation term each block comes from.
        control_dt: seconds per control step.
        generator: the torch generator to draw from.
    """

    def __init__(
        self,
        config: DisturbanceConfig,
        backend,
        body: BodyInfo,
        observation_layout: list[tuple[str, int, str]],
        term_of_block: list[str],
        control_dt: float,
        generator: torch.Generator,
    ) -> None:
        self.generator = generator
        device = backend.device
        terms = set(term_of_block)
        unknown = sorted(set(config.observation_noise) - terms)
        if unknown:
            raise ConfigError(
                f"model.env.disturbances.observation_noise names {unknown}, which are not observation "
                f"terms of this env; its terms are {sorted(terms)}"
            )
        std = [
            torch.full((size,), float(config.observation_noise.get(term, 0.0)))
            for (_, size, _), term in zip(observation_layout, term_of_block, strict=True)
        ]
        std = torch.cat(std).to(device)
        #: [D] noise standard deviation of each observation entry, or None without noise.
        self.noise_std = std if bool((std > 0).any()) else None

        model = backend.model
        self._external = backend.external_force
        self._num_envs = backend.num_envs
        self.push_probability = config.push_rate_hz * control_dt
        if self.push_probability > 0:
            if not body.free_root:
                raise ConfigError(
                    "model.env.disturbances.push_rate_hz pushes a free root, and this body's root is "
                    "fixed: set push_rate_hz to 0"
                )
            self._root = int(model.jnt_bodyid[0])
            mass = float(model.body_subtreemass[self._root])
            self._push_steps = max(1, math.ceil(config.push_duration_s / control_dt - 1e-9))
            duration = self._push_steps * control_dt
            #: Force (model units) of a push: the whole body's mass times the speed change over its duration.
            self.push_force = mass * config.push_velocity / body.length_unit_m / duration
        dtype = self._external.dtype
        #: [B] control steps left of each body's push; [B, 3] the push's force.
        self.remaining = torch.zeros(self._num_envs, dtype=torch.long, device=device)
        self.force = torch.zeros(self._num_envs, 3, dtype=dtype, device=device)

    def add_noise(self, observation: torch.Tensor, rows: torch.Tensor) -> None:
        """Add the observation noise to the ``rows`` [B] (bool) of ``observation`` [B, D], in place."""
        if self.noise_std is not None:
            noise = torch.randn(observation.shape, generator=self.generator, device=observation.device)
            std = self.noise_std.to(observation.dtype) * rows[:, None].to(observation.dtype)
            observation.add_(noise.to(observation.dtype) * std)

    @property
    def pushes(self) -> bool:
        """Whether the bodies are pushed (`push` is then an env ``before_step`` hook)."""
        return self.push_probability > 0

    def push(self, env) -> None:
        """Start, continue or end each body's push; an env ``before_step`` hook. A push
        under way when its body's episode ends runs on into the next episode."""
        shape, device, dtype = (self._num_envs,), self.force.device, self.force.dtype
        start = (self.remaining == 0) & (
            torch.rand(shape, generator=self.generator, device=device) < self.push_probability
        )
        angle = 2 * math.pi * torch.rand(shape, generator=self.generator, device=device, dtype=dtype)
        direction = torch.stack([angle.cos(), angle.sin(), torch.zeros_like(angle)], dim=-1)
        previous = torch.where((self.remaining > 0)[:, None], self.force, 0.0)
        self.force = torch.where(start[:, None], self.push_force * direction, self.force)
        self.remaining = torch.where(start, self._push_steps, (self.remaining - 1).clamp(min=0))
        now = torch.where((self.remaining > 0)[:, None], self.force, 0.0)
        self._external[:, self._root, :3] += now - previous  # other forces on the root keep their share

    def snapshot(self) -> dict:
        """The pushes under way, on the host."""
        return {"remaining": self.remaining.cpu().clone(), "force": self.force.cpu().clone()}

    def restore(self, snapshot: dict) -> None:
        """Continue the pushes of a `snapshot`."""
        self.remaining.copy_(snapshot["remaining"])
        self.force.copy_(snapshot["force"])
