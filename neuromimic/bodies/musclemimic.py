"""MuscleMimic's human models from the ``musclemimic-models`` wheel: ``myofullbody`` (free
root, trunk, both arms and hands, both legs; 416 muscles, 1 ms steps) and
``myoarm_bimanual`` (fixed thorax, both arms and hands; 126 muscles, 2 ms steps).

MuscleMimic (Li et al. 2026, arXiv:2603.25544) composed both from myo-sim's MyoArm,
MyoLegs and MyoTorso and, by its authors' account, fixed about 150 left-right asymmetries
and muscle-path jumps. The wheel ships standalone MJCF files
(``musclemimic_models/model/body/myofullbody.xml``, ``model/arm/myoarm_bimanual.xml``) that
include their fragments and meshes by relative path; we load them with
`mujoco.MjSpec.from_file` from the installed wheel (nothing is copied) and edit, by
named functions below, only:

- the rest pose (`rest_keyframe`): the models' own default pose (their ``qpos0``, which
  MyoFullBody's one keyframe repeats) hangs the upper arms 21.5 mm inside the thorax's
  collision geom (``humerus_r_coll`` and ``humerus_l_coll`` against ``thorax_coll1``, an
  explicit contact pair), so every episode would start with the contact solver pushing
  both arms out. Our rest pose abducts both shoulders by `REST_SHOULDER_ELEVATION` (0.15
  rad, the smallest 0.05 rad step that clears the thorax) and, for MyoFullBody, lowers the
  root until its lowest collision geom (a foot's) touches the floor (the wheel's pose holds
  the feet 53 mm above it).
- MyoFullBody loses its four foot touch sensors (`remove_touch_sensors` says why); its
  106 frame-velocity sensors stay (neuromimic reads none of them, and every backend
  simulates them).
- MyoBimanualArm loses its floor: the thorax is fixed in the air, and over 3,000 random
  joint poses the bounding sphere of its lowest collision geom stays 0.28 m above the
  plane, yet the plane makes 60 of the model's 93 collision pairs, each of which MJX (no
  broad phase) tests at every physics step.

MyoFullBody keeps MuscleMimic's floor (a plane at z = 0 named ``floor``, friction 1,
condim 3: what `neuromimic.bodies.edits.add_floor` would add). Neither model needs
myo-sim's inertia floor: the wheel's bodies already have at least 1 g and 1e-4 kg m^2.

Names and sides: joints and bodies end in ``_r`` / ``_l`` (``side_suffixes``), and so do
the trunk and leg muscles; the arm muscles keep MyoArm's names for the right arm (``DELT1``)
and add ``_left`` for the left (``DELT1_left``), and the arm's markers are ``R.<name>`` on
the right and ``R.<name>_left`` on the left. ``neuromimic bodies check`` pairs the arm
muscles through the mirrored muscle groups ``arm_r`` / ``arm_l`` (member by member), and
``weaken_muscles`` takes those groups by name.

Frames: forward is -y, right is -x, up is +z, as MyoLegs (the pelvis sits on the root in
MyoLegs' frame, so MyoLegs' gait clips map onto MyoFullBody's legs). Coupled joints (the
shoulder girdle to shoulder elevation, lumbar vertebrae to the trunk angles, knee
translations and patella to the knee angle) follow their leaders through joint
equality constraints.
"""

from __future__ import annotations

import functools

import mujoco
import numpy as np

from neuromimic.bodies.base import Body, register_body
from neuromimic.bodies.edits import remove_touch_sensors, wheel_asset

#: The musclemimic-models release these bodies were written against.
MUSCLEMIMIC_MODELS_VERSION = "1.0.6"

#: Model files inside the installed ``musclemimic_models`` package, by body key.
MODEL_FILES = {
    "myofullbody": "model/body/myofullbody.xml",
    "myoarm_bimanual": "model/arm/myoarm_bimanual.xml",
}

#: Shoulder elevation (rad, in the abduction plane: ``elv_angle`` 0) of the rest pose; the
#: upstream 0 puts the humeri 21.5 mm into the thorax, 0.10 still 2.1 mm, 0.15 clears it.
REST_SHOULDER_ELEVATION = 0.15

#: The arm muscles of the right arm, in MyoArm's order; the left arm's add ``_left``.
ARM_MUSCLES = (
    *("DELT1", "DELT2", "DELT3", "SUPSP", "INFSP", "SUBSC", "TMIN", "TMAJ"),
    *("PECM1", "PECM2", "PECM3", "LAT1", "LAT2", "LAT3", "CORB"),
    *("TRIlong", "TRIlat", "TRImed", "ANC", "SUP", "BIClong", "BICshort", "BRA", "BRD"),
    *("ECRL", "ECRB", "ECU", "FCR", "FCU", "PL", "PT", "PQ"),
    *("FDS5", "FDS4", "FDS3", "FDS2", "FDP5", "FDP4", "FDP3", "FDP2"),
    *("EDC5", "EDC4", "EDC3", "EDC2", "EDM", "EIP", "EPL", "EPB", "FPL", "APL", "OP"),
    *("RI2", "LU_RB2", "UI_UB2", "RI3", "LU_RB3", "UI_UB3"),
    *("RI4", "LU_RB4", "UI_UB4", "RI5", "LU_RB5", "UI_UB5"),
)

#: MyoLegs' 40 muscles of one leg (add ``_r`` or ``_l``), in MyoLegs' order.
LEG_MUSCLES = (
    *("addbrev", "addlong", "addmagDist", "addmagIsch", "addmagMid", "addmagProx"),
    *("bflh", "bfsh", "edl", "ehl", "fdl", "fhl", "gaslat", "gasmed"),
    *("glmax1", "glmax2", "glmax3", "glmed1", "glmed2", "glmed3", "glmin1", "glmin2", "glmin3"),
    *("grac", "iliacus", "perbrev", "perlong", "piri", "psoas", "recfem", "sart"),
    *("semimem", "semiten", "soleus", "tfl", "tibant", "tibpost", "vasint", "vaslat", "vasmed"),
)

#: Functional groups of one leg (MyoLegs' groups), add ``_r`` or ``_l``.
_LEG_GROUPS = (
    ("hip_extensors", ("glmax1", "glmax2", "glmax3", "bflh", "semimem", "semiten")),
    ("knee_extensors", ("recfem", "vasint", "vaslat", "vasmed")),
    ("ankle_plantarflexors", ("gasmed", "gaslat", "soleus")),
    ("ankle_dorsiflexors", ("tibant",)),
)
#: Functional groups of one arm (MyoArm's groups), right-arm names.
_ARM_GROUPS = (
    ("shoulder", ARM_MUSCLES[:15]),
    ("elbow_flexors", ("BIClong", "BICshort", "BRA", "BRD")),
    ("elbow_extensors", ("TRIlong", "TRIlat", "TRImed", "ANC")),
)


def _arm(name: str, side: str) -> str:
    return name if side == "r" else f"{name}_left"


def arm_muscle_groups() -> dict[str, tuple[str, ...]]:
    """Both arms' muscle groups: ``arm_r`` / ``arm_l`` (63 each) and MyoArm's functional
    groups per side (``elbow_flexors_r``, ...)."""
    groups = {f"arm_{side}": tuple(_arm(m, side) for m in ARM_MUSCLES) for side in "rl"}
    for side in "rl":
        groups |= {f"{group}_{side}": tuple(_arm(m, side) for m in members) for group, members in _ARM_GROUPS}
    return groups


def leg_muscle_groups() -> dict[str, tuple[str, ...]]:
    """Both legs' muscle groups: ``legs`` (MyoLegs' 80), ``leg_r`` / ``leg_l`` (40 each) and
    MyoLegs' functional groups per side (``ankle_plantarflexors_r``, ...)."""
    groups = {f"leg_{side}": tuple(f"{m}_{side}" for m in LEG_MUSCLES) for side in "rl"}
    groups["legs"] = groups["leg_r"] + groups["leg_l"]
    for side in "rl":
        groups |= {f"{group}_{side}": tuple(f"{m}_{side}" for m in members) for group, members in _LEG_GROUPS}
    return groups


def load_musclemimic_spec(key: str) -> mujoco.MjSpec:
    """The wheel's MJCF of body ``key`` (`MODEL_FILES`) as a new, editable spec.

    Raises:
        ImportError: musclemimic-models is not installed (the message says how to install it).
        FileNotFoundError: the installed release has no such file.
    """
    path = wheel_asset("musclemimic_models", "musclemimic-models", MUSCLEMIMIC_MODELS_VERSION, MODEL_FILES[key], key)
    return mujoco.MjSpec.from_file(str(path))


def rest_keyframe(spec: mujoco.MjSpec, key: str, name: str) -> None:
    """Replace the keyframes of body ``key``'s spec by one, ``name``, holding the rest pose
    (module docstring).

    The pose is computed once per process on the compiled wheel model (`rest_qpos`); the
    edits made here leave the joints, and so the qpos layout, as they are.
    """
    for keyframe in list(spec.keys):
        spec.delete(keyframe)
    spec.add_key(name=name, qpos=rest_qpos(key).tolist())


@functools.cache
def rest_qpos(key: str) -> np.ndarray:
    """The rest pose [nq] of MuscleMimic body ``key``: the wheel's ``qpos0`` with both
    shoulders at `REST_SHOULDER_ELEVATION` in the abduction plane, coupled joints following
    their leaders, and a free root lowered until the lowest collision geom touches the
    floor (by MuJoCo's exact geom distance)."""
    from neuromimic.bodies.validate import coupled_pose  # validate imports the registry

    model = load_musclemimic_spec(key).compile()
    qpos = model.qpos0.copy()
    for side in "rl":
        qpos[model.joint(f"elv_angle_{side}").qposadr[0]] = 0.0
        qpos[model.joint(f"shoulder_elv_{side}").qposadr[0]] = REST_SHOULDER_ELEVATION
    qpos = coupled_pose(model, qpos)[0]
    if model.jnt_type[0] == mujoco.mjtJoint.mjJNT_FREE:
        data = mujoco.MjData(model)
        data.qpos[:] = qpos
        mujoco.mj_kinematics(model, data)
        floor = model.geom("floor").id
        colliding = np.flatnonzero((model.geom_bodyid > 0) & ((model.geom_contype & model.geom_conaffinity[floor]) > 0))
        qpos[2] -= min(mujoco.mj_geomDistance(model, data, floor, int(g), 1.0, None) for g in colliding)
    qpos.flags.writeable = False
    return qpos


def build_myofullbody_spec() -> mujoco.MjSpec:
    """MuscleMimic's MyoFullBody standing on its floor (the ``standing`` keyframe), minus its
    four foot touch sensors (module docstring)."""
    spec = load_musclemimic_spec("myofullbody")
    remove_touch_sensors(spec)
    rest_keyframe(spec, "myofullbody", "standing")
    return spec


def build_myoarm_bimanual_spec() -> mujoco.MjSpec:
    """MuscleMimic's MyoBimanualArm without a floor, at rest (the ``rest`` keyframe; module
    docstring)."""
    spec = load_musclemimic_spec("myoarm_bimanual")
    remove_floor(spec)
    rest_keyframe(spec, "myoarm_bimanual", "rest")
    return spec


def remove_floor(spec: mujoco.MjSpec) -> None:
    """Delete the ``floor`` plane of MuscleMimic's scene (MyoBimanualArm cannot reach it; the
    module docstring says why)."""
    spec.delete(spec.geom("floor"))


_RECT_ABD_JUMP = (
    "musclemimic-models 1.0.6 upstream (and myo-sim 0.2.4's myofullbody): the rectus abdominis path "
    "jumps 5.9 mm (228.2 -> 234.1 mm, 2 % of its 134-414 mm length range) at flex_extension "
    "-0.786 rad (45 deg of trunk flexion), where its moment arm about the trunk flexion halves "
    "(247 -> 128 mm per rad); not corrected"
)
#: Findings of ``neuromimic bodies check`` in the wheel's models that the loader does not
#: correct (README, "The body zoo"): accepted, with the reason.
FULLBODY_KNOWN_ISSUES = {f"moment_arm_continuity:rect_abd_{side}": _RECT_ABD_JUMP for side in "rl"}
#: MyoBimanualArm passes every check (MyoArm's RI2 jump is fixed in both hands).
BIMANUAL_KNOWN_ISSUES: dict[str, str] = {}

#: Heels and toes (MyoLegs' ``CAL`` and ``TOE`` markers) and both grasp points.
FULLBODY_END_EFFECTORS = ("RCAL", "RTOE", "LCAL", "LTOE", "S_grasp", "S_grasp_left")
#: Grasp points and lateral elbows of both arms (MyoArm's tracked sites, per side).
BIMANUAL_END_EFFECTORS = ("S_grasp", "R.Elbow.Lateral_marker", "S_grasp_left", "R.Elbow.Lateral_marker_left")

#: MyoLegs' keypoint names -> MuscleMimic's leg markers (``ASI_r`` -> ``RASI``).
LEG_KEYPOINT_SITES = {
    f"{name}_{side}": f"{side.upper()}{name}"
    for side in "rl"
    for name in ("ASI", "PSI", "HJC", "KJC", "AJC", "CAL", "TOE", "MT5")
}
#: MyoArm's keypoint names (per side) -> MuscleMimic's arm markers and fingertips.
ARM_KEYPOINT_SITES = {
    **{
        f"{name}_marker_{side}": f"R.{name.replace('_', '.')}_marker{'' if side == 'r' else '_left'}"
        for side in "rl"
        for name in ("Clavicle", "Shoulder", "Bicep", "Elbow_Lateral", "Elbow_Medial", "Ulna", "Forearm", "Radius")
    },
    **{f"{tip}_{side}": tip if side == "r" else f"{tip}_left" for side in "rl" for tip in ("THtip", "IFtip", "MFtip")},
    **{f"{tip}_{side}": tip if side == "r" else f"{tip}_left" for side in "rl" for tip in ("RFtip", "LFtip")},
}


@register_body("myofullbody")
def myofullbody() -> Body:
    """MuscleMimic's MyoFullBody (musclemimic-models ``myofullbody``): free root, lumbar
    trunk, both arms and hands, both legs; 128 DoF (129 qpos), 416 muscles, 1 ms steps;
    starts standing."""
    return Body(
        key="myofullbody",
        build_spec=build_myofullbody_spec,
        end_effector_sites=FULLBODY_END_EFFECTORS,
        muscle_groups={**leg_muscle_groups(), **arm_muscle_groups()},
        keypoint_sites={**LEG_KEYPOINT_SITES, **ARM_KEYPOINT_SITES},
        source="musclemimic-models",
        side_suffixes=("_r", "_l"),
        counts={"dof": 128, "actuators": 416, "muscles": 416},
        known_issues=FULLBODY_KNOWN_ISSUES,
    )


@register_body("myoarm_bimanual")
def myoarm_bimanual() -> Body:
    """MuscleMimic's MyoBimanualArm (musclemimic-models ``bimanual``): fixed thorax, both
    shoulder girdles, arms and hands; 76 hinge joints (22 coupled), 126 muscles."""
    return Body(
        key="myoarm_bimanual",
        build_spec=build_myoarm_bimanual_spec,
        end_effector_sites=BIMANUAL_END_EFFECTORS,
        muscle_groups=arm_muscle_groups(),
        keypoint_sites=ARM_KEYPOINT_SITES,
        source="musclemimic-models",
        side_suffixes=("_r", "_l"),
        counts={"dof": 76, "actuators": 126, "muscles": 126},
        known_issues=BIMANUAL_KNOWN_ISSUES,
    )
