"""A walking reference for MyoLegs, and MuscleMimic's MyoFullBody, from one recorded human
gait cycle.

The source is MyoSuite's ``sample_gait_cycle.csv`` (one real cycle, 247 frames; in the
``myosuite`` wheel at ``myosuite/envs/myo/assets/leg/sample_gait_cycle.csv``, Apache-2.0).
neuromimic does not depend on MyoSuite: users pass the file's path
(``neuromimic clips gait --input PATH``), and any CSV with the same columns works.

What the file holds, read from MyoSuite's ``run_track.py`` (which initialises its walker
from it) and checked against the file's own numbers:

- ``hip_flexion/adduction/rotation_l|r``, ``knee_angle_l``, ``ankle_angle_l`` (rad), and
  ``osl_knee_angle_r``, ``osl_ankle_angle_r``: MyoSuite's right leg is a prosthesis (OSL);
  its knee and ankle columns have the biological sign convention and ranges and lag the
  left leg by half a cycle, so they drive MyoLegs' ``knee_angle_r`` and ``ankle_angle_r``.
- ``pelvis_euler_roll/pitch/yaw`` (rad): the root orientation as *extrinsic* x-y-z angles
  (scipy ``"xyz"``; MyoSuite's ``intrinsic_euler2quat`` is extrinsic despite its name) of a
  pelvis frame with x forward, y left, z up. The yaw is about -pi/2: MyoSuite's walker
  faces world -y.
- ``pelvis_vel_X/Y/Z`` (m/s): pelvis velocity in the heading frame (x forward, y left).
  The lateral velocity points toward the stance foot, as a pelvis sways.
- ``l|r_foot_relative_X/Y/Z`` (m): foot positions relative to the pelvis. Not used for
  the pose (the joint angles define it); their Y is mirrored (the left foot has negative Y).

**The frame rate is not stated in the file or in MyoSuite.** During mid-stance a foot is
still on the ground, so its velocity relative to the pelvis is minus the pelvis velocity;
a least-squares fit of the forward foot displacement per frame against the pelvis
velocity gives 201 Hz from the left stance and 203 Hz from the right. Replayed on
MyoLegs, the stance foot slips least at 200 Hz (median 0.26 m/s; 0.37 at 240 Hz, 0.32 at
175 Hz). We use `GAIT_CSV_FPS` = 200 Hz (a cycle of 1.235 s, a 1.53 m stride at the
file's mean 1.24 m/s); pass ``--fps`` if you know better. Replayed at 200 Hz, MyoLegs'
toes follow the file's foot columns (forward correlation 0.998, vertical 0.97-0.98; the
reference points differ by a constant offset), which checks the angle and frame
conventions above. ``python tools/check_gait_cycle.py --input FILE`` prints these numbers.

Procedure (`gait_qpos`): the cycle is resampled periodically (cubic splines, the cycle
closed on its first frame) to the control rate and repeated; MyoLegs' joints are set from
the angle columns (clipped to their ranges; coupled knee joints follow the knee angle,
subtalar and toe joints stay at rest); the root orientation is the file's, turned into
MyoLegs' pelvis frame (forward -y, left +x: a +pi/2 turn about the pelvis z axis) with
the cycle's mean yaw as the heading; the root moves horizontally by integrating the
pelvis velocity, and vertically so the lowest foot geom touches the floor in every frame.

**MyoFullBody** (``body="myofullbody"``) has MyoLegs' leg joints, pelvis frame and root
(its pelvis sits on the root as MyoLegs' does), so its legs and root take the same angles
and path. The file says nothing of the trunk and arms; the rule for them
(`swing_arms`): the trunk holds the rest pose (the lumbar joints at 0, upright), and
each upper arm swings in the sagittal plane in antiphase with its own hip (in phase with
the other leg, as people swing their arms), by ``arm_swing`` times the hip's flexion
about its cycle mean: ``theta_shoulder(t) = -arm_swing * (hip_flexion(t) - mean)``,
forward positive, about the rest pose's 0.15 rad abduction (which keeps the upper arm out
of the thorax). The default 0.5 swings the shoulders through 24 deg for MyoSuite's cycle
(its hips move through 48 deg); ``arm_swing=0`` holds the arms at rest. Elbows, wrists
and fingers stay at rest. The swing is set through the shoulder's plane of elevation
and elevation (``elv_angle``, ``shoulder_elv``): the humerus points along
``(sin a0, cos a0 sin theta, -cos a0 cos theta)`` (lateral, forward, down) for the rest
abduction ``a0``, so elevation is ``arccos(cos a0 cos theta)`` and the plane
``atan2(cos a0 sin theta, sin a0)``, smooth through ``theta = 0``; on MyoFullBody that
moves the humerus 22.7 deg forward and 22.8 deg back for ``theta = +-0.4`` rad, with
5-8 deg of abduction throughout.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import mujoco
import numpy as np
from scipy.interpolate import CubicSpline
from scipy.spatial.transform import Rotation

from neuromimic.bodies import get_body
from neuromimic.bodies.validate import coupled_pose
from neuromimic.data.clips import ClipError, ReferenceClip, save_clips_report

#: Estimated frame rate of ``sample_gait_cycle.csv`` in Hz (see the module docstring).
GAIT_CSV_FPS = 200.0

#: CSV column -> MyoLegs joint.
JOINT_COLUMNS = {
    **{f"hip_{dof}_{side}": f"hip_{dof}_{side}" for side in "lr" for dof in ("flexion", "adduction", "rotation")},
    "knee_angle_l": "knee_angle_l",
    "osl_knee_angle_r": "knee_angle_r",
    "ankle_angle_l": "ankle_angle_l",
    "osl_ankle_angle_r": "ankle_angle_r",
}
EULER_COLUMNS = ("pelvis_euler_roll", "pelvis_euler_pitch", "pelvis_euler_yaw")
VELOCITY_COLUMNS = ("pelvis_vel_X", "pelvis_vel_Y", "pelvis_vel_Z")

#: MyoLegs' pelvis frame (forward -y, left +x, up +z) seen from the file's pelvis frame
#: (forward +x, left +y, up +z): a +pi/2 turn about z.
_FILE_TO_MYOLEGS_PELVIS = Rotation.from_euler("z", np.pi / 2)
#: The file's walker faces world -y, as MyoLegs does at identity.
_HEADING = -np.pi / 2


@dataclass(frozen=True)
class GaitCycle:
    """One gait cycle read from a CSV file.

    Attributes:
        joint_angles: MyoLegs joint name -> angle [T] in rad.
        pelvis_euler: extrinsic x-y-z (roll, pitch, yaw) [T, 3] in rad of a pelvis frame
            with x forward, y left, z up.
        pelvis_velocity: pelvis velocity [T, 3] in m/s in the heading frame (x forward,
            y left, z up).
        fps: frame rate in Hz.
        source: the file it was read from.
    """

    joint_angles: dict[str, np.ndarray]
    pelvis_euler: np.ndarray
    pelvis_velocity: np.ndarray
    fps: float
    source: str

    @property
    def num_frames(self) -> int:
        """T, the frames of one cycle (the cycle closes on the first frame)."""
        return int(self.pelvis_euler.shape[0])

    @property
    def period(self) -> float:
        """Duration of the cycle in seconds, ``T / fps``."""
        return self.num_frames / self.fps


def read_gait_cycle(path: str | os.PathLike, fps: float = GAIT_CSV_FPS) -> GaitCycle:
    """Read one gait cycle from a CSV file with MyoSuite's ``sample_gait_cycle.csv`` columns.

    Args:
        path: the CSV file (a header row, then one row per frame).
        fps: its frame rate in Hz (default `GAIT_CSV_FPS`, estimated for MyoSuite's file).

    Raises:
        ClipError: the file is missing, lacks a column, has fewer than 8 rows or
            non-finite numbers; the message names the file, the column or row and the fix.
    """
    path = Path(path)
    if not path.is_file():
        raise ClipError(
            f"gait cycle file {str(path)!r} does not exist; MyoSuite ships one at "
            "myosuite/envs/myo/assets/leg/sample_gait_cycle.csv (pip download myosuite --no-deps, then unzip)"
        )
    if fps <= 0:
        raise ClipError(f"fps of {path} must be positive, not {fps}")
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        raise ClipError(f"{path} is empty; a gait cycle CSV has a header row and one row per frame")
    header, body = [name.strip() for name in rows[0]], rows[1:]
    needed = (*JOINT_COLUMNS, *EULER_COLUMNS, *VELOCITY_COLUMNS)
    missing = [name for name in needed if name not in header]
    if missing:
        raise ClipError(
            f"{path}: missing columns {missing}; a gait cycle CSV needs the columns of MyoSuite's "
            f"sample_gait_cycle.csv: {list(needed)}"
        )
    try:
        table = np.array([[float(row[header.index(name)]) for name in needed] for row in body if row])
    except (ValueError, IndexError) as error:
        raise ClipError(
            f"{path}: a row is short or not numeric ({error}); every row needs {len(header)} numbers"
        ) from error
    if table.shape[0] < 8:
        raise ClipError(f"{path}: {table.shape[0]} frames; a gait cycle needs at least 8")
    bad = ~np.isfinite(table)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ClipError(f"{path}: column {needed[col]!r} is not finite at data row {row + 1}; fill the gap first")
    columns = dict(zip(needed, table.T, strict=True))
    return GaitCycle(
        joint_angles={joint: columns[name] for name, joint in JOINT_COLUMNS.items()},
        pelvis_euler=np.stack([columns[name] for name in EULER_COLUMNS], axis=1),
        pelvis_velocity=np.stack([columns[name] for name in VELOCITY_COLUMNS], axis=1),
        fps=float(fps),
        source=str(path),
    )


def _periodic(values: np.ndarray, period: float) -> CubicSpline:
    """Periodic cubic spline through ``values`` [T, ...] sampled over one ``period``."""
    closed = np.concatenate([values, values[:1]])
    return CubicSpline(np.linspace(0.0, period, len(closed)), closed, bc_type="periodic")


def lowest_geom_z(model: mujoco.MjModel, data: mujoco.MjData, geoms: np.ndarray) -> float:
    """World height (m) of the lowest point of ``geoms`` after `mujoco.mj_kinematics`.

    Exact for spheres, capsules, cylinders, ellipsoids and boxes (the collision shapes of
    feet); other shapes are refused.
    """
    lowest = np.inf
    for g in geoms:
        size, axes = model.geom_size[g], data.geom_xmat[g].reshape(3, 3)
        up = axes[2]  # the world z component of each geom axis
        kind = model.geom_type[g]
        if kind == mujoco.mjtGeom.mjGEOM_SPHERE:
            drop = size[0]
        elif kind == mujoco.mjtGeom.mjGEOM_CAPSULE:
            drop = size[0] + size[1] * abs(up[2])
        elif kind == mujoco.mjtGeom.mjGEOM_CYLINDER:
            drop = size[0] * np.hypot(up[0], up[1]) + size[1] * abs(up[2])
        elif kind == mujoco.mjtGeom.mjGEOM_ELLIPSOID:
            drop = np.sqrt(np.sum((up * size) ** 2))
        elif kind == mujoco.mjtGeom.mjGEOM_BOX:
            drop = np.sum(np.abs(up) * size)
        else:
            raise ClipError(
                f"geom {model.geom(g).name!r} has type {int(kind)}; grounding handles primitive shapes only"
            )
        lowest = min(lowest, data.geom_xpos[g][2] - drop)
    return float(lowest)


#: Default gain of the arm swing on the hip's flexion (module docstring).
ARM_SWING = 0.5


def swing_arms(model: mujoco.MjModel, qpos: np.ndarray, hip_flexion: dict[str, np.ndarray], gain: float) -> None:
    """Swing both upper arms in antiphase with their hips (rule in the module docstring), in place.

    Args:
        model: a body with MyoArm's shoulder joints per side (``elv_angle_r``,
            ``shoulder_elv_r``, ...), as MyoFullBody.
        qpos: [T, nq] poses whose shoulders are at rest (their rest abduction is ``a0``).
        hip_flexion: ``"r"`` / ``"l"`` -> that side's hip flexion [T] in rad about its mean
            over the cycle.
        gain: shoulder swing per radian of hip flexion.
    """
    for side, hip in hip_flexion.items():
        plane, elevation = (model.joint(f"{name}_{side}").qposadr[0] for name in ("elv_angle", "shoulder_elv"))
        rest = qpos[0, elevation]  # the abduction a0 of the rest pose (its plane is 0)
        theta = -gain * hip
        qpos[:, elevation] = np.arccos(np.cos(rest) * np.cos(theta))
        qpos[:, plane] = np.arctan2(np.cos(rest) * np.sin(theta), np.sin(rest))


def _has_shoulders(model: mujoco.MjModel) -> bool:
    names = {model.joint(i).name for i in range(model.njnt)}
    return {f"{name}_{side}" for name in ("elv_angle", "shoulder_elv") for side in "rl"} <= names


def gait_qpos(
    cycle: GaitCycle,
    fps: float,
    duration: float,
    phase: float = 0.0,
    body: str = "myolegs",
    arm_swing: float = ARM_SWING,
) -> np.ndarray:
    """qpos [T, nq] of MyoLegs (or MyoFullBody) walking the gait cycle (procedure in the
    module docstring).

    Args:
        cycle: the gait cycle.
        fps: frame rate of the result in Hz (the control rate of the env).
        duration: seconds of walking; ``T = round(duration * fps) + 1``.
        phase: where in the cycle the clip starts, as a fraction of the cycle in [0, 1).
        body: registry key of a body with MyoLegs' joints and a free root.
        arm_swing: for a body with arms (MyoFullBody), the shoulders' swing per radian of
            hip flexion (`swing_arms`); 0 holds the arms at rest.
    """
    walker = get_body(body)
    model = walker.load_model()
    data = mujoco.MjData(model)
    if model.jnt_type[0] != mujoco.mjtJoint.mjJNT_FREE:
        raise ClipError(f"body {body!r} has no free root; a gait reference needs one (use myolegs or myofullbody)")
    t = phase * cycle.period + np.arange(round(duration * fps) + 1) / fps

    qpos = np.tile(walker.rest_qpos(model), (len(t), 1))
    for joint, angles in cycle.joint_angles.items():
        jnt = model.joint(joint)
        qpos[:, jnt.qposadr[0]] = np.clip(_periodic(angles, cycle.period)(t), *jnt.range)
    if arm_swing and _has_shoulders(model):
        hips = {}
        for side in "rl":
            angles = cycle.joint_angles[f"hip_flexion_{side}"]
            hips[side] = _periodic(angles, cycle.period)(t) - angles.mean()  # about the cycle's mean
        swing_arms(model, qpos, hips, arm_swing)
    qpos = np.stack([coupled_pose(model, q)[0] for q in qpos])

    roll, pitch, yaw = _periodic(cycle.pelvis_euler, cycle.period)(t).T
    heading_offset = _HEADING - cycle.pelvis_euler[:, 2].mean()
    pelvis = Rotation.from_euler("xyz", np.stack([roll, pitch, yaw + heading_offset], axis=1))
    qpos[:, 3:7] = (pelvis * _FILE_TO_MYOLEGS_PELVIS).as_quat(scalar_first=True)

    # Heading-frame velocity (x forward, y left) integrated, then into the world (forward is
    # world -y, left is world +x); the spline extrapolates periodically past one cycle.
    velocity = _periodic(cycle.pelvis_velocity, cycle.period)
    travelled = np.stack([velocity.integrate(t[0], tk) for tk in t])
    qpos[:, 0] = travelled[:, 1]
    qpos[:, 1] = -travelled[:, 0]

    floor = model.geom("floor").id
    touching = np.flatnonzero((model.geom_bodyid > 0) & ((model.geom_contype & model.geom_conaffinity[floor]) > 0))
    for k in range(len(t)):
        data.qpos[:] = qpos[k]
        data.qpos[2] = 0.0
        mujoco.mj_kinematics(model, data)
        qpos[k, 2] = data.geom_xpos[floor][2] - lowest_geom_z(model, data, touching)
    return qpos


#: Start phases of the clips `make_gait_clips` makes (fractions of the cycle); the last is 'val'.
CLIP_PHASES = (0.0, 0.25, 0.5, 0.75, 0.125)


def make_gait_clips(
    cycle: GaitCycle, fps: float = 50.0, duration: float = 4.0, body: str = "myolegs", arm_swing: float = ARM_SWING
) -> list[ReferenceClip]:
    """Walking clips of ``duration`` seconds starting at each of `CLIP_PHASES`.

    There is one recorded cycle, so the 'val' clip (the last phase) is the same movement
    from another start, not held-out data: it measures tracking from an unseen phase.
    ``body`` and ``arm_swing`` as in `gait_qpos`.
    """
    swings = arm_swing if _has_shoulders(get_body(body).load_model()) else None
    clips = []
    for i, phase in enumerate(CLIP_PHASES):
        clips.append(
            ReferenceClip.from_qpos(
                body,
                gait_qpos(cycle, fps, duration, phase, body, arm_swing),
                fps,
                name=f"gait_phase{phase:.3f}",
                split="val" if i == len(CLIP_PHASES) - 1 else "train",
                meta={
                    "procedure": "one gait cycle resampled, repeated and grounded (neuromimic.data.gait)",
                    "source": cycle.source,
                    "source_fps": cycle.fps,
                    "start_phase": phase,
                    "mean_speed_m_per_s": float(cycle.pelvis_velocity[:, 0].mean()),
                    **({"arm_swing": swings} if swings is not None else {}),
                },
            )
        )
    return clips


def write_gait_clips(
    input: str,
    output: str,
    fps: float = GAIT_CSV_FPS,
    fps_out: float = 50.0,
    seconds: float = 4.0,
    body: str = "myolegs",
    arm_swing: float = ARM_SWING,
) -> dict:
    """Write walking clips (`make_gait_clips`) of MyoLegs or MyoFullBody from one gait cycle as ``.h5`` clips.

    Args:
        input: the gait cycle CSV, with MyoSuite's ``sample_gait_cycle.csv`` columns (see
            `neuromimic.data.gait` for where to get it).
        output: directory for the .h5 clips.
        fps: frame rate of the CSV in Hz (200 is estimated for MyoSuite's file).
        fps_out: frame rate of the clips in Hz: the env's control rate.
        seconds: length of each clip in s.
        body: the walking body: myolegs, or myofullbody (the legs walk the cycle; trunk at
            rest, arms swinging by arm_swing).
        arm_swing: for myofullbody, the shoulders' swing per radian of hip flexion, in
            antiphase with the hip on the same side; 0 holds the arms at rest.

    Returns:
        `save_clips_report`'s summary, the cycle's source frame rate, period and mean speed.
    """
    cycle = read_gait_cycle(input, fps=fps)
    clips = make_gait_clips(cycle, fps=fps_out, duration=seconds, body=body, arm_swing=arm_swing)
    report = save_clips_report(clips, output)
    return report | {
        "source_fps": cycle.fps,
        "cycle_s": cycle.period,
        "mean_speed_m_per_s": float(cycle.pelvis_velocity[:, 0].mean()),
    }
