"""Physics backends: B bodies simulated in MuJoCo, seen from torch without copies.

``make_backend("mujoco" | "mjx" | "warp", body, num_envs, substeps)`` builds one. Importing
this package imports neither JAX nor Warp; the ``mjx`` and ``warp`` backends import them
when they are built.
"""

from __future__ import annotations

import importlib
from typing import Any

import torch

from neuromimic.bodies.base import Body
from neuromimic.physics.base import Backend, PhysicsView
from neuromimic.physics.model import SensorLayout, compile_model, sensor_layout

#: Backend names accepted by `make_backend`, each with the module and class that implement it.
_IMPLEMENTATIONS: dict[str, tuple[str, str]] = {
    "mujoco": ("neuromimic.physics.mujoco_backend", "MujocoBackend"),
    "mjx": ("neuromimic.physics.mjx_backend", "MjxBackend"),
    "warp": ("neuromimic.physics.warp_backend", "WarpBackend"),
}
BACKENDS: tuple[str, ...] = tuple(_IMPLEMENTATIONS)

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
        name: ``"mujoco"`` (native MuJoCo, CPU threads), ``"mjx"`` (MuJoCo XLA via JAX) or
            ``"warp"`` (MuJoCo Warp; CUDA GPUs, or the CPU for tests); the last two need
            ``pip install 'neuromimic[mjx]'``.
        body: the body to simulate.
        num_envs: B, the number of bodies.
        substeps: physics steps per control step.
        device: torch device of the state (``"mujoco"``: CPU only; ``"mjx"`` and ``"warp"``:
            default the first GPU if there is one, else the CPU).
        **kwargs: the backend's own options (its class's arguments), e.g. ``nthread`` for
            ``"mujoco"``, ``nconmax`` for ``"warp"``, ``max_qvel`` for all.

    Raises:
        ValueError: if ``name`` is not a known backend; the message lists them.
    """
    if name not in _IMPLEMENTATIONS:
        raise ValueError(f"unknown physics backend {name!r}; known backends: {', '.join(BACKENDS)}")
    module, cls = _IMPLEMENTATIONS[name]
    backend_class = getattr(importlib.import_module(module), cls)
    return backend_class(body, num_envs, substeps=substeps, device=device, **kwargs)
