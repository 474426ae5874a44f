"""What every controller is made of: the `ControllerSpec` it is built for, and the `Core`
interface of its networks.

A *core* maps an input [B, D_in] to an output [B, D_out] one control step at a time and
may carry a state (recurrent units, delay lines) and take exogenous noise (process
noise, latent samples). Cores are plain `torch.nn.Module`s working on plain tensors and
dicts of tensors, so a lab can call them without TorchRL;
`neuromimic.models.tensordict_module` adapts a whole controller to TensorDicts.

State and noise conventions:

- ``state``: ``dict[str, Tensor]``, each [B, *shape] with the shapes of `Core.state_shapes`.
  All-zero is the state at the start of an episode (`Core.initial_state`).
- ``noise``: ``dict[str, Tensor]`` of standard-normal draws [B, *shape] with the shapes of
  `Core.noise_shapes`, or ``None`` for the noise-free (deterministic) network. Noise is an
  input rather than drawn inside, so that a training update replays exactly the draws
  made while collecting.
- ``activity``: ``dict[str, Tensor]`` of what a neuroscientist would record at this
  step (firing rates, hidden units, latents), each [B, n].
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

Tensors = dict[str, torch.Tensor]


def layout_slices(layout) -> dict[str, slice]:
    """Name -> slice of each ``(name, size, units)`` block of a flat vector, in order."""
    slices, start = {}, 0
    for name, size, _ in layout:
        slices[name] = slice(start, start + size)
        start += size
    return slices


def _blocks(layout: tuple[tuple[str, int, str], ...]) -> str:
    """``"qpos 4 + qvel 4 + ..."`` for a message."""
    return " + ".join(f"{name} {size}" for name, size, _ in layout) or "no layout stored"


@dataclass(frozen=True)
class ControllerSpec:
    """What a controller is built for: the env's observation and action sizes and timing.

    Args:
        observation_size: D, size of the flat observation.
        action_size: size of the action: nu muscles, or 3 nu with fusimotor drive.
        control_dt: control step in s (cores with time constants or delays discretise with it).
        observation_layout: ``(name, size, units)`` of each block of the observation, in
            order (`neuromimic.envs.observation_layout`).
        action_layout: ``(name, size, units)`` of each block of the action
            (`neuromimic.envs.action_layout`: alpha drive, then any fusimotor drive).
        action_term: how actions become controls, ``{"name": ..., **params}``
            (`neuromimic.tasks.actions.ACTIONS`; `neuromimic.load_action_map` rebuilds it).
    """

    observation_size: int
    action_size: int
    control_dt: float
    observation_layout: tuple[tuple[str, int, str], ...] = ()
    action_layout: tuple[tuple[str, int, str], ...] = ()
    action_term: dict = field(default_factory=lambda: {"name": "absolute"})

    @classmethod
    def of(cls, observation_layout, action_layout, action_term: dict, control_dt: float) -> ControllerSpec:
        """The spec of an env with these layouts (``(name, size, units)`` blocks), action
        term (``{"name": ..., **params}``) and control step (s)."""
        return cls(
            observation_size=sum(size for _, size, _ in observation_layout),
            action_size=sum(size for _, size, _ in action_layout),
            control_dt=control_dt,
            observation_layout=tuple(observation_layout),
            action_layout=tuple(action_layout),
            action_term=dict(action_term),
        )

    def __post_init__(self) -> None:
        for field_name, size_name in (("observation_layout", "observation_size"), ("action_layout", "action_size")):
            layout = tuple(tuple(block) for block in getattr(self, field_name))
            object.__setattr__(self, field_name, layout)
            size = getattr(self, size_name)
            if layout and sum(block[1] for block in layout) != size:
                raise ValueError(
                    f"{field_name} covers {sum(block[1] for block in layout)} values but {size_name} is {size}"
                )

    def mismatch(self, env: ControllerSpec, body: str) -> str | None:
        """What keeps a controller built for this spec from driving envs of spec ``env``
        (body ``body``, for the message), or None when it fits.

        The number of actuators, the observation's size and layout and the control step
        must agree.
        """
        if self.action_size != env.action_size:
            return (
                f"the controller drives {self.action_size} actuator values but body {body!r} in "
                f"this env takes {env.action_size} ({_blocks(env.action_layout)})"
            )
        if self.observation_size != env.observation_size or (
            self.observation_layout and env.observation_layout and self.observation_layout != env.observation_layout
        ):
            return (
                f"the controller reads a {self.observation_size}-value observation "
                f"({_blocks(self.observation_layout)}) but this env of body {body!r} makes "
                f"{env.observation_size} values ({_blocks(env.observation_layout)})"
            )
        if self.action_term != env.action_term:
            return (
                f"the controller was trained with action term {self.action_term} but this env of "
                f"body {body!r} uses {env.action_term}"
            )
        if abs(self.control_dt - env.control_dt) > 1e-9:
            return (
                f"the controller was trained at a {1e3 * self.control_dt:g} ms control step but this "
                f"env of body {body!r} steps every {1e3 * env.control_dt:g} ms"
            )
        return None

    def observation_slices(self) -> dict[str, slice]:
        """Name -> slice of each block of the observation."""
        return layout_slices(self.observation_layout)

    def to_dict(self) -> dict:
        """JSON-serialisable form (`from_dict` inverts it)."""
        return {
            "observation_size": self.observation_size,
            "action_size": self.action_size,
            "control_dt": self.control_dt,
            "observation_layout": [list(block) for block in self.observation_layout],
            "action_layout": [list(block) for block in self.action_layout],
            "action_term": dict(self.action_term),
        }

    @classmethod
    def from_dict(cls, data: dict) -> ControllerSpec:
        return cls(
            observation_size=int(data["observation_size"]),
            action_size=int(data["action_size"]),
            control_dt=float(data["control_dt"]),
            observation_layout=tuple(
                (str(name), int(size), str(units)) for name, size, units in data["observation_layout"]
            ),
            action_layout=tuple(
                (str(name), int(size), str(units)) for name, size, units in data.get("action_layout", ())
            ),
            action_term=dict(data.get("action_term") or {"name": "absolute"}),
        )


class Core(nn.Module):
    """A network stepped once per control step: ``(x, state, noise) -> (y, state, activity)``.

    Subclasses set ``input_size`` and ``output_size``, override `forward`, and override
    `state_shapes` / `noise_shapes` when they carry state or take noise. `config` returns
    the constructor arguments (JSON-serialisable) that rebuild the core; the registry in
    `neuromimic.models.export` (`register_core` for your own) maps its ``"class"`` back to
    the class, so that exported controllers can be loaded.
    """

    input_size: int
    output_size: int
    #: Set only by `neuromimic.analysis.perturb` (clamped units, injected currents); None otherwise.
    unit_perturbation: UnitPerturbation | None = None

    def _perturb_units(self, units: torch.Tensor) -> torch.Tensor:
        """The core's units [B, n] (rates, hidden units) with any clamp applied."""
        p = self.unit_perturbation
        return units if p is None else torch.where(p.clamp, p.value.to(units.dtype), units)

    def _injected_current(self, drive: torch.Tensor) -> torch.Tensor:
        """The input drive [B, n] of the units plus any injected current."""
        p = self.unit_perturbation
        return drive if p is None or p.current is None else drive + p.current.to(drive.dtype)

    def state_shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-env shape of each state tensor; empty for feed-forward cores."""
        return {}

    def noise_shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-env shape of each standard-normal noise input; empty if the core takes none."""
        return {}

    @property
    def is_recurrent(self) -> bool:
        """Whether the output depends on earlier steps (the core carries a state)."""
        return bool(self.state_shapes())

    def initial_state(
        self, batch_size: int, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> Tensors:
        """The all-zero state of ``batch_size`` envs at an episode start."""
        dtype = dtype or torch.get_default_dtype()
        return {
            name: torch.zeros(batch_size, *shape, device=device, dtype=dtype)
            for name, shape in self.state_shapes().items()
        }

    def forward(
        self, x: torch.Tensor, state: Tensors, noise: Tensors | None = None
    ) -> tuple[torch.Tensor, Tensors, Tensors]:
        """One control step.

        Args:
            x: input [B, input_size].
            state: the state entering this step (see the module docstring).
            noise: standard-normal draws, or ``None`` for the noise-free network.

        Returns:
            ``(y [B, output_size], new_state, activity)``.
        """
        raise NotImplementedError

    def config(self) -> dict:
        """``{"class": name, **constructor arguments}``, JSON-serialisable."""
        raise NotImplementedError


@dataclass
class UnitPerturbation:
    """An experimenter's hold on a core's units (see `neuromimic.analysis.perturb`).

    Attributes:
        clamp: [n] bool, units whose activity is held at ``value``.
        value: [n] the held activity (0: silenced).
        current: [n] input current added to the units' drive, or None (rate cores only).
    """

    clamp: torch.Tensor
    value: torch.Tensor
    current: torch.Tensor | None = None


CoreFactory = Callable[[int, float], Core]
"""Builds a core from (input size, control step in s); a ``class_path`` in YAML."""
