"""What bodies loaded from other wheels share: finding their files, warning when the
installed release is not the one a body was written against, and the spec edits several
bodies apply (a floor arena, removing touch sensors)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
from pathlib import Path

import mujoco

log = logging.getLogger(__name__)

#: Name of the floor geom `add_floor` adds.
FLOOR = "floor"


def warn_if_not_pinned(distribution: str, pinned: str, body: str) -> None:
    """Log a warning if the installed ``distribution`` is not release ``pinned``: body
    ``body`` was written and checked against that release, and clips made with another
    one carry another model hash."""
    try:
        installed = importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        installed = "unknown"
    if installed != pinned:
        log.warning(
            "%s %s is installed; the %s body was written for %s (pip install %s==%s); "
            "its model hash will differ from clips made with that release",
            distribution,
            installed,
            body,
            pinned,
            distribution,
            pinned,
        )


def wheel_asset(module: str, distribution: str, pinned: str, relative: str, body: str) -> Path:
    """Path of the file ``relative`` inside the installed package ``module`` (not imported).

    Args:
        module: import name of the package (``"dm_control"``).
        distribution: its distribution name on PyPI (``"dm-control"``).
        pinned: the release the body was written against.
        relative: path inside the package.
        body: the body's key (for messages).

    Raises:
        ImportError: the package is not installed; the message says what to install.
        FileNotFoundError: the installed release has no such file.
    """
    install = f"pip install {distribution}=={pinned}"
    found = importlib.util.find_spec(module)
    if found is None or found.origin is None:
        raise ImportError(f"the {body!r} body loads its model from {distribution}; install it: {install}")
    path = Path(found.origin).parent / relative
    if not path.is_file():
        raise FileNotFoundError(f"no {body} model at {path}; install the tested release: {install}")
    warn_if_not_pinned(distribution, pinned, body)
    return path


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
        name="floor_light",
        pos=[0.0, 0.0, 2.0],
        dir=[0.0, 0.0, -1.0],
        type=mujoco.mjtLightType.mjLIGHT_DIRECTIONAL,
        diffuse=[0.5, 0.5, 0.5],
    )


def remove_touch_sensors(spec: mujoco.MjSpec) -> None:
    """MJX edit: delete every touch sensor (the rat's palms and soles, the fly's claws,
    MyoLegs' feet).

    MJX's ``sensor_acc`` assembles the contact forces touch sensors read by concatenating
    one array per contact dimension: in a model without any collision pair the list is
    empty and the step fails to trace. With contacts it traces, but every step pays for a
    contact-force pass, and the native backend evaluates sensors with the constraint
    solver disabled (``MujocoBackend.model_changed``), where touch reads 0: the two
    backends would report different values. No neuromimic code reads them; contact forces
    can be read from the contacts if a task needs them.
    """
    for sensor in list(spec.sensors):
        if sensor.type == mujoco.mjtSensor.mjSENS_TOUCH:
            spec.delete(sensor)
