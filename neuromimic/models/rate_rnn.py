"""Leaky firing-rate RNN: the standard model of a cortical circuit, with Dale's law,
connectivity masks, per-unit time constants, process noise and conduction delays."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.utils import parametrize

from neuromimic.models.base import Core, Tensors
from neuromimic.models.constraints import SignedMaskedWeight, connectivity_mask, dale_signs

log = logging.getLogger(__name__)

RATE_FUNCTIONS = {"softplus": nn.functional.softplus, "relu": torch.relu, "tanh": torch.tanh}


def delay_steps(delay_ms: float, control_dt: float, what: str) -> int:
    """A delay in ms as a whole number of control steps (error if it is not one)."""
    if delay_ms < 0:
        raise ValueError(f"{what} must be >= 0 ms; got {delay_ms:g}")
    steps = delay_ms / 1000.0 / control_dt
    if abs(steps - round(steps)) > 1e-6:
        raise ValueError(
            f"{what} of {delay_ms:g} ms is not a whole number of {control_dt * 1e3:g} ms control "
            f"steps; use a multiple of {control_dt * 1e3:g} ms"
        )
    return round(steps)


class RateRNNCore(Core):
    """``tau dh/dt = -h + W r + U x + b``, ``r = f(h)``, stepped once per control step.

    Discretisation: exponential Euler with ``alpha = 1 - exp(-dt / tau)``,
    ``h <- h + alpha * (-h + W r + U x + b) + noise``, exact for the leak, so a unit's
    impulse response decays by ``exp(-dt / tau)`` per step for any ``dt``. Process noise is
    an Ornstein-Uhlenbeck term whose stationary standard deviation is ``noise_std`` (per
    step ``sqrt(1 - (1 - alpha)^2) * noise_std * xi``, ``xi`` the ``"process"`` noise input).

    State: ``h`` [B, H], plus the delay lines ``input_buffer`` [B, d_in, D_in] and
    ``output_buffer`` [B, d_out, H] when the delays are non-zero. Activity: ``h`` and
    ``rate`` [B, H] after the step. The output is the rate ``d_out`` steps ago.

    Args:
        input_size: D_in.
        control_dt: control step dt in s.
        hidden_size: H, number of units.
        tau: time constant in s, one for all units or a list of H.
        learn_tau: learn the time constants (as ``log tau``, so they stay positive).
        activation: rate function ``f``: ``"softplus"``, ``"relu"`` (both non-negative
            rates) or ``"tanh"``.
        noise_std: stationary standard deviation of the process noise on ``h``.
        input_delay_ms: sensory delay (a multiple of the control step).
        output_delay_ms: motor delay (a multiple of the control step).
        excitatory_fraction: apply Dale's law with this fraction of excitatory units (the
            first ones); ``None`` leaves the signs free.
        connectivity: recurrent connectivity mask: ``None`` (all-to-all),
            ``"random:<density>"``, or a ``.npy`` / ``.npz`` / ``.csv`` adjacency file (see
            `neuromimic.models.constraints.connectivity_mask`); ``"stored"`` allocates the
            mask for weights that bring their own (used when loading an export).
        connectivity_seed: seed of a random mask.
        spectral_radius: initial spectral radius of the effective recurrent weights.
    """

    def __init__(
        self,
        input_size: int,
        control_dt: float = 0.01,
        hidden_size: int = 128,
        tau: float | Sequence[float] = 0.05,
        learn_tau: bool = False,
        activation: str = "softplus",
        noise_std: float = 0.0,
        input_delay_ms: float = 0.0,
        output_delay_ms: float = 0.0,
        excitatory_fraction: float | None = None,
        connectivity: str | None = None,
        connectivity_seed: int = 0,
        spectral_radius: float = 0.8,
    ) -> None:
        super().__init__()
        if activation not in RATE_FUNCTIONS:
            raise ValueError(f"unknown activation {activation!r}; choose one of {sorted(RATE_FUNCTIONS)}")
        if excitatory_fraction is not None and activation == "tanh":
            raise ValueError(
                "Dale's law needs non-negative rates: use activation 'softplus' or 'relu' with "
                "excitatory_fraction (tanh rates can be negative, which would flip a unit's sign)"
            )
        if noise_std < 0:
            raise ValueError(f"noise_std must be >= 0; got {noise_std}")
        self.input_size = input_size
        self.output_size = hidden_size
        self.control_dt = float(control_dt)
        self.activation = activation
        self.noise_std = float(noise_std)
        self.learn_tau = learn_tau
        self.input_delay_ms = float(input_delay_ms)
        self.output_delay_ms = float(output_delay_ms)
        self.input_delay = delay_steps(input_delay_ms, control_dt, "input_delay_ms")
        self.output_delay = delay_steps(output_delay_ms, control_dt, "output_delay_ms")
        self.excitatory_fraction = excitatory_fraction
        self.connectivity = connectivity
        self.connectivity_seed = connectivity_seed
        self.spectral_radius = spectral_radius

        taus = torch.as_tensor(tau, dtype=torch.float32).flatten()
        if taus.numel() == 1:
            taus = taus.expand(hidden_size).clone()
        if taus.numel() != hidden_size or not (taus > 0).all():
            raise ValueError(f"tau must be one positive value or {hidden_size} of them (in s); got {tau}")
        if learn_tau:
            self.log_tau = nn.Parameter(taus.log())
        else:
            self.register_buffer("log_tau", taus.log())

        self.input = nn.Linear(input_size, hidden_size)  # U x + b
        self.recurrent = nn.Linear(hidden_size, hidden_size, bias=False)  # W r
        sign = dale_signs(hidden_size, excitatory_fraction) if excitatory_fraction is not None else None
        mask = None
        if connectivity == "stored":
            mask = torch.ones(hidden_size, hidden_size)
        elif connectivity is not None:
            mask = connectivity_mask(connectivity, hidden_size, connectivity_seed)
        self._init_recurrent(sign, mask)
        if sign is not None or mask is not None:
            parametrize.register_parametrization(self.recurrent, "weight", SignedMaskedWeight(sign, mask))

    @torch.no_grad()
    def _init_recurrent(self, sign: torch.Tensor | None, mask: torch.Tensor | None) -> None:
        """Random weights, inhibition balancing excitation under Dale's law, scaled to the
        requested spectral radius of the effective matrix."""
        hidden = self.output_size
        raw = torch.randn(hidden, hidden) / math.sqrt(hidden)
        effective = raw if sign is None else raw.abs() * sign
        if sign is not None:
            excitatory = int((sign > 0).sum())
            effective[:, sign < 0] *= excitatory / (hidden - excitatory)  # balanced rows on average
        if mask is not None:
            effective = effective * mask
        radius = torch.linalg.eigvals(effective.double()).abs().max().item()
        scale = self.spectral_radius / radius if radius > 0 else 1.0
        # The raw tensor the parametrisation reads: |raw| * sign reproduces `effective`.
        self.recurrent.weight.copy_(effective.abs() * scale if sign is not None else effective * scale)

    @property
    def tau(self) -> torch.Tensor:
        """Time constants [H] in s."""
        return self.log_tau.exp()

    @property
    def recurrent_weight(self) -> torch.Tensor:
        """Effective recurrent weights W [H, H] (row: postsynaptic, column: presynaptic)."""
        return self.recurrent.weight

    def state_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes = {"h": (self.output_size,)}
        if self.input_delay:
            shapes["input_buffer"] = (self.input_delay, self.input_size)
        if self.output_delay:
            shapes["output_buffer"] = (self.output_delay, self.output_size)
        return shapes

    def noise_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"process": (self.output_size,)} if self.noise_std > 0 else {}

    def forward(
        self, x: torch.Tensor, state: Tensors, noise: Tensors | None = None
    ) -> tuple[torch.Tensor, Tensors, Tensors]:
        new_state = {}
        if self.input_delay:
            buffer = state["input_buffer"]
            x, new_state["input_buffer"] = buffer[:, 0], torch.cat([buffer[:, 1:], x[:, None]], dim=1)
        h = state["h"]
        rate = self._perturb_units(RATE_FUNCTIONS[self.activation](h))
        alpha = -torch.expm1(-self.control_dt / self.tau)  # 1 - exp(-dt / tau), [H]
        h = h + alpha * (-h + self._injected_current(self.recurrent(rate) + self.input(x)))
        if noise is not None and self.noise_std > 0:
            h = h + torch.sqrt(1.0 - (1.0 - alpha).square()) * self.noise_std * noise["process"]
        rate = self._perturb_units(RATE_FUNCTIONS[self.activation](h))
        new_state["h"] = h
        output = rate
        if self.output_delay:
            buffer = state["output_buffer"]
            output, new_state["output_buffer"] = buffer[:, 0], torch.cat([buffer[:, 1:], rate[:, None]], dim=1)
        return output, new_state, {"h": h, "rate": rate}

    def config(self) -> dict:
        tau = self.tau.detach().cpu().tolist()
        return {
            "class": "RateRNNCore",
            "hidden_size": self.output_size,
            "tau": tau[0] if len(set(tau)) == 1 else tau,
            "learn_tau": self.learn_tau,
            "activation": self.activation,
            "noise_std": self.noise_std,
            "input_delay_ms": self.input_delay_ms,
            "output_delay_ms": self.output_delay_ms,
            "excitatory_fraction": self.excitatory_fraction,
            "connectivity": None if self.connectivity is None else "stored",
            "connectivity_seed": self.connectivity_seed,
            "spectral_radius": self.spectral_radius,
        }
