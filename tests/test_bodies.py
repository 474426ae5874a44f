"""Tier 2: the mouse forelimb MJCF against the published model's numbers and anatomy."""

import mujoco
import numpy as np
import pytest

from neuromimic.bodies import UnknownBodyError, get_body, known_bodies

SHOULDER_MUSCLES = ("Pec_C", "Lat", "PD", "AD", "MD")


@pytest.fixture(scope="module")
def model():
    return get_body("mouse_forelimb").load_model()


def _tendon_lengths(model, qpos):
    data = mujoco.MjData(model)
    data.qpos[:] = qpos
    mujoco.mj_fwdPosition(model, data)
    return {model.actuator(i).name: data.actuator_length[i] for i in range(model.nu)}


def _length_derivative(model, qpos, joint):
    """d(muscle-tendon length)/d(joint angle) by central differences, in m/rad."""
    step = np.zeros(model.nq)
    step[model.joint(joint).qposadr[0]] = 1e-6
    plus, minus = _tendon_lengths(model, qpos + step), _tendon_lengths(model, qpos - step)
    return {name: (plus[name] - minus[name]) / 2e-6 for name in plus}


def test_compiles_with_published_structure(model):
    assert model.nq == 4 and model.nv == 4
    assert model.nu == 9
    assert (model.actuator_dyntype == mujoco.mjtDyn.mjDYN_MUSCLE).all()
    assert model.opt.integrator == mujoco.mjtIntegrator.mjINT_RK4
    assert model.opt.timestep == 0.005
    assert model.opt.solver == mujoco.mjtSolver.mjSOL_CG
    assert model.opt.iterations == 30 and model.opt.ls_iterations == 30
    assert model.body_mass.sum() == pytest.approx(0.9616e-3, rel=1e-6)
    assert model.site("wrist").id >= 0
    assert [model.joint(i).name for i in range(4)] == ["sh_elv", "sh_extension", "sh_rotation", "elbow"]
    np.testing.assert_allclose(model.actuator_ctrlrange, np.tile([0.0, 1.0], (9, 1)))


@pytest.mark.parametrize(
    "elbow_deg, expected_mm",
    [
        (-80, {"Brachialis": 3.32, "Biceps_Long": 9.27, "Triceps_Lateral": 4.27, "Triceps_Long": 5.67}),
        (0, {"Brachialis": 2.59, "Biceps_Long": 8.73, "Triceps_Lateral": 4.63, "Triceps_Long": 5.88}),
        (90, {"Brachialis": 1.32, "Biceps_Long": 8.65, "Triceps_Lateral": 5.73, "Triceps_Long": 7.02}),
    ],
)
def test_tendon_lengths_match_published_reference(model, elbow_deg, expected_mm):
    qpos = np.zeros(4)
    qpos[3] = np.deg2rad(elbow_deg)
    lengths = _tendon_lengths(model, qpos)
    for name, mm in expected_mm.items():
        assert lengths[name] * 1e3 == pytest.approx(mm, abs=0.006), name
    shoulder = {"Pec_C": 2.854, "Lat": 6.320, "AD": 3.551, "PD": 2.978, "MD": 2.707}
    for name, mm in shoulder.items():
        assert lengths[name] * 1e3 == pytest.approx(mm, abs=0.0006), name


@pytest.mark.parametrize("qpos", [np.zeros(4), np.array([-0.5, -0.3, 0.5, 0.5]), np.array([-1.0, 0.4, 1.2, -0.8])])
def test_muscle_lengths_change_with_anatomical_sign(model, qpos):
    elbow = _length_derivative(model, qpos, "elbow")
    # Positive elbow angle flexes: flexors shorten, extensors lengthen.
    assert elbow["Biceps_Long"] < 0 and elbow["Brachialis"] < 0
    assert elbow["Triceps_Lateral"] > 0 and elbow["Triceps_Long"] > 0
    for name in SHOULDER_MUSCLES:  # they do not cross the elbow
        assert abs(elbow[name]) < 1e-9, name
    # sh_rotation (x axis) carries shoulder flexion in this model: the flexors (anterior
    # deltoid, long biceps) shorten and the extensors (posterior deltoid, latissimus,
    # long triceps) lengthen as it increases.
    flexion = _length_derivative(model, qpos, "sh_rotation")
    assert flexion["AD"] < 0 and flexion["Biceps_Long"] < 0
    assert flexion["PD"] > 0 and flexion["Lat"] > 0 and flexion["Triceps_Long"] > 0
    for joint in ("sh_elv", "sh_extension", "sh_rotation"):  # mono-articular elbow muscles
        derivative = _length_derivative(model, qpos, joint)
        assert abs(derivative["Triceps_Lateral"]) < 1e-9 and abs(derivative["Brachialis"]) < 1e-9


def test_stable_for_10_s_under_random_activation(model):
    data = mujoco.MjData(model)
    rng = np.random.default_rng(0)
    max_qvel = 0.0
    for _ in range(1000):  # 10 s of 10 ms control steps
        data.ctrl[:] = rng.uniform(0, 1, model.nu)
        for _ in range(2):
            mujoco.mj_step(model, data)
        assert np.isfinite(data.qpos).all() and np.isfinite(data.qvel).all()
        max_qvel = max(max_qvel, np.abs(data.qvel).max())
    assert data.time == pytest.approx(10.0)
    assert all(w.number == 0 for w in data.warning), "MuJoCo raised warnings (bad acceleration or reset)"
    assert max_qvel < 5.0


def test_registry_lists_known_bodies_on_unknown_key():
    assert "mouse_forelimb" in known_bodies()
    with pytest.raises(UnknownBodyError, match="unknown body 'mouse'.*known bodies: .*mouse_forelimb"):
        get_body("mouse")
