"""Mouse right forelimb: 4 hinge joints (3 shoulder, 1 elbow), 9 Hill-type muscles.

The MJCF ``assets/mouse_forelimb.xml`` (the checkout's top level; ``neuromimic/assets/`` in an
installed wheel) is authored from the published model's numbers (joint axes and ranges,
masses, muscle paths and parameters, RK4 at 5 ms).
"""

from __future__ import annotations

from neuromimic.bodies.base import Body, register_body
from neuromimic.bundled import asset_path

ASSET = asset_path("mouse_forelimb.xml")

#: Joint order in ``qpos``: shoulder elevation, extension, rotation, then elbow.
JOINTS = ("sh_elv", "sh_extension", "sh_rotation", "elbow")

#: Centre of the eight published reach targets (world frame, metres) and their radius.
REACH_CENTER = (0.002, 0.010, -0.006)
REACH_RADIUS = 0.005


@register_body("mouse_forelimb")
def mouse_forelimb() -> Body:
    """The mouse forelimb body, tracked at its wrist site."""
    return Body(
        key="mouse_forelimb",
        mjcf_path=ASSET,
        end_effector_sites=("wrist",),
        counts={"dof": 4, "actuators": 9, "muscles": 9},
        muscle_groups={
            "shoulder": ("Pec_C", "Lat", "PD", "AD", "MD"),
            "elbow_flexors": ("Brachialis", "Biceps_Long"),
            "elbow_extensors": ("Triceps_Lateral", "Triceps_Long"),
        },
    )
