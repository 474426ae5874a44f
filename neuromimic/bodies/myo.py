"""Human musculoskeletal models from the myo-sim wheel: ``myoarm`` (right arm and hand, 63
muscles) and ``myolegs`` (both legs, 80 muscles, a free root on a floor).

myo-sim 0.2.x ships no standalone arm or leg MJCF: its ``models/*/assets`` files are
``<mujocoinclude>`` fragments that ``myo_sim.load_spec(name)`` composes into a
`mujoco.MjSpec` (torso, limb chain, tendons, muscles, a floor). We call it at run time and
edit nothing of the physics, except two documented changes:

- ``inertia_floor=1e-4`` (myo-sim's ``boundmass``/``boundinertia``): the composed models
  otherwise keep the true, tiny inertias of some wrist and finger bones, which the older
  static MyoSuite XML floored for a well-conditioned mass matrix (myo_sim issue #128).
- MyoLegs loses its four foot touch sensors (as the rat does; no neuromimic code reads
  them, and the backends would report them differently).
- MyoLegs' scene is replaced by a flat floor at z = 0: myo-sim stands the legs on a
  platform (a 1.05 m-radius collision cylinder, its top 1.5 cm below the feet) 0.4 m above
  its floor, so a walking body would step off the edge after a metre.

Frames: forward is -y, right is -x, up is +z. Both models step at 2 ms (Euler, Newton).
Coupled joints (shoulder girdle to shoulder elevation; knee translations to knee angle)
follow their leaders through joint equality constraints.
"""

from __future__ import annotations

import contextlib
import io
import warnings

import mujoco

from neuromimic.bodies.base import Body, register_body
from neuromimic.bodies.edits import add_floor, remove_touch_sensors, warn_if_not_pinned

#: The myo-sim release these bodies were written against.
MYO_SIM_VERSION = "0.2.4"
_INSTALL = f"pip install myo-sim=={MYO_SIM_VERSION}"

#: myo-sim's recommended inertia floor for the composed models (see the module docstring).
INERTIA_FLOOR = 1e-4


# myo-sim's composer attaches fragments without a prefix; MuJoCo warns that such a spec may
# not save to XML, which we never do from it.
warnings.filterwarnings("ignore", message="Attaching a spec with an empty prefix")


def load_myo_spec(name: str, postures: tuple[str, ...] = ()) -> mujoco.MjSpec:
    """``myo_sim.load_spec(name)`` with the inertia floor, as a new, editable spec.

    Args:
        name: myo-sim model name (``"myoarm"``, ``"myolegs"``).
        postures: myo-sim posture keyframes to add (the first is the body's rest pose).

    Raises:
        ImportError: if myo-sim is not installed (the message says how to install it).
    """
    try:
        import myo_sim
    except ImportError as error:
        raise ImportError(f"the {name} body is loaded from the myo-sim wheel: {_INSTALL}") from error
    warn_if_not_pinned("myo-sim", MYO_SIM_VERSION, name)
    # myo-sim's composer prints a harmless note about attaching specs without a prefix.
    with contextlib.redirect_stdout(io.StringIO()):
        return myo_sim.load_spec(
            name, build_kwargs={"postures": list(postures)} if postures else None, inertia_floor=INERTIA_FLOOR
        )


#: MyoArm sites tracked in imitation: the grasp point of the hand and the lateral elbow.
ARM_END_EFFECTORS = ("S_grasp_r", "Elbow_Lateral_marker_r")
#: MyoArm motion-capture markers and fingertips, usable as keypoints (site = keypoint name).
ARM_KEYPOINTS = (
    "C7_marker_r",
    "Clavicle_marker_r",
    "Shoulder_marker_r",
    "Bicep_marker_r",
    "Elbow_Lateral_marker_r",
    "Elbow_Medial_marker_r",
    "Ulna_marker_r",
    "Forearm_marker_r",
    "Radius_marker_r",
    "THtip_r",
    "IFtip_r",
    "MFtip_r",
    "RFtip_r",
    "LFtip_r",
)


@register_body("myoarm")
def myoarm() -> Body:
    """MyoArm (myo-sim ``myoarm``): fixed torso, right shoulder girdle, arm and hand; 38
    hinge joints (11 coupled), 63 muscles."""
    return Body(
        key="myoarm",
        build_spec=lambda: load_myo_spec("myoarm"),
        end_effector_sites=ARM_END_EFFECTORS,
        muscle_groups={
            "shoulder": (
                "DELT1",
                "DELT2",
                "DELT3",
                "SUPSP",
                "INFSP",
                "SUBSC",
                "TMIN",
                "TMAJ",
                "PECM1",
                "PECM2",
                "PECM3",
                "LAT1",
                "LAT2",
                "LAT3",
                "CORB",
            ),
            "elbow_flexors": ("BIClong", "BICshort", "BRA", "BRD"),
            "elbow_extensors": ("TRIlong", "TRIlat", "TRImed", "ANC"),
        },
        keypoint_sites={name: name for name in ARM_KEYPOINTS},
        source="myo-sim",
        counts={"dof": 38, "actuators": 63, "muscles": 63},
        known_issues={
            "moment_arm_continuity:RI2": (
                "myo-sim 0.2.4 upstream: the index finger's radial interosseous path switches "
                "wrapping side at mcp2_flexion_r 0.178 rad (length 47.4 -> 40.3 mm, beyond its "
                "length range 31-42 mm) and at mcp2_abduction_r 0.12 rad; not corrected"
            ),
        },
    )


#: MyoLegs sites tracked in imitation: heels and toes.
LEG_END_EFFECTORS = ("CAL_r", "TOE_r", "CAL_l", "TOE_l")
#: MyoLegs markers usable as keypoints: pelvis, joint centres, feet.
LEG_KEYPOINTS = tuple(
    f"{name}_{side}" for side in "rl" for name in ("ASI", "PSI", "HJC", "KJC", "AJC", "CAL", "TOE", "MT5")
)


def build_myolegs_spec() -> mujoco.MjSpec:
    """myo-sim's ``myolegs`` with its standing keyframe (the rest pose), minus the four foot
    touch sensors (`neuromimic.bodies.edits.remove_touch_sensors` says why), on a flat floor
    in place of myo-sim's platform scene (the module docstring says why)."""
    spec = load_myo_spec("myolegs", postures=("standing",))
    remove_touch_sensors(spec)
    for geom in list(spec.worldbody.geoms):  # floor, platform mesh and cylinder, logo
        spec.delete(geom)
    add_floor(spec, half_size=10.0)
    return spec


@register_body("myolegs")
def myolegs() -> Body:
    """MyoLegs (myo-sim ``myolegs``): free root, both legs, 80 muscles, a floor; starts in
    myo-sim's standing posture."""
    return Body(
        key="myolegs",
        build_spec=build_myolegs_spec,
        end_effector_sites=LEG_END_EFFECTORS,
        muscle_groups={
            f"{group}_{side}": tuple(f"{m}_{side}" for m in muscles)
            for side in "rl"
            for group, muscles in (
                ("hip_extensors", ("glmax1", "glmax2", "glmax3", "bflh", "semimem", "semiten")),
                ("knee_extensors", ("recfem", "vasint", "vaslat", "vasmed")),
                ("ankle_plantarflexors", ("gasmed", "gaslat", "soleus")),
                ("ankle_dorsiflexors", ("tibant",)),
            )
        },
        keypoint_sites={name: name for name in LEG_KEYPOINTS},
        source="myo-sim",
        side_suffixes=("_r", "_l"),
        counts={"dof": 34, "actuators": 80, "muscles": 80},
    )
