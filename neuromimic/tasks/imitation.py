"""The imitation task: track a reference clip's joints and sites with weighted reward terms."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from neuromimic.errors import ConfigError, check_config, did_you_mean
from neuromimic.physics.base import PhysicsView
from neuromimic.tasks import terms
from neuromimic.tasks.terms import TrackingErrors


def _default_weights() -> dict[str, float]:
    return {
        "joint_pos_error_exp": 1.0,
        "joint_vel_error_exp": 0.1,
        "site_pos_error_exp": 1.0,
        "ctrl_l2": -0.1,
        "muscle_force_l2": -0.1,
    }


@dataclass
class ImitationTask:
    """Weighted reward terms and the termination rule for motion imitation.

    Args:
        weights: reward weight per term name (see `neuromimic.tasks.terms.TERMS`); costs
            (``ctrl_l2``, ``muscle_force_l2``) take negative weights. A term left out is not
            computed.
        joint_pos_sigma: kernel width of ``joint_pos_error_exp`` in rad.
        joint_vel_sigma: kernel width of ``joint_vel_error_exp`` in rad/s.
        site_pos_sigma: kernel width of ``site_pos_error_exp`` in m.
        root_pos_sigma: kernel width of ``root_pos_error_exp`` in m (free-root bodies).
        root_rot_sigma: kernel width of ``root_rot_error_exp`` in rad (free-root bodies).
        termination_distance: an episode is terminated when the mean tracked-site error
            exceeds this distance in m; ``inf`` disables it (for evaluation).
    """

    weights: dict[str, float] = field(default_factory=_default_weights)
    joint_pos_sigma: float = 0.1
    joint_vel_sigma: float = 2.0
    site_pos_sigma: float = 0.001
    root_pos_sigma: float = 0.02
    root_rot_sigma: float = 0.3
    termination_distance: float = 0.003

    def __post_init__(self) -> None:
        field = "model.env.task"
        check_config(bool(self.weights), f"{field}.weights", self.weights, f"a map naming at least one of {sorted(terms.TERMS)}")
        for name in self.weights:
            check_config(
                name in terms.TERMS, f"{field}.weights", name,
                f"a reward term{did_you_mean(str(name), terms.TERMS)}; known terms: {sorted(terms.TERMS)}",
            )
        for name in ("joint_pos_sigma", "joint_vel_sigma", "site_pos_sigma", "root_pos_sigma", "root_rot_sigma"):
            value = getattr(self, name)
            check_config(value > 0, f"{field}.{name}", value, "> 0 (the width of the reward kernel)")
        check_config(
            self.termination_distance > 0, f"{field}.termination_distance", self.termination_distance,
            "> 0 in m (.inf disables termination)",
        )

    def unusable_terms(self, muscles: bool, free_root: bool) -> dict[str, str]:
        """The weighted terms a body cannot compute -> what it lacks.

        Args:
            muscles: the body is driven by MuJoCo muscles (``muscle_force_l2`` needs them).
            free_root: the body has a free root joint (``root_*`` terms need one).
        """
        unusable = {}
        if not muscles and "muscle_force_l2" in self.weights:
            unusable["muscle_force_l2"] = "muscles"
        if not free_root:
            unusable |= {name: "free root joint" for name in self.weights if name.startswith("root_")}
        return unusable

    def check_body(self, body: str, muscles: bool, free_root: bool) -> None:
        """Raise `ConfigError` naming the terms that body ``body`` cannot compute
        (`unusable_terms`; ``body`` is the registry key, for the message)."""
        unusable = self.unusable_terms(muscles, free_root)
        if unusable:
            raise ConfigError(
                f"body {body!r} has no " + " and no ".join(sorted(set(unusable.values())))
                + f"; remove {sorted(unusable)} from model.env.task.weights"
            )

    def reward_terms(
        self, sim: PhysicsView, errors: TrackingErrors, max_force: torch.Tensor | None
    ) -> dict[str, torch.Tensor]:
        """Unweighted value of every weighted term, each [B].

        Args:
            sim: the simulated state.
            errors: its `TrackingErrors` against the reference (`terms.tracking_errors`).
            max_force: [nu] peak isometric force of each muscle in N; ``None`` for a body
                without muscles (see `check_body`).
        """
        params = {
            "joint_pos_error_exp": {"sigma": self.joint_pos_sigma},
            "joint_vel_error_exp": {"sigma": self.joint_vel_sigma},
            "site_pos_error_exp": {"sigma": self.site_pos_sigma},
            "root_pos_error_exp": {"sigma": self.root_pos_sigma},
            "root_rot_error_exp": {"sigma": self.root_rot_sigma},
            "muscle_force_l2": {"max_force": max_force},
        }
        return {
            name: terms.TERMS[name](sim, errors, **params.get(name, {})) for name in self.weights
        }

    def reward(self, values: dict[str, torch.Tensor]) -> torch.Tensor:
        """Weighted sum [B] of the term values returned by `reward_terms`."""
        return sum(self.weights[name] * value for name, value in values.items())

    def terminated(self, site_error: torch.Tensor) -> torch.Tensor:
        """[B] bool: True where the tracked sites strayed beyond ``termination_distance``.

        Args:
            site_error: [B] mean tracked-site error in m (`TrackingErrors.site_pos`).
        """
        return site_error > self.termination_distance
