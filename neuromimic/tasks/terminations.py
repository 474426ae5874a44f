"""Termination terms: when a body has failed to track, ``(state, **params) -> [B] bool`` (`TERMINATIONS`).

An episode is terminated (not bootstrapped) where any configured term is True, or where
the physics went unstable. Evaluation (held-out clips) ignores them and tracks every clip
to its end. Lengths are in the model's length unit (m for every body but the fly, in cm).
"""

from __future__ import annotations

import torch

from neuromimic.tasks.base import StepState, Term, declare

#: Every termination term by name.
TERMINATIONS: dict[str, Term] = {}


@declare(TERMINATIONS, "site_pos_error", "m")
def site_pos_error(state: StepState, distance: float = 0.003) -> torch.Tensor:
    """The tracked sites' mean distance from the reference exceeds ``distance``."""
    return state.site_pos_error > distance


@declare(TERMINATIONS, "root_pos_error", "m", needs=("free_root",))
def root_pos_error(state: StepState, distance: float = 0.1) -> torch.Tensor:
    """The free root is farther than ``distance`` from the reference's."""
    return state.root_pos_error > distance


@declare(TERMINATIONS, "root_rot_error", "rad", needs=("free_root",))
def root_rot_error(state: StepState, angle: float = 1.0) -> torch.Tensor:
    """The free root's orientation is more than ``angle`` from the reference's."""
    return state.root_rot_error > angle


@declare(TERMINATIONS, "joint_pos_error", "rad")
def joint_pos_error(state: StepState, angle: float = 0.5) -> torch.Tensor:
    """The root-mean-square joint angle error exceeds ``angle``."""
    return state.joint_pos_error > angle


def default_terminations() -> dict[str, dict[str, float]]:
    """The termination of the mouse forelimb's reaching configs, as ``{name: {params}}``."""
    return {"site_pos_error": {"distance": 0.003}}
