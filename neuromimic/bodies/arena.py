"""The floor arena shared by every free-moving body (rat, fly, human legs)."""

from __future__ import annotations

import mujoco

#: Name of the floor geom `add_floor` adds.
FLOOR = "floor"


def add_floor(spec: mujoco.MjSpec, half_size: float = 4.0, tile: float = 0.1) -> None:
    """Add a ground plane `FLOOR` at z = 0 with a checker texture and a light above it.

    The plane collides with every geom whose contype matches (MuJoCo's default 1/1). Its
    size only matters for rendering (a plane is infinite to the collision code).

    Args:
        spec: the body's spec, edited in place.
        half_size: half the plane's side in m.
        tile: side of one checker square in m (a scale bar in videos).
    """
    spec.add_texture(
        name="floor_grid",
        type=mujoco.mjtTexture.mjTEXTURE_2D,
        builtin=mujoco.mjtBuiltin.mjBUILTIN_CHECKER,
        rgb1=[0.82, 0.82, 0.80],
        rgb2=[0.70, 0.70, 0.68],
        width=64,
        height=64,
    )
    material = spec.add_material(name="floor_grid", texrepeat=[half_size / tile, half_size / tile])
    material.textures[mujoco.mjtTextureRole.mjTEXROLE_RGB] = "floor_grid"
    spec.worldbody.add_geom(
        name=FLOOR,
        type=mujoco.mjtGeom.mjGEOM_PLANE,
        size=[half_size, half_size, 0.05],
        material="floor_grid",
        contype=1,
        conaffinity=1,
        condim=3,
    )
    spec.worldbody.add_light(
        name="floor_light", pos=[0.0, 0.0, 2.0], dir=[0.0, 0.0, -1.0],
        type=mujoco.mjtLightType.mjLIGHT_DIRECTIONAL, diffuse=[0.5, 0.5, 0.5],
    )
