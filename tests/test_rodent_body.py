"""Tier 2: the dm-control rat (`rodent`) loaded from the dm-control wheel, its edits, and the
backend compatibility check."""

import importlib.util
from dataclasses import replace

import mujoco
import numpy as np
import pytest

if importlib.util.find_spec("dm_control") is None:
    pytest.skip(
        "dm-control is not installed (the rodent body loads its model from it): pip install dm-control==1.0.50",
        allow_module_level=True,
    )

from neuromimic.bodies import (
    BackendCompatibilityError,
    check_backend_compatibility,
    get_body,
    known_bodies,
    require_backend_compatibility,
)
from neuromimic.bodies import rodent as rodent_module
from neuromimic.bodies.compat import collision_geom_pairs
from neuromimic.bodies.rodent import build_rodent_spec
from neuromimic.physics.model import compile_model, sensor_layout

# The rat23 README's table and starting offsets (m, body frame), restated independently of
# the module so that a slip in either shows up here.
README_BODIES = {
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
README_OFFSETS = {
    "ShoulderL": (0.0287, 0.00984, -0.02542),
    "ShoulderR": (0.0287, -0.00984, -0.02542),
    "ElbowL": (-0.0159, 0.0104, -0.0223),
    "ElbowR": (-0.0159, -0.0104, -0.0223),
    "HandL": (0.0030, 0.0015, -0.0083),
    "HandR": (0.0030, -0.0015, -0.0083),
    "KneeL": (0.0154, 0.0175, -0.0257),
    "KneeR": (0.0154, -0.0175, -0.0257),
    "AnkleL": (-0.0323, -0.0047, -0.0221),
    "AnkleR": (-0.0323, 0.0047, -0.0221),
    "FootL": (0.0211, 0.0076, -0.0028),
    "FootR": (0.0211, -0.0076, -0.0028),
    "HipL": (-0.015, 0.015, 0.0),
    "HipR": (-0.015, -0.015, 0.0),
    "SpineF": (-0.015, 0.0, 0.0),
}


@pytest.fixture(scope="module")
def body():
    return get_body("rodent")


@pytest.fixture(scope="module")
def model(body):
    return body.load_model()


@pytest.fixture(scope="module")
def unedited():
    return build_rodent_spec(mjx_edits=False).compile()


def test_registered_with_free_root(body, model):
    assert "rodent" in known_bodies()
    assert model.jnt_type[0] == mujoco.mjtJoint.mjJNT_FREE and model.joint(0).name == "root"
    assert model.body(model.jnt_bodyid[0]).name == "torso"
    assert (model.jnt_type[1:] == mujoco.mjtJoint.mjJNT_HINGE).all()
    assert model.nq == model.nv + 1 == 74
    assert body.default_qpos is None  # qpos0 has the root raised clear of the floor


def test_keeps_the_38_actuators(model):
    assert model.nu == 38
    names = [model.actuator(i).name for i in range(model.nu)]
    groups = [name for group in rodent_module.ACTUATOR_GROUPS.values() for name in group]
    assert sorted(groups) == sorted(names)  # every actuator in exactly one group


@pytest.mark.parametrize("keypoint", list(README_BODIES))
def test_keypoint_site_on_readme_body(body, model, keypoint):
    assert list(body.keypoint_sites) == list(rodent_module.RAT23_KEYPOINTS)
    site = model.site(body.keypoint_sites[keypoint])
    assert site.name == keypoint
    assert model.body(site.bodyid[0]).name == README_BODIES[keypoint]
    np.testing.assert_allclose(site.pos, README_OFFSETS.get(keypoint, (0.0, 0.0, 0.0)), atol=1e-12)


def test_trunk_keypoints_are_the_axial_ones(body):
    # Head, spine and hip keypoints: the bodies of the axial skeleton (skull to pelvis).
    axial = {"skull", "vertebra_cervical_5", "vertebra_1", "pelvis"}
    assert body.trunk_keypoints == tuple(k for k, b in README_BODIES.items() if b in axial)
    with pytest.raises(ValueError, match=r"trunk_keypoints \['Nose'\] are not keys of keypoint_sites"):
        replace(body, trunk_keypoints=("Snout", "Nose"))


def test_end_effectors_and_floor_arena(body, model):
    assert body.end_effector_sites == ("HandL", "HandR", "FootL", "FootR", "Snout")
    floor = model.geom("floor")
    assert floor.type[0] == mujoco.mjtGeom.mjGEOM_PLANE and model.geom_bodyid[floor.id] == 0
    assert model.nlight >= 1
    # At qpos0 the lowest geom is clear of the floor, by less than 3 mm.
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    distances = [
        mujoco.mj_geomDistance(model, data, floor.id, g, 0.1, None)
        for g in range(model.ngeom)
        if g != floor.id and model.geom_contype[g]
    ]
    assert 0.0 < min(distances) < 3e-3


def test_compiles_with_the_backend_sensors(body):
    compiled = compile_model(body)
    layout = sensor_layout(compiled, body)
    assert layout.num_sites == 5
    assert body.model_hash == body.model_hash and len(body.model_hash) == 16


def test_stable_for_2_s_under_random_controls(model):
    data = mujoco.MjData(model)
    rng = np.random.default_rng(0)
    steps_per_control = 5  # 10 ms control steps of 2 ms physics steps
    for _ in range(round(2.0 / (steps_per_control * model.opt.timestep))):
        data.ctrl[:] = rng.uniform(-1.0, 1.0, model.nu)
        for _ in range(steps_per_control):
            mujoco.mj_step(model, data)
        assert np.isfinite(data.qpos).all() and np.isfinite(data.qvel).all()
        assert np.abs(data.qvel).max() < 1e3  # the backends' `unstable` threshold
        assert data.qpos[2] > 0.0  # the root stays above the floor: stands or falls, no explosion
    assert data.time == pytest.approx(2.0)
    assert all(w.number == 0 for w in data.warning), "MuJoCo raised warnings"


def test_compatible_with_both_backends_after_the_edits(body):
    compiled = compile_model(body)
    assert check_backend_compatibility(compiled, "mujoco") == []
    assert check_backend_compatibility(compiled, "mjx") == []
    require_backend_compatibility(compiled, "mjx", body_key="rodent")
    assert len(collision_geom_pairs(compiled)) == compiled.ngeom - 1  # each rat geom with the floor


def test_compatibility_report_of_the_unedited_model(unedited):
    assert check_backend_compatibility(unedited, "mujoco") == []
    problems = check_backend_compatibility(unedited, "mjx")
    # The file's self-collisions include 42 ellipsoid-box pairs MJX cannot collide; its
    # touch sensors are fine for MJX as long as the model has collision pairs.
    assert [p.feature for p in problems] == ["collision (mjGEOM_ELLIPSOID, mjGEOM_BOX)"]
    assert "collision_torso / skull_P0_collision" in problems[0].element
    assert "(42 pairs)" in problems[0].element
    assert problems[0].supported_by == ("mujoco",) and problems[0].backend == "mjx"
    with pytest.raises(
        BackendCompatibilityError,
        match=r"(?s)'mjx' backend cannot simulate body 'rodent'"
        r".*collision \(mjGEOM_ELLIPSOID, mjGEOM_BOX\)",
    ) as error:
        require_backend_compatibility(unedited, "mjx", body_key="rodent")
    assert error.value.problems == problems
    with pytest.raises(ValueError, match="unknown backend 'bullet'"):
        check_backend_compatibility(unedited, "bullet")


def test_compatibility_report_names_touch_sensors_without_contacts():
    spec = build_rodent_spec(mjx_edits=False)
    for geom in spec.geoms:  # no collision pair at all: MJX cannot trace touch sensors
        geom.contype = geom.conaffinity = 0
    problems = check_backend_compatibility(spec.compile(), "mjx")
    assert {p.feature for p in problems} == {"touch sensor in a model without any collision pair"}
    assert sorted(p.element for p in problems) == ["sensor palm_L", "sensor palm_R", "sensor sole_L", "sensor sole_R"]


def test_mjx_edits_remove_touch_sensors(model):
    types = {int(t) for t in model.sensor_type}
    assert int(mujoco.mjtSensor.mjSENS_TOUCH) not in types


def test_compatibility_tables_match_the_installed_mjx(model, unedited):
    pytest.importorskip("mujoco.mjx", reason="mujoco-mjx is not installed")
    from mujoco.mjx._src import collision_driver, types

    from neuromimic.bodies import compat

    pairs = {(int(a), int(b)) for a, b in collision_driver._COLLISION_FUNC}
    assert compat.MJX_COLLISION_PAIRS == pairs
    assert compat.MJX_SENSORS == {int(t) for t in types.SensorType}
    enums = {
        "actuator_dyntype": types.DynType,
        "actuator_gaintype": types.GainType,
        "actuator_biastype": types.BiasType,
        "actuator_trntype": types.TrnType,
        "eq_type": types.EqType,
        "wrap_type": types.WrapType,
    }
    for name, _, supported in compat.MJX_ENUMS:
        assert supported == {int(t) for t in enums[name]}, name
    options = {"integrator": types.IntegratorType, "solver": types.SolverType}
    for name, _, supported in compat.MJX_OPTIONS:
        assert supported == {int(t) for t in options[name]}, name
    assert compat.MJX_ENABLE_FLAGS == {int(t) for t in types.EnableBit}
    for m in (model, unedited):
        ours = collision_geom_pairs(m)
        theirs = [(int(g1), int(g2)) for g1, g2, _ in collision_driver.geom_pairs(m)]
        assert ours == theirs


def test_missing_dm_control_names_the_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "dm_control" else real(name, *a),
    )
    with pytest.raises(ImportError, match=r"pip install dm-control==1\.0\.50"):
        get_body("rodent").load_model()


def test_native_backend_steps_the_rodent(body):
    import torch

    from neuromimic.physics.mujoco_backend import MujocoBackend

    backend = MujocoBackend(body, num_envs=2, substeps=5, nthread=1)
    try:
        assert backend.view.site_pos_w.shape == (2, 5, 3)
        for _ in range(5):
            backend.step(torch.zeros(2, 38))
        assert torch.isfinite(backend.view.qpos).all() and not backend.view.unstable.any()
    finally:
        backend.close()


def test_bodies_list_shows_the_rodent():
    from neuromimic.bodies.validate import list_bodies

    rows = {row["key"]: row for row in list_bodies()}
    assert rows["rodent"] == {
        "key": "rodent",
        "dof": 73,
        "actuators": 38,
        "muscles": 0,
        "source": f"dm-control {rodent_module.DM_CONTROL_VERSION}",
        "backends": ["mujoco", "mjx", "warp"],
    }


@pytest.mark.slow
def test_mjx_put_model(body):
    """MJX accepts the edited rat (and rejects the unedited one). One jitted ``mjx.step`` is
    not run here: on 2 CPU cores (mujoco-mjx 3.17, jax 0.10.2) its XLA compilation took
    2 to 3.6 minutes, and the first call had not returned after 8 more."""
    mjx = pytest.importorskip("mujoco.mjx", reason="mujoco-mjx is not installed")

    compiled = compile_model(body)
    mx = mjx.put_model(compiled)
    data = mjx.make_data(mx)
    assert data.qpos.shape == (74,) and data.ctrl.shape == (38,)
    assert data.sensordata.shape == (compiled.nsensordata,)
    with pytest.raises(NotImplementedError, match="collisions not implemented"):
        mjx.put_model(build_rodent_spec(mjx_edits=False).compile())


def test_mjx_backend_refuses_the_unedited_rodent_before_compiling():
    """The backend's constructor names the unsupported collision pair (no JAX tracing)."""
    import dataclasses

    from neuromimic.physics import make_backend

    pytest.importorskip("mujoco.mjx", reason="mujoco-mjx is not installed")
    unedited_body = dataclasses.replace(get_body("rodent"), build_spec=lambda: build_rodent_spec(mjx_edits=False))
    with pytest.raises(BackendCompatibilityError, match="mjGEOM_ELLIPSOID"):
        make_backend("mjx", unedited_body, num_envs=1, substeps=1)
