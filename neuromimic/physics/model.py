"""The compiled model every backend simulates: the body's MJCF plus the sensors we read.

Derived quantities (tracked site positions, muscle length, velocity and force) are read
from ``sensordata`` by every backend, so the native and the JAX backend agree on how they
are evaluated; both evaluate them at the final state of a control step.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import mujoco

from neuromimic.bodies.base import Body

log = logging.getLogger(__name__)

#: Prefix of the names of the sensors `compile_model` adds (avoids clashes with the MJCF).
SENSOR_PREFIX = "neuromimic/"


@dataclass(frozen=True)
class SensorLayout:
    """Where each derived quantity lives in ``sensordata`` [nsensordata].

    Attributes:
        site_pos_w: slice of the world positions of the tracked sites, ``S * 3`` values,
            reshaped to [S, 3] (m).
        actuator_length: slice of the actuator (muscle-tendon) lengths [nu] (m).
        actuator_velocity: slice of the actuator velocities [nu] (m/s).
        actuator_force: slice of the actuator forces [nu] (N).
        num_sites: S, the number of tracked sites.
    """

    site_pos_w: slice
    actuator_length: slice
    actuator_velocity: slice
    actuator_force: slice
    num_sites: int


def compile_model(body: Body) -> mujoco.MjModel:
    """Compile ``body`` with the sensors described by `sensor_layout`.

    Adds, in this order: one ``framepos`` sensor per end-effector site, then one
    ``actuatorpos``, ``actuatorvel`` and ``actuatorfrc`` sensor per actuator (grouped by
    kind, each group in actuator order).

    Args:
        body: the body to compile.

    Returns:
        The compiled model; ``sensor_layout(model, body)`` says where to read each value.
    """
    spec = body.load_spec()
    for site in body.end_effector_sites:
        spec.add_sensor(
            name=f"{SENSOR_PREFIX}framepos/{site}",
            type=mujoco.mjtSensor.mjSENS_FRAMEPOS,
            objtype=mujoco.mjtObj.mjOBJ_SITE,
            objname=site,
        )
    actuators = [actuator.name for actuator in spec.actuators]
    for kind, sensor_type in (
        ("actuatorpos", mujoco.mjtSensor.mjSENS_ACTUATORPOS),
        ("actuatorvel", mujoco.mjtSensor.mjSENS_ACTUATORVEL),
        ("actuatorfrc", mujoco.mjtSensor.mjSENS_ACTUATORFRC),
    ):
        for index, name in enumerate(actuators):
            spec.add_sensor(
                name=f"{SENSOR_PREFIX}{kind}/{name or index}",
                type=sensor_type,
                objtype=mujoco.mjtObj.mjOBJ_ACTUATOR,
                objname=name,
            )
    model = spec.compile()
    warn_low_friction(model, body.key)
    return model


def low_friction(model: mujoco.MjModel) -> list[str]:
    """The friction coefficients of a model that MuJoCo raises to its minimum (``mjMINMU``,
    1e-5) in every contact, each as ``"geom 'name': sliding 0"``.

    Checked: the sliding friction of every geom that can collide, its torsional friction
    where ``condim >= 4``, its rolling friction where ``condim == 6``, and the friction of
    explicit contact pairs.
    """
    found = []
    kinds = ("sliding", "torsional", "rolling")
    for i in range(model.ngeom):
        if not (model.geom_contype[i] or model.geom_conaffinity[i]):
            continue
        used = {1: 0, 3: 1, 4: 2, 6: 3}.get(int(model.geom_condim[i]), 1)
        for k in range(used):
            value = float(model.geom_friction[i, k])
            if value < mujoco.mjMINMU:
                found.append(f"geom {model.geom(i).name or i!r}: {kinds[k]} {value:g}")
    for i in range(model.npair):
        used = {1: 0, 3: 2, 4: 3, 6: 5}.get(int(model.pair_dim[i]), 2)
        low = [float(v) for v in model.pair_friction[i, :used] if v < mujoco.mjMINMU]
        if low:
            found.append(f"contact pair {model.pair(i).name or i!r}: friction {low}")
    return found


_warned_friction: set[str] = set()


def warn_low_friction(model: mujoco.MjModel, body: str) -> None:
    """Log, once per body, the friction coefficients MuJoCo will silently raise
    (`low_friction`): a frictionless contact in the model is not frictionless in the
    simulation."""
    found = low_friction(model)
    if found and body not in _warned_friction:
        _warned_friction.add(body)
        log.warning(
            "body %r: %d friction coefficient(s) below MuJoCo's minimum %g, which MuJoCo raises "
            "to %g in every contact: %s%s. Set them to at least %g in the model (or condim 1 "
            "for a frictionless contact)",
            body,
            len(found),
            mujoco.mjMINMU,
            mujoco.mjMINMU,
            "; ".join(found[:5]),
            f" and {len(found) - 5} more" if len(found) > 5 else "",
            mujoco.mjMINMU,
        )


def sensor_layout(model: mujoco.MjModel, body: Body) -> SensorLayout:
    """The `SensorLayout` of a model made by `compile_model`, checked against the model.

    Args:
        model: the output of ``compile_model(body)``.
        body: the body it was compiled from.

    Raises:
        ValueError: if the model's sensors are not the ones `compile_model` adds.
    """
    num_sites = len(body.end_effector_sites)
    expected = [f"{SENSOR_PREFIX}framepos/{site}" for site in body.end_effector_sites]
    for kind in ("actuatorpos", "actuatorvel", "actuatorfrc"):
        expected += [f"{SENSOR_PREFIX}{kind}/{model.actuator(i).name or i}" for i in range(model.nu)]
    ours = [model.sensor(i).name for i in range(model.nsensor) if model.sensor(i).name.startswith(SENSOR_PREFIX)]
    if ours != expected:
        raise ValueError(
            f"model {body.key!r} was not compiled by neuromimic.physics.compile_model: "
            f"expected sensors {expected}, found {ours}"
        )
    addresses = [int(model.sensor(name).adr[0]) for name in expected]
    dims = [int(model.sensor(name).dim[0]) for name in expected]
    first = addresses[0] if addresses else model.nsensordata
    if any(adr != first + sum(dims[:i]) for i, adr in enumerate(addresses)):
        raise ValueError(f"the sensors of model {body.key!r} are not contiguous in sensordata")
    sites_end = first + 3 * num_sites
    nu = model.nu
    return SensorLayout(
        site_pos_w=slice(first, sites_end),
        actuator_length=slice(sites_end, sites_end + nu),
        actuator_velocity=slice(sites_end + nu, sites_end + 2 * nu),
        actuator_force=slice(sites_end + 2 * nu, sites_end + 3 * nu),
        num_sites=num_sites,
    )
