"""Fit a body's joint angles to 3-D keypoints, in the spirit of STAC (stac-mjx): `fit_keypoints`.

The problem and its solvers are `neuromimic.keypoints.solver.KeypointProblem`; this module
runs them in three parts:

1. **Pose passes** (per frame, batched over frames in torch). The first pass is staged
   like STAC: root only (trunk keypoints), then root + trunk joints (trunk keypoints),
   then every joint (every keypoint; the limbs are independent blocks of that problem).
   In the first pass every frame starts from the previous frame's fit (frames are cut
   into contiguous chunks that are swept in parallel; the first frame of a chunk starts
   from the model's rest pose placed by a rigid (Kabsch) fit of the trunk keypoints).
   Later passes start each frame from its own previous fit.
2. **Offsets**: first poses and offsets are refined *together* (``joint_steps``
   Levenberg-Marquardt steps over the offset frames); then ``iterations`` STAC
   alternations: with the poses fixed each offset is the (regularised, towards its
   starting value) least-squares solution over the offset frames in closed form,
   followed by a pose pass. Plain alternation converges slowly (on rat23: 1.54 mm mean
   after 3 alternations, 1.42 mm after 6); the joint step reaches about 1.17 mm.
3. **Scale**: given (stac-mjx's rodent uses 0.9), or searched for (golden section,
   cross-validated on a sample of frames, see `fit_scale`; noisy on real data).

`fit_keypoints` returns a `KeypointFit` (poses for the scaled model, offsets, scale,
residuals); `KeypointFit.clip_qpos` converts the poses to the unscaled body (root
position divided by the scale; angles unchanged), and `neuromimic.data.keypoint_clips`
makes reference clips of them.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import mujoco
import numpy as np
import torch

from neuromimic.keypoints.keypoints import Keypoints
from neuromimic.keypoints.mapping import KeypointMapping, usable_mapping
from neuromimic.keypoints.solver import KeypointProblem

log = logging.getLogger(__name__)

#: Tolerance (rad or m) beyond ``jnt_range`` that counts as a joint-limit violation.
LIMIT_TOLERANCE = 1e-9


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
        trunk_keypoints: keypoints of the root and trunk stages, usually the body's
            `Body.trunk_keypoints`; those not in the mapping are ignored, and when none
            is left (the default) every keypoint is used.
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
    trunk_keypoints: Sequence[str] = ()
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
        info: ``{"free_qposadr": qpos address of each free joint, "frames": the fitted
            frames' indices in the data}``.
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
        mapping, offsets = usable_mapping(keypoints, mapping, frames_t.numpy(), opts.drop_missing_keypoints, offsets)
        idx = keypoints.index(mapping.names)
        data, valid = keypoints.positions[:, idx], keypoints.valid[:, idx]
        problem = KeypointProblem(model, mapping, data, valid, pose_reg=opts.pose_reg, offset_reg=opts.offset_reg)
        trunk = tuple(n for n in mapping.names if n in opts.trunk_keypoints) or mapping.names
        scale = opts.scale
        if scale is None:
            scale = fit_scale(problem, mapping, frames_t, trunk, opts.lm_steps)
        offsets0 = torch.as_tensor(mapping.offsets * scale)
        off = offsets0.clone() if offsets is None else torch.as_tensor(offsets, dtype=torch.float64)
        qpos = _pose_pass_sequential(problem, mapping, frames_t, off, scale, trunk, opts)
        if opts.fit_offsets:
            pos = {int(f): i for i, f in enumerate(frames_t)}
            osel = frames_t if opts.offset_frames is None else torch.as_tensor([int(f) for f in opts.offset_frames])
            rows = torch.as_tensor([pos[int(f)] for f in osel])
            if opts.joint_steps:
                q_sel, off = problem.solve_poses_and_offsets(qpos[rows], osel, off, offsets0, scale, opts.joint_steps)
                qpos[rows] = q_sel
            for i in range(opts.iterations):
                off = problem.solve_offsets(qpos[rows], osel, offsets0, scale)
                if i < opts.iterations - 1:
                    qpos = problem.solve_poses(qpos, frames_t, off, scale, opts.lm_steps)
        qpos = problem.solve_poses(qpos, frames_t, off, scale, opts.final_steps)
        points, _ = problem.model_keypoints(qpos, off, scale)
        resid = torch.linalg.norm(points - problem.targets[frames_t], dim=-1).numpy()
        resid[~valid[frames_t.numpy()]] = np.nan
        q = qpos.numpy()
        lim = q[:, problem.limited_qposadr.numpy()]
        bad = (lim < problem.range_low.numpy() - LIMIT_TOLERANCE) | (lim > problem.range_high.numpy() + LIMIT_TOLERANCE)
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


def _stage_dofs(
    problem: KeypointProblem, mapping: KeypointMapping, trunk: Sequence[str]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(root dofs, trunk dofs) as bool [nv], and trunk keypoint weights [K]."""
    kw = torch.as_tensor([1.0 if n in trunk else 0.0 for n in mapping.names], dtype=torch.float64)
    root = torch.zeros(problem.nv, dtype=torch.bool)
    for j in problem.free_joints:
        d = int(problem.model.jnt_dofadr[j])
        root[d : d + 6] = True
    trunk_dofs = (problem.dof_moves_keypoint[kw > 0].sum(0) > 0) | root
    return root, trunk_dofs, kw


def _pose_pass_sequential(
    problem: KeypointProblem,
    mapping: KeypointMapping,
    frames: torch.Tensor,
    offsets: torch.Tensor,
    scale: float,
    trunk: Sequence[str],
    opts: FitOptions,
) -> torch.Tensor:
    """First pose pass: frames cut into contiguous chunks; within a chunk each frame starts
    from the previous frame's fit; chunks advance in parallel. Staged root/trunk/all."""
    stages = _stage_dofs(problem, mapping, trunk)
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
            q = problem.rigid_placement(f, offsets, scale, stages[2])
        else:
            q = prev[: len(idx)].clone()
        q = _solve_staged(problem, q, f, offsets, scale, opts.lm_steps, stages)
        qpos[idx] = q
        prev = q
    return qpos


def _pose_pass_independent(
    problem: KeypointProblem,
    mapping: KeypointMapping,
    frames: torch.Tensor,
    offsets: torch.Tensor,
    scale: float,
    trunk: Sequence[str],
    lm_steps: int,
) -> torch.Tensor:
    """Staged fit of independent frames (no warm start), each from a rigid placement."""
    stages = _stage_dofs(problem, mapping, trunk)
    q = problem.rigid_placement(frames, offsets, scale, stages[2])
    return _solve_staged(problem, q, frames, offsets, scale, lm_steps, stages)


def _solve_staged(
    problem: KeypointProblem,
    qpos: torch.Tensor,
    frames: torch.Tensor,
    offsets: torch.Tensor,
    scale: float,
    lm_steps: int,
    stages: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
) -> torch.Tensor:
    """Poses [N, nq] fitted to ``frames`` from ``qpos`` in three stages: the root alone, then
    the trunk's DoFs, both on the trunk keypoints (``stages`` from `_stage_dofs`), then every
    DoF on every keypoint."""
    root, trunk_dofs, trunk_weights = stages
    q = problem.solve_poses(qpos, frames, offsets, scale, lm_steps, dofs=root, keypoint_weights=trunk_weights)
    q = problem.solve_poses(q, frames, offsets, scale, lm_steps, dofs=trunk_dofs, keypoint_weights=trunk_weights)
    return problem.solve_poses(q, frames, offsets, scale, lm_steps)


def fit_scale(
    problem: KeypointProblem,
    mapping: KeypointMapping,
    frames: torch.Tensor,
    trunk: Sequence[str],
    lm_steps: int,
    bounds: tuple[float, float] = (0.6, 1.4),
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
    (1.32 mm mean) is worse than stac-mjx's 0.9 (1.17 mm). Prefer a known scale.

    Args:
        problem: the problem, its data for every frame.
        mapping: its keypoints, with their starting offsets (m, unscaled body frame).
        frames: the frames [N] to sample from.
        trunk: keypoints of the root and trunk stages of the pose passes.
        lm_steps: Levenberg-Marquardt steps per stage of the pose passes.
        bounds: the interval searched.
        samples: frames per half.
        evals: scales tried.
        steps: joint pose and offset steps on A, and pose steps on B.

    Returns:
        The scale factor.
    """
    picked = frames[torch.linspace(0, len(frames) - 1, min(2 * samples, len(frames))).long()]
    a_frames, b_frames = picked[0::2], picked[1::2]
    if len(b_frames) == 0:
        b_frames = a_frames

    def score(s: float) -> float:
        off0 = torch.as_tensor(mapping.offsets * s)
        q = _pose_pass_independent(problem, mapping, a_frames, off0, s, trunk, lm_steps)
        _, off = problem.solve_poses_and_offsets(q, a_frames, off0, off0, s, steps)
        q = _pose_pass_independent(problem, mapping, b_frames, off, s, trunk, lm_steps)
        q = problem.solve_poses(q, b_frames, off, s, steps)
        points, _ = problem.model_keypoints(q, off, s)
        err = ((points - problem.targets[b_frames]) ** 2).sum(-1)
        w = problem.weights[b_frames]
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
