"""The least-squares problem of fitting a body to keypoints, and its solvers: `KeypointProblem`.

Keypoint k sits at a fixed offset ``o_k`` (m, in the frame of its body ``b_k``, shared by
all frames) on a body model whose lengths are multiplied by a scale factor ``s``. Over
frames t the problem is

    sum_t sum_k  valid[t, k] * |x_{b_k}(q_t) + R_{b_k}(q_t) o_k - y[t, k]|^2  (+ a pose prior)

in the poses ``q_t`` (hinge and slide values kept inside ``jnt_range``) and the offsets.
It is solved for the poses of a batch of frames with the offsets fixed (Levenberg-Marquardt
with the analytic Jacobian of the kinematic tree, free-joint rotations as world rotation
vectors, each step projected onto the joint ranges), for the poses and the shared offsets
together (the offsets' block eliminated through its Schur complement), or for the offsets
alone in closed form (the problem is linear in them when the poses are fixed).
`neuromimic.keypoints.fitting` orchestrates these.
"""

from __future__ import annotations

import mujoco
import numpy as np
import torch

from neuromimic.keypoints.kinematics import FREE, HINGE, SLIDE, FKResult, TorchKinematics, rotvec_quat
from neuromimic.keypoints.mapping import KeypointMapping
from neuromimic.tasks.rotations import quat_multiply as quat_mul


class KeypointProblem:
    """One fitting problem: a model, its keypoints' bodies, the data and its weights.

    Frames are addressed by their index in the data (``frames`` arguments, long [N]);
    poses are qpos [N, nq] of the model scaled by ``scale`` (m, rad, wxyz quaternions);
    offsets are [K, 3] in m, in the body frames of the scaled model.

    Args:
        model: compiled body model with free, hinge and slide joints (no ball joints).
        mapping: the keypoints' bodies (its offsets are not used here).
        data: keypoint positions [T, K, 3] in m, in the order of ``mapping.names``; NaN
            where invalid.
        valid: [T, K] bool, where the data is valid; invalid samples weigh 0.
        pose_reg: weight (m^2 / rad^2) of the prior pulling hinge angles towards qpos0.
        offset_reg: weight per frame (m^2 / m^2) pulling the offsets towards their start.

    Raises:
        NotImplementedError: the model has a ball joint.

    Attributes:
        model: the model.
        kinematics: torch forward kinematics of the model.
        pose_reg: weight of the hinge-angle prior (m^2 / rad^2).
        offset_reg: weight per frame of the offset prior (m^2 / m^2).
        body_ids: body of each keypoint, long [K].
        targets: keypoint positions [T, K, 3] in m, 0 where invalid.
        weights: [T, K], 1 where the data is valid, else 0.
        num_keypoints: K.
        nq: number of position coordinates of the model.
        nv: number of degrees of freedom of the model.
        joint_types: MuJoCo type of each joint (njnt).
        free_joints: ids of the free joints.
        free_qposadr: qpos address of each free joint.
        dof_moves_keypoint: [K, nv], 1 where the dof's joint is on the chain from the root
            to the keypoint's body (moving it moves the keypoint), else 0.
        limited_qposadr: qpos address of each limited hinge or slide joint, long [L].
        range_low: lower end of their ranges [L] (rad or m).
        range_high: upper end of their ranges [L] (rad or m).
        dof_qposadr: qpos address of each dof of a hinge or slide joint, -1 for free-joint
            dofs, long [nv].
        hinge_dofs: dofs of hinge joints, long.
        scalar_dofs: dofs of hinge and slide joints (one qpos coordinate each), long.
    """

    def __init__(
        self,
        model: mujoco.MjModel,
        mapping: KeypointMapping,
        data: np.ndarray,
        valid: np.ndarray,
        *,
        pose_reg: float,
        offset_reg: float,
    ):
        self.model = model
        self.pose_reg, self.offset_reg = pose_reg, offset_reg
        self.kinematics = TorchKinematics(model)
        self.body_ids: torch.Tensor = torch.as_tensor(mapping.body_ids)
        self.targets: torch.Tensor = torch.as_tensor(np.nan_to_num(data), dtype=torch.float64)
        self.weights: torch.Tensor = torch.as_tensor(valid, dtype=torch.float64)
        num_keypoints, nv, nq = len(mapping.names), model.nv, model.nq
        types = [int(t) for t in model.jnt_type]
        if any(t not in (FREE, HINGE, SLIDE) for t in types):
            raise NotImplementedError("the keypoint fitter supports free, hinge and slide joints (no ball joints)")
        self.free_joints: list[int] = [j for j in range(model.njnt) if types[j] == FREE]
        self.free_qposadr: list[int] = [int(model.jnt_qposadr[j]) for j in self.free_joints]
        # dof d moves keypoint k if its joint's body is an ancestor-or-self of b_k.
        moves = np.zeros((num_keypoints, nv))
        for k, b in enumerate(mapping.body_ids):
            chain = set()
            while b > 0:
                chain.add(int(b))
                b = model.body_parentid[b]
            for d in range(nv):
                moves[k, d] = model.jnt_bodyid[model.dof_jntid[d]] in chain
        self.dof_moves_keypoint: torch.Tensor = torch.as_tensor(moves)
        limited = [j for j in range(model.njnt) if types[j] in (HINGE, SLIDE) and model.jnt_limited[j]]
        self.limited_qposadr: torch.Tensor = torch.as_tensor(
            [int(model.jnt_qposadr[j]) for j in limited], dtype=torch.long
        )
        self.range_low: torch.Tensor = torch.as_tensor(model.jnt_range[limited, 0])
        self.range_high: torch.Tensor = torch.as_tensor(model.jnt_range[limited, 1])
        qposadr = np.full(nv, -1)
        for j in range(model.njnt):
            if types[j] != FREE:
                qposadr[model.jnt_dofadr[j]] = model.jnt_qposadr[j]
        self.dof_qposadr: torch.Tensor = torch.as_tensor(qposadr)
        self.hinge_dofs: torch.Tensor = torch.as_tensor(
            np.flatnonzero([types[model.dof_jntid[d]] == HINGE for d in range(nv)])
        )
        self.scalar_dofs: torch.Tensor = torch.as_tensor(np.flatnonzero(qposadr >= 0))
        self.nq, self.nv, self.num_keypoints = nq, nv, num_keypoints
        self.joint_types: list[int] = types

    def model_keypoints(self, qpos: torch.Tensor, offsets: torch.Tensor, scale: float) -> tuple[torch.Tensor, FKResult]:
        """The model's keypoints [N, K, 3] (m) in poses qpos [N, nq], and the kinematics."""
        out = self.kinematics(qpos, scale=scale, quat=False)
        return self.kinematics.points(out, self.body_ids, offsets), out

    def jacobian(self, out: FKResult, points: torch.Tensor, scale: float) -> torch.Tensor:
        """d points / d dof: [N, K, 3, nv], free-joint rotations as world rotation vectors.

        Args:
            out: the kinematics of the poses.
            points: the model's keypoints [N, K, 3] in m in those poses.
            scale: body scale factor (slide joints move ``scale`` m per model unit).
        """
        n = points.shape[0]
        J = torch.zeros(n, self.num_keypoints, 3, self.nv, dtype=torch.float64)
        model = self.model
        for j in range(model.njnt):
            d = int(model.jnt_dofadr[j])
            kind = self.joint_types[j]
            if kind == FREE:
                J[:, :, 0, d], J[:, :, 1, d + 1], J[:, :, 2, d + 2] = 1.0, 1.0, 1.0
                r = points - out.xanchor[:, j][:, None]  # [N, K, 3]
                eye = torch.eye(3, dtype=torch.float64)
                for i in range(3):
                    J[:, :, :, d + 3 + i] = torch.linalg.cross(eye[i].expand_as(r), r)
        hinge = [j for j in range(model.njnt) if self.joint_types[j] == HINGE]
        if hinge:
            axis = out.xaxis[:, hinge][:, None]  # [N, 1, H, 3]
            r = points[:, :, None] - out.xanchor[:, hinge][:, None]  # [N, K, H, 3]
            J[..., model.jnt_dofadr[hinge]] = torch.linalg.cross(axis.expand_as(r), r).transpose(2, 3)
        slide = [j for j in range(model.njnt) if self.joint_types[j] == SLIDE]
        if slide:
            J[..., model.jnt_dofadr[slide]] = (
                (scale * out.xaxis[:, slide])[:, None].expand(n, self.num_keypoints, -1, 3).transpose(2, 3)
            )
        return J * self.dof_moves_keypoint[None, :, None, :]

    def step(self, qpos: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """Poses qpos [N, nq] moved by delta [N, nv], projected onto the joint ranges."""
        new = qpos.clone()
        for j, a in zip(self.free_joints, self.free_qposadr):
            d = int(self.model.jnt_dofadr[j])
            new[:, a : a + 3] += delta[:, d : d + 3]
            q = quat_mul(rotvec_quat(delta[:, d + 3 : d + 6]), qpos[:, a + 3 : a + 7])
            new[:, a + 3 : a + 7] = q / torch.linalg.norm(q, dim=-1, keepdim=True)
        new[:, self.dof_qposadr[self.scalar_dofs]] += delta[:, self.scalar_dofs]
        return self.project(new)

    def project(self, qpos: torch.Tensor) -> torch.Tensor:
        """qpos [N, nq] with limited hinge/slide values clamped into ``jnt_range``."""
        qpos = qpos.clone()
        qpos[:, self.limited_qposadr] = torch.minimum(
            torch.maximum(qpos[:, self.limited_qposadr], self.range_low), self.range_high
        )
        return qpos

    def cost(
        self, points: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor, qpos: torch.Tensor
    ) -> torch.Tensor:
        """Per-frame cost [N]: weighted squared keypoint error (m^2) + pose prior.

        Args:
            points: the model's keypoints [N, K, 3] in m.
            targets: the data [N, K, 3] in m.
            weights: keypoint weights [N, K].
            qpos: the poses [N, nq].
        """
        err = ((points - targets) ** 2).sum(-1)
        hinge_qposadr = self.dof_qposadr[self.hinge_dofs]
        prior = (qpos[:, hinge_qposadr] - self.kinematics.qpos0[hinge_qposadr]) ** 2
        return (weights * err).sum(-1) + self.pose_reg * prior.sum(-1)

    def solve_poses(
        self,
        qpos: torch.Tensor,
        frames: torch.Tensor,
        offsets: torch.Tensor,
        scale: float,
        steps: int,
        dofs: torch.Tensor | None = None,
        keypoint_weights: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Levenberg-Marquardt on the poses of ``frames`` [N] from qpos [N, nq], offsets fixed.

        Each frame is its own problem with its own damping factor.

        Args:
            qpos: starting poses [N, nq].
            frames: frame indices [N].
            offsets: keypoint offsets [K, 3] in m.
            scale: body scale factor.
            steps: Levenberg-Marquardt steps.
            dofs: bool [nv] of the dofs to move (None: all).
            keypoint_weights: [K] extra keypoint weights (0 drops a keypoint), or None.

        Returns:
            The fitted poses [N, nq].
        """
        y, w = self.targets[frames], self.weights[frames]
        if keypoint_weights is not None:
            w = w * keypoint_weights
        n = qpos.shape[0]
        active = torch.ones(self.nv, dtype=torch.bool) if dofs is None else dofs
        active = active & (self.dof_moves_keypoint[(w.sum(0) > 0)].sum(0) > 0)
        lam = torch.full((n,), 1e-3, dtype=torch.float64)
        points, out = self.model_keypoints(qpos, offsets, scale)
        cost = self.cost(points, y, w, qpos)
        hinge = torch.zeros(self.nv, dtype=torch.float64)
        hinge[self.hinge_dofs] = self.pose_reg
        hinge_qposadr = self.dof_qposadr[self.hinge_dofs]
        qh = torch.zeros(n, self.nv, dtype=torch.float64)
        qh[:, self.hinge_dofs] = qpos[:, hinge_qposadr] - self.kinematics.qpos0[hinge_qposadr]
        for _ in range(steps):
            J = self.jacobian(out, points, scale).reshape(n, 3 * self.num_keypoints, self.nv)
            J = J[..., active]
            sw = w.repeat_interleave(3, dim=1)  # [N, 3K]
            r = (points - y).reshape(n, -1)
            H = J.transpose(1, 2) @ (sw[..., None] * J)
            g = J.transpose(1, 2) @ (sw * r)[..., None]
            qh[:, self.hinge_dofs] = qpos[:, hinge_qposadr] - self.kinematics.qpos0[hinge_qposadr]
            H = H + torch.diag(hinge[active])
            g = g + (hinge[active] * qh[:, active])[..., None]
            diag = torch.diagonal(H, dim1=1, dim2=2)
            A = H + torch.diag_embed(lam[:, None] * (diag + 1e-9))
            delta = torch.zeros(n, self.nv, dtype=torch.float64)
            delta[:, active] = -torch.linalg.solve(A, g)[..., 0]
            cand = self.step(qpos, delta)
            cpoints, cout = self.model_keypoints(cand, offsets, scale)
            ccost = self.cost(cpoints, y, w, cand)
            better = ccost < cost
            lam = torch.where(better, lam / 3, lam * 4).clamp(1e-9, 1e9)

            def pick(new, old, better=better):
                return torch.where(better.view(-1, *[1] * (new.dim() - 1)), new, old)

            qpos, points, cost = pick(cand, qpos), pick(cpoints, points), pick(ccost, cost)
            for name in ("xpos", "xmat", "xanchor", "xaxis"):
                setattr(out, name, pick(getattr(cout, name), getattr(out, name)))
        return qpos

    def solve_poses_and_offsets(
        self,
        qpos: torch.Tensor,
        frames: torch.Tensor,
        offsets: torch.Tensor,
        offsets0: torch.Tensor,
        scale: float,
        steps: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Levenberg-Marquardt on the poses of ``frames`` and the shared offsets together.

        The normal equations have an arrow structure (a pose block per frame, one offset
        block shared by all): the offsets' step comes from the Schur complement, then each
        frame's pose step from its own block. One damping factor for the whole problem,
        since the offsets tie the frames together.

        Args:
            qpos: starting poses [N, nq].
            frames: frame indices [N].
            offsets: starting offsets [K, 3] in m.
            offsets0: offsets [K, 3] (m) the prior pulls towards (``offset_reg``).
            scale: body scale factor.
            steps: Levenberg-Marquardt steps.

        Returns:
            (qpos [N, nq], offsets [K, 3]).
        """
        y, w = self.targets[frames], self.weights[frames]
        n, K = qpos.shape[0], self.num_keypoints
        active = self.dof_moves_keypoint[(w.sum(0) > 0)].sum(0) > 0
        lam_o = self.offset_reg * n
        prior_w = torch.zeros(self.nv, dtype=torch.float64)
        prior_w[self.hinge_dofs] = self.pose_reg
        prior_w = prior_w[active]
        hadr = self.dof_qposadr[self.hinge_dofs]

        def total(points, q, off):
            return self.cost(points, y, w, q).sum() + lam_o * ((off - offsets0) ** 2).sum()

        points, out = self.model_keypoints(qpos, offsets, scale)
        cost = total(points, qpos, offsets)
        lam = 1e-3
        sw = w.repeat_interleave(3, dim=1)  # [N, 3K]
        for _ in range(steps):
            Jq = self.jacobian(out, points, scale).reshape(n, 3 * K, self.nv)[..., active]
            R = out.xmat[:, self.body_ids]  # [N, K, 3, 3]: d point_k / d o_k
            Jo = torch.zeros(n, K, 3, K, 3, dtype=torch.float64)
            kk = torch.arange(K)
            Jo[:, kk, :, kk, :] = R.transpose(0, 1)
            Jo = Jo.reshape(n, 3 * K, 3 * K)
            r = (points - y).reshape(n, -1)
            qh = torch.zeros(n, self.nv, dtype=torch.float64)
            qh[:, self.hinge_dofs] = qpos[:, hadr] - self.kinematics.qpos0[hadr]
            WJq = sw[..., None] * Jq
            Hqq = Jq.transpose(1, 2) @ WJq + torch.diag(prior_w)
            Hqq = Hqq + lam * torch.diag_embed(torch.diagonal(Hqq, dim1=1, dim2=2) + 1e-9)
            Hqo = WJq.transpose(1, 2) @ Jo  # [N, nv_a, 3K]
            gq = WJq.transpose(1, 2) @ r[..., None] + (prior_w * qh[:, active])[..., None]
            Hoo = (Jo.transpose(1, 2) @ (sw[..., None] * Jo)).sum(0) + lam_o * torch.eye(3 * K, dtype=torch.float64)
            Hoo = Hoo + lam * torch.diag(torch.diagonal(Hoo) + 1e-9)
            go = (Jo.transpose(1, 2) @ (sw * r)[..., None]).sum(0) + lam_o * (offsets - offsets0).reshape(-1, 1)
            X = torch.linalg.solve(Hqq, torch.cat((Hqo, gq), dim=2))  # [N, nv_a, 3K + 1]
            Xo, Xg = X[..., :-1], X[..., -1:]
            S = Hoo - (Hqo.transpose(1, 2) @ Xo).sum(0)
            b = go - (Hqo.transpose(1, 2) @ Xg).sum(0)
            d_off = -torch.linalg.solve(S, b)  # [3K, 1]
            d_q = -(Xg + Xo @ d_off)[..., 0]
            delta = torch.zeros(n, self.nv, dtype=torch.float64)
            delta[:, active] = d_q
            cand = self.step(qpos, delta)
            cand_off = offsets + d_off.reshape(K, 3)
            cpoints, cout = self.model_keypoints(cand, cand_off, scale)
            ccost = total(cpoints, cand, cand_off)
            if ccost < cost:
                qpos, offsets, points, out, cost = cand, cand_off, cpoints, cout, ccost
                lam = max(lam / 3, 1e-9)
            else:
                lam = min(lam * 4, 1e9)
        return qpos, offsets

    def solve_offsets(
        self, qpos: torch.Tensor, frames: torch.Tensor, offsets0: torch.Tensor, scale: float
    ) -> torch.Tensor:
        """Closed-form offsets [K, 3] (m) for the poses qpos [N, nq] of ``frames`` [N].

        The weighted mean over frames of each keypoint's position in its body's frame,
        pulled towards ``offsets0`` [K, 3] by ``offset_reg``.
        """
        out = self.kinematics(qpos, scale=scale, quat=False)
        x = out.xpos[:, self.body_ids]  # [N, K, 3]
        R = out.xmat[:, self.body_ids]  # [N, K, 3, 3]
        local = (R.transpose(-1, -2) @ (self.targets[frames] - x)[..., None])[..., 0]  # [N, K, 3]
        w = self.weights[frames]
        lam = self.offset_reg * len(frames)
        return ((w[..., None] * local).sum(0) + lam * offsets0) / (w.sum(0)[:, None] + lam)

    def rigid_placement(
        self, frames: torch.Tensor, offsets: torch.Tensor, scale: float, keypoint_weights: torch.Tensor
    ) -> torch.Tensor:
        """Rest pose (qpos0) with each free joint moved by the rigid transform that best
        maps the rest-pose keypoints onto the data (Kabsch, on the weighted keypoints).

        Args:
            frames: frame indices [N].
            offsets: keypoint offsets [K, 3] in m.
            scale: body scale factor.
            keypoint_weights: [K] weights of the keypoints used (where a frame has fewer
                than three of them, all its valid keypoints are used).

        Returns:
            Poses [N, nq].
        """
        n = len(frames)
        q0 = self.project(self.kinematics.qpos0[None].clone())
        p0, _ = self.model_keypoints(q0, offsets, scale)  # [1, K, 3]
        p0 = p0[0]
        qpos = q0.expand(n, -1).clone()
        y, w = self.targets[frames], self.weights[frames] * keypoint_weights
        for i in range(n):
            wi = w[i]
            if (wi > 0).sum() < 3:
                wi = self.weights[frames[i]]
            if wi.sum() == 0:
                continue
            wn = wi / wi.sum()
            cp, cy = (wn[:, None] * p0).sum(0), (wn[:, None] * y[i]).sum(0)
            C = ((p0 - cp) * wn[:, None]).T @ (y[i] - cy)
            U, _, Vt = torch.linalg.svd(C)
            dfix = torch.ones(3, dtype=torch.float64)
            dfix[2] = torch.sign(torch.det(Vt.T @ U.T))
            R = Vt.T @ torch.diag(dfix) @ U.T
            quat = np.zeros(4)
            mujoco.mju_mat2Quat(quat, R.numpy().reshape(-1))
            for a in self.free_qposadr:
                qpos[i, a : a + 3] = R @ (q0[0, a : a + 3] - cp) + cy
                qpos[i, a + 3 : a + 7] = quat_mul(torch.as_tensor(quat), q0[0, a + 3 : a + 7])
        return qpos
