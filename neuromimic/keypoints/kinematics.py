"""Differentiable forward kinematics of a compiled `mujoco.MjModel`, in PyTorch.

`TorchKinematics(model)` reads the kinematic tree (``body_parentid``, ``body_pos``,
``body_quat``, ``jnt_type``, ``jnt_pos``, ``jnt_axis``, ``qpos0``, ``site_pos``) once and
evaluates it for a batch of joint configurations, the way `mujoco.mj_kinematics` does:

- each body starts at its parent's frame moved by ``body_pos`` / ``body_quat``;
- its joints are then applied in order: a **free** joint sets the world position and
  orientation from qpos (``[x, y, z, qw, qx, qy, qz]``), a **ball** joint rotates about its
  anchor by the unit quaternion in qpos, a **hinge** rotates about its axis through its
  anchor by ``qpos - qpos0`` (rad) and a **slide** translates along its axis by
  ``qpos - qpos0`` (m);
- sites sit at ``site_pos`` in their body's frame.

Every length of the model (``body_pos``, ``jnt_pos``, ``site_pos``, slide displacements)
is multiplied by ``scale`` (free-joint positions are world coordinates and are not):
``fk(qpos, scale=s)`` with root position ``p`` equals ``s * fk(qpos, scale=1)`` with root
position ``p / s``. Everything is plain torch, so gradients flow to ``qpos`` and ``scale``.

Quaternions are unit quaternions ``wxyz``, as in MuJoCo. Mocap bodies are not supported.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np
import torch

FREE, BALL, SLIDE, HINGE = (
    int(mujoco.mjtJoint.mjJNT_FREE),
    int(mujoco.mjtJoint.mjJNT_BALL),
    int(mujoco.mjtJoint.mjJNT_SLIDE),
    int(mujoco.mjtJoint.mjJNT_HINGE),
)


# ----------------------------------------------------------------- quaternion helpers
def quat_to_mat(q: torch.Tensor) -> torch.Tensor:
    """Rotation matrices [..., 3, 3] of unit quaternions [..., 4] (wxyz)."""
    w, x, y, z = q.unbind(-1)
    return torch.stack(
        (
            1 - 2 * (y * y + z * z),
            2 * (x * y - w * z),
            2 * (x * z + w * y),
            2 * (x * y + w * z),
            1 - 2 * (x * x + z * z),
            2 * (y * z - w * x),
            2 * (x * z - w * y),
            2 * (y * z + w * x),
            1 - 2 * (x * x + y * y),
        ),
        dim=-1,
    ).reshape(*q.shape[:-1], 3, 3)


def axis_angle_quat(axis: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Quaternions [..., 4] of rotations by ``angle`` [...] (rad) about unit ``axis`` [..., 3]."""
    half = 0.5 * angle
    return torch.cat((torch.cos(half)[..., None], torch.sin(half)[..., None] * axis), dim=-1)


def rotvec_quat(v: torch.Tensor) -> torch.Tensor:
    """Quaternions [..., 4] of rotation vectors [..., 3] (axis * angle, rad); exact at 0."""
    angle = torch.linalg.norm(v, dim=-1)
    small = angle < 1e-8
    safe = torch.where(small, torch.ones_like(angle), angle)
    # sin(a/2)/a, with its Taylor series near zero.
    k = torch.where(small, 0.5 - angle**2 / 48.0, torch.sin(0.5 * safe) / safe)
    return torch.cat((torch.cos(0.5 * angle)[..., None], k[..., None] * v), dim=-1)


def normalize(q: torch.Tensor) -> torch.Tensor:
    """``q / |q|`` along the last axis."""
    return q / torch.linalg.norm(q, dim=-1, keepdim=True)


def _cross_matrix(v: torch.Tensor) -> torch.Tensor:
    """Skew matrices [..., 3, 3] with ``K @ u = v x u`` for vectors v [..., 3]."""
    x, y, z = v.unbind(-1)
    o = torch.zeros_like(x)
    return torch.stack((o, -z, y, z, o, -x, -y, x, o), dim=-1).reshape(*v.shape[:-1], 3, 3)


def mat_to_quat(m: torch.Tensor) -> torch.Tensor:
    """Unit quaternions [..., 4] (wxyz, w >= 0) of rotation matrices [..., 3, 3].

    Takes, per matrix, the numerically best of the four standard formulas."""
    m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    candidates = torch.stack(
        (
            torch.stack((1 + m00 + m11 + m22, m21 - m12, m02 - m20, m10 - m01), -1),
            torch.stack((m21 - m12, 1 + m00 - m11 - m22, m01 + m10, m02 + m20), -1),
            torch.stack((m02 - m20, m01 + m10, 1 - m00 + m11 - m22, m12 + m21), -1),
            torch.stack((m10 - m01, m02 + m20, m12 + m21, 1 - m00 - m11 + m22), -1),
        ),
        dim=-2,
    )  # [..., 4, 4]; row i is 4 q_i q
    diag = torch.stack((1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22), -1)
    best = diag.argmax(-1)
    q = torch.gather(candidates, -2, best[..., None, None].expand(*best.shape, 1, 4))[..., 0, :]
    q = normalize(q)
    return torch.where(q[..., :1] < 0, -q, q)


@dataclass
class FKResult:
    """Forward kinematics of N configurations (world frame, metres).

    Attributes:
        xpos: body origins [N, nbody, 3] in m.
        xquat: body orientations [N, nbody, 4] (wxyz, w >= 0), or None if not asked for.
        xmat: body rotation matrices [N, nbody, 3, 3].
        xanchor: joint anchors [N, njnt, 3] in m.
        xaxis: joint axes [N, njnt, 3] (unit; for free joints the world z axis).
        site_xpos: site positions [N, nsite, 3] in m.
    """

    xpos: torch.Tensor
    xquat: torch.Tensor | None
    xmat: torch.Tensor
    xanchor: torch.Tensor
    xaxis: torch.Tensor
    site_xpos: torch.Tensor


class TorchKinematics:
    """Batched forward kinematics of a compiled MuJoCo model in torch.

    Args:
        model: compiled model with free, ball, hinge and/or slide joints, no mocap bodies.
        dtype: torch dtype of the computation (float64 to match MuJoCo to 1e-9).
        device: torch device.

    Example::

        fk = TorchKinematics(model)
        out = fk(torch.as_tensor(qpos))   # qpos [N, nq]
        out.site_xpos                     # [N, nsite, 3] m
    """

    def __init__(self, model: mujoco.MjModel, dtype: torch.dtype = torch.float64, device=None):
        if np.any(model.body_mocapid >= 0):
            raise ValueError("TorchKinematics does not support mocap bodies")
        self.model = model
        self.nq, self.nv = int(model.nq), int(model.nv)
        self.nbody, self.njnt, self.nsite = int(model.nbody), int(model.njnt), int(model.nsite)
        self.dtype, self.device = dtype, device

        def t(x):
            return torch.as_tensor(np.asarray(x), dtype=dtype, device=device)

        self.parent = [int(p) for p in model.body_parentid]
        self.body_pos = t(model.body_pos)  # [nbody, 3]
        self.body_quat = t(model.body_quat)  # [nbody, 4]
        self.body_mat = quat_to_mat(self.body_quat)  # [nbody, 3, 3]
        self.jnt_type = [int(x) for x in model.jnt_type]
        self.jnt_qposadr = [int(x) for x in model.jnt_qposadr]
        self.jnt_dofadr = [int(x) for x in model.jnt_dofadr]
        self.jnt_bodyid = [int(x) for x in model.jnt_bodyid]
        self.jnt_pos = t(model.jnt_pos)  # [njnt, 3]
        self.jnt_axis = t(model.jnt_axis)  # [njnt, 3]
        self.jnt_cross = _cross_matrix(self.jnt_axis)  # [njnt, 3, 3]: K v = axis x v
        self.eye3 = torch.eye(3, dtype=dtype, device=device)
        self.qpos0 = t(model.qpos0)  # [nq]
        self.body_joints = [
            list(range(int(model.body_jntadr[b]), int(model.body_jntadr[b] + model.body_jntnum[b])))
            for b in range(self.nbody)
        ]
        self.site_bodyid = torch.as_tensor(model.site_bodyid, dtype=torch.long, device=device)
        self.site_pos = t(model.site_pos)  # [nsite, 3]
        unsupported = set(self.jnt_type) - {FREE, BALL, SLIDE, HINGE}
        if unsupported:
            raise ValueError(f"unsupported joint types {unsupported}")

    def __call__(self, qpos: torch.Tensor, scale: float | torch.Tensor = 1.0, quat: bool = True) -> FKResult:
        """Forward kinematics.

        Rotations are composed as 3x3 matrices (fewer torch ops than quaternions; the
        result agrees with MuJoCo's quaternion path to rounding).

        Args:
            qpos: joint positions [N, nq] (m, unit quaternions wxyz, rad).
            scale: factor on every length of the model (float or 0-d tensor).
            quat: also return ``xquat`` (converted from ``xmat``, sign fixed to w >= 0).

        Returns:
            `FKResult` with bodies, joints and sites in the world frame (m).
        """
        qpos = torch.as_tensor(qpos, dtype=self.dtype, device=self.device)
        n = qpos.shape[0]
        zero = torch.zeros(n, 3, dtype=self.dtype, device=self.device)
        eye = torch.eye(3, dtype=self.dtype, device=self.device).expand(n, 3, 3)
        xpos, xmat = [zero], [eye]
        anchors: list[torch.Tensor | None] = [None] * self.njnt
        axes: list[torch.Tensor | None] = [None] * self.njnt
        for b in range(1, self.nbody):
            p = self.parent[b]
            pos = xpos[p] + xmat[p] @ (scale * self.body_pos[b])
            rot = xmat[p] @ self.body_mat[b]
            for j in self.body_joints[b]:
                a, kind = self.jnt_qposadr[j], self.jnt_type[j]
                if kind == FREE:
                    pos = qpos[:, a : a + 3]
                    rot = quat_to_mat(normalize(qpos[:, a + 3 : a + 7]))
                    anchors[j] = pos
                    axes[j] = self.jnt_axis[j].expand(n, 3)
                    continue
                jpos = scale * self.jnt_pos[j]
                anchor = pos + rot @ jpos
                axis = rot @ self.jnt_axis[j]
                anchors[j], axes[j] = anchor, axis
                if kind == SLIDE:
                    pos = pos + axis * (scale * (qpos[:, a] - self.qpos0[a]))[:, None]
                    continue
                if kind == BALL:
                    local = quat_to_mat(normalize(qpos[:, a : a + 4]))
                else:  # HINGE, Rodrigues: I + sin(t) K + (1 - cos(t)) K^2
                    angle = (qpos[:, a] - self.qpos0[a])[:, None, None]
                    k = self.jnt_cross[j]
                    local = self.eye3 + torch.sin(angle) * k + (1 - torch.cos(angle)) * (k @ k)
                rot = rot @ local
                pos = anchor - rot @ jpos
            xpos.append(pos)
            xmat.append(rot)
        xpos_t = torch.stack(xpos, dim=1)
        xmat_t = torch.stack(xmat, dim=1)
        site_xpos = (
            xpos_t[:, self.site_bodyid] + (xmat_t[:, self.site_bodyid] @ (scale * self.site_pos)[..., None])[..., 0]
        )
        empty = torch.zeros(n, 0, 3, dtype=self.dtype, device=self.device)
        return FKResult(
            xpos=xpos_t,
            xquat=mat_to_quat(xmat_t) if quat else None,
            xmat=xmat_t,
            xanchor=torch.stack(anchors, dim=1) if self.njnt else empty,
            xaxis=torch.stack(axes, dim=1) if self.njnt else empty,
            site_xpos=site_xpos,
        )

    def points(self, fk: FKResult, body_ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """World positions [N, K, 3] of points at ``offsets`` [K, 3] (m, body frame) on bodies
        ``body_ids`` [K] (for keypoints whose offsets are being fitted)."""
        return fk.xpos[:, body_ids] + (fk.xmat[:, body_ids] @ offsets[..., None])[..., 0]


def random_qpos(model: mujoco.MjModel, n: int, rng: np.random.Generator) -> np.ndarray:
    """N random configurations [n, nq]: limited hinges/slides uniform in ``jnt_range`` (else in
    ±pi or ±0.1 m about qpos0), free/ball joints random unit quaternions, free positions in ±0.2 m."""
    qpos = np.tile(model.qpos0, (n, 1))
    for j in range(model.njnt):
        a, kind = int(model.jnt_qposadr[j]), int(model.jnt_type[j])
        if kind == FREE:
            qpos[:, a : a + 3] = rng.uniform(-0.2, 0.2, (n, 3))
            q = rng.normal(size=(n, 4))
            qpos[:, a + 3 : a + 7] = q / np.linalg.norm(q, axis=1, keepdims=True)
        elif kind == BALL:
            q = rng.normal(size=(n, 4))
            qpos[:, a : a + 4] = q / np.linalg.norm(q, axis=1, keepdims=True)
        elif model.jnt_limited[j]:
            lo, hi = model.jnt_range[j]
            qpos[:, a] = rng.uniform(lo, hi, n)
        else:
            width = np.pi if kind == HINGE else 0.1
            qpos[:, a] = model.qpos0[a] + rng.uniform(-width, width, n)
    return qpos
