"""The compiled model every backend simulates: the body's MJCF plus the sensors we read.

Derived quantities (tracked site positions, muscle length, velocity and force) are read
from ``sensordata`` by every backend, so the native and the JAX backend agree on how they
are evaluated; both evaluate them at the final state of a control step.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco

from neuromimic.bodies.base import Body

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
    return spec.compile()


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
        expected += [
            f"{SENSOR_PREFIX}{kind}/{model.actuator(i).name or i}" for i in range(model.nu)
        ]
    ours = [
        model.sensor(i).name
        for i in range(model.nsensor)
        if model.sensor(i).name.startswith(SENSOR_PREFIX)
    ]
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
