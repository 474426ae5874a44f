"""Physics backends: B bodies simulated in MuJoCo, seen from torch without copies.

``make_backend("mujoco" | "mjx", body, num_envs, substeps)`` builds one. Importing this
package does not import JAX; the ``mjx`` backend imports it when it is built.
"""

from __future__ import annotations

from typing import Any

import torch

from neuromimic.bodies.base import Body
from neuromimic.physics.base import Backend, PhysicsView
from neuromimic.physics.model import SensorLayout, compile_model, sensor_layout

#: Backend names accepted by `make_backend`.
BACKENDS: tuple[str, ...] = ("mujoco", "mjx")

__all__ = [
    "BACKENDS",
    "Backend",
    "PhysicsView",
    "SensorLayout",
    "compile_model",
    "make_backend",
    "sensor_layout",
]


def make_backend(
    name: str,
    body: Body,
    num_envs: int,
    substeps: int,
    device: torch.device | str | None = None,
    **kwargs: Any,
) -> Backend:
    """Build the physics backend ``name`` for B = ``num_envs`` copies of ``body``.

    Args:
        name: ``"mujoco"`` (native MuJoCo, CPU threads) or ``"mjx"`` (MuJoCo XLA via JAX;
            needs ``pip install 'neuromimic[mjx]'``).
        body: the body to simulate.
        num_envs: B, the number of bodies.
        substeps: physics steps per control step.
        device: torch device of the state (``"mujoco"``: CPU only; ``"mjx"``: default is
            JAX's default device).
        **kwargs: backend options: ``nthread``, ``max_qvel`` for ``"mujoco"``; ``impl``,
            ``max_qvel`` for ``"mjx"``.

    Raises:
        ValueError: if ``name`` is not a known backend; the message lists them.
    """
    if name == "mujoco":
        from neuromimic.physics.mujoco_backend import MujocoBackend

        return MujocoBackend(body, num_envs, substeps=substeps, device=device, **kwargs)
    if name == "mjx":
        from neuromimic.physics.mjx_backend import MjxBackend

        return MjxBackend(body, num_envs, substeps=substeps, device=device, **kwargs)
    raise ValueError(f"unknown physics backend {name!r}; known backends: {', '.join(BACKENDS)}")
