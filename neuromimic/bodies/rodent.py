"""The dm-control rat (``rodent``): 38 position-like actuators, a free root, a floor arena.

The model is read at run time from the installed dm-control wheel
(``dm_control/locomotion/walkers/assets/rodent.xml``, never copied into this repository)
into a `mujoco.MjSpec` and edited by the small functions below, in this order:

1. `add_root_freejoint`: the walker file has no root joint (dm-control adds one when it
   attaches the walker to an arena); we add a free joint ``root`` to ``torso`` and raise
   the torso so no geom starts inside the floor.
2. `add_floor_arena`: a ground plane ``floor`` and a directional light.
3. `add_keypoint_sites`: one site per rat23 keypoint (site name = keypoint name) on the
   body and at the starting offset of ``shared/data/rat23/README.md``; `KEYPOINT_SITES`
   maps keypoints to sites for the keypoint fitter.
4. `MJX_EDITS`, the changes MJX needs, applied to the registered body so that both
   backends simulate the same physics:
   - `neuromimic.bodies.edits.remove_touch_sensors`: the four paw touch sensors are
     removed (MJX and the native backend would read them differently; see there).
   - `collide_with_floor_only`: the file's self-collisions include ellipsoid-box pairs
     (torso, gut, scapulae and hands against the skull and jaw boxes) that MJX cannot
     collide, and 4,271 geom pairs in all, which MJX (no broad phase) would test at every
     step; the rat's geoms keep their contype but lose their conaffinity, so each
     collides with the floor only (100 pairs, all supported).

`build_rodent_spec(mjx_edits=False)` builds the model without step 4, to study what MJX
cannot run (`neuromimic.bodies.compat.check_backend_compatibility` names it).

Actuators: the 38 ``general`` actuators of the file (first-order filter, affine bias:
a position servo whose control range -1..1 spans the joint range), not muscles.
Physics options are the file's: 2 ms Euler steps, Newton solver.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import mujoco

from neuromimic.bodies.base import Body, register_body
from neuromimic.bodies.edits import FLOOR, add_floor, remove_touch_sensors, wheel_asset

#: The dm-control release this body was written against (its rodent.xml).
DM_CONTROL_VERSION = "1.0.50"

#: Name of the free root joint `add_root_freejoint` adds.
ROOT_JOINT = "root"
#: Height (m) of the torso frame at ``qpos0``: the file's 0.0651 m, raised by 3.3 mm so the
#: lowest geom (a tail vertebra) starts 1 mm above the floor instead of 2.3 mm inside it.
TORSO_HEIGHT = 0.0684

#: rat23 keypoints, in the file order of the rat23 NWB's ndx-pose nodes.
RAT23_KEYPOINTS: tuple[str, ...] = (
    "Snout",
    "EarL",
    "EarR",
    "SpineF",
    "SpineM",
    "SpineL",
    "TailBase",
    "ShoulderL",
    "ElbowL",
    "WristL",
    "HandL",
    "ShoulderR",
    "ElbowR",
    "WristR",
    "HandR",
    "HipL",
    "KneeL",
    "AnkleL",
    "FootL",
    "HipR",
    "KneeR",
    "AnkleR",
    "FootR",
)

#: rat23 keypoints on the axial skeleton: the keypoint fitter's root and trunk stages.
TRUNK_KEYPOINTS: tuple[str, ...] = ("Snout", "EarL", "EarR", "SpineF", "SpineM", "SpineL", "TailBase", "HipL", "HipR")

#: keypoint -> rodent body it is attached to (the rat23 README's table).
KEYPOINT_BODIES: dict[str, str] = {
    "Snout": "skull",
    "EarL": "skull",
    "EarR": "skull",
    "SpineF": "vertebra_cervical_5",
    "SpineM": "vertebra_1",
    "SpineL": "pelvis",
    "TailBase": "pelvis",
    "HipL": "pelvis",
    "HipR": "pelvis",
    "ShoulderL": "scapula_L",
    "ShoulderR": "scapula_R",
    "ElbowL": "upper_arm_L",
    "ElbowR": "upper_arm_R",
    "WristL": "lower_arm_L",
    "WristR": "lower_arm_R",
    "HandL": "hand_L",
    "HandR": "hand_R",
    "KneeL": "upper_leg_L",
    "KneeR": "upper_leg_R",
    "AnkleL": "lower_leg_L",
    "AnkleR": "lower_leg_R",
    "FootL": "foot_L",
    "FootR": "foot_R",
}

# Left-side starting offsets (m, body frame) from the rat23 README; right = y mirrored.
_LEFT_OFFSETS: dict[str, tuple[float, float, float]] = {
    "Shoulder": (0.0287, 0.00984, -0.02542),
    "Elbow": (-0.0159, 0.0104, -0.0223),
    "Hand": (0.0030, 0.0015, -0.0083),
    "Knee": (0.0154, 0.0175, -0.0257),
    "Ankle": (-0.0323, -0.0047, -0.0221),  # the README's "∓": left is -y
    "Foot": (0.0211, 0.0076, -0.0028),
    "Hip": (-0.015, 0.015, 0.0),
}


def _keypoint_offset(keypoint: str) -> tuple[float, float, float]:
    if keypoint == "SpineF":
        return (-0.015, 0.0, 0.0)
    for part, (x, y, z) in _LEFT_OFFSETS.items():
        if keypoint == f"{part}L":
            return (x, y, z)
        if keypoint == f"{part}R":
            return (x, -y, z)
    return (0.0, 0.0, 0.0)  # Snout, ears, SpineM, SpineL, TailBase, wrists


#: keypoint -> starting offset (m) in its body's frame; the fitter refines them.
KEYPOINT_OFFSETS: dict[str, tuple[float, float, float]] = {
    keypoint: _keypoint_offset(keypoint) for keypoint in RAT23_KEYPOINTS
}

#: rat23 keypoint -> site name in the model (the same names); for the keypoint fitter.
KEYPOINT_SITES: dict[str, str] = {keypoint: keypoint for keypoint in RAT23_KEYPOINTS}

#: Tracked sites: the four paws and the snout (the distal points dm-control's rodent
#: walker uses as end effectors plus its head), in this order in clips and observations.
END_EFFECTOR_SITES: tuple[str, ...] = ("HandL", "HandR", "FootL", "FootR", "Snout")

#: Actuators grouped by region (names of the file's actuators).
ACTUATOR_GROUPS: dict[str, tuple[str, ...]] = {
    "spine": ("lumbar_extend", "lumbar_bend", "lumbar_twist"),
    "neck": ("cervical_extend", "cervical_bend", "cervical_twist"),
    "head": ("atlas", "mandible"),
    "tail": ("caudal_extend", "caudal_bend"),
    **{
        f"hindlimb_{side}": tuple(
            f"{joint}_{side}{suffix}"
            for joint, suffix in (
                ("hip", "_supinate"),
                ("hip", "_abduct"),
                ("hip", "_extend"),
                ("knee", ""),
                ("ankle", ""),
                ("toe", ""),
            )
        )
        for side in "LR"
    },
    **{
        f"forelimb_{side}": (
            f"scapula_{side}_supinate",
            f"scapula_{side}_abduct",
            f"scapula_{side}_extend",
            f"shoulder_{side}",
            f"shoulder_sup_{side}",
            f"elbow_{side}",
            f"wrist_{side}",
            f"finger_{side}",
        )
        for side in "LR"
    },
}


def rodent_mjcf_path() -> Path:
    """Path of ``rodent.xml`` inside the installed dm-control wheel (dm-control is not
    imported); `neuromimic.bodies.edits.wheel_asset` says what it raises."""
    return wheel_asset("dm_control", "dm-control", DM_CONTROL_VERSION, "locomotion/walkers/assets/rodent.xml", "rodent")


# ------------------------------------------------------------------------- model edits
def add_root_freejoint(spec: mujoco.MjSpec) -> None:
    """Give the torso a free joint ``root`` (qpos: position [3] m, quaternion wxyz [4]).

    The dm-control file has no root joint: standalone, the rat would be welded to the
    world. The torso is raised to `TORSO_HEIGHT` so ``qpos0`` starts clear of the floor.
    """
    torso = spec.body("torso")
    if any(joint.type == mujoco.mjtJoint.mjJNT_FREE for joint in torso.joints):
        return
    torso.pos = [torso.pos[0], torso.pos[1], TORSO_HEIGHT]
    torso.add_freejoint(name=ROOT_JOINT)


def add_floor_arena(spec: mujoco.MjSpec) -> None:
    """Add the arena: `neuromimic.bodies.edits.add_floor`, an 8 m checkered ground plane at
    z = 0 (collides with every rat geom; 10 cm squares) and a light above it."""
    add_floor(spec, half_size=4.0, tile=0.1)


def add_keypoint_sites(spec: mujoco.MjSpec) -> None:
    """Add one site per rat23 keypoint, named as the keypoint, on `KEYPOINT_BODIES`'s body at
    `KEYPOINT_OFFSETS` (m, body frame). Sites have no mass or collision: physics unchanged."""
    for keypoint in RAT23_KEYPOINTS:
        spec.body(KEYPOINT_BODIES[keypoint]).add_site(
            name=KEYPOINT_SITES[keypoint],
            pos=list(KEYPOINT_OFFSETS[keypoint]),
            size=[0.002, 0.002, 0.002],
            rgba=[1.0, 0.3, 0.0, 1.0],
            group=4,
        )


def collide_with_floor_only(spec: mujoco.MjSpec) -> None:
    """MJX edit: the rat's geoms collide with the floor and with nothing else.

    The file lets limb geoms collide with each other and with the head: 4,271 geom pairs,
    42 of them ellipsoid-box (torso, gut, scapulae, hands against the skull and jaw
    boxes), which MJX has no collision function for, and all of which MJX (no broad
    phase) would test at every step. Keeping every rat geom's contype and clearing its
    conaffinity leaves no matching bit between two rat geoms, while the floor (contype =
    conaffinity = 1) still matches each of them: 100 geom-floor pairs, all supported.
    Consequence for native MuJoCo too: limbs can pass through each other.
    """
    for geom in spec.geoms:
        if geom.name != FLOOR and geom.contype:
            geom.conaffinity = 0


#: The MJX edits, in the order `build_rodent_spec` applies them.
MJX_EDITS: tuple[Callable[[mujoco.MjSpec], None], ...] = (
    remove_touch_sensors,
    collide_with_floor_only,
)


def build_rodent_spec(mjx_edits: bool = True) -> mujoco.MjSpec:
    """Build the rat's `mujoco.MjSpec` from the installed dm-control wheel, with the edits
    of the module docstring.

    Args:
        mjx_edits: apply `MJX_EDITS` (the registered body does); ``False`` gives the
            file's own sensors and collisions, which MJX cannot run.

    Returns:
        A new, uncompiled spec: nq = 74 (free root 7 + 67 hinges), nv = 73, nu = 38.

    Raises:
        ImportError: if dm-control is not installed.
    """
    spec = mujoco.MjSpec.from_file(str(rodent_mjcf_path()))
    add_root_freejoint(spec)
    add_floor_arena(spec)
    add_keypoint_sites(spec)
    if mjx_edits:
        for edit in MJX_EDITS:
            edit(spec)
    return spec


@register_body("rodent")
def rodent() -> Body:
    """The dm-control rat on a floor, with rat23 keypoint sites, runnable on every backend."""
    return Body(
        key="rodent",
        build_spec=build_rodent_spec,
        end_effector_sites=END_EFFECTOR_SITES,
        muscle_groups=ACTUATOR_GROUPS,
        keypoint_sites=dict(KEYPOINT_SITES),
        keypoint_scale=0.9,  # stac-mjx's rodent configuration
        trunk_keypoints=TRUNK_KEYPOINTS,
        source="dm-control",
        side_suffixes=("_R", "_L"),
        counts={"dof": 73, "actuators": 38, "muscles": 0},
    )
