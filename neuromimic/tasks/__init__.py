"""The terms imitation envs are built from: observations, rewards, terminations and actions,
each a small pure torch function declared once with its name, units and needs."""

from neuromimic.tasks.actions import ACTIONS, ActionMap
from neuromimic.tasks.base import BodyInfo, ReferenceFrame, StepState, Term
from neuromimic.tasks.observations import OBSERVATIONS, default_observations
from neuromimic.tasks.rewards import REWARDS
from neuromimic.tasks.terminations import TERMINATIONS

__all__ = [
    "ACTIONS",
    "OBSERVATIONS",
    "REWARDS",
    "TERMINATIONS",
    "ActionMap",
    "BodyInfo",
    "ReferenceFrame",
    "StepState",
    "Term",
    "default_observations",
]
