"""Synthetic center-out reaching clips for the mouse forelimb.

Procedure (deterministic, no randomness):

1. Start pose: damped-least-squares inverse kinematics (IK) from the middle of the joint
   ranges puts the wrist site on ``REACH_CENTER``, the centre of the eight published
   targets.
2. Wrist path, sampled at ``fps`` = 100 Hz (the control rate: 2 physics steps of 5 ms)
   for ``DURATION`` = 1.0 s (101 frames): hold at the centre until ``REACH_ONSET``
   (0.1 s); minimum-jerk straight line ``x(s) = x0 + (x1 - x0)(10 s^3 - 15 s^4 + 6 s^5)``
   to target k in ``reach_duration`` seconds; hold at the target; at ``RETURN_ONSET``
   (0.55 s) a minimum-jerk line back to the centre, also in ``reach_duration``; hold
   to the end. Target k lies at ``REACH_CENTER + REACH_RADIUS (cos(k pi/4), 0,
   sin(k pi/4))``: the x-z plane at ``y = REACH_CENTER[1]``, the published targets in
   their published order.
3. Joint angles per frame: damped-least-squares IK on the wrist site with
   `mujoco.mj_jacSite`, warm-started from the previous frame, clamped to the joint
   ranges, iterated until the wrist error is below ``IK_TOLERANCE`` (1e-9 m; the
   largest residual is stored in ``meta["ik_max_residual_m"]``). In every frame where
   the target moves, one small pull toward the start pose, projected into the
   Jacobian's null space, keeps the arm from drifting along its redundant direction
   (4 joints for a 3-D position); holds leave the joints exactly still. The arm ends
   within about 0.6 degrees of its start pose.
4. `ReferenceClip.from_qpos` replays the joint angles: ``qvel`` by central finite
   differences, ``xpos``, ``xquat``, ``site_pos_w`` by `mujoco.mj_kinematics`.

Reach durations 0.20, 0.25, 0.30 and 0.40 s make the ``"train"`` split, 0.35 s the
``"val"`` split: 8 targets x 5 durations = 40 clips named ``reach_t{k}_d{duration:.2f}``.
"""

from __future__ import annotations

import logging

import mujoco
import numpy as np

from neuromimic.bodies import get_body
from neuromimic.bodies.mouse_forelimb import REACH_CENTER, REACH_RADIUS
from neuromimic.data.clips import ReferenceClip

log = logging.getLogger(__name__)

#: Body the reaching clips are made for.
BODY = "mouse_forelimb"
#: Frame rate of the clips in Hz (the control rate: 2 physics steps of 5 ms).
FPS = 100.0
#: Clip duration in seconds (first to last frame).
DURATION = 1.0
#: Time of the reach onset in seconds (the wrist holds at the centre before).
REACH_ONSET = 0.1
#: Time of the return onset in seconds (the wrist holds at the target before).
RETURN_ONSET = 0.55
#: Number of targets on the circle.
NUM_TARGETS = 8
#: Reach (and return) durations in seconds of the training clips.
TRAIN_DURATIONS = (0.20, 0.25, 0.30, 0.40)
#: Reach (and return) durations in seconds of the held-out clips.
VAL_DURATIONS = (0.35,)
#: Wrist position error in metres below which IK stops (the brief asks for < 1e-6 m;
#: converged damped least squares reaches this at no extra cost).
IK_TOLERANCE = 1e-9
#: Damping of the least-squares step in metres (small next to the Jacobian's ~1e-2 m/rad).
IK_DAMPING = 1e-5
#: Fraction of the distance to the start pose removed per moving frame in the null space.
IK_NULLSPACE_GAIN = 0.1
#: Iteration limit per frame.
IK_MAX_ITERATIONS = 500


class IKError(RuntimeError):
    """Inverse kinematics did not reach a target within tolerance (unreachable target)."""


def reach_targets(
    center: tuple[float, float, float] = REACH_CENTER,
    radius: float = REACH_RADIUS,
    num_targets: int = NUM_TARGETS,
) -> np.ndarray:
    """Targets on a circle in the x-z plane, at angles ``2 pi k / num_targets``.

    Args:
        center: circle centre (x, y, z) in m, world frame.
        radius: circle radius in m.
        num_targets: number of targets.

    Returns:
        Target positions [num_targets, 3] in m, world frame.
    """
    angle = 2.0 * np.pi * np.arange(num_targets) / num_targets
    offset = np.stack([np.cos(angle), np.zeros_like(angle), np.sin(angle)], axis=1)
    return np.asarray(center, dtype=np.float64) + radius * offset


def min_jerk(s: np.ndarray) -> np.ndarray:
    """Minimum-jerk position profile ``10 s^3 - 15 s^4 + 6 s^5``, with s clamped to [0, 1].

    Args:
        s: normalised time [...], any shape.

    Returns:
        Fraction of the path covered [...], in [0, 1].
    """
    s = np.clip(s, 0.0, 1.0)
    return s**3 * (10.0 - 15.0 * s + 6.0 * s**2)


def wrist_path(
    target: np.ndarray,
    reach_duration: float,
    center: tuple[float, float, float] = REACH_CENTER,
    fps: float = FPS,
    duration: float = DURATION,
    reach_onset: float = REACH_ONSET,
    return_onset: float = RETURN_ONSET,
) -> np.ndarray:
    """Center-out-and-back wrist path with minimum-jerk movements and holds.

    Args:
        target: reach target [3] in m, world frame.
        reach_duration: duration of the outward and of the return movement in s.
        center: start and end point [3] in m, world frame.
        fps: frame rate in Hz.
        duration: time from the first to the last frame in s.
        reach_onset: start of the outward movement in s.
        return_onset: start of the return movement in s; must leave the outward movement
            time to finish and the return movement time to finish before ``duration``.
            All times must be whole numbers of frames.

    Returns:
        Wrist positions [T, 3] in m, world frame, ``T = round(duration * fps) + 1``.
    """
    frames = {}
    for what, seconds in [
        ("duration", duration),
        ("reach_onset", reach_onset),
        ("return_onset", return_onset),
        ("reach_duration", reach_duration),
    ]:
        frames[what] = round(seconds * fps)
        if abs(frames[what] - seconds * fps) > 1e-6 or frames[what] < 0:
            raise ValueError(f"{what} = {seconds} s is not a whole number of frames at {fps} Hz")
    if (
        frames["reach_onset"] + frames["reach_duration"] > frames["return_onset"]
        or frames["return_onset"] + frames["reach_duration"] > frames["duration"]
        or frames["reach_duration"] == 0
    ):
        raise ValueError(
            f"a {reach_duration} s reach from {reach_onset} s and return from {return_onset} s "
            f"do not fit in {duration} s"
        )
    # Normalised time in whole frames, so that s is exactly 0 or 1 in the holds.
    k = np.arange(frames["duration"] + 1)
    out = min_jerk((k - frames["reach_onset"]) / frames["reach_duration"])
    back = min_jerk((k - frames["return_onset"]) / frames["reach_duration"])
    center = np.asarray(center, dtype=np.float64)
    return center + (out - back)[:, None] * (np.asarray(target, dtype=np.float64) - center)


def solve_ik(
    model: mujoco.MjModel,
    site: str,
    targets: np.ndarray,
    qpos_init: np.ndarray,
    qpos_ref: np.ndarray,
    tolerance: float = IK_TOLERANCE,
) -> tuple[np.ndarray, np.ndarray]:
    """Joint angles that put a site on each target, frame by frame.

    Each frame starts from the previous frame's solution (the first from ``qpos_init``)
    and iterates damped least squares, ``dq = J^T (J J^T + d^2 I)^-1 e``, clamping limited
    joints to their ranges, until ``|e| < tolerance``. The first iteration of the first
    frame and of every frame whose target differs from the previous frame's adds a pull
    ``g (I - J^+ J)(qpos_ref - q)`` toward ``qpos_ref`` in the Jacobian's null space,
    which keeps the redundant direction near ``qpos_ref`` without moving the site. The
    model must have hinge or slide joints only (``nq == nv``).

    Args:
        model: the body's model.
        site: name of the site to place.
        targets: site targets [T, 3] in m, world frame.
        qpos_init: starting joint angles [nq] in rad.
        qpos_ref: joint angles [nq] in rad the redundant directions are pulled toward.
        tolerance: site position error in m below which a frame is done.

    Returns:
        ``(qpos [T, nq] in rad, residual [T] in m)``.

    Raises:
        IKError: a frame did not converge in ``IK_MAX_ITERATIONS`` iterations.
    """
    if model.nq != model.nv:
        raise ValueError("solve_ik handles hinge and slide joints only (nq == nv)")
    data = mujoco.MjData(model)
    site_id = model.site(site).id
    limited = model.jnt_limited.astype(bool)
    lower = np.where(limited, model.jnt_range[:, 0], -np.inf)[model.dof_jntid]
    upper = np.where(limited, model.jnt_range[:, 1], np.inf)[model.dof_jntid]
    jac = np.zeros((3, model.nv))
    eye = np.eye(model.nv)
    q = np.clip(np.asarray(qpos_init, dtype=np.float64), lower, upper)
    qpos = np.empty((len(targets), model.nq))
    residual = np.empty(len(targets))
    targets = np.asarray(targets, dtype=np.float64)
    for k, target in enumerate(targets):
        # One null-space pull per frame in which the target moves (none in holds, so the
        # arm stays still there), then plain damped least squares: repeating the pull
        # would floor the residual through its second-order effect on the site.
        pull = k == 0 or not np.array_equal(target, targets[k - 1])
        for iteration in range(IK_MAX_ITERATIONS):
            data.qpos[:] = q
            mujoco.mj_kinematics(model, data)
            error = target - data.site_xpos[site_id]
            if (iteration > 0 or not pull) and np.linalg.norm(error) < tolerance:
                break
            mujoco.mj_comPos(model, data)
            mujoco.mj_jacSite(model, data, jac, None, site_id)
            pinv = jac.T @ np.linalg.inv(jac @ jac.T + IK_DAMPING**2 * np.eye(3))
            step = pinv @ error
            if pull and iteration == 0:
                step += IK_NULLSPACE_GAIN * (eye - pinv @ jac) @ (qpos_ref - q)
            q = np.clip(q + step, lower, upper)
        else:
            raise IKError(
                f"IK for site {site!r} did not reach target {target} (frame {k}) within "
                f"{tolerance} m in {IK_MAX_ITERATIONS} iterations; error "
                f"{np.linalg.norm(error):.3g} m. Is the target within reach?"
            )
        qpos[k] = q
        residual[k] = np.linalg.norm(error)
    return qpos, residual


def start_pose(model: mujoco.MjModel, site: str = "wrist") -> np.ndarray:
    """Joint angles [nq] in rad that put ``site`` on ``REACH_CENTER``.

    IK starts from the middle of the joint ranges and pulls toward it in the null space,
    so the start pose stays away from the joint limits.
    """
    middle = model.jnt_range.mean(axis=1)[model.dof_jntid]
    qpos, _ = solve_ik(model, site, np.asarray([REACH_CENTER]), middle, middle)
    return qpos[0]


def make_reach_clip(
    model: mujoco.MjModel,
    qpos_start: np.ndarray,
    target_index: int,
    reach_duration: float,
    split: str,
) -> ReferenceClip:
    """One center-out-and-back reaching clip (procedure in the module docstring).

    Args:
        model: the mouse forelimb model.
        qpos_start: start pose [nq] in rad, from `start_pose`.
        target_index: target k in ``0 .. NUM_TARGETS - 1``.
        reach_duration: duration of the outward and of the return movement in s.
        split: ``"train"`` or ``"val"``.
    """
    body = get_body(BODY)
    (site,) = body.end_effector_sites
    target = reach_targets()[target_index]
    path = wrist_path(target, reach_duration)
    qpos, residual = solve_ik(model, site, path, qpos_start, qpos_start)
    meta: dict[str, str | float | int] = {
        "procedure": "synthetic center-out reach: min-jerk wrist path + DLS IK (neuromimic.data.reach)",
        "target_index": target_index,
        "target_x_m": float(target[0]),
        "target_y_m": float(target[1]),
        "target_z_m": float(target[2]),
        "reach_onset_s": REACH_ONSET,
        "return_onset_s": RETURN_ONSET,
        "reach_duration_s": float(reach_duration),
        "ik_tolerance_m": IK_TOLERANCE,
        "ik_max_residual_m": float(residual.max()),
    }
    return ReferenceClip.from_qpos(
        BODY,
        qpos,
        FPS,
        name=f"reach_t{target_index}_d{reach_duration:.2f}",
        split=split,
        meta=meta,
    )


def make_reach_clips() -> list[ReferenceClip]:
    """All 40 reaching clips: 8 targets x (4 train + 1 val) durations, in name order."""
    model = get_body(BODY).load_model()
    qpos_start = start_pose(model)
    durations = [(d, "train") for d in TRAIN_DURATIONS] + [(d, "val") for d in VAL_DURATIONS]
    clips = [
        make_reach_clip(model, qpos_start, k, d, split) for k in range(NUM_TARGETS) for d, split in sorted(durations)
    ]
    log.info(
        "made %d reaching clips; max IK residual %.3g m",
        len(clips),
        max(float(c.meta["ik_max_residual_m"]) for c in clips),
    )
    return clips
