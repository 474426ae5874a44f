"""The dm-control fruit fly (``fruitfly``): 102 hinge joints on a free root, 70 actuators,
on a floor.

The model is read at run time from the installed dm-control wheel
(``dm_control/locomotion/walkers/assets/fruitfly_v2/floor.xml``, which includes
``fruitfly.xml`` and adds a floor plane at z = -0.132 cm; never copied into this
repository) and edited, for both backends alike:

- `remove_adhesion_actuators`: the 8 adhesion actuators (claws and labrum) transmit to
  bodies, which MJX does not support (``put_model`` raises ``NotImplementedError:
  mjTRN_BODY``); the remaining 62 position servos and 6 wing motors drive the fly.
- `neuromimic.bodies.edits.remove_touch_sensors`: the six claw touch sensors, for the
  reason given there.

Units are the file's: centimetres, grams, seconds (gravity -981 cm/s^2); the physics steps
at 0.1 ms (Euler, Newton solver). Forward is +x, left is +y. The rest pose is the file's
keyframe (standing, claws just above the floor). dm-control's walker class also gives the
servos a 10 ms activation filter at run time; this body keeps the file's direct servos.
"""

from __future__ import annotations

from pathlib import Path

import mujoco

from neuromimic.bodies.base import Body, register_body
from neuromimic.bodies.edits import remove_touch_sensors, wheel_asset
from neuromimic.bodies.rodent import DM_CONTROL_VERSION

#: Tracked sites: the six tarsal claws (the walker's end effectors) and the head.
END_EFFECTOR_SITES: tuple[str, ...] = tuple(
    f"claw_T{segment}_{side}" for segment in (1, 2, 3) for side in ("left", "right")
) + ("head",)


def fruitfly_mjcf_path() -> Path:
    """Path of ``fruitfly_v2/floor.xml`` inside the installed dm-control wheel."""
    return wheel_asset(
        "dm_control", "dm-control", DM_CONTROL_VERSION, "locomotion/walkers/assets/fruitfly_v2/floor.xml", "fruitfly"
    )


def remove_adhesion_actuators(spec: mujoco.MjSpec) -> None:
    """Delete the adhesion actuators (body transmissions, which MJX cannot simulate)."""
    for actuator in list(spec.actuators):
        if actuator.trntype == mujoco.mjtTrn.mjTRN_BODY:
            spec.delete(actuator)


def build_fruitfly_spec() -> mujoco.MjSpec:
    """The fly's `mujoco.MjSpec` with the module's edits (a new spec per call)."""
    spec = mujoco.MjSpec.from_file(str(fruitfly_mjcf_path()))
    remove_adhesion_actuators(spec)
    remove_touch_sensors(spec)
    return spec


@register_body("fruitfly")
def fruitfly() -> Body:
    """The dm-control fruit fly on a floor, runnable on every backend."""
    legs = {
        f"leg_T{segment}_{side}": tuple(
            f"{joint}_T{segment}_{side}"
            for joint in ("coxa_abduct", "coxa_twist", "coxa", "femur_twist", "femur", "tibia", "tarsus", "tarsus2")
        )
        for segment in (1, 2, 3)
        for side in ("left", "right")
    }
    return Body(
        key="fruitfly",
        build_spec=build_fruitfly_spec,
        end_effector_sites=END_EFFECTOR_SITES,
        muscle_groups=legs,
        source="dm-control",
        side_suffixes=("_right", "_left"),
        max_qvel=1e4,  # the wings beat at hundreds of Hz: thousands of rad/s are normal
        length_unit_m=0.01,  # the file's centimetres
        counts={"dof": 108, "actuators": 70, "muscles": 0},
        known_issues={
            "symmetry:tarsus2_T1_right": (
                "dm-control 1.0.50 upstream: the left front tarsus2 segment sits 3.5 % farther "
                "from its parent (0.0236 cm against 0.0228 cm); not corrected"
            ),
        },
    )
