"""Quaternion helpers for batched torch tensors (MuJoCo's convention: unit quaternions w, x, y, z).

Every function broadcasts over leading dimensions: quaternions are [..., 4], vectors [..., 3].
"""

from __future__ import annotations

import torch


def quat_conjugate(q: torch.Tensor) -> torch.Tensor:
    """The inverse of unit quaternions [..., 4]."""
    return torch.cat([q[..., :1], -q[..., 1:]], dim=-1)


def quat_multiply(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product ``a b`` [..., 4] (rotate by ``b``, then by ``a``)."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        dim=-1,
    )


def quat_rotate(q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Vectors [..., 3] rotated by unit quaternions [..., 4] (from the rotated frame to the
    reference frame: a body-frame vector to the world frame for a body's orientation)."""
    w, u = q[..., :1], q[..., 1:]
    t = 2.0 * torch.linalg.cross(u, v, dim=-1)
    return v + w * t + torch.linalg.cross(u, t, dim=-1)


def quat_rotate_inverse(q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Vectors [..., 3] rotated by the inverse of ``q`` (a world vector into a body frame)."""
    return quat_rotate(quat_conjugate(q), v)


def yaw_quaternion(q: torch.Tensor, forward: torch.Tensor) -> torch.Tensor:
    """The heading of orientations ``q`` [..., 4]: the rotation about the world z axis that
    turns world x towards the body's ``forward`` axis [3] projected on the ground.

    Heading frames make observations independent of where a body faces: a vector seen in
    them is the same for a body and for a copy of it turned about z.
    """
    direction = quat_rotate(q, forward.expand(*q.shape[:-1], 3))
    yaw = torch.atan2(direction[..., 1], direction[..., 0])
    half = 0.5 * yaw
    zero = torch.zeros_like(half)
    return torch.stack([torch.cos(half), zero, zero, torch.sin(half)], dim=-1)


def quat_to_rotation_vector(q: torch.Tensor) -> torch.Tensor:
    """Axis times angle [..., 3] (rad, angle in [0, pi]) of unit quaternions [..., 4]; ``q``
    and ``-q`` give the same vector."""
    q = torch.where(q[..., :1] < 0, -q, q)
    sin_half = q[..., 1:].norm(dim=-1, keepdim=True)
    angle = 2.0 * torch.atan2(sin_half, q[..., :1])
    # angle / sin(angle / 2) -> 2 as the angle -> 0
    scale = torch.where(sin_half > 1e-8, angle / sin_half.clamp_min(1e-8), torch.full_like(angle, 2.0))
    return q[..., 1:] * scale
