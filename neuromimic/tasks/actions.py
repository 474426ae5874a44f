"""Action terms: how the controller's action [B, A] in 0..1 becomes simulator controls (`ACTIONS`).

- ``absolute``: each action spans its actuator's ``ctrlrange`` (``low + action * span``):
  muscle excitations for muscle bodies, joint targets (or forces) for servo bodies.
- ``reference_relative``: for bodies driven by position servos, the control that holds
  each servo at the reference's pose of the next frame, plus an offset:
  ``ctrl = ctrl_ref(q_ref[t+1]) + scale * (2 action - 1) * span / 2`` clipped to the
  ``ctrlrange``; action 0.5 follows the reference exactly, 0 and 1 move ``scale`` of half
  the range either way. The controller learns corrections, not the whole movement.

`ActionMap` is the mapping itself, a plain `torch.nn.Module` (its constants come from the
body's model); `action_map` builds one, and `neuromimic.load_action_map` rebuilds the one
an exported controller was trained with.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import mujoco
import numpy as np
import torch
from torch import nn

from neuromimic.errors import ConfigError, did_you_mean


class ActionMap(nn.Module):
    """Controls [B, nu] of actions [B, nu] in 0..1: ``base + action @ gain`` with the
    reference's pose, then clipped to the control range.

    ``ctrl = clip(offset + q_ref @ pose_gain.T + (action - 0.5) * action_gain, low, high)``;
    ``pose_gain`` is zero for absolute actions, which ignore the reference.

    Args:
        low, high: [nu] control range.
        offset: [nu] control at action 0.5 for a zero reference pose.
        pose_gain: [nu, nq] change of that control per unit of reference qpos.
        action_gain: [nu] control per unit of action.
        uses_reference: whether the reference pose matters (``pose_gain`` is not zero).
    """

    def __init__(
        self,
        low: torch.Tensor,
        high: torch.Tensor,
        offset: torch.Tensor,
        pose_gain: torch.Tensor,
        action_gain: torch.Tensor,
        uses_reference: bool,
    ) -> None:
        super().__init__()
        self.uses_reference = uses_reference
        self.register_buffer("low", low)
        self.register_buffer("high", high)
        self.register_buffer("offset", offset)
        self.register_buffer("pose_gain", pose_gain)
        self.register_buffer("action_gain", action_gain)
        self.unit_range = bool((low == 0).all() and (high == 1).all() and not uses_reference)

    def forward(self, action: torch.Tensor, reference_qpos: torch.Tensor | None = None) -> torch.Tensor:
        """Controls [B, nu].

        Args:
            action: [B, nu] in 0..1 (the controller's squashed output).
            reference_qpos: [B, nq] the reference pose of the frame the step ends on;
                needed when `uses_reference`.
        """
        if self.unit_range:
            return action
        ctrl = self.offset + (action - 0.5) * self.action_gain
        if self.uses_reference:
            ctrl = ctrl + reference_qpos @ self.pose_gain.T
        return torch.minimum(torch.maximum(ctrl, self.low), self.high)

    def hold(self, reference_qpos: torch.Tensor) -> torch.Tensor:
        """Controls [B, nu] at action 0.5 for reference poses [B, nq]: for reference-relative
        servos, the controls that hold that pose."""
        ctrl = self.offset + reference_qpos @ self.pose_gain.T
        return torch.minimum(torch.maximum(ctrl, self.low), self.high)


@dataclass(frozen=True)
class ActionTerm:
    """One declared way to turn actions into controls.

    Attributes:
        name: its key in configs (``action: {name: ...}``) and in exported controllers.
        block: name of the action block in the layout.
        units: what the actions mean.
        needs: body features it needs (`neuromimic.tasks.base.NEEDS`).
        make: ``make(model, **params) -> ActionMap``.
        params: its parameters with their defaults.
    """

    name: str
    block: str
    units: str
    needs: tuple[str, ...]
    make: Callable[..., ActionMap]
    params: dict[str, float] = field(default_factory=dict)


_GAIN_FIXED = int(mujoco.mjtGain.mjGAIN_FIXED)
_BIAS_AFFINE = int(mujoco.mjtBias.mjBIAS_AFFINE)
#: Joints whose qpos is their angle (or displacement): actuator lengths are linear in them.
_LINEAR_JOINTS = (int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE))


def _range(model: mujoco.MjModel) -> tuple[np.ndarray, np.ndarray]:
    ranges = np.asarray(model.actuator_ctrlrange, dtype=np.float64).reshape(-1, 2)
    return ranges[:, 0], ranges[:, 1]


def _t(x) -> torch.Tensor:
    return torch.as_tensor(x, dtype=torch.float64)


def _absolute(model: mujoco.MjModel) -> ActionMap:
    low, high = _range(model)
    return ActionMap(
        _t(low),
        _t(high),
        _t((low + high) / 2),
        torch.zeros(model.nu, model.nq, dtype=torch.float64),
        _t(high - low),
        False,
    )


def position_servo_problems(model: mujoco.MjModel) -> list[str]:
    """Why the actuators of ``model`` are not position servos on linear transmissions, one
    line per actuator at fault (empty when every one is).

    A position servo has a fixed gain and an affine bias pulling towards a target
    (``biasprm[1] < 0``), acting on a hinge or slide joint or a fixed tendon, so that its
    length is linear in qpos and the control that holds it at a length is known.
    """
    problems = []
    for i in range(model.nu):
        name = model.actuator(i).name or f"#{i}"
        gain, bias = model.actuator_gainprm[i, 0], model.actuator_biasprm[i]
        if (
            int(model.actuator_gaintype[i]) != _GAIN_FIXED
            or int(model.actuator_biastype[i]) != _BIAS_AFFINE
            or gain <= 0
            or bias[1] >= 0
        ):
            problems.append(f"{name} is not a position servo (fixed gain and affine bias with biasprm[1] < 0)")
            continue
        transmission, target = int(model.actuator_trntype[i]), int(model.actuator_trnid[i, 0])
        if transmission == int(mujoco.mjtTrn.mjTRN_JOINT):
            if int(model.jnt_type[target]) not in _LINEAR_JOINTS:
                problems.append(f"{name} drives a ball or free joint")
        elif transmission == int(mujoco.mjtTrn.mjTRN_TENDON):
            start, count = model.tendon_adr[target], model.tendon_num[target]
            if any(int(model.wrap_type[start + k]) != int(mujoco.mjtWrap.mjWRAP_JOINT) for k in range(count)):
                problems.append(f"{name} pulls a spatial tendon (its length is not linear in the joint angles)")
        else:
            problems.append(f"{name} has a site, body or slider-crank transmission")
    return problems


def _actuator_lengths(model: mujoco.MjModel, data: mujoco.MjData, qpos: np.ndarray) -> np.ndarray:
    data.qpos[:] = qpos
    mujoco.mj_kinematics(model, data)
    mujoco.mj_comPos(model, data)
    mujoco.mj_tendon(model, data)
    mujoco.mj_transmission(model, data)
    return data.actuator_length.copy()


def _reference_relative(model: mujoco.MjModel, scale: float = 0.5) -> ActionMap:
    problems = position_servo_problems(model)
    if problems:
        raise ConfigError(
            f"model.env.action 'reference_relative' needs position servos on joints or fixed tendons: "
            f"{'; '.join(problems[:3])}{'...' if len(problems) > 3 else ''}; use action: {{name: absolute}}"
        )
    if not 0 < scale:
        raise ConfigError(
            f"model.env.action.scale is {scale}; it must be > 0 (a fraction of half of each control range)"
        )
    # Actuator lengths are linear in the hinge and slide angles: L(q) = L(q0) + A (q - q0).
    data = mujoco.MjData(model)
    q0 = model.qpos0.copy()
    base = _actuator_lengths(model, data, q0)
    columns = np.zeros((model.nu, model.nq))
    for j in range(model.njnt):
        if int(model.jnt_type[j]) not in _LINEAR_JOINTS:
            continue
        i = model.jnt_qposadr[j]
        moved = q0.copy()
        moved[i] += 1.0
        columns[:, i] = _actuator_lengths(model, data, moved) - base
    # force = gain * ctrl + b0 + b1 * length: the servo holds `length` at ctrl = -(b0 + b1 length) / gain.
    gain = model.actuator_gainprm[:, 0]
    b0, b1 = model.actuator_biasprm[:, 0], model.actuator_biasprm[:, 1]
    offset = -(b0 + b1 * (base - columns @ q0)) / gain
    pose_gain = -(b1 / gain)[:, None] * columns
    low, high = _range(model)
    return ActionMap(_t(low), _t(high), _t(offset), _t(pose_gain), _t(scale * (high - low)), True)


def holding_activation(model: mujoco.MjModel) -> ActionMap | None:
    """For a body of position servos whose activation is their filtered control (MuJoCo's
    ``filter`` dynamics, as the rat's), the map whose `ActionMap.hold` gives the activations
    that hold a pose. An episode starting on a reference pose starts with them, so that its servos
    hold that pose instead of pulling towards mid-range for their first time constants.
    None for other bodies (muscles start inactive).
    """
    filtered = (int(mujoco.mjtDyn.mjDYN_FILTER), int(mujoco.mjtDyn.mjDYN_FILTEREXACT))
    if model.nu == 0 or model.na != model.nu or any(int(d) not in filtered for d in model.actuator_dyntype):
        return None
    if position_servo_problems(model):
        return None
    return _reference_relative(model, scale=1.0)


#: Every action term by name.
ACTIONS: dict[str, ActionTerm] = {
    "absolute": ActionTerm("absolute", "ctrl", "0..1 across each actuator's ctrlrange", (), _absolute),
    "reference_relative": ActionTerm(
        "reference_relative",
        "ctrl_offset",
        "0..1 about the reference's pose (0.5: on it)",
        ("servos",),
        _reference_relative,
        {"scale": 0.5},
    ),
}


def action_term(config: dict) -> tuple[ActionTerm, dict]:
    """The `ActionTerm` a config names (``{"name": ..., **params}``) and its parameters.

    Raises:
        ConfigError: an unknown name or parameter.
    """
    config = dict(config or {"name": "absolute"})
    name = config.pop("name", "absolute")
    if name not in ACTIONS:
        raise ConfigError(
            f"model.env.action.name is {name!r}; it must be one of {list(ACTIONS)}{did_you_mean(str(name), ACTIONS)}"
        )
    term = ACTIONS[name]
    unknown = sorted(set(config) - set(term.params))
    if unknown:
        raise ConfigError(f"model.env.action: {name!r} takes the parameters {sorted(term.params)}, not {unknown}")
    return term, {**term.params, **config}
