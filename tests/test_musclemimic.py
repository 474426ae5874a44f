"""Tier 2: MuscleMimic's bodies (musclemimic-models: ``myofullbody``, ``myoarm_bimanual``),
their edits, their references (the full body walking MyoLegs' gait with swinging arms,
both arms reaching) and what a 416-muscle body asks of analysis: muscle selection by
group and pattern in ``weaken_muscles``, and recordings of every muscle."""

from __future__ import annotations

import dataclasses
import functools

import mujoco
import numpy as np
import pytest
import torch
import yaml
from test_clip_makers import _synthetic_cycle  # tests/ is on sys.path (conftest.py)

from neuromimic.analysis import perturb
from neuromimic.bodies import get_body
from neuromimic.bodies.musclemimic import REST_SHOULDER_ELEVATION, load_musclemimic_spec
from neuromimic.bodies.validate import check_model, coupled_pose
from neuromimic.bundled import config_path
from neuromimic.data.clips import ReferenceClip
from neuromimic.data.gait import ARM_SWING, gait_qpos, read_gait_cycle
from neuromimic.data.joint_reach import make_joint_reach_clips
from neuromimic.physics import make_backend


def _self_contacts(model, qpos):
    """(geom1, geom2, depth) of every contact between two of the body's own geoms at ``qpos``."""
    data = mujoco.MjData(model)
    data.qpos[:] = qpos
    mujoco.mj_forward(model, data)
    floor = {g for g in range(model.ngeom) if model.geom_type[g] == mujoco.mjtGeom.mjGEOM_PLANE}
    return [
        (model.geom(c.geom1).name, model.geom(c.geom2).name, -c.dist)
        for c in data.contact[: data.ncon]
        if c.dist < 0 and not {c.geom1, c.geom2} & floor
    ], data


@pytest.mark.parametrize("key", ["myofullbody", "myoarm_bimanual"])
def test_rest_pose_keeps_the_upper_arms_out_of_the_thorax(key):
    # The wheel's own default pose puts both humeri 21.5 mm into the thorax's collision geom.
    upstream = load_musclemimic_spec(key).compile()
    contacts, _ = _self_contacts(upstream, upstream.qpos0)
    assert {(a, b) for a, b, _ in contacts} == {("humerus_r_coll", "thorax_coll1"), ("humerus_l_coll", "thorax_coll1")}
    assert max(depth for *_, depth in contacts) == pytest.approx(0.0215, abs=5e-4)

    body = get_body(key)
    model = body.load_model()
    rest = body.rest_qpos(model)
    np.testing.assert_array_equal(coupled_pose(model, rest)[0], rest)  # coupled joints follow
    for side in "rl":
        assert rest[model.joint(f"shoulder_elv_{side}").qposadr[0]] == REST_SHOULDER_ELEVATION
    contacts, data = _self_contacts(model, rest)
    assert contacts == []
    if key == "myofullbody":  # stands: the lowest foot geom touches the floor
        floor = model.geom("floor").id
        gaps = [mujoco.mj_geomDistance(model, data, floor, g, 1.0, None) for g in range(model.ngeom) if g != floor]
        assert min(gaps) == pytest.approx(0.0, abs=1e-6)
        assert model.nsensor == 106 and not (model.sensor_type == mujoco.mjtSensor.mjSENS_TOUCH).any()
    else:  # no floor: the arms cannot reach it
        assert not (model.geom_type == mujoco.mjtGeom.mjGEOM_PLANE).any()


def test_muscle_groups_are_myo_sims_muscles_and_patterns_select_by_side():
    model = get_body("myofullbody").load_model()
    groups = get_body("myofullbody").muscle_groups
    legs = get_body("myolegs").load_model()
    arm = get_body("myoarm").load_model()
    assert set(groups["legs"]) == {legs.actuator(i).name for i in range(legs.nu)}  # MyoLegs' 80
    assert list(groups["arm_r"]) == [arm.actuator(i).name for i in range(arm.nu)]  # MyoArm's 63
    assert len(perturb.select_muscles(model, "legs", groups)) == 80
    # The right arm's muscles carry no suffix: "*_r" is the right leg and trunk, arm_r the arm.
    right = perturb.select_muscles(model, "*_r", groups)
    assert len(right) == 145 and len(perturb.select_muscles(model, ["*_r", "arm_r"], groups)) == 208
    assert set(perturb.select_muscles(model, "ankle_plantarflexors_r", groups)) == {
        model.actuator(name).id for name in ("gasmed_r", "gaslat_r", "soleus_r")
    }
    with pytest.raises(perturb.PerturbationError, match=r"unknown muscle names \['soleus'\]"):
        perturb.select_muscles(model, ["soleus_r", "soleus"], groups)
    with pytest.raises(perturb.PerturbationError, match=r"patterns \['\*_R'\] match no muscle"):
        perturb.select_muscles(model, "*_R", groups)


def test_weaken_muscles_takes_groups_patterns_and_lists_and_undoes_exactly():
    body = get_body("myofullbody")
    backend = make_backend("mujoco", body, num_envs=1, substeps=1)
    model = backend.model
    force = lambda: model.actuator_gainprm[:, 2].copy()  # every muscle here states its F0
    before, passive = force(), model.actuator_biasprm.copy()
    leg_muscles = list(body.muscle_groups["legs"])
    for kwargs, expected in (
        ({"muscles": "*_r", "factor": 0.5}, perturb.select_muscles(model, "*_r")),
        ({"muscles": leg_muscles, "factor": 0.5}, [model.actuator(n).id for n in leg_muscles]),
        ({"scales": {"leg_l": 0.5}}, [model.actuator(f"{n[:-2]}_l").id for n in leg_muscles[:40]]),
    ):
        with perturb.weaken_muscles(backend, **kwargs):
            changed = np.flatnonzero(force() != before)
            np.testing.assert_array_equal(changed, sorted(expected))
            np.testing.assert_allclose(force()[changed], 0.5 * before[changed])
        np.testing.assert_array_equal(force(), before)
        np.testing.assert_array_equal(model.actuator_biasprm, passive)
    with pytest.raises(perturb.PerturbationError, match=r"patterns \['arm_\*'\] match no muscle"):
        perturb.weaken_muscles(backend, {"leg_l": 0.5, "arm_*": 0.5})  # groups are not patterns
    with pytest.raises(perturb.PerturbationError, match="'soleus_r' is chosen by both"):
        perturb.weaken_muscles(backend, {"soleus_r": 0.5, "ankle_plantarflexors_r": 0.3})
    with pytest.raises(perturb.PerturbationError, match="either scales"):
        perturb.weaken_muscles(backend, {"soleus_r": 0.5}, muscles="*_l", factor=0.5)

    # The bundled one-leg plantarflexor deficit is one YAML line, for either walking body.
    entries = yaml.safe_load(config_path("perturbations/weak_plantarflexors_r").read_text())
    assert len(entries) == 1
    plantarflexors = [model.actuator(n).id for n in ("gasmed_r", "gaslat_r", "soleus_r")]
    with perturb.apply(entries, controller=None, env=backend):
        np.testing.assert_allclose(force()[plantarflexors], 0.3 * before[plantarflexors])
        assert (force() != before).sum() == 3
    np.testing.assert_array_equal(force(), before)


def test_symmetry_pairs_the_arm_muscles_through_the_mirrored_groups():
    body = get_body("myoarm_bimanual")
    model = body.load_model()
    model.actuator_gainprm[model.actuator("DELT1_left").id, 2] *= 0.8  # a weaker left deltoid
    symmetry = check_model(body, model, seconds=0.001, grid=3)["checks"]["symmetry"]
    assert symmetry["pairs"] == {"bodies": 36, "joints": 38, "muscles": 63}
    assert [(m["pair"], m["quantity"]) for m in symmetry["mismatches"]] == [("DELT1", "peak_force")]
    # Without the groups the arm muscles have no twin (DELT1 / DELT1_left carry no _r / _l).
    plain = dataclasses.replace(body, muscle_groups={})
    assert check_model(plain, model, seconds=0.001, grid=3)["checks"]["symmetry"]["pairs"]["muscles"] == 0


def test_full_body_walks_myolegs_gait_with_arms_swinging_against_the_hips(tmp_path):
    csv = tmp_path / "cycle.csv"
    _synthetic_cycle(csv)
    cycle = read_gait_cycle(csv, fps=100.0)
    legs, full = get_body("myolegs").load_model(), get_body("myofullbody").load_model()
    walk_legs = gait_qpos(cycle, 50.0, 1.0)
    walk = gait_qpos(cycle, 50.0, 1.0, body="myofullbody")
    # The same leg angles and the same root path and turn (the pelvis sits on the root in
    # both); the height differs by the feet's geoms at most a few mm.
    for j in range(legs.njnt):
        name = legs.joint(j).name
        if name != "root":
            np.testing.assert_allclose(walk[:, full.joint(name).qposadr[0]], walk_legs[:, legs.jnt_qposadr[j]])
    np.testing.assert_allclose(walk[:, [0, 1, 3, 4, 5, 6]], walk_legs[:, [0, 1, 3, 4, 5, 6]])
    assert np.abs(walk[:, 2] - walk_legs[:, 2]).max() < 0.01
    # The trunk stays upright at rest; each arm swings forward as its own hip extends.
    rest = coupled_pose(full, get_body("myofullbody").rest_qpos(full))[0]
    lumbar = [full.joint(n).qposadr[0] for n in ("flex_extension", "lat_bending", "axial_rotation")]
    assert (walk[:, lumbar] == rest[lumbar]).all()
    hip = walk[:, full.joint("hip_flexion_r").qposadr[0]]
    plane = walk[:, full.joint("elv_angle_r").qposadr[0]]
    elevation = walk[:, full.joint("shoulder_elv_r").qposadr[0]]
    forward = np.cos(REST_SHOULDER_ELEVATION) * np.sin(-ARM_SWING * (hip - cycle.joint_angles["hip_flexion_r"].mean()))
    np.testing.assert_allclose(np.sin(elevation) * np.sin(plane), forward, atol=1e-9)
    assert np.corrcoef(plane, hip)[0, 1] < -0.99
    assert (elevation >= REST_SHOULDER_ELEVATION - 1e-12).all()  # never through the thorax
    still = gait_qpos(cycle, 50.0, 0.2, body="myofullbody", arm_swing=0.0)
    np.testing.assert_array_equal(still[:, full.joint("elv_angle_l").qposadr[0]], 0.0)


def test_bimanual_reaches_move_both_arms_as_mirror_images():
    clips = make_joint_reach_clips("myoarm_bimanual_reach", fps=10.0)
    assert len(clips) == 8 and [c.split for c in clips].count("val") == 2
    model = get_body("myoarm_bimanual").load_model()
    for clip in clips:
        for joint in ("shoulder_elv", "elv_angle", "elbow_flex"):
            right, left = (model.joint(f"{joint}_{side}").qposadr[0] for side in "rl")
            np.testing.assert_array_equal(clip.qpos[:, right], clip.qpos[:, left])
        grasp_r, grasp_l = clip.site_pos_w[:, 0], clip.site_pos_w[:, 2]  # S_grasp, S_grasp_left
        middle = (grasp_r[0, 0] + grasp_l[0, 0]) / 2
        assert np.abs((grasp_r[:, 0] - middle) + (grasp_l[:, 0] - middle)).max() < 1e-3  # mirrored in x
        assert np.abs(grasp_r[:, 1:] - grasp_l[:, 1:]).max() < 1e-3
        assert np.ptp(grasp_r, axis=0).max() > 0.1  # the hands move 10 cm or more


def test_a_recording_of_the_full_body_holds_every_muscle(tmp_path):
    from neuromimic.analysis.record import Recording, record
    from neuromimic.envs import EnvConfig, controller_spec
    from neuromimic.models import Controller, MLPCore

    body = get_body("myofullbody")
    model = body.load_model()
    rest = coupled_pose(model, body.rest_qpos(model))[0]
    clips = tmp_path / "clips"
    clips.mkdir()
    ReferenceClip.from_qpos("myofullbody", np.tile(rest, (5, 1)), 50.0, name="stand", split="val").save(
        clips / "stand.h5"
    )
    config = EnvConfig(body="myofullbody", clips=str(clips), num_envs=1, substeps=20)
    torch.manual_seed(0)
    controller = Controller(controller_spec(config), functools.partial(MLPCore, hidden_sizes=(32,)))
    recording = Recording.load_h5(record(controller, config, steps=3).save_h5(tmp_path / "rollout.h5"))
    assert len(recording.attrs["muscle_names"]) == 416
    for name in ("muscle/activation", "muscle/excitation", "muscle/force", "muscle/length", "muscle/velocity"):
        assert recording[name].shape == (1, 3, 416), name
    assert np.isfinite(recording["muscle/force"]).all() and (recording["muscle/length"] > 0).all()
    # What the body and its muscles take per control step, beside the controller's own
    # arrays (observation, layers, core: their size is the controller's): under 20 kB, so a
    # 4 s clip at 50 Hz stays under 4 MB of them (README: 8.5 MB in all with a 512-512 MLP).
    network = ("observation", "layers/", "core/")
    body_bytes = sum(v[0, 0].nbytes for k, v in recording.data.items() if not k.startswith(network))
    assert body_bytes < 20_000, body_bytes


@pytest.mark.slow
@pytest.mark.parametrize("config", ["myofullbody_gait_mlp.yaml", "myoarm_bimanual_reach_mlp.yaml"])
def test_musclemimic_configs_train(config, tmp_path, tiny_fit):
    body, clips = {
        "myofullbody_gait_mlp.yaml": ("myofullbody", "myofullbody_gait"),
        "myoarm_bimanual_reach_mlp.yaml": ("myoarm_bimanual", "myoarm_bimanual_reach"),
    }[config]
    if body == "myofullbody":
        csv = tmp_path / "cycle.csv"
        _synthetic_cycle(csv)
        cycle = read_gait_cycle(csv, fps=100.0)
        clip = lambda phase: gait_qpos(cycle, 50.0, 0.5, phase, body)
    else:
        reach = make_joint_reach_clips("myoarm_bimanual_reach", fps=50.0)[0].qpos
        clip = lambda phase: reach[int(phase * 20) :]
    (tmp_path / clips).mkdir()
    for split, phase in (("train", 0.0), ("val", 0.5)):
        ReferenceClip.from_qpos(body, clip(phase), 50.0, name=split, split=split).save(tmp_path / clips / f"{split}.h5")
    last = tiny_fit(
        config,
        "--model.env.num_envs",
        "2",
        "--model.ppo.rollout_steps",
        "4",
        "--trainer.callbacks.every_n_train_steps",
        "2",
        max_steps=2,
    )
    assert last.is_file()
