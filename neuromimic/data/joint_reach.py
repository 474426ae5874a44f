"""Synthetic joint-space reaches for bodies without recorded movement (MyoArm).

Procedure (deterministic): from the rest pose, the named joints move to their target
angles along a minimum-jerk profile, hold, and move back; every other joint stays at rest,
coupled joints follow their leaders (`neuromimic.bodies.validate.coupled_pose`), and the
frames are replayed through MuJoCo to fill body and site positions
(`ReferenceClip.from_qpos`). These clips are not recordings: they give a muscle body a
default movement to imitate until a lab brings its own.
"""

from __future__ import annotations

import itertools

import numpy as np

from neuromimic.bodies import get_body
from neuromimic.bodies.validate import coupled_pose
from neuromimic.data.clips import ReferenceClip
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
    s = np.concatenate([
        np.zeros(hold0),
        min_jerk(np.arange(move) / move),
        np.ones(hold1),
        1.0 - min_jerk(np.arange(back) / back),
        np.zeros(hold2 + 1),
    ])
    return np.stack([coupled_pose(model, rest + si * (goal - rest))[0] for si in s])


#: MyoArm reach targets: shoulder elevation x elevation plane x elbow flexion (rad).
MYOARM_TARGETS = {
    "shoulder_elv_r": (0.4, 0.9),
    "elv_angle_r": (0.2, 1.2),
    "elbow_flexion_r": (0.5, 1.4),
}
#: The MyoArm reaches held out for validation (indices into the product of the targets).
MYOARM_VAL = (2, 5)


def make_myoarm_reach_clips(fps: float = 50.0) -> list[ReferenceClip]:
    """The 8 bundled MyoArm reaches (every combination of `MYOARM_TARGETS`), 2 held out."""
    names = list(MYOARM_TARGETS)
    clips = []
    for i, angles in enumerate(itertools.product(*MYOARM_TARGETS.values())):
        targets = dict(zip(names, angles, strict=True))
        clips.append(ReferenceClip.from_qpos(
            "myoarm",
            joint_reach_qpos("myoarm", targets, fps),
            fps,
            name=f"myoarm_reach_{i}",
            split="val" if i in MYOARM_VAL else "train",
            meta={"procedure": "synthetic joint-space reach: min-jerk out and back (neuromimic.data.joint_reach)",
                  **{f"target_{k}_rad": v for k, v in targets.items()}},
        ))
    return clips
