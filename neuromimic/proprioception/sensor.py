"""`AfferentSensor`: the afferents of a simulated body's muscles, fed from the physics.

The env reads the muscles once per control step (at its end); between two reads the
sensor drives `Afferents` every ``dt_ms`` with fascicle length and tendon force moving
linearly from one read to the next. MuJoCo's muscles have rigid tendons, so the fascicle
takes every change of the muscle-tendon length, mapped to optimal lengths.
"""

from __future__ import annotations

import mujoco
import torch

from neuromimic.physics_view import PhysicsView
from neuromimic.proprioception.afferents import AfferentConfig, Afferents


class AfferentSensor:
    """Spindles and tendon organs of every muscle of B bodies.

    Args:
        config: the afferents' settings.
        model: the compiled body (its muscles' length ranges, fascicle ranges and forces).
        num_envs: B.
        fusimotor_action: the controller sets gamma drive (the action's last 2 nu
            values, in 0..1 of ``config.gamma_max_pps``); otherwise it is tonic.
        device, dtype: of the sensor's tensors (the backend's).

    Attributes:
        rates: [B, 3, nu] rates in pps arriving now (Ia, II, Ib), after `reset`.
        generator: the rate noise's generator.
    """

    def __init__(
        self, config: AfferentConfig, model: mujoco.MjModel, num_envs: int, fusimotor_action: bool, device, dtype
    ) -> None:
        to = {"device": device, "dtype": dtype}
        self.config = config
        self.afferents = Afferents(config).to(device)
        self.fusimotor_action = fusimotor_action
        self.nu = model.nu
        self.rates: torch.Tensor | None = None
        self._state: dict[str, torch.Tensor] | None = None
        self._inputs: tuple[torch.Tensor, torch.Tensor] | None = None  # at the last read
        self.generator = torch.Generator(device)
        self._tonic = (
            torch.full((num_envs, model.nu), config.gamma_static_pps, **to),
            torch.full((num_envs, model.nu), config.gamma_dynamic_pps, **to),
        )
        self._max_force = torch.as_tensor(model.actuator_gainprm[:, 2], **to).abs()
        length_range = torch.as_tensor(model.actuator_lengthrange, **to)
        fascicle_range = torch.as_tensor(model.actuator_gainprm[:, :2], **to)
        optimal_length = (length_range[:, 1] - length_range[:, 0]) / (fascicle_range[:, 1] - fascicle_range[:, 0])
        self._fascicle_scale = 1.0 / optimal_length
        self._fascicle_shift = fascicle_range[:, 0] - length_range[:, 0] / optimal_length

    def _read(self, sim: PhysicsView) -> tuple[torch.Tensor, torch.Tensor]:
        """Fascicle length [B, nu] in optimal lengths and tendon force [B, nu] in peak forces."""
        return sim.actuator_length * self._fascicle_scale + self._fascicle_shift, -sim.actuator_force / self._max_force

    def _gamma(self, action: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Gamma-static and gamma-dynamic drive [B, nu] in pps."""
        if self.fusimotor_action and action is not None:
            drive = action[:, self.nu :].to(self._fascicle_scale.dtype) * self.config.gamma_max_pps
            return drive[:, : self.nu], drive[:, self.nu :]
        return self._tonic

    def reset(self, mask: torch.Tensor, sim: PhysicsView) -> None:
        """The afferents of the bodies where ``mask`` [B] is True settle at their new pose
        (muscles inactive, tonic gamma drive); the others keep theirs."""
        # Every body's muscles are read: the others' are where their last step left them.
        length, force = self._inputs = self._read(sim)
        state = self.afferents.initial_state(length, force, *self._gamma(None))
        rates = self.afferents.settled_rates(state, length, force)
        if self._state is None:
            self._state, self.rates = state, rates
            return
        self._state = Afferents.select(mask, state, self._state)
        self.rates = torch.where(mask[:, None, None], rates, self.rates)

    def advance(self, sim: PhysicsView, action: torch.Tensor, duration: float) -> None:
        """Run the sensors over a control step of ``duration`` s that ended in ``sim``,
        under the gamma drive of ``action`` [B, A] (tonic without fusimotor actions)."""
        start_length, start_force = self._inputs
        end_length, end_force = self._inputs = self._read(sim)
        self.rates, self._state = self.afferents.advance(
            self._state,
            start_length,
            end_length,
            start_force,
            end_force,
            duration,
            *self._gamma(action),
            generator=self.generator,
        )

    def forget(self) -> None:
        """Drop every body's state (the next `reset` must cover every body)."""
        self._state = self.rates = self._inputs = None

    def snapshot(self) -> dict | None:
        """Host copies of the sensor state (None before the first `reset`); `restore` loads it."""
        if self._state is None:
            return {"generator": self.generator.get_state()}
        length, force = self._inputs
        return {
            "state": {k: v.cpu().clone() for k, v in self._state.items()},
            "rates": self.rates.cpu().clone(),
            "muscle_length": length.cpu().clone(),
            "muscle_force": force.cpu().clone(),
            "generator": self.generator.get_state(),
        }

    def restore(self, snapshot: dict) -> None:
        """Load a `snapshot` of a sensor of the same body and size."""
        self.generator.set_state(snapshot["generator"])
        if "state" not in snapshot:
            self.forget()
            return
        device = self._fascicle_scale.device
        self._state = {k: v.to(device).clone() for k, v in snapshot["state"].items()}
        self.rates = snapshot["rates"].to(device).clone()
        self._inputs = (snapshot["muscle_length"].to(device).clone(), snapshot["muscle_force"].to(device).clone())
