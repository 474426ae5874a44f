"""The `Backend` protocol every physics implementation follows, and the `PhysicsView`.

A backend owns the simulator state of B bodies. Torch code never receives a copy of it:
`Backend.view` hands out tensors that alias the simulator's buffers (see each backend for
the copies that remain and why). Derived quantities (site positions, muscle length,
velocity and force) are MuJoCo sensors evaluated at the state the view reports (after the
last physics substep; each backend runs one extra forward pass for them, since MuJoCo's
own step evaluates sensors before it integrates).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import mujoco
import numpy as np
import torch

from neuromimic.bodies.base import Body


@dataclass
class PhysicsView:
    """Torch tensors that alias one backend's simulator state (float64 on CPU backends).

    Shapes: B bodies, nq joint positions, nv joint velocities, nu actuators (muscles),
    S tracked sites. Units: SI (m, rad, s, N).

    Attributes:
        qpos: joint positions [B, nq] in rad.
        qvel: joint velocities [B, nv] in rad/s.
        act: muscle activations [B, nu] in 0..1.
        ctrl: last applied controls [B, nu] in 0..1.
        site_pos_w: world positions of the tracked sites [B, S, 3] in m.
        actuator_length: muscle-tendon lengths [B, nu] in m.
        actuator_velocity: muscle-tendon velocities [B, nu] in m/s.
        actuator_force: muscle forces [B, nu] in N (negative: muscles pull).
        time: simulated time [B] in s.
        unstable: [B] bool, True where the last step produced NaN/Inf, a runaway state,
            or triggered MuJoCo's automatic reset.
    """

    qpos: torch.Tensor
    qvel: torch.Tensor
    act: torch.Tensor
    ctrl: torch.Tensor
    site_pos_w: torch.Tensor
    actuator_length: torch.Tensor
    actuator_velocity: torch.Tensor
    actuator_force: torch.Tensor
    time: torch.Tensor
    unstable: torch.Tensor


@runtime_checkable
class Backend(Protocol):
    """Simulates B copies of one MuJoCo model; all tensors live on `device`."""

    body: Body
    model: mujoco.MjModel
    num_envs: int
    device: torch.device
    substeps: int
    #: Counts the calls of ``model_changed`` (after in-place edits of `model`); 0 at first.
    model_version: int

    @property
    def view(self) -> PhysicsView:
        """Tensors aliasing the current simulator state (refreshed after every call)."""
        ...

    def reset(
        self,
        mask: torch.Tensor,
        qpos: torch.Tensor,
        qvel: torch.Tensor,
        act: torch.Tensor,
    ) -> None:
        """Set the state of the rows where ``mask`` [B] is True; other rows stay bitwise equal.

        Args:
            mask: [B] bool.
            qpos: [B, nq] joint positions (only masked rows are read).
            qvel: [B, nv] joint velocities.
            act: [B, na] muscle activations.
        """
        ...

    def step(self, ctrl: torch.Tensor) -> None:
        """Advance every body by one control step (``substeps`` physics steps), holding ``ctrl``.

        Args:
            ctrl: [B, nu] controls, float, on `device`.
        """
        ...

    def close(self) -> None:
        """Release threads or buffers; the backend cannot step afterwards."""
        ...

    def snapshot(self) -> dict[str, torch.Tensor]:
        """A host copy of the whole simulator state (everything `restore` needs for a
        continuation bitwise equal to an uninterrupted run), as named tensors."""
        ...

    def restore(self, snapshot: dict[str, torch.Tensor]) -> None:
        """Load a `snapshot` of a backend of the same kind, body and size."""
        ...


def reset_to_rest_pose(backend: Backend, dtype: torch.dtype) -> None:
    """Put every body of ``backend`` in its body's rest pose, still, with muscles off.

    Args:
        backend: a backend whose constructor has set `Backend.body` and `Backend.model`.
        dtype: the float dtype the backend's views use.
    """
    model, num_envs = backend.model, backend.num_envs
    rest = backend.body.rest_qpos(model)
    backend.reset(
        torch.ones(num_envs, dtype=torch.bool, device=backend.device),
        torch.as_tensor(np.asarray(rest), dtype=dtype, device=backend.device).expand(num_envs, -1),
        torch.zeros(num_envs, model.nv, dtype=dtype, device=backend.device),
        torch.zeros(num_envs, model.na, dtype=dtype, device=backend.device),
    )
