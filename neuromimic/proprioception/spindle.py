"""The mammalian muscle spindle of Mileusnic, Brown, Lan and Loeb (2006), in torch.

Mileusnic MP, Brown IE, Lan N, Loeb GE (2006) Mathematical models of proprioceptors.
I. Control and transduction in the muscle spindle. J Neurophysiol 96:1772-1788.

Each spindle has three intrafusal fibres: bag1 (driven by dynamic fusimotor drive,
gamma-dynamic), bag2 and chain (driven by static fusimotor drive, gamma-static). A fibre is
a sensory region (spring ``K_SR``) in series with a polar region (spring ``K_PR``, a
length-dependent, velocity-power damper ``beta``, and an active force generator
``Gamma``), stretched by the muscle's fascicle length ``L``. The stretch of the sensory
region drives the afferents: the primary (Ia) ending sums bag1 against bag2 + chain
with partial occlusion, the secondary (II) ending sits on bag2 and chain.

Units: lengths in optimal fascicle lengths (L0), velocities in L0/s, tensions in the
paper's force units (FU), fusimotor drive in pulses per second (pps), afferent rates in
pps. Parameter values are the paper's Table 1 (`BAG1`, `BAG2`, `CHAIN`).

One documented deviation: the fibres are massless (``M = 0``; the paper's 0.0002 FU s^2/L0
only adds a brief acceleration-driven burst at the onset of a stretch). With ``M = 0`` the
tension obeys a first-order equation,

    dT/dt = K_SR (dL/dt - u),   u = sign(Q) (|Q| / (C beta (L - L0_SR - T/K_SR - R)))^(1/a),
    Q = T - K_PR (L - L0_SR - T/K_SR - L0_PR) - Gamma,

where ``u`` is the polar-region velocity at which the damper balances the other forces.
It is integrated by linearly implicit Euler, which is stable at any step (the damper is
very stiff during fast stretches); CEINMS's spindle also drops the mass and integrates
implicitly. The damper's
length factor ``L - L0_SR - T/K_SR - R`` is kept above 0.01 L0, where the paper's model
would flip the damper's sign (fascicles shorter than about 0.55 L0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

Tensors = dict[str, torch.Tensor]


@dataclass(frozen=True)
class IntrafusalFibre:
    """Parameters of one intrafusal fibre type (Mileusnic et al. 2006, Table 1).

    Attributes:
        fusimotor_half: fusimotor rate at which the fibre's activation is half maximal (pps).
        fusimotor_power: exponent ``p`` of the activation's sigmoid.
        tau: activation time constant (s); 0 for the chain fibre, which follows instantly.
        beta0, beta_dynamic, beta_static: damping coefficient and its change with dynamic
            and static fusimotor activation (FU / (L0/s)^a).
        gamma_dynamic, gamma_static: active force per unit of fusimotor activation (FU).
        primary_gain: Ia gain ``G`` (pps / L0 of sensory-region stretch).
        secondary_gain: II gain (pps / L0); 0 for bag1, which has no secondary ending.
    """

    fusimotor_half: float
    fusimotor_power: float
    tau: float
    beta0: float
    beta_dynamic: float
    beta_static: float
    gamma_dynamic: float
    gamma_static: float
    primary_gain: float
    secondary_gain: float


BAG1 = IntrafusalFibre(60.0, 2.0, 0.149, 0.0605, 0.2592, 0.0, 0.0289, 0.0, 20000.0, 0.0)
BAG2 = IntrafusalFibre(60.0, 2.0, 0.205, 0.0822, 0.0, -0.046, 0.0, 0.0636, 10000.0, 7250.0)
CHAIN = IntrafusalFibre(90.0, 2.0, 0.0, 0.0822, 0.0, -0.069, 0.0, 0.0954, 10000.0, 7250.0)

# Shared by the three fibres (Table 1).
K_SR = 10.4649  # sensory-region stiffness (FU / L0)
K_PR = 0.15  # polar-region stiffness (FU / L0)
DAMPING_POWER = 0.3  # a: the damper's velocity exponent
LENGTHENING_C = 1.0  # C while the polar region lengthens
SHORTENING_C = 0.42  # C while it shortens
DAMPING_LENGTH_R = 0.46  # R: fascicle length (L0) at which the damper force vanishes
L0_SR = 0.04  # sensory-region rest length (L0)
L0_PR = 0.76  # polar-region rest length (L0)
LN_SR = 0.0423  # sensory-region threshold length (L0)
LN_PR = 0.89  # polar-region threshold length of the secondary ending (L0)
SECONDARY_LENGTH = 0.04  # L_secondary (L0)
SECONDARY_X = 0.7  # X: share of the secondary ending on the sensory region
OCCLUSION_S = 0.156  # S: partial occlusion of the smaller primary drive
_MIN_DAMPING_LENGTH = 0.01


class MuscleSpindle(nn.Module):
    """Ia and II afferent rates of M spindles (one per muscle), stepped every ``dt`` seconds.

    State (a dict of tensors): ``"tension"`` [B, M, 3] of bag1, bag2 and chain in FU, and
    ``"fusimotor"`` [B, M, 3], each fibre's fusimotor activation (0..1): bag1 follows the
    gamma-dynamic drive and bag2 the gamma-static drive with their time constants, chain
    follows gamma-static instantly.

    Args:
        dt: integration step in s (1 ms or less keeps the afferents' fast transients).
    """

    def __init__(self, dt: float) -> None:
        super().__init__()
        if not dt > 0:
            raise ValueError(f"dt must be positive seconds; got {dt}")
        self.dt = float(dt)
        fibres = (BAG1, BAG2, CHAIN)
        if any(fibre.fusimotor_power != 2.0 for fibre in fibres):
            raise ValueError("the fusimotor sigmoid is written for p = 2 (Table 1)")

        def per_fibre(values) -> torch.Tensor:
            return torch.tensor(list(values), dtype=torch.float64)

        buffers = {
            "half_squared": per_fibre(f.fusimotor_half**2 for f in fibres),
            # Each fibre's activation is dynamic (bag1) or static (bag2, chain): one column each.
            "beta0": per_fibre(f.beta0 for f in fibres),
            "beta_per_activation": per_fibre(f.beta_dynamic + f.beta_static for f in fibres),
            "force_per_activation": per_fibre(f.gamma_dynamic + f.gamma_static for f in fibres),
            "primary_gain": per_fibre(f.primary_gain for f in fibres),
            "secondary_gain": per_fibre(f.secondary_gain for f in fibres),
            "fusimotor_decay": per_fibre(math.exp(-self.dt / f.tau) if f.tau > 0 else 0.0 for f in fibres),
        }
        for name, value in buffers.items():
            self.register_buffer(name, value, persistent=False)

    def _fusimotor_targets(self, gamma_static: torch.Tensor, gamma_dynamic: torch.Tensor) -> torch.Tensor:
        """Steady-state activations [B, M, 3] of bag1, bag2 and chain for the gamma drives (pps)."""
        squared = torch.stack([gamma_dynamic, gamma_static, gamma_static], dim=-1).clamp(min=0.0).square()
        return squared / (squared + self.half_squared.to(squared.dtype))

    def _active_force(self, fusimotor: torch.Tensor) -> torch.Tensor:
        return self.force_per_activation.to(fusimotor.dtype) * fusimotor

    def steady_tension(self, length: torch.Tensor, active_force: torch.Tensor) -> torch.Tensor:
        """Tension [B, M, 3] (FU) of fibres held still at ``length`` [B, M] (L0)."""
        return (K_PR * (length[..., None] - L0_SR - L0_PR) + active_force) / (1.0 + K_PR / K_SR)

    def _tension_step(
        self, tension: torch.Tensor, length: torch.Tensor, velocity: torch.Tensor, fusimotor: torch.Tensor
    ) -> torch.Tensor:
        """One linearly implicit Euler step of the massless fibre equation (module docstring).

        The step's Jacobian holds the damper's length factor fixed (it changes the step's
        damping of fast transients, not where the tension settles).
        """
        dtype = tension.dtype
        beta = self.beta0.to(dtype) + self.beta_per_activation.to(dtype) * fusimotor
        stretch = length[..., None] - L0_SR - tension / K_SR
        imbalance = tension - K_PR * (stretch - L0_PR) - self._active_force(fusimotor)
        damping_length = (stretch - DAMPING_LENGTH_R).clamp(min=_MIN_DAMPING_LENGTH)
        c = torch.where(imbalance > 0, LENGTHENING_C, SHORTENING_C)
        log_imbalance = imbalance.abs().clamp(min=1e-12).log()
        log_speed = (log_imbalance - (c * beta * damping_length).log()) / DAMPING_POWER
        polar_velocity = torch.copysign(log_speed.exp(), imbalance)
        # d(polar velocity)/d(tension) >= 0: the implicit step's stabilising term.
        slope = (log_speed - log_imbalance).exp() * ((1.0 + K_PR / K_SR) / DAMPING_POWER)
        rate = K_SR * (velocity[..., None] - polar_velocity)
        return tension + self.dt * rate / (1.0 + (self.dt * K_SR) * slope)

    # ----------------------------------------------------------------------------- public
    def initial_state(self, length: torch.Tensor, gamma_static: torch.Tensor, gamma_dynamic: torch.Tensor) -> Tensors:
        """The state of spindles held at ``length`` [B, M] (L0) long enough to settle under
        constant gamma drives [B, M] (pps)."""
        fusimotor = self._fusimotor_targets(gamma_static, gamma_dynamic)
        return {"tension": self.steady_tension(length, self._active_force(fusimotor)), "fusimotor": fusimotor}

    def rates(self, state: Tensors, length: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(Ia, II)`` [B, M] in pps of spindles in ``state`` at fascicle ``length`` [B, M]."""
        tension = state["tension"]
        dtype = tension.dtype
        sensory_stretch = tension / K_SR - (LN_SR - L0_SR)
        primary = (self.primary_gain.to(dtype) * sensory_stretch).clamp(min=0.0)
        bag1, static = primary[..., 0], primary[..., 1] + primary[..., 2]
        ia = torch.maximum(bag1, static) + OCCLUSION_S * torch.minimum(bag1, static)
        polar_stretch = length[..., None] - tension / K_SR - L0_SR - LN_PR
        secondary = self.secondary_gain.to(dtype) * (
            SECONDARY_X * SECONDARY_LENGTH / L0_SR * sensory_stretch
            + (1.0 - SECONDARY_X) * SECONDARY_LENGTH / L0_PR * polar_stretch
        )
        ii = secondary.clamp(min=0.0)[..., 1:].sum(-1)
        return ia, ii

    def forward(
        self,
        state: Tensors,
        length: torch.Tensor,
        velocity: torch.Tensor,
        gamma_static: torch.Tensor,
        gamma_dynamic: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, Tensors]:
        """Advance the spindles by ``dt``.

        Args:
            state: the spindles' state (`initial_state`).
            length: fascicle length [B, M] at the end of the step, in L0.
            velocity: fascicle velocity [B, M] over the step, in L0/s (positive: stretch).
            gamma_static, gamma_dynamic: fusimotor drive [B, M] in pps.

        Returns:
            ``(Ia [B, M], II [B, M], new_state)``, rates in pps.
        """
        targets = self._fusimotor_targets(gamma_static, gamma_dynamic)
        fusimotor = torch.lerp(targets, state["fusimotor"], self.fusimotor_decay.to(targets.dtype))
        tension = self._tension_step(state["tension"], length, velocity, fusimotor)
        new_state = {"tension": tension, "fusimotor": fusimotor}
        ia, ii = self.rates(new_state, length)
        return ia, ii, new_state
