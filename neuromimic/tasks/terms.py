"""Reward terms: small pure torch functions ``(sim, errors, **params) -> Tensor[B]``.

``sim`` is a `neuromimic.physics.PhysicsView` (the simulated state of B bodies) and
``errors`` the `TrackingErrors` between it and the reference at the same instant,
computed once per step by `tracking_errors` and shared by every term, the termination
rule and the logged metrics. Tracking terms are Gaussian kernels of an error in physical
units, ``exp(-(err / sigma)^2)`` in [0, 1]; costs are non-negative and carry negative
weights in the task. Names follow ``<quantity>_<error>_<kernel>``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from neuromimic.physics.base import PhysicsView


@dataclass
class ReferenceFrame:
    """The reference pose of each of B bodies at the current instant.

    Attributes:
        qpos: reference joint positions [B, nq] in rad.
        qvel: reference joint velocities [B, nv] in rad/s.
        site_pos_w: reference world positions of the tracked sites [B, S, 3] in m.
    """

    qpos: torch.Tensor
    qvel: torch.Tensor
    site_pos_w: torch.Tensor


@dataclass
class TrackingErrors:
    """How far each of B bodies is from its reference, in physical units.

    Attributes:
        joint_pos: root-mean-square joint angle error [B] in rad (hinge and slide joints;
            a free root is measured by ``root_pos`` and ``root_rot`` instead).
        joint_vel: root-mean-square joint velocity error [B] in rad/s.
        site_pos: mean Euclidean distance of the tracked sites [B] in m.
        root_pos: distance of the free root's position [B] in m; ``None`` for a fixed base.
        root_rot: angle between the free root's orientations [B] in rad; ``None`` for a
            fixed base.
    """

    joint_pos: torch.Tensor
    joint_vel: torch.Tensor
    site_pos: torch.Tensor
    root_pos: torch.Tensor | None = None
    root_rot: torch.Tensor | None = None


def tracking_errors(sim: PhysicsView, ref: ReferenceFrame, free_root: bool = False) -> TrackingErrors:
    """The `TrackingErrors` of the simulated bodies against the reference.

    Args:
        free_root: the body's first joint is a free joint (``qpos[:7]`` = position in m and
            unit quaternion wxyz, ``qvel[:6]`` = linear and angular velocity); its pose is
            then measured apart from the joint angles.
    """
    if not free_root:
        return TrackingErrors(
            joint_pos=(sim.qpos - ref.qpos).square().mean(-1).sqrt(),
            joint_vel=(sim.qvel - ref.qvel).square().mean(-1).sqrt(),
            site_pos=(sim.site_pos_w - ref.site_pos_w).norm(dim=-1).mean(-1),
        )
    cos_half_angle = (sim.qpos[:, 3:7] * ref.qpos[:, 3:7]).sum(-1).abs()
    return TrackingErrors(
        joint_pos=(sim.qpos[:, 7:] - ref.qpos[:, 7:]).square().mean(-1).sqrt(),
        joint_vel=(sim.qvel[:, 6:] - ref.qvel[:, 6:]).square().mean(-1).sqrt(),
        site_pos=(sim.site_pos_w - ref.site_pos_w).norm(dim=-1).mean(-1),
        root_pos=(sim.qpos[:, :3] - ref.qpos[:, :3]).norm(dim=-1),
        root_rot=2.0 * torch.acos(cos_half_angle.clamp(max=1.0)),
    )


def joint_pos_error_exp(sim: PhysicsView, errors: TrackingErrors, sigma: float = 0.1) -> torch.Tensor:
    """``exp(-(rms joint angle error / sigma)^2)`` [B]; ``sigma`` in rad."""
    return torch.exp(-(errors.joint_pos / sigma).square())


def joint_vel_error_exp(sim: PhysicsView, errors: TrackingErrors, sigma: float = 2.0) -> torch.Tensor:
    """``exp(-(rms joint velocity error / sigma)^2)`` [B]; ``sigma`` in rad/s."""
    return torch.exp(-(errors.joint_vel / sigma).square())


def site_pos_error_exp(sim: PhysicsView, errors: TrackingErrors, sigma: float = 0.001) -> torch.Tensor:
    """``exp(-(mean site distance / sigma)^2)`` [B]; ``sigma`` in m (1 mm by default)."""
    return torch.exp(-(errors.site_pos / sigma).square())


def root_pos_error_exp(sim: PhysicsView, errors: TrackingErrors, sigma: float = 0.02) -> torch.Tensor:
    """``exp(-(free root position error / sigma)^2)`` [B]; ``sigma`` in m."""
    return torch.exp(-(errors.root_pos / sigma).square())


def root_rot_error_exp(sim: PhysicsView, errors: TrackingErrors, sigma: float = 0.3) -> torch.Tensor:
    """``exp(-(free root orientation error / sigma)^2)`` [B]; ``sigma`` in rad."""
    return torch.exp(-(errors.root_rot / sigma).square())


def ctrl_l2(sim: PhysicsView, errors: TrackingErrors) -> torch.Tensor:
    """Mean squared control [B] (muscle excitations in 0..1, or other actuators' controls
    in their own ranges): a cost on neural drive."""
    return sim.ctrl.square().mean(-1)


def muscle_force_l2(sim: PhysicsView, errors: TrackingErrors, max_force: torch.Tensor) -> torch.Tensor:
    """Mean squared muscle force relative to each muscle's maximum [B]: a cost on effort.

    Args:
        max_force: [nu] peak isometric force of each muscle in N (a muscle-driven body).
    """
    return (sim.actuator_force / max_force).square().mean(-1)


#: Every reward term by name, for configs and logging.
TERMS = {
    "joint_pos_error_exp": joint_pos_error_exp,
    "joint_vel_error_exp": joint_vel_error_exp,
    "site_pos_error_exp": site_pos_error_exp,
    "root_pos_error_exp": root_pos_error_exp,
    "root_rot_error_exp": root_rot_error_exp,
    "ctrl_l2": ctrl_l2,
    "muscle_force_l2": muscle_force_l2,
}
