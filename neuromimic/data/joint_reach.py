"""Synthetic joint-space reaches for bodies without recorded movement (MyoArm, MuscleMimic's
MyoBimanualArm, the fly).

Procedure (deterministic): from the rest pose, the named joints move to their target
angles along a minimum-jerk profile, hold, and move back; every other joint stays at rest,
coupled joints follow their leaders (`neuromimic.bodies.validate.coupled_pose`), and the
frames are replayed through MuJoCo to fill body and site positions
(`ReferenceClip.from_qpos`). These clips are not recordings: they give a muscle body a
default movement to imitate until a lab brings its own.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from neuromimic.bodies import get_body
from neuromimic.bodies.validate import coupled_pose
from neuromimic.data.clips import ClipError, ReferenceClip, save_clips_report
from neuromimic.data.reach import min_jerk

#: Phases of a reach in seconds: hold at rest, move out, hold at the target, move back, hold.
PHASES_S = (0.1, 0.5, 0.2, 0.5, 0.1)


def joint_reach_qpos(key: str, targets: dict[str, float], fps: float) -> np.ndarray:
    """qpos [T, nq] of one out-and-back joint-space reach of body ``key``.

    Args:
        key: registry key of the body.
        targets: joint name -> target angle in rad (clipped to the joint's range).
        fps: frame rate in Hz.
    """
    body = get_body(key)
    model = body.load_model()
    rest = coupled_pose(model, body.rest_qpos(model))[0]
    goal = rest.copy()
    for name, angle in targets.items():
        joint = model.joint(name)
        goal[joint.qposadr[0]] = np.clip(angle, *joint.range)
    hold0, move, hold1, back, hold2 = (round(s * fps) for s in PHASES_S)
    s = np.concatenate(
        [
            np.zeros(hold0),
            min_jerk(np.arange(move) / move),
            np.ones(hold1),
            1.0 - min_jerk(np.arange(back) / back),
            np.zeros(hold2 + 1),
        ]
    )
    return np.stack([coupled_pose(model, rest + si * (goal - rest))[0] for si in s])


@dataclass(frozen=True)
class JointReachSet:
    """A set of synthetic joint-space reaches of one body: one clip per combination of targets.

    Attributes:
        body: registry key of the body.
        targets: joint name -> its target angles in rad; clip i takes the i-th combination
            (`itertools.product` order).
        val: indices of the clips held out as the 'val' split.
        fps: frame rate in Hz (the env's control rate).
        mirror: ``(suffix, mirrored suffix)``: each target joint's mirror image (the same
            name with the other suffix) moves to the same angle, for bodies whose mirrored
            joints share the sign convention (the fly's).
        description: what the clips show.
    """

    body: str
    targets: dict[str, tuple[float, ...]]
    val: tuple[int, ...]
    fps: float
    mirror: tuple[str, str] | None = None
    description: str = ""


#: The synthetic reach sets, by name (``neuromimic clips reach --reach_set NAME``).
JOINT_REACH_SETS = {
    # Bundled as ``bundled:myoarm_reach``: shoulder elevation x elevation plane x elbow flexion.
    "myoarm_reach": JointReachSet(
        body="myoarm",
        targets={"shoulder_elv_r": (0.4, 0.9), "elv_angle_r": (0.2, 1.2), "elbow_flexion_r": (0.5, 1.4)},
        val=(2, 5),
        fps=50.0,
        description="MyoArm: shoulder elevation, elevation plane and elbow flexion out and back",
    ),
    # Made at run time (neuromimic clips reach --reach_set myoarm_bimanual_reach): MyoArm's
    # reaches with both of MuscleMimic's arms at once, each arm the other's mirror image
    # (their joints share the sign convention: positive elevation lifts either arm out,
    # positive plane of elevation turns it forward, positive flexion bends the elbow).
    "myoarm_bimanual_reach": JointReachSet(
        body="myoarm_bimanual",
        targets={"shoulder_elv_r": (0.4, 0.9), "elv_angle_r": (0.2, 1.2), "elbow_flex_r": (0.5, 1.4)},
        val=(2, 5),
        fps=50.0,
        mirror=("_r", "_l"),
        description="MyoBimanualArm: both arms' shoulder elevation, elevation plane and elbow flexion out and back",
    ),
    # Made at run time (1.4 s at 500 Hz is 701 frames of 70 bodies: megabytes per clip): the
    # fly raises both front legs (coxa up, femur down, tibia out: the claws rise 0.5-2 mm)
    # and puts them back.
    "fruitfly_pose": JointReachSet(
        body="fruitfly",
        targets={"coxa_T1_left": (0.6, 1.2), "femur_T1_left": (0.0, 0.3), "tibia_T1_left": (0.3, 0.8)},
        val=(2, 5),
        fps=500.0,
        mirror=("_left", "_right"),
        description="fruit fly: both front legs raised (coxa, femur, tibia) and lowered",
    ),
}


def make_joint_reach_clips(name: str, fps: float | None = None) -> list[ReferenceClip]:
    """The clips of reach set ``name`` (`JOINT_REACH_SETS`), named ``{name}_{i}``.

    Args:
        name: key of `JOINT_REACH_SETS`.
        fps: frame rate in Hz (default the set's).

    Raises:
        ClipError: an unknown set (the message lists the known ones).
    """
    if name not in JOINT_REACH_SETS:
        raise ClipError(f"unknown reach set {name!r}; known sets: {sorted(JOINT_REACH_SETS)}")
    reach_set = JOINT_REACH_SETS[name]
    fps = fps or reach_set.fps
    joints = list(reach_set.targets)
    clips = []
    for i, angles in enumerate(itertools.product(*reach_set.targets.values())):
        targets = dict(zip(joints, angles, strict=True))
        moved = dict(targets)
        if reach_set.mirror is not None:
            suffix, mirrored = reach_set.mirror
            moved |= {joint.replace(suffix, mirrored): angle for joint, angle in targets.items()}
        clips.append(
            ReferenceClip.from_qpos(
                reach_set.body,
                joint_reach_qpos(reach_set.body, moved, fps),
                fps,
                name=f"{name}_{i}",
                split="val" if i in reach_set.val else "train",
                meta={
                    "procedure": "synthetic joint-space reach: min-jerk out and back (neuromimic.data.joint_reach)",
                    **{f"target_{k}_rad": v for k, v in targets.items()},
                },
            )
        )
    return clips


def write_joint_reach_clips(reach_set: str, output: str, fps: float | None = None) -> dict:
    """Write the synthetic joint-space reaches of a body (`JOINT_REACH_SETS`) as ``.h5`` clips.

    Args:
        reach_set: myoarm_reach (MyoArm), myoarm_bimanual_reach (MuscleMimic's two arms)
            or fruitfly_pose (the fly).
        output: directory for the .h5 clips.
        fps: frame rate in Hz (default: the set's control rate).

    Returns:
        `save_clips_report`'s summary and the set's ``description``.
    """
    report = save_clips_report(make_joint_reach_clips(reach_set, fps), output)
    return report | {"description": JOINT_REACH_SETS[reach_set].description}
