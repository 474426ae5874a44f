"""Reward terms: small pure torch functions ``(state, **params) -> [B]`` (`REWARDS`).

Tracking terms are Gaussian kernels of an error in physical units,
``exp(-(error / sigma)^2)`` in [0, 1], with ``sigma`` in the error's units (lengths in the
model's length unit: m for every body but the fly, in cm). Costs are non-negative and
take negative weights in a config. Names follow ``<quantity>_<error>_<kernel>``. A config
weights them as ``rewards: {name: {weight: w, sigma: s}}``.
"""

from __future__ import annotations

import torch

from neuromimic.tasks.base import BodyInfo, StepState, Term, declare

#: Every reward term by name.
REWARDS: dict[str, Term] = {}


def _kernel(error: torch.Tensor, sigma: float) -> torch.Tensor:
    return torch.exp(-(error / sigma).square())


@declare(REWARDS, "joint_pos_error_exp", "1 (sigma: rad)")
def joint_pos_error_exp(state: StepState, sigma: float = 0.1) -> torch.Tensor:
    """Kernel of the root-mean-square joint angle error (root excluded)."""
    return _kernel(state.joint_pos_error, sigma)


@declare(REWARDS, "joint_vel_error_exp", "1 (sigma: rad/s)")
def joint_vel_error_exp(state: StepState, sigma: float = 2.0) -> torch.Tensor:
    """Kernel of the root-mean-square joint velocity error (root excluded)."""
    return _kernel(state.joint_vel_error, sigma)


@declare(REWARDS, "site_pos_error_exp", "1 (sigma: m)")
def site_pos_error_exp(state: StepState, sigma: float = 0.001) -> torch.Tensor:
    """Kernel of the mean distance of the tracked sites (end effectors) from the reference's."""
    return _kernel(state.site_pos_error, sigma)


@declare(REWARDS, "root_pos_error_exp", "1 (sigma: m)", needs=("free_root",))
def root_pos_error_exp(state: StepState, sigma: float = 0.02) -> torch.Tensor:
    """Kernel of the free root's distance from the reference's."""
    return _kernel(state.root_pos_error, sigma)


@declare(REWARDS, "root_rot_error_exp", "1 (sigma: rad)", needs=("free_root",))
def root_rot_error_exp(state: StepState, sigma: float = 0.3) -> torch.Tensor:
    """Kernel of the angle between the free root's orientation and the reference's."""
    return _kernel(state.root_rot_error, sigma)


@declare(REWARDS, "root_vel_error_exp", "1 (sigma: m/s)", needs=("free_root",))
def root_vel_error_exp(state: StepState, sigma: float = 0.5) -> torch.Tensor:
    """Kernel of the distance between the free root's linear velocity and the reference's."""
    return _kernel((state.sim.qvel[:, :3] - state.reference.qvel[:, :3]).norm(dim=-1), sigma)


@declare(REWARDS, "ctrl_l2", "1 (control units squared)")
def ctrl_l2(state: StepState) -> torch.Tensor:
    """Mean squared control (muscle excitations in 0..1, other actuators' controls in
    their own ranges): a cost on neural drive."""
    return state.sim.ctrl.square().mean(-1)


@declare(REWARDS, "muscle_force_l2", "1 (fraction of peak force, squared)", needs=("muscles",))
def muscle_force_l2(state: StepState) -> torch.Tensor:
    """Mean squared muscle force relative to each muscle's peak isometric force: a cost
    on effort."""
    return (state.sim.actuator_force / state.body.max_force).square().mean(-1)


def default_rewards(info: BodyInfo | None = None) -> dict[str, dict[str, float]]:
    """The reward terms of the mouse forelimb's reaching configs, as ``{name: {weight, ...params}}``,
    less those that ``info``'s body cannot compute (``muscle_force_l2`` without muscles)."""
    rewards = {
        "joint_pos_error_exp": {"weight": 1.0, "sigma": 0.1},
        "joint_vel_error_exp": {"weight": 0.1, "sigma": 2.0},
        "site_pos_error_exp": {"weight": 1.0, "sigma": 0.001},
        "ctrl_l2": {"weight": -0.1},
        "muscle_force_l2": {"weight": -0.1},
    }
    return {name: term for name, term in rewards.items() if info is None or not REWARDS[name].missing(info)}
