"""What `neuromimic.analysis.viewer` draws, computed from a MuJoCo model without a browser.

`body_meshes` turns each body's geoms into triangle meshes in the body's frame (MuJoCo's
meshes as compiled; spheres, capsules, ellipsoids, cylinders and boxes tessellated here;
planes are left to the viewer's floor grid), merged per colour so that a body is drawn by
one or two meshes whose pose follows the body. `Poser` computes, for one ``qpos``, every
body's pose and the path of every tendon (its wrap points, as MuJoCo's own viewer joins
them); `activation_rgb` colours a muscle by its activation.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import mujoco
import numpy as np

# The colours of muscles and of the ghost body are those of the videos.
from neuromimic.analysis.render import MUSCLE_ACTIVE_RGB, MUSCLE_REST_RGB

#: Geom groups drawn (MuJoCo's viewers show groups 0, 1 and 2 by default).
DRAWN_GROUPS = 3
#: Segments around the axis of tessellated spheres, capsules and cylinders.
SEGMENTS = 24
#: Colour of tendons that no muscle pulls on.
PASSIVE_TENDON_RGB = (0.6, 0.6, 0.6)


@dataclass(frozen=True)
class Mesh:
    """A triangle mesh of one colour.

    Attributes:
        vertices: [V, 3] float32 positions in the frame of the body it belongs to (model
            length units).
        faces: [F, 3] uint32 vertex indices, counter-clockwise seen from outside.
        rgb: colour, 0..1.
        opacity: 1 opaque, 0 invisible.
    """

    vertices: np.ndarray
    faces: np.ndarray
    rgb: tuple[float, float, float]
    opacity: float


def activation_rgb(activation: np.ndarray | float) -> np.ndarray:
    """[..., 3] colours of muscles at ``activation`` (0..1, clipped): `MUSCLE_REST_RGB` at
    0 to `MUSCLE_ACTIVE_RGB` at 1, as in `neuromimic.analysis.render`'s videos."""
    level = np.clip(np.asarray(activation, dtype=np.float64), 0.0, 1.0)[..., None]
    rest, active = np.array(MUSCLE_REST_RGB), np.array(MUSCLE_ACTIVE_RGB)
    return rest + level * (active - rest)


def _lathe(profile: np.ndarray, segments: int = SEGMENTS) -> tuple[np.ndarray, np.ndarray]:
    """A surface of revolution about z from ``profile`` [P, 2] of (radius, z), running from
    the bottom pole (radius 0) to the top pole (radius 0). Repeat a profile point to get a
    sharp edge there (its two copies get separate vertices)."""
    angles = 2 * np.pi * np.arange(segments) / segments
    ring = np.stack([np.cos(angles), np.sin(angles)], axis=1)  # [S, 2]
    vertices, rings = [np.array([0.0, 0.0, profile[0, 1]])], []
    for radius, z in profile[1:-1]:
        rings.append(len(vertices))
        vertices.extend(np.column_stack([radius * ring, np.full(segments, z)]))
    top = len(vertices)
    vertices.append(np.array([0.0, 0.0, profile[-1, 1]]))
    step = np.arange(segments)
    following = (step + 1) % segments
    faces = [np.column_stack([np.zeros(segments, int), rings[0] + following, rings[0] + step])]
    for lower, upper in itertools.pairwise(rings):
        faces.append(np.column_stack([lower + step, lower + following, upper + following]))
        faces.append(np.column_stack([lower + step, upper + following, upper + step]))
    faces.append(np.column_stack([np.full(segments, top), rings[-1] + step, rings[-1] + following]))
    return np.array(vertices), np.concatenate(faces)


def _sphere_profile(radius: float, z_offset: float = 0.0, half: str = "both", count: int = 12) -> np.ndarray:
    low, high = {"both": (-np.pi / 2, np.pi / 2), "bottom": (-np.pi / 2, 0.0), "top": (0.0, np.pi / 2)}[half]
    theta = np.linspace(low, high, count + 1)
    profile = np.column_stack([radius * np.cos(theta), radius * np.sin(theta)])
    profile[:, 1] += z_offset
    profile[np.isclose(profile[:, 0], 0.0, atol=1e-12 * max(radius, 1e-300)), 0] = 0.0
    return profile


def _box(half: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A box of half sizes ``half`` with separate vertices per face (sharp edges)."""
    vertices, faces = [], []
    for axis in range(3):
        for sign in (-1.0, 1.0):
            u, v = (axis + 1) % 3, (axis + 2) % 3
            corners = np.zeros((4, 3))
            corners[:, axis] = sign
            corners[:, u] = (-1, 1, 1, -1)
            corners[:, v] = (-1, -1, 1, 1)
            base = len(vertices) * 4
            vertices.append(corners * half)
            quad = [(0, 1, 2), (0, 2, 3)] if sign > 0 else [(0, 2, 1), (0, 3, 2)]
            faces.extend([[base + a, base + b, base + c] for a, b, c in quad])
    return np.concatenate(vertices), np.array(faces)


_MESH_TYPES = frozenset(
    int(kind)
    for kind in (
        mujoco.mjtGeom.mjGEOM_MESH,
        mujoco.mjtGeom.mjGEOM_SPHERE,
        mujoco.mjtGeom.mjGEOM_ELLIPSOID,
        mujoco.mjtGeom.mjGEOM_CAPSULE,
        mujoco.mjtGeom.mjGEOM_CYLINDER,
        mujoco.mjtGeom.mjGEOM_BOX,
    )
)


def geom_mesh(model: mujoco.MjModel, geom: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Vertices [V, 3] (in the geom's frame) and faces [F, 3] of a geom, or None for the
    types not drawn as meshes (planes, height fields, SDFs, flexes)."""
    kind, size = int(model.geom_type[geom]), model.geom_size[geom].astype(np.float64)
    types = mujoco.mjtGeom
    if kind == types.mjGEOM_MESH:
        mesh = int(model.geom_dataid[geom])
        first, count = model.mesh_vertadr[mesh], model.mesh_vertnum[mesh]
        face, faces = model.mesh_faceadr[mesh], model.mesh_facenum[mesh]
        return model.mesh_vert[first : first + count].astype(np.float64), model.mesh_face[face : face + faces]
    if kind == types.mjGEOM_SPHERE:
        return _lathe(_sphere_profile(size[0]))
    if kind == types.mjGEOM_ELLIPSOID:
        vertices, faces = _lathe(_sphere_profile(1.0))
        return vertices * size[:3], faces
    if kind == types.mjGEOM_CAPSULE:
        radius, half = size[0], size[1]
        bottom = _sphere_profile(radius, -half, "bottom")
        top = _sphere_profile(radius, half, "top")
        return _lathe(np.concatenate([bottom, top]))
    if kind == types.mjGEOM_CYLINDER:
        radius, half = size[0], size[1]
        edge = [[radius, -half], [radius, -half], [radius, half], [radius, half]]
        return _lathe(np.array([[0.0, -half], *edge, [0.0, half]]))
    if kind == types.mjGEOM_BOX:
        return _box(size[:3])
    return None


def geom_rgba(model: mujoco.MjModel, geom: int) -> np.ndarray:
    """[4] colour of a geom: its material's where it has one, as MuJoCo draws it."""
    material = model.geom_matid[geom]
    return (model.mat_rgba[material] if material >= 0 else model.geom_rgba[geom]).astype(np.float64)


def drawn_geoms(model: mujoco.MjModel) -> list[int]:
    """Geoms MuJoCo's viewers show by default (groups 0-2, not fully transparent) that
    `geom_mesh` can draw."""
    return [
        g
        for g in range(model.ngeom)
        if model.geom_group[g] < DRAWN_GROUPS and geom_rgba(model, g)[3] > 0 and int(model.geom_type[g]) in _MESH_TYPES
    ]


def body_meshes(model: mujoco.MjModel) -> dict[int, list[Mesh]]:
    """Body id -> its drawn geoms as meshes in the body's frame, merged per colour (body 0,
    the world, holds the static geoms in the world frame)."""
    merged: dict[tuple[int, tuple], list[tuple[np.ndarray, np.ndarray]]] = {}
    for geom in drawn_geoms(model):
        vertices, faces = geom_mesh(model, geom)
        rotation = np.zeros(9)
        mujoco.mju_quat2Mat(rotation, model.geom_quat[geom])
        placed = vertices @ rotation.reshape(3, 3).T + model.geom_pos[geom]
        colour = tuple(np.round(geom_rgba(model, geom), 4))
        merged.setdefault((int(model.geom_bodyid[geom]), colour), []).append((placed, faces))
    meshes: dict[int, list[Mesh]] = {}
    for (body, colour), parts in merged.items():
        offsets = np.cumsum([0] + [len(v) for v, _ in parts[:-1]])
        vertices = np.concatenate([v for v, _ in parts]).astype(np.float32)
        faces = np.concatenate([f + o for (_, f), o in zip(parts, offsets)]).astype(np.uint32)
        meshes.setdefault(body, []).append(Mesh(vertices, faces, colour[:3], float(colour[3])))
    return meshes


def floor_height(model: mujoco.MjModel) -> float | None:
    """Height of the model's lowest horizontal floor plane (world z), or None."""
    heights = [
        float(model.geom_pos[g, 2])
        for g in range(model.ngeom)
        if model.geom_type[g] == mujoco.mjtGeom.mjGEOM_PLANE and model.geom_bodyid[g] == 0
    ]
    return min(heights) if heights else None


@dataclass
class Pose:
    """The body at one ``qpos``.

    Attributes:
        xpos: [nbody, 3] body frame origins, world frame (model length units).
        xquat: [nbody, 4] body orientations, wxyz, world frame.
        segments: [N, 2, 3] the straight pieces of every tendon's path, world frame.
        segment_tendon: [N] the tendon of each segment.
        site_xpos: [nsite, 3] site positions, world frame.
    """

    xpos: np.ndarray
    xquat: np.ndarray
    segments: np.ndarray
    segment_tendon: np.ndarray
    site_xpos: np.ndarray


class Poser:
    """Forward kinematics and tendon paths at given joint positions (MuJoCo on the CPU).

    Args:
        model: the body's compiled model.
    """

    def __init__(self, model: mujoco.MjModel) -> None:
        self.model = model
        self.data = mujoco.MjData(model)

    def __call__(self, qpos: np.ndarray) -> Pose:
        """The `Pose` at ``qpos`` [nq] (rad, m)."""
        model, data = self.model, self.data
        data.qpos[:] = qpos
        mujoco.mj_kinematics(model, data)
        mujoco.mj_comPos(model, data)
        mujoco.mj_tendon(model, data)
        segments, owners = [], []
        objects = data.wrap_obj.reshape(-1)
        points = data.wrap_xpos.reshape(-1, 3)
        for tendon in range(model.ntendon):
            first, count = int(data.ten_wrapadr[tendon]), int(data.ten_wrapnum[tendon])
            for j in range(first, first + count - 1):
                if objects[j] != -2 and objects[j + 1] != -2:  # -2: a pulley starts a new branch
                    segments.append(points[j : j + 2])
                    owners.append(tendon)
        return Pose(
            xpos=data.xpos.copy(),
            xquat=data.xquat.copy(),
            segments=np.array(segments, dtype=np.float64).reshape(-1, 2, 3),
            segment_tendon=np.array(owners, dtype=np.int64),
            site_xpos=data.site_xpos.copy(),
        )


def free_root(model: mujoco.MjModel) -> int | None:
    """The body whose free joint is the model's first joint (a free-moving body), or None."""
    if model.njnt and model.jnt_type[0] == mujoco.mjtJoint.mjJNT_FREE:
        return int(model.jnt_bodyid[0])
    return None


def model_size(model: mujoco.MjModel, data: mujoco.MjData | None = None) -> float:
    """A length that measures the body (model units): the diagonal of the bounding box of
    its body and site positions at ``data`` (default the model's reference pose), or
    MuJoCo's ``stat.extent`` where that is degenerate."""
    if data is None:
        data = mujoco.MjData(model)
        mujoco.mj_kinematics(model, data)
    points = np.concatenate([data.xpos[1:], data.site_xpos, data.geom_xpos[drawn_geoms(model)]])
    if len(points) < 2:
        return float(model.stat.extent)
    size = float(np.linalg.norm(points.max(axis=0) - points.min(axis=0)))
    return size if size > 1e-9 else float(model.stat.extent)
