"""`PhysicsView`: the simulator state of B bodies as torch tensors.

A neutral module: the physics backends fill it (`neuromimic.physics`), and the task terms
and sensors read it (`neuromimic.tasks`, `neuromimic.proprioception`) without importing
any physics code.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


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
