"""`Afferents`: the spindles and tendon organs of M muscles with conduction delays and noise.

The sensors (`MuscleSpindle`, `TendonOrgan`) run every ``dt_ms``; each afferent class
reaches its output after its own conduction delay, a whole number of ``dt_ms`` steps,
so a response is shifted by exactly the stated time. Everything is batched torch on the
caller's device and differentiable (the delay lines and rectifications included).

Inputs are per muscle: fascicle length in optimal lengths (L0), velocity in L0/s, tendon
force in units of peak isometric force, and gamma-static and gamma-dynamic drive in pps.
Outputs are rates in pps, stacked as ``[B, 3, M]`` in the order of `AFFERENT_CLASSES`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from neuromimic.proprioception.spindle import MuscleSpindle
from neuromimic.proprioception.tendon_organ import TendonOrgan

Tensors = dict[str, torch.Tensor]

#: Afferent classes in the order of every ``[B, 3, M]`` rate tensor.
AFFERENT_CLASSES = ("Ia", "II", "Ib")


@dataclass
class AfferentConfig:
    """Settings of the afferents; one YAML group (``model.env.afferents``).

    Args:
        dt_ms: sensor integration step in ms; delays must be whole multiples of it.
        ia_delay_ms, ii_delay_ms, ib_delay_ms: conduction delay of each class in ms. The
            defaults suit a mouse forelimb (a few cm of fast axons at 30-80 m/s); a human
            ankle loop is about 20-25 ms each way.
        noise_pps: standard deviation of Gaussian noise added to every rate before the
            delay (pps); rates stay non-negative.
        gamma_static_pps, gamma_dynamic_pps: fusimotor drive when the controller does not
            set it (``fusimotor_action: false``).
        gamma_max_pps: fusimotor drive at action 1 when the controller sets it.
        tendon_organ_force_scale: the tendon organ's ``G2`` as a fraction of peak force.
    """

    dt_ms: float = 1.0
    ia_delay_ms: float = 5.0
    ii_delay_ms: float = 5.0
    ib_delay_ms: float = 5.0
    noise_pps: float = 0.0
    gamma_static_pps: float = 70.0
    gamma_dynamic_pps: float = 70.0
    gamma_max_pps: float = 150.0
    tendon_organ_force_scale: float = 0.1

    def delay_steps(self) -> tuple[int, int, int]:
        """Delay of each class in sensor steps; raises if one is not a whole number of them."""
        steps = []
        for name, delay in zip(AFFERENT_CLASSES, (self.ia_delay_ms, self.ii_delay_ms, self.ib_delay_ms), strict=True):
            count = round(delay / self.dt_ms)
            if delay < 0 or abs(count * self.dt_ms - delay) > 1e-9 * max(1.0, delay):
                raise ValueError(
                    f"afferents: the {name} delay of {delay} ms is not a non-negative whole multiple "
                    f"of dt_ms = {self.dt_ms} ms; set it to {max(count, 0) * self.dt_ms:g} ms or change dt_ms"
                )
            steps.append(count)
        return tuple(steps)


class Afferents(nn.Module):
    """Ia, II and Ib afferents of M muscles.

    State (dict of tensors): the spindles' (``"tension"``, ``"fusimotor"``), the tendon
    organs' ``"filter"``, ``"noise_free"`` [B, 3, M] (the undelayed rates) and
    ``"in_flight"`` [B, D, 3, M], the rates still travelling along the axons (D = the
    longest delay in steps).
    """

    def __init__(self, config: AfferentConfig | None = None) -> None:
        super().__init__()
        self.config = config or AfferentConfig()
        self.dt = self.config.dt_ms * 1e-3
        self.delays = self.config.delay_steps()
        self.max_delay = max(self.delays)
        self.spindle = MuscleSpindle(self.dt)
        self.tendon_organ = TendonOrgan(self.dt, self.config.tendon_organ_force_scale)

    def _sense(self, sensor_state: Tensors, length, velocity, force, gamma_static, gamma_dynamic):
        ia, ii, spindle = self.spindle(sensor_state, length, velocity, gamma_static, gamma_dynamic)
        ib, tendon_organ = self.tendon_organ(sensor_state, force)
        return torch.stack([ia, ii, ib], dim=1), {**spindle, **tendon_organ}

    def initial_state(
        self, length: torch.Tensor, force: torch.Tensor, gamma_static: torch.Tensor, gamma_dynamic: torch.Tensor
    ) -> Tensors:
        """The state after holding ``length`` [B, M] (L0) and ``force`` [B, M] (peak forces)
        under constant gamma drives [B, M] (pps) for long: every axon carries the settled rates."""
        state = {
            **self.spindle.initial_state(length, gamma_static, gamma_dynamic),
            **self.tendon_organ.initial_state(force),
        }
        rates = self.settled_rates(state, length, force)
        state["in_flight"] = rates[:, None].expand(-1, self.max_delay, -1, -1).clone()
        return state

    def settled_rates(self, state: Tensors, length: torch.Tensor, force: torch.Tensor) -> torch.Tensor:
        """Rates [B, 3, M] (pps) of settled sensors in ``state`` (`initial_state`) at
        ``length`` and ``force`` [B, M]: what every axon carries after a long hold."""
        ia, ii = self.spindle.rates(state, length)
        return torch.stack([ia, ii, self.tendon_organ.drive(force)], dim=1)

    def delayed(self, state: Tensors, rates: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(rates arriving now [B, 3, M], new in-flight buffer)`` after sending ``rates``."""
        history = torch.cat([state["in_flight"], rates[:, None]], dim=1)  # [B, D + 1, 3, M]
        arriving = torch.stack([history[:, self.max_delay - delay, k] for k, delay in enumerate(self.delays)], dim=1)
        return arriving, history[:, 1:]

    def forward(
        self,
        state: Tensors,
        length: torch.Tensor,
        velocity: torch.Tensor,
        force: torch.Tensor,
        gamma_static: torch.Tensor,
        gamma_dynamic: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, Tensors]:
        """Advance by one sensor step (``dt_ms``).

        Args:
            state: from `initial_state` or the previous step.
            length: fascicle length [B, M] in L0 at the end of the step.
            velocity: fascicle velocity [B, M] in L0/s over the step.
            force: tendon force [B, M] in units of peak isometric force.
            gamma_static, gamma_dynamic: fusimotor drive [B, M] in pps.
            generator: random generator of the rate noise (``noise_pps > 0``).

        Returns:
            ``(rates [B, 3, M] in pps as they arrive after their delays, new_state)``.
        """
        rates, sensors = self._sense(state, length, velocity, force, gamma_static, gamma_dynamic)
        if self.config.noise_pps > 0:
            noise = torch.randn(rates.shape, generator=generator, device=rates.device, dtype=rates.dtype)
            rates = (rates + self.config.noise_pps * noise).clamp(min=0.0)
        arriving, in_flight = self.delayed(state, rates)
        return arriving, {**sensors, "in_flight": in_flight}

    def advance(
        self,
        state: Tensors,
        start_length: torch.Tensor,
        end_length: torch.Tensor,
        start_force: torch.Tensor,
        end_force: torch.Tensor,
        duration: float,
        gamma_static: torch.Tensor,
        gamma_dynamic: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, Tensors]:
        """Advance over ``duration`` s (a whole number of sensor steps), with length and force
        moving linearly from their start to their end values [B, M]: how an env that sees
        its muscles once per control step drives the sensors in between.

        Returns:
            ``(rates [B, 3, M] arriving at the end, new_state)``.
        """
        steps = round(duration / self.dt)
        if steps < 1 or abs(steps * self.dt - duration) > 1e-9:
            raise ValueError(
                f"afferents: a control step of {duration * 1e3:g} ms is not a whole number of "
                f"sensor steps of {self.config.dt_ms:g} ms; choose dt_ms to divide it"
            )
        velocity = (end_length - start_length) / duration
        rates = None
        for k in range(1, steps + 1):
            w = k / steps
            rates, state = self(
                state,
                torch.lerp(start_length, end_length, w),
                velocity,
                torch.lerp(start_force, end_force, w),
                gamma_static,
                gamma_dynamic,
                generator,
            )
        return rates, state

    @staticmethod
    def select(mask: torch.Tensor, new: Tensors, old: Tensors) -> Tensors:
        """Rows of ``new`` where ``mask`` [B] is True, of ``old`` elsewhere (masked resets)."""
        return {
            name: torch.where(mask.view(-1, *([1] * (value.dim() - 1))), value, old[name])
            for name, value in new.items()
        }
