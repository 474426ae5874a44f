"""Fit a body's joint angles to 3-D keypoints, in the spirit of STAC (stac-mjx).

The model: keypoint k sits at a fixed offset ``o_k`` (m, a 3-vector in the frame of its
body ``b_k``, shared by all frames) on a body model whose lengths are multiplied by a
scale factor ``s``. For frames t the fitter minimises

    sum_t sum_k  valid[t, k] * |x_{b_k}(q_t) + R_{b_k}(q_t) o_k - y[t, k]|^2

over the poses ``q_t`` (hinge angles kept inside ``jnt_range``) and the offsets, in
three parts:

1. **Pose step** (per frame, batched over frames in torch): damped Gauss-Newton
   (Levenberg-Marquardt) on the joint velocities' space (free-joint rotations as world
   rotation vectors), with the analytic Jacobian of a kinematic tree, and each step
   projected onto the joint ranges. The first pass is staged like STAC: root only
   (trunk keypoints), then root + trunk joints (trunk keypoints), then every joint
   (every keypoint; the limbs are independent blocks of that problem). In the first pass
   every frame starts from the previous frame's fit (frames are cut into contiguous
   chunks that are swept in parallel; the first frame of a chunk starts from the model's
   rest pose placed by a rigid (Kabsch) fit of the trunk keypoints). Later passes start
   each frame from its own previous fit.
2. **Offsets**: first poses and offsets are refined *together* (``joint_steps``
   Levenberg-Marquardt steps over the offset frames; the normal equations have one pose
   block per frame plus a shared offset block, solved through the Schur complement of
   the offsets); then ``iterations`` STAC alternations: with the poses fixed the problem
   is linear in the offsets, so each offset is the (regularised, towards its starting
   value) least-squares solution over the offset frames in closed form, followed by a
   pose pass. Plain alternation converges slowly (on rat23: 1.54 mm mean after 3
   alternations, 1.42 mm after 6); the joint step reaches about 1.17 mm.
3. **Scale**: given (stac-mjx's rodent uses 0.9), or searched for (golden section,
   cross-validated on a sample of frames, see `fit_scale`; noisy on real data).

`fit_keypoints` returns a `KeypointFit` (poses for the scaled model, offsets, scale,
residuals); `KeypointFit.clip_qpos` converts the poses to the unscaled body (root
position divided by the scale; angles unchanged) for `ReferenceClip.from_qpos`.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import mujoco
import numpy as np
import torch

from neuromimic.keypoints.keypoints import Keypoints, KeypointsError, cloud_size
from neuromimic.keypoints.kinematics import (
    FREE,
    HINGE,
    SLIDE,
    TorchKinematics,
    rotvec_quat,
)
from neuromimic.keypoints.rules import check_plausible_size, check_up_axis
from neuromimic.tasks.rotations import quat_multiply as quat_mul

log = logging.getLogger(__name__)

#: rat23 keypoints on the axial skeleton: used for the root and trunk stages.
RAT23_TRUNK_KEYPOINTS = ("Snout", "EarL", "EarR", "SpineF", "SpineM", "SpineL", "TailBase", "HipL", "HipR")
#: Tolerance (rad or m) beyond ``jnt_range`` that counts as a joint-limit violation.
LIMIT_TOLERANCE = 1e-9


# --------------------------------------------------------------------------- mapping
@dataclass
class KeypointMapping:
    """Which body each keypoint is attached to, and its starting offset.

    Attributes:
        names: keypoint names (K).
        bodies: body names (K).
        body_ids: body ids [K] in the model.
        offsets: starting offsets [K, 3] in m, body frame of the unscaled model.
    """

    names: tuple[str, ...]
    bodies: tuple[str, ...]
    body_ids: np.ndarray
    offsets: np.ndarray


def _available(model: mujoco.MjModel) -> str:
    bodies = [model.body(i).name for i in range(1, model.nbody)]
    sites = [model.site(i).name for i in range(model.nsite)]
    return f"bodies: {', '.join(bodies)}; sites: {', '.join(sites)}"


def make_mapping(model: mujoco.MjModel, entries: dict[str, object]) -> KeypointMapping:
    """Build a `KeypointMapping` from ``{keypoint: entry}``.

    An entry is a site name (the keypoint starts at that site: its body and its ``pos``),
    a body name (offset 0), or a dict ``{"body": name, "offset": [x, y, z]}`` (m) or
    ``{"site": name}``.

    Raises:
        KeypointsError: an entry names no body or site of the model; the message lists
            the model's bodies and sites.
    """
    names, bodies, ids, offsets = [], [], [], []
    for keypoint, entry in entries.items():
        if isinstance(entry, str):
            entry = (
                {"site": entry} if mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, entry) >= 0 else {"body": entry}
            )
        if not isinstance(entry, dict) or not ({"site", "body"} & set(entry)):
            raise KeypointsError(
                f"keypoint mapping entry {keypoint!r}: {entry!r} is neither a site name, a body "
                "name nor {body: NAME, offset: [x, y, z]}"
            )
        if "site" in entry:
            sid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, str(entry["site"]))
            if sid < 0:
                raise KeypointsError(
                    f"keypoint mapping: keypoint {keypoint!r} names site {entry['site']!r}, which "
                    f"the model does not have. Available {_available(model)}"
                )
            bid, offset = int(model.site_bodyid[sid]), np.array(model.site_pos[sid])
        else:
            bid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, str(entry["body"]))
            if bid < 1:
                raise KeypointsError(
                    f"keypoint mapping: keypoint {keypoint!r} names body {entry['body']!r}, which "
                    f"the model does not have. Available {_available(model)}"
                )
            offset = np.zeros(3)
        if "offset" in entry:
            offset = np.asarray(entry["offset"], dtype=np.float64).reshape(3)
        names.append(str(keypoint))
        bodies.append(model.body(bid).name)
        ids.append(bid)
        offsets.append(offset)
    if not names:
        raise KeypointsError("the keypoint mapping is empty")
    return KeypointMapping(tuple(names), tuple(bodies), np.array(ids), np.array(offsets, dtype=np.float64))


def load_mapping(
    model: mujoco.MjModel, keypoint_sites: dict[str, str], path: str | Path | None = None
) -> KeypointMapping:
    """The mapping of a YAML file (``{keypoint: site | body | {body:, offset:}}``), or the
    body's ``keypoint_sites`` when ``path`` is None."""
    if path is None:
        if not keypoint_sites:
            raise KeypointsError("this body has no keypoint_sites; pass a mapping file (--mapping map.yaml)")
        return make_mapping(model, dict(keypoint_sites))
    import yaml

    entries = yaml.safe_load(Path(path).read_text())
    if not isinstance(entries, dict):
        raise KeypointsError(f"mapping file {str(path)!r} must hold a YAML mapping {{keypoint: site or body}}")
    return make_mapping(model, entries)


# ------------------------------------------------------------------------------- fit
@dataclass
class FitOptions:
    """Settings of `fit_keypoints`.

    Attributes:
        scale: body scale factor; None fits it (golden-section search, see `fit_scale`).
        iterations: closed-form offset updates after the joint step (STAC alternations;
            each but the last followed by a pose pass of ``lm_steps``).
        lm_steps: Levenberg-Marquardt steps per pose pass (per stage in the first pass).
        chunk: frames per chunk of the first, sequential, warm-started pass.
        offset_reg: weight, per offset frame, pulling offsets to their start (m^2/m^2).
        pose_reg: weight (m^2 / rad^2) pulling hinge angles towards qpos0 (can stabilise
            joints the keypoints barely see; 0 by default: on rat23 even 1e-7 costs 0.1 mm).
        trunk_keypoints: keypoints of the root and trunk stages (the rat23 axial ones
            present in the mapping by default; all keypoints if none are).
        offset_frames: frame indices the offsets are fitted on (None: every fitted frame).
        fit_offsets: False keeps the offsets given.
        joint_steps: Levenberg-Marquardt steps on poses and offsets together (Schur
            complement on the shared offsets), before the alternations; 0 skips them.
        final_steps: Levenberg-Marquardt steps of the last pose pass, with the final
            offsets, on every fitted frame.
        threads: torch threads while fitting (1 is fastest for these small ops).
        drop_missing_keypoints: fit without the mapped keypoints that have no valid
            frame among the fitted frames (with a warning) instead of refusing the data.
    """

    scale: float | None = 0.9
    iterations: int = 1
    lm_steps: int = 12
    chunk: int = 25
    offset_reg: float = 0.001
    pose_reg: float = 0.0
    trunk_keypoints: Sequence[str] | None = None
    offset_frames: Sequence[int] | None = None
    fit_offsets: bool = True
    joint_steps: int = 100
    final_steps: int = 30
    threads: int = 1
    drop_missing_keypoints: bool = False


@dataclass
class KeypointFit:
    """Result of `fit_keypoints`.

    Attributes:
        qpos: poses [T, nq] for the model scaled by ``scale`` (world frame of the data, m / rad).
        offsets: keypoint offsets [K, 3] in m, body frame of the scaled model.
        scale: body scale factor.
        names: keypoint names (K).
        bodies: body of each keypoint (K).
        predicted: model keypoint positions [T, K, 3] in m.
        residual: keypoint errors [T, K] in m (NaN where the data is invalid).
        limit_violations_pct: percentage of (frame, limited joint) values outside ``jnt_range``.
        seconds: wall time of the fit.
    """

    qpos: np.ndarray
    offsets: np.ndarray
    scale: float
    names: tuple[str, ...]
    bodies: tuple[str, ...]
    predicted: np.ndarray
    residual: np.ndarray
    limit_violations_pct: float
    seconds: float
    info: dict = field(default_factory=dict)

    def clip_qpos(self) -> np.ndarray:
        """Poses [T, nq] for the unscaled body: free-joint positions divided by the scale."""
        qpos = self.qpos.copy()
        for a in self.info["free_qposadr"]:
            qpos[:, a : a + 3] /= self.scale
        return qpos

    def report(self) -> dict:
        """``{"mean_residual_mm", "p95_residual_mm", "per_keypoint_mm", "joint_limit_violations_pct",
        "frames", "seconds", "scale"}``, valid JSON: a value without data is None (null)."""
        mm = self.residual * 1000.0
        ok = np.isfinite(mm)
        per_keypoint = {}
        for k, n in enumerate(self.names):
            seen = mm[:, k][ok[:, k]]
            per_keypoint[n] = round(float(seen.mean()), 3) if seen.size else None
        return json_safe(
            {
                "mean_residual_mm": round(float(mm[ok].mean()), 4) if ok.any() else None,
                "p95_residual_mm": round(float(np.percentile(mm[ok], 95)), 4) if ok.any() else None,
                "per_keypoint_mm": per_keypoint,
                "joint_limit_violations_pct": self.limit_violations_pct,
                "frames": int(mm.shape[0]),
                "seconds": round(self.seconds, 2),
                "scale": round(self.scale, 4),
            }
        )


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, inf), also inside dicts and lists, as None.

    `json.dumps` writes NaN as ``NaN``, which is not JSON; reports pass through this so
    that ``json.dumps(report, allow_nan=False)`` holds.
    """
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


class _Problem:
    """Tensors of one fitting problem: model, keypoint bodies, data [T, K, 3] and weights."""

    def __init__(
        self, model: mujoco.MjModel, mapping: KeypointMapping, data: np.ndarray, valid: np.ndarray, opts: FitOptions
    ):
        self.model, self.opts = model, opts
        self.fk = TorchKinematics(model)
        self.body_ids = torch.as_tensor(mapping.body_ids)
        self.y = torch.as_tensor(np.nan_to_num(data), dtype=torch.float64)  # [T, K, 3]
        self.w = torch.as_tensor(valid, dtype=torch.float64)  # [T, K]
        K, nv, nq = len(mapping.names), model.nv, model.nq
        types = [int(t) for t in model.jnt_type]
        if any(t not in (FREE, HINGE, SLIDE) for t in types):
            raise NotImplementedError("the keypoint fitter supports free, hinge and slide joints (no ball joints)")
        # per dof: joint, kind (0 translation along a direction, 1 rotation about an axis)
        self.dof_joint = torch.as_tensor(model.dof_jntid, dtype=torch.long)
        self.free = [j for j in range(model.njnt) if types[j] == FREE]
        self.free_qposadr = [int(model.jnt_qposadr[j]) for j in self.free]
        # ancestry: dof d moves keypoint k if its joint's body is an ancestor-or-self of b_k.
        mask = np.zeros((K, nv))
        for k, b in enumerate(mapping.body_ids):
            chain = set()
            while b > 0:
                chain.add(int(b))
                b = model.body_parentid[b]
            for d in range(nv):
                mask[k, d] = model.jnt_bodyid[model.dof_jntid[d]] in chain
        self.mask = torch.as_tensor(mask)
        # hinge/slide limits on qpos, as index + bounds
        lim = [j for j in range(model.njnt) if types[j] in (HINGE, SLIDE) and model.jnt_limited[j]]
        self.lim_qadr = torch.as_tensor([int(model.jnt_qposadr[j]) for j in lim], dtype=torch.long)
        self.lim_lo = torch.as_tensor(model.jnt_range[lim, 0])
        self.lim_hi = torch.as_tensor(model.jnt_range[lim, 1])
        # 1-dof joints: qpos address of each dof (-1 for free-joint dofs)
        qadr = np.full(nv, -1)
        for j in range(model.njnt):
            if types[j] != FREE:
                qadr[model.jnt_dofadr[j]] = model.jnt_qposadr[j]
        self.dof_qadr = torch.as_tensor(qadr)
        self.hinge_dofs = torch.as_tensor(np.flatnonzero([types[model.dof_jntid[d]] == HINGE for d in range(nv)]))
        self.scalar_dofs = torch.as_tensor(np.flatnonzero(qadr >= 0))
        self.nq, self.nv, self.K = nq, nv, K
        self.types = types

    # -- kinematics
    def keypoints(self, qpos: torch.Tensor, offsets: torch.Tensor, scale: float):
        """Model keypoints [N, K, 3] (m) and the FK result of poses qpos [N, nq]."""
        out = self.fk(qpos, scale=scale, quat=False)
        return self.fk.points(out, self.body_ids, offsets), out

    def jacobian(self, out, points: torch.Tensor, scale: float) -> torch.Tensor:
        """d points / d dof: [N, K, 3, nv], free-joint rotations as world rotation vectors."""
        n = points.shape[0]
        J = torch.zeros(n, self.K, 3, self.nv, dtype=torch.float64)
        model = self.model
        for j in range(model.njnt):
            d = int(model.jnt_dofadr[j])
            kind = self.types[j]
            if kind == FREE:
                J[:, :, 0, d], J[:, :, 1, d + 1], J[:, :, 2, d + 2] = 1.0, 1.0, 1.0
                r = points - out.xanchor[:, j][:, None]  # [N, K, 3]
                eye = torch.eye(3, dtype=torch.float64)
                for i in range(3):
                    J[:, :, :, d + 3 + i] = torch.linalg.cross(eye[i].expand_as(r), r)
        hinge = [j for j in range(model.njnt) if self.types[j] == HINGE]
        if hinge:
            axis = out.xaxis[:, hinge][:, None]  # [N, 1, H, 3]
            r = points[:, :, None] - out.xanchor[:, hinge][:, None]  # [N, K, H, 3]
            J[..., model.jnt_dofadr[hinge]] = torch.linalg.cross(axis.expand_as(r), r).transpose(2, 3)
        slide = [j for j in range(model.njnt) if self.types[j] == SLIDE]
        if slide:
            J[..., model.jnt_dofadr[slide]] = (
                (scale * out.xaxis[:, slide])[:, None].expand(n, self.K, -1, 3).transpose(2, 3)
            )
        return J * self.mask[None, :, None, :]

    def step(self, qpos: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """Poses qpos [N, nq] moved by delta [N, nv], projected onto the joint ranges."""
        new = qpos.clone()
        for j, a in zip(self.free, self.free_qposadr):
            d = int(self.model.jnt_dofadr[j])
            new[:, a : a + 3] += delta[:, d : d + 3]
            q = quat_mul(rotvec_quat(delta[:, d + 3 : d + 6]), qpos[:, a + 3 : a + 7])
            new[:, a + 3 : a + 7] = q / torch.linalg.norm(q, dim=-1, keepdim=True)
        new[:, self.dof_qadr[self.scalar_dofs]] += delta[:, self.scalar_dofs]
        return self.project(new)

    def project(self, qpos: torch.Tensor) -> torch.Tensor:
        """qpos with limited hinge/slide values clamped into ``jnt_range``."""
        qpos = qpos.clone()
        qpos[:, self.lim_qadr] = torch.minimum(torch.maximum(qpos[:, self.lim_qadr], self.lim_lo), self.lim_hi)
        return qpos

    def cost(self, points, y, w, qpos) -> torch.Tensor:
        """Per-frame cost [N]: weighted squared keypoint error (m^2) + pose prior."""
        err = ((points - y) ** 2).sum(-1)
        prior = (qpos[:, self.dof_qadr[self.hinge_dofs]] - self.fk.qpos0[self.dof_qadr[self.hinge_dofs]]) ** 2
        return (w * err).sum(-1) + self.opts.pose_reg * prior.sum(-1)

    def solve(self, qpos, frames, offsets, scale, steps, dofs=None, kp_weight=None):
        """Levenberg-Marquardt on frames ``frames`` [N] from poses qpos [N, nq]; returns qpos.

        Args:
            dofs: bool [nv] of the dofs to move (None: all).
            kp_weight: [K] extra keypoint weights (0 drops a keypoint), or None.
        """
        y, w = self.y[frames], self.w[frames]
        if kp_weight is not None:
            w = w * kp_weight
        n = qpos.shape[0]
        active = torch.ones(self.nv, dtype=torch.bool) if dofs is None else dofs
        active = active & (self.mask[(w.sum(0) > 0)].sum(0) > 0)
        lam = torch.full((n,), 1e-3, dtype=torch.float64)
        points, out = self.keypoints(qpos, offsets, scale)
        cost = self.cost(points, y, w, qpos)
        hinge = torch.zeros(self.nv, dtype=torch.float64)
        hinge[self.hinge_dofs] = self.opts.pose_reg
        qh = torch.zeros(n, self.nv, dtype=torch.float64)
        qh[:, self.hinge_dofs] = qpos[:, self.dof_qadr[self.hinge_dofs]] - self.fk.qpos0[self.dof_qadr[self.hinge_dofs]]
        for _ in range(steps):
            J = self.jacobian(out, points, scale).reshape(n, 3 * self.K, self.nv)
            J = J[..., active]
            sw = w.repeat_interleave(3, dim=1)  # [N, 3K]
            r = (points - y).reshape(n, -1)
            H = J.transpose(1, 2) @ (sw[..., None] * J)
            g = J.transpose(1, 2) @ (sw * r)[..., None]
            qh[:, self.hinge_dofs] = (
                qpos[:, self.dof_qadr[self.hinge_dofs]] - self.fk.qpos0[self.dof_qadr[self.hinge_dofs]]
            )
            H = H + torch.diag(hinge[active])
            g = g + (hinge[active] * qh[:, active])[..., None]
            diag = torch.diagonal(H, dim1=1, dim2=2)
            A = H + torch.diag_embed(lam[:, None] * (diag + 1e-9))
            delta = torch.zeros(n, self.nv, dtype=torch.float64)
            delta[:, active] = -torch.linalg.solve(A, g)[..., 0]
            cand = self.step(qpos, delta)
            cpoints, cout = self.keypoints(cand, offsets, scale)
            ccost = self.cost(cpoints, y, w, cand)
            better = ccost < cost
            lam = torch.where(better, lam / 3, lam * 4).clamp(1e-9, 1e9)

            def pick(new, old, better=better):
                return torch.where(better.view(-1, *[1] * (new.dim() - 1)), new, old)

            qpos, points, cost = pick(cand, qpos), pick(cpoints, points), pick(ccost, cost)
            for name in ("xpos", "xmat", "xanchor", "xaxis"):
                setattr(out, name, pick(getattr(cout, name), getattr(out, name)))
        return qpos

    def solve_joint(self, qpos, frames, offsets, offsets0, scale, steps):
        """Levenberg-Marquardt on the poses of ``frames`` and the shared offsets together.

        The normal equations have an arrow structure (a pose block per frame, one offset
        block shared by all): the offsets' step comes from the Schur complement, then each
        frame's pose step from its own block. One damping factor for the whole problem,
        since the offsets tie the frames together.

        Returns:
            (qpos [N, nq], offsets [K, 3]).
        """
        y, w = self.y[frames], self.w[frames]
        n, K = qpos.shape[0], self.K
        active = self.mask[(w.sum(0) > 0)].sum(0) > 0
        lam_o = self.opts.offset_reg * n
        prior_w = torch.zeros(self.nv, dtype=torch.float64)
        prior_w[self.hinge_dofs] = self.opts.pose_reg
        prior_w = prior_w[active]
        hadr = self.dof_qadr[self.hinge_dofs]

        def total(points, q, off):
            return self.cost(points, y, w, q).sum() + lam_o * ((off - offsets0) ** 2).sum()

        points, out = self.keypoints(qpos, offsets, scale)
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
            qh[:, self.hinge_dofs] = qpos[:, hadr] - self.fk.qpos0[hadr]
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
            cpoints, cout = self.keypoints(cand, cand_off, scale)
            ccost = total(cpoints, cand, cand_off)
            if ccost < cost:
                qpos, offsets, points, out, cost = cand, cand_off, cpoints, cout, ccost
                lam = max(lam / 3, 1e-9)
            else:
                lam = min(lam * 4, 1e9)
        return qpos, offsets

    # -- initial root placement
    def rigid_init(
        self, frames: torch.Tensor, offsets: torch.Tensor, scale: float, kp_weight: torch.Tensor
    ) -> torch.Tensor:
        """Rest pose (qpos0) with each free joint moved by the rigid transform that best
        maps the rest-pose keypoints onto the data (Kabsch, on the weighted keypoints)."""
        n = len(frames)
        q0 = self.project(self.fk.qpos0[None].clone())
        p0, _ = self.keypoints(q0, offsets, scale)  # [1, K, 3]
        p0 = p0[0]
        qpos = q0.expand(n, -1).clone()
        y, w = self.y[frames], self.w[frames] * kp_weight
        for i in range(n):
            wi = w[i]
            if (wi > 0).sum() < 3:
                wi = self.w[frames[i]]
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

    def offset_step(self, qpos, frames, offsets0, scale) -> torch.Tensor:
        """Closed-form offsets [K, 3] (m) for poses qpos [N, nq] of frames ``frames``."""
        out = self.fk(qpos, scale=scale, quat=False)
        x = out.xpos[:, self.body_ids]  # [N, K, 3]
        R = out.xmat[:, self.body_ids]  # [N, K, 3, 3]
        local = (R.transpose(-1, -2) @ (self.y[frames] - x)[..., None])[..., 0]  # [N, K, 3]
        w = self.w[frames]
        lam = self.opts.offset_reg * len(frames)
        return ((w[..., None] * local).sum(0) + lam * offsets0) / (w.sum(0)[:, None] + lam)


def _usable_keypoints(
    keypoints: Keypoints,
    mapping: KeypointMapping,
    frames: np.ndarray,
    opts: FitOptions,
    offsets: np.ndarray | None,
) -> tuple[KeypointMapping, np.ndarray | None]:
    """The mapping (and ``offsets`` [K, 3]) without keypoints that have no valid frame.

    Raises:
        KeypointsError: such keypoints exist and ``opts.drop_missing_keypoints`` is False,
            or no mapped keypoint has a valid frame.
    """
    idx = keypoints.index(mapping.names)
    present = keypoints.valid[np.ix_(frames, idx)].any(axis=0)
    if present.all():
        return mapping, offsets
    missing = [n for n, ok in zip(mapping.names, present, strict=True) if not ok]
    where = f"keypoint file {keypoints.source!r}"
    if not present.any():
        raise KeypointsError(
            f"{where}: none of the {len(missing)} mapped keypoints has a valid frame among "
            f"the {len(frames)} fitted frames (NaN, marked missing or below the confidence "
            "threshold everywhere); check the file's missing-value markers, its z columns "
            "and confidence_threshold"
        )
    if not opts.drop_missing_keypoints:
        raise KeypointsError(
            f"{where}: keypoint(s) {missing} have no valid frame among the {len(frames)} "
            "fitted frames (NaN, marked missing or below the confidence threshold "
            "everywhere), so they cannot be fitted. Fix the file, remove them from the "
            "mapping (--mapping), or pass drop_missing_keypoints=True "
            "(--drop-missing-keypoints) to fit without them"
        )
    log.warning("%s: keypoint(s) %s have no valid frame; fitting without them", where, missing)
    keep = np.flatnonzero(present)
    mapping = replace(
        mapping,
        names=tuple(mapping.names[k] for k in keep),
        bodies=tuple(mapping.bodies[k] for k in keep),
        body_ids=mapping.body_ids[keep],
        offsets=mapping.offsets[keep],
    )
    return mapping, None if offsets is None else np.asarray(offsets)[keep]


def _stage_dofs(
    problem: _Problem, mapping: KeypointMapping, trunk: Sequence[str]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(root dofs, trunk dofs) as bool [nv], and trunk keypoint weights [K]."""
    kw = torch.as_tensor([1.0 if n in trunk else 0.0 for n in mapping.names], dtype=torch.float64)
    root = torch.zeros(problem.nv, dtype=torch.bool)
    for j in problem.free:
        d = int(problem.model.jnt_dofadr[j])
        root[d : d + 6] = True
    trunk_dofs = (problem.mask[kw > 0].sum(0) > 0) | root
    return root, trunk_dofs, kw


def _pose_pass_sequential(problem, mapping, frames, offsets, scale, trunk):
    """First pose pass: frames cut into contiguous chunks; within a chunk each frame starts
    from the previous frame's fit; chunks advance in parallel. Staged root/trunk/all."""
    opts = problem.opts
    root, trunk_dofs, kw = _stage_dofs(problem, mapping, trunk)
    T = len(frames)
    n_chunks = max(1, math.ceil(T / opts.chunk))
    starts = torch.arange(n_chunks) * math.ceil(T / n_chunks)
    length = math.ceil(T / n_chunks)
    qpos = torch.zeros(T, problem.nq, dtype=torch.float64)
    prev = None
    for t in range(length):
        idx = starts + t
        idx = idx[idx < T]
        f = frames[idx]
        if prev is None:
            q = problem.rigid_init(f, offsets, scale, kw)
        else:
            q = prev[: len(idx)].clone()
        q = problem.solve(q, f, offsets, scale, opts.lm_steps, dofs=root, kp_weight=kw)
        q = problem.solve(q, f, offsets, scale, opts.lm_steps, dofs=trunk_dofs, kp_weight=kw)
        q = problem.solve(q, f, offsets, scale, opts.lm_steps)
        qpos[idx] = q
        prev = q
    return qpos


def fit_keypoints(
    model: mujoco.MjModel,
    mapping: KeypointMapping,
    keypoints: Keypoints,
    options: FitOptions | None = None,
    frames: Sequence[int] | None = None,
    offsets: np.ndarray | None = None,
) -> KeypointFit:
    """Fit poses (and offsets, and scale if asked) to keypoints.

    Args:
        model: compiled body model (free root, hinge/slide joints).
        mapping: keypoint -> body and starting offset (m, unscaled body frame).
        keypoints: the data; positions [T, K', 3] in m, its names must include ``mapping.names``.
        options: `FitOptions`.
        frames: frames to fit (default: all).
        offsets: offsets [K, 3] (m, scaled body frame) to start from instead of
            ``mapping.offsets * scale`` (for example fitted on other frames, with
            ``options.fit_offsets=False``).

    Returns:
        `KeypointFit` over the fitted frames (without the keypoints dropped by
        ``options.drop_missing_keypoints``).

    Raises:
        KeypointsError: a mapped keypoint is missing from the data, or has no valid frame
            among ``frames`` (unless ``options.drop_missing_keypoints``), or none has.
    """
    opts = options or FitOptions()
    start = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(opts.threads)
    try:
        frames_t = torch.arange(keypoints.num_frames) if frames is None else torch.as_tensor(list(frames))
        mapping, offsets = _usable_keypoints(keypoints, mapping, frames_t.numpy(), opts, offsets)
        idx = keypoints.index(mapping.names)
        data, valid = keypoints.positions[:, idx], keypoints.valid[:, idx]
        problem = _Problem(model, mapping, data, valid, opts)
        trunk = (
            tuple(opts.trunk_keypoints)
            if opts.trunk_keypoints is not None
            else tuple(n for n in mapping.names if n in RAT23_TRUNK_KEYPOINTS)
        )
        if not trunk:
            trunk = mapping.names
        scale = opts.scale
        if scale is None:
            scale = fit_scale(problem, mapping, frames_t, trunk)
        offsets0 = torch.as_tensor(mapping.offsets * scale)
        off = offsets0.clone() if offsets is None else torch.as_tensor(offsets, dtype=torch.float64)
        qpos = _pose_pass_sequential(problem, mapping, frames_t, off, scale, trunk)
        if opts.fit_offsets:
            pos = {int(f): i for i, f in enumerate(frames_t)}
            osel = frames_t if opts.offset_frames is None else torch.as_tensor([int(f) for f in opts.offset_frames])
            rows = torch.as_tensor([pos[int(f)] for f in osel])
            if opts.joint_steps:
                q_sel, off = problem.solve_joint(qpos[rows], osel, off, offsets0, scale, opts.joint_steps)
                qpos[rows] = q_sel
            for i in range(opts.iterations):
                off = problem.offset_step(qpos[rows], osel, offsets0, scale)
                if i < opts.iterations - 1:
                    qpos = problem.solve(qpos, frames_t, off, scale, opts.lm_steps)
        qpos = problem.solve(qpos, frames_t, off, scale, opts.final_steps)
        points, _ = problem.keypoints(qpos, off, scale)
        resid = torch.linalg.norm(points - problem.y[frames_t], dim=-1).numpy()
        resid[~valid[frames_t.numpy()]] = np.nan
        q = qpos.numpy()
        lim = q[:, problem.lim_qadr.numpy()]
        bad = (lim < problem.lim_lo.numpy() - LIMIT_TOLERANCE) | (lim > problem.lim_hi.numpy() + LIMIT_TOLERANCE)
        return KeypointFit(
            qpos=q,
            offsets=off.numpy(),
            scale=float(scale),
            names=mapping.names,
            bodies=mapping.bodies,
            predicted=points.numpy(),
            residual=resid,
            limit_violations_pct=float(100.0 * bad.mean()) if bad.size else 0.0,
            seconds=time.perf_counter() - start,
            info={"free_qposadr": problem.free_qposadr, "frames": frames_t.numpy()},
        )
    finally:
        torch.set_num_threads(threads)


def fit_scale(
    problem: _Problem,
    mapping: KeypointMapping,
    frames: torch.Tensor,
    trunk,
    bounds=(0.6, 1.4),
    samples: int = 40,
    evals: int = 10,
    steps: int = 30,
) -> float:
    """Body scale by golden-section search over ``bounds``, cross-validated.

    ``2 * samples`` evenly spaced frames are split into two interleaved halves A and B.
    For each candidate scale, poses and offsets are fitted on A (``steps`` joint steps);
    then, with those offsets fixed, poses are fitted on B and the candidate is scored by
    B's mean squared keypoint error.

    Caveat: on rat23 this score is noisy (a few tenths of a mm between neighbouring
    scales, from per-frame local minima), and the search lands near 1.09, whose full fit
    (1.32 mm mean) is worse than stac-mjx's 0.9 (1.17 mm). Prefer a known scale."""
    picked = frames[torch.linspace(0, len(frames) - 1, min(2 * samples, len(frames))).long()]
    a_frames, b_frames = picked[0::2], picked[1::2]
    if len(b_frames) == 0:
        b_frames = a_frames

    def score(s: float) -> float:
        off0 = torch.as_tensor(mapping.offsets * s)
        q = _pose_pass_independent(problem, mapping, a_frames, off0, s, trunk)
        _, off = problem.solve_joint(q, a_frames, off0, off0, s, steps)
        q = _pose_pass_independent(problem, mapping, b_frames, off, s, trunk)
        q = problem.solve(q, b_frames, off, s, steps)
        points, _ = problem.keypoints(q, off, s)
        err = ((points - problem.y[b_frames]) ** 2).sum(-1)
        w = problem.w[b_frames]
        value = float((w * err).sum() / w.sum())
        log.info("scale %.3f: cross-validated rms keypoint error %.2f mm", s, 1000 * math.sqrt(value))
        return value

    golden = (math.sqrt(5) - 1) / 2
    a, b = bounds
    c, d = b - golden * (b - a), a + golden * (b - a)
    fc, fd = score(c), score(d)
    for _ in range(evals - 2):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - golden * (b - a)
            fc = score(c)
        else:
            a, c, fc = c, d, fd
            d = a + golden * (b - a)
            fd = score(d)
    scale = (a + b) / 2
    log.info("fitted body scale %.3f", scale)
    return scale


def _pose_pass_independent(problem, mapping, frames, offsets, scale, trunk):
    """Staged fit of independent frames (no warm start), each from a rigid placement."""
    opts = problem.opts
    root, trunk_dofs, kw = _stage_dofs(problem, mapping, trunk)
    q = problem.rigid_init(frames, offsets, scale, kw)
    q = problem.solve(q, frames, offsets, scale, opts.lm_steps, dofs=root, kp_weight=kw)
    q = problem.solve(q, frames, offsets, scale, opts.lm_steps, dofs=trunk_dofs, kp_weight=kw)
    return problem.solve(q, frames, offsets, scale, opts.lm_steps)


# ------------------------------------------------------------------------- clips, CLI
def resample_qpos(qpos: np.ndarray, fps: float, fps_out: float, free_qposadr: Sequence[int]) -> np.ndarray:
    """Resample poses [T, nq] from ``fps`` to ``fps_out`` (Hz) over the same time span.

    Linear interpolation per coordinate; free-joint quaternions are made sign-continuous
    first and renormalised after (a first-order slerp).
    """
    qpos = np.array(qpos, dtype=np.float64)
    if abs(fps_out - fps) < 1e-9 * fps:
        return qpos
    for a in free_qposadr:
        quat = qpos[:, a + 3 : a + 7]
        for t in range(1, len(quat)):
            if np.dot(quat[t], quat[t - 1]) < 0:
                quat[t] = -quat[t]
    t_in = np.arange(len(qpos)) / fps
    t_out = np.arange(0.0, t_in[-1] + 1e-9, 1.0 / fps_out)
    out = np.stack([np.interp(t_out, t_in, qpos[:, i]) for i in range(qpos.shape[1])], axis=1)
    for a in free_qposadr:
        out[:, a + 3 : a + 7] /= np.linalg.norm(out[:, a + 3 : a + 7], axis=1, keepdims=True)
    return out


def fit_to_clips(
    fit: KeypointFit,
    body: str,
    fps: float,
    fps_out: float | None = None,
    name: str = "keypoint_fit",
    split: str = "train",
    segment_seconds: float | None = None,
    val_fraction: float = 0.0,
    meta: dict | None = None,
) -> list:
    """`ReferenceClip`s of the fitted poses, for the unscaled body ``body``.

    The clips' qpos is `KeypointFit.clip_qpos` (free-joint position / scale, angles as
    fitted) resampled to ``fps_out``; qvel, xpos, xquat and site positions come from
    replaying it through MuJoCo (`ReferenceClip.from_qpos`). The scale, keypoint names,
    bodies and fitted offsets (JSON, m, body frame of the scaled body) and the residuals
    are stored in each clip's ``meta`` attributes.

    Args:
        fit: the fit.
        body: registry key of the body.
        fps: frame rate of the fitted frames (Hz); ``fps_out`` that of the clips.
        name: clip name; segments are named ``<name>_000``, ``<name>_001``...
        split: split of the clip when it is not segmented.
        segment_seconds: cut the recording into clips of this duration (s); a remainder
            shorter than half a segment (or 2 frames) joins the last one. None: one clip.
        val_fraction: with segments, the last ``ceil(val_fraction * n)`` segments are the
            ``"val"`` split (held out in time), the others ``"train"``.
    """
    from neuromimic.data.clips import ReferenceClip

    fps_out = float(fps_out or fps)
    qpos = resample_qpos(fit.clip_qpos(), fps, fps_out, fit.info["free_qposadr"])
    qpos, cleared = _clear_floor_with_unobserved_joints(body, qpos, fit.bodies)
    report = fit.report()
    info = {
        "source": "neuromimic.keypoints.fit",
        "body_scale": float(fit.scale),
        "keypoint_names": _json(list(fit.names)),
        "keypoint_bodies": _json(list(fit.bodies)),
        "keypoint_offsets_m": _json(np.round(fit.offsets, 7)),
        "keypoint_offsets_frame": "body frame of the body scaled by body_scale, m",
        "qpos_note": "for the unscaled body: free-joint position = fitted position / body_scale",
        "input_fps": float(fps),
        # HDF5 attributes hold no None: NaN there means "no valid keypoint".
        "mean_residual_mm": _nan_if_none(report["mean_residual_mm"]),
        "p95_residual_mm": _nan_if_none(report["p95_residual_mm"]),
        **cleared,
        **(meta or {}),
    }
    if segment_seconds is None:
        return [ReferenceClip.from_qpos(body, qpos, fps_out, name=name, split=split, meta=info)]
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1); got {val_fraction}")
    length = round(segment_seconds * fps_out)
    if length < 2:
        raise ValueError(f"segment_seconds={segment_seconds} gives fewer than 2 frames at {fps_out:g} Hz")
    bounds = list(range(0, len(qpos), length)) + [len(qpos)]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] < max(2, length / 2):
        del bounds[-2]
    count = len(bounds) - 1
    num_val = math.ceil(val_fraction * count) if count > 1 else 0
    return [
        ReferenceClip.from_qpos(
            body,
            qpos[bounds[i] : bounds[i + 1]],
            fps_out,
            name=f"{name}_{i:03d}",
            split="val" if i >= count - num_val else "train",
            meta={**info, "segment": i, "first_frame": bounds[i]},
        )
        for i in range(count)
    ]


def _clear_floor_with_unobserved_joints(
    body: str, qpos: np.ndarray, keypoint_bodies: Sequence[str]
) -> tuple[np.ndarray, dict]:
    """``qpos`` [T, nq] of the unscaled body with the joints that move no keypoint (a
    rat's tail) posed to clear the floor (`neuromimic.data.contacts.clear_floor`), and
    what was done, for the clips' meta."""
    from neuromimic.bodies import get_body
    from neuromimic.data.contacts import clear_floor, unobserved_dofs

    model = get_body(body).load_model()
    dofs = unobserved_dofs(model, [model.body(name).id for name in keypoint_bodies])
    cleared, depth_left = clear_floor(model, qpos, dofs)
    names = sorted({model.joint(model.dof_jntid[d]).name for d in np.flatnonzero(dofs)})
    changed = np.abs(cleared - qpos).max(axis=1) > 0
    log.info(
        "floor: joints without keypoints (%d) moved in %d of %d frames to clear the floor",
        len(names),
        changed.sum(),
        len(qpos),
    )
    return cleared, {
        "floor_cleared_by_joints": _json(names),
        "floor_cleared_frames": int(changed.sum()),
        "floor_depth_left_max_mm": round(float(depth_left.max(initial=0.0)) * 1e3 * get_body(body).length_unit_m, 3),
    }


def _json(value: Any) -> str:
    """Valid JSON of ``value`` (non-finite floats as null; never ``NaN``)."""
    return json.dumps(json_safe(value), allow_nan=False)


def _nan_if_none(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def body_keypoint_size(model: mujoco.MjModel, mapping: KeypointMapping, qpos: np.ndarray, scale: float = 1.0) -> float:
    """Size of a body's mapped keypoints in a pose, measured like `Keypoints.size`.

    Args:
        model: the body's compiled model.
        mapping: its keypoints (bodies and offsets, m, unscaled body frame).
        qpos: the pose [nq] (the body's rest pose).
        scale: body scale factor the size is multiplied by.

    Returns:
        The largest distance between two mapped keypoints, in m.
    """
    data = mujoco.MjData(model)
    data.qpos[:] = qpos
    mujoco.mj_kinematics(model, data)
    rot = data.xmat[mapping.body_ids].reshape(-1, 3, 3)
    points = data.xpos[mapping.body_ids] + np.einsum("kij,kj->ki", rot, mapping.offsets)
    return scale * cloud_size(points[None], np.ones((1, len(points)), dtype=bool))


def _has_floor(model: mujoco.MjModel) -> bool:
    """Whether the model has a free root over a world plane (a body that stands on a floor)."""
    planes = (model.geom_type == mujoco.mjtGeom.mjGEOM_PLANE) & (model.geom_bodyid == 0)
    return bool(planes.any()) and bool((model.jnt_type == mujoco.mjtJoint.mjJNT_FREE).any())


def check_keypoints_for_body(
    kp: Keypoints, body: str, model: mujoco.MjModel, mapping: KeypointMapping, qpos: np.ndarray, scale: float | None
) -> None:
    """Run the input checks `fit_file` makes before fitting ``kp`` to a body.

    The size of the mapped keypoints must be plausible for the body (`check_plausible_size`
    against `body_keypoint_size` in the rest pose ``qpos``, at ``scale``, 1 when the scale
    is fitted), whatever the units came from; and for a body on a floor the data must
    not lie below it (`check_up_axis`).

    Raises:
        KeypointsError: a mapped keypoint is not in the data, or the data is implausible;
            the message names the likely fix.
    """
    size = body_keypoint_size(model, mapping, qpos, 1.0 if scale is None else scale)
    scaled = "" if scale is None else f" at scale {scale:g}"
    subset = kp.select(mapping.names)
    check_plausible_size(subset, size, body=f"the {body} body (its mapped keypoints in the rest pose{scaled})")
    if _has_floor(model):
        check_up_axis(subset, floor=f"the floor of the {body} body")


def fit_file(
    body: str,
    input: str,
    output: str,
    format: str | None = None,
    units: str | None = None,
    fps: float | None = None,
    fps_out: float | None = None,
    mapping: str | None = None,
    scale: float | None = None,
    iterations: int = 1,
    name: str | None = None,
    split: str = "train",
    segment_seconds: float | None = None,
    val_fraction: float = 0.0,
    drop_missing_keypoints: bool = False,
    up_axis: str = "z",
    skeleton: str | None = None,
    keypoint_names: Sequence[str] | None = None,
    individual: str | None = None,
    confidence_threshold: float | None = None,
    max_gap_frames: int | None = None,
) -> dict:
    """``neuromimic keypoints fit``: read a keypoint file, fit it, write a clip; returns the report.

    Before fitting, the data is checked against the body (`check_keypoints_for_body`):
    its size must be plausible whatever the units came from (so ``units="m"`` for a file
    in mm is refused with the factor), and for a body on a floor it must not lie below it.

    Args:
        body: registry key of the body (for example ``"rodent"``).
        input: keypoint file (any format `read_keypoints` reads).
        output: clip ``.h5`` to write; with ``segment_seconds``, a directory that gets one
            ``<name>_<i>.h5`` per segment.
        format, units, fps: as for `read_keypoints` (where the file does not say them).
        fps_out: frame rate of the clip (Hz), default the input's.
        mapping: YAML mapping file, default the body's ``keypoint_sites``.
        scale: body scale factor; None fits it.
        iterations: pose/offset alternations.
        name, split: of the clip (name defaults to the input file's stem).
        segment_seconds, val_fraction: cut the clip into segments, the last of them held
            out (`fit_to_clips`).
        drop_missing_keypoints: fit without keypoints that have no valid frame instead of
            refusing the file (`FitOptions.drop_missing_keypoints`).
        up_axis: the file's axis that points up (`read_keypoints`).
        skeleton, keypoint_names, individual: as for `read_keypoints` (names of DANNCE
            and sleap-anipose keypoints, the animal of a multi-animal file).
        confidence_threshold, max_gap_frames: as for `read_keypoints`; None keeps its
            defaults.

    Returns:
        The fit's report (valid JSON: no NaN), with the output and clip names.

    Raises:
        KeypointsError: the file or the options are wrong; the message says how to fix it.
    """
    from neuromimic.bodies import get_body
    from neuromimic.data.clips import save_clips
    from neuromimic.keypoints.readers import read_keypoints

    spec = get_body(body)
    model = spec.load_model()
    keypoint_map = load_mapping(model, spec.keypoint_sites, mapping)
    thresholds = {"confidence_threshold": confidence_threshold, "max_gap_frames": max_gap_frames}
    kp = read_keypoints(
        input,
        format=format,
        units=units,
        fps=fps,
        up_axis=up_axis,
        skeleton=skeleton,
        keypoint_names=keypoint_names,
        individual=individual,
        **{key: value for key, value in thresholds.items() if value is not None},
    )
    check_keypoints_for_body(kp, body, model, keypoint_map, spec.rest_qpos(model), scale)
    options = FitOptions(scale=scale, iterations=iterations, drop_missing_keypoints=drop_missing_keypoints)
    fit = fit_keypoints(model, keypoint_map, kp, options)
    clips = fit_to_clips(
        fit,
        body,
        kp.fps,
        fps_out,
        name=name or Path(input).stem,
        split=split,
        segment_seconds=segment_seconds,
        val_fraction=val_fraction,
        meta={"input": str(input)},
    )
    if segment_seconds is None:
        clips[0].save(output)
    else:
        save_clips(clips, output)
    report = fit.report()
    report["output"] = str(output)
    report["clips"] = {clip.name: clip.split for clip in clips}
    report["seconds"] = round(fit.seconds, 2)
    report = json_safe(report)
    json.dumps(report, allow_nan=False)  # the CLI prints it: it must be valid JSON
    return report
