"""Tier 2: the body zoo (mouse, rat, fly, MyoArm, MyoLegs, MuscleMimic's full body and two
arms) and `neuromimic bodies check`:
every registered body passes on the native backend, each check catches the fault it is
for, and every body runs in the imitation env."""

import dataclasses
import json

import mujoco
import numpy as np
import pytest
import torch
from torchrl.envs.utils import check_env_specs

from neuromimic.bodies import get_body, known_bodies
from neuromimic.bodies.validate import check_body, check_model, coupled_pose
from neuromimic.data.clips import ReferenceClip
from neuromimic.envs import EnvConfig, make_env

ZOO = ("fruitfly", "mouse_forelimb", "myoarm", "myoarm_bimanual", "myofullbody", "myolegs", "rodent")


def test_registry_lists_the_zoo(capsys):
    from neuromimic.cli import main

    assert set(ZOO) <= set(known_bodies())
    main(["bodies", "list"])
    rows = {row["key"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["myoarm"]["muscles"] == 63 and rows["myoarm"]["source"].startswith("myo-sim ")
    assert rows["myolegs"]["muscles"] == 80 and rows["myolegs"]["dof"] == 34
    assert rows["fruitfly"]["source"].startswith("dm-control ") and rows["fruitfly"]["actuators"] == 70
    assert rows["myofullbody"]["muscles"] == 416 and rows["myofullbody"]["dof"] == 128
    assert rows["myoarm_bimanual"]["muscles"] == 126 and rows["myoarm_bimanual"]["dof"] == 76
    assert rows["myofullbody"]["source"] == "musclemimic-models 1.0.6"
    # MJX refuses the fly's frictionless (condim 1) contacts under its elliptic cone.
    assert rows["fruitfly"]["backends"] == ["mujoco", "warp"]
    assert all(row["backends"] == ["mujoco", "mjx", "warp"] for key, row in rows.items() if key != "fruitfly")


@pytest.mark.parametrize("key", ZOO)
def test_every_body_passes_its_check_on_the_native_backend(key):
    report = check_body(key, "mujoco", seconds=0.3)
    failed = {name: check for name, check in report["checks"].items() if not check["passed"]}
    assert report["passed"], json.dumps(failed, indent=1)[:3000]
    assert report["checks"]["counts"]["found"] == get_body(key).counts


def test_known_upstream_faults_are_reported_with_their_reason():
    # MyoArm's RI2 path jumps 7 mm where it changes wrapping side: found, and accepted.
    continuity = check_body("myoarm", seconds=0.05)["checks"]["moment_arm_continuity"]
    jumps = {(j["muscle"], j["joint"]) for j in continuity["accepted"]}
    assert jumps == {("RI2", "mcp2_flexion_r"), ("RI2", "mcp2_abduction_r")}
    assert "myo-sim 0.2.4 upstream" in continuity["accepted"][0]["reason"]
    # The fly's left front tarsus2 segment is 3.5 % longer than the right one.
    symmetry = check_body("fruitfly", seconds=0.001)["checks"]["symmetry"]
    assert [m["pair"] for m in symmetry["accepted"]] == ["tarsus2_T1_right"]
    assert symmetry["pairs"]["joints"] > 30
    # MuscleMimic's full body: RI2 is fixed in both hands, but rectus abdominis jumps 5.9 mm
    # at 45 deg of trunk flexion (as in myo-sim 0.2.4's myofullbody).
    checks = check_body("myofullbody", seconds=0.001)["checks"]
    jumps = {(j["muscle"], j["joint"]) for j in checks["moment_arm_continuity"]["accepted"]}
    assert jumps == {("rect_abd_r", "flex_extension"), ("rect_abd_l", "flex_extension")}
    assert checks["symmetry"]["pairs"] == {"bodies": 42, "joints": 52, "muscles": 208}


def _edited(key, edit):
    body = get_body(key)
    spec = body.load_spec()
    edit(spec)
    return dataclasses.replace(body, known_issues={}), spec.compile()


def test_symmetry_names_the_broken_pairs():
    def break_left_leg(spec):
        spec.body("femur_l").mass *= 1.2
        spec.joint("knee_angle_l").range = [0.0, 1.5]

    body, model = _edited("myolegs", break_left_leg)
    model.actuator_gainprm[model.actuator("soleus_l").id, 2] *= 0.5  # a weaker left soleus
    symmetry = check_model(body, model, seconds=0.001)["checks"]["symmetry"]
    assert not symmetry["passed"]
    found = {(m["pair"], m["quantity"]) for m in symmetry["mismatches"]}
    assert {("femur_r", "mass"), ("knee_angle_r", "range"), ("soleus_r", "peak_force")} <= found
    # Halving one soleus does not move its path; its moment arms stay symmetric.
    assert not any(m["kind"] == "moment_arm" for m in symmetry["mismatches"])


def test_moment_arm_sweep_flags_lengths_its_moment_arms_do_not_explain():
    # The mouse's muscle paths are smooth: 60 points per joint range pass. With 3 points
    # per range the steps are so coarse that the trapezoid rule no longer explains the
    # change of length, which is exactly what a jump of a path looks like to the check.
    body = get_body("mouse_forelimb")
    model = body.load_model()
    report = check_model(body, model, seconds=0.001)["checks"]["moment_arm_continuity"]
    assert report["passed"] and report["joints_swept"] == 4
    strict = check_model(body, model, seconds=0.001, grid=3)["checks"]["moment_arm_continuity"]
    assert not strict["passed"] and strict["jumps"][0]["joint"] in {"sh_elv", "sh_extension", "sh_rotation", "elbow"}


def test_stability_reports_runaway_and_backend_reports_unsupported_features():
    body = dataclasses.replace(get_body("mouse_forelimb"), max_qvel=0.5)
    stability = check_model(body, body.load_model(), seconds=0.5)["checks"]["stability"]
    assert not stability["passed"]
    assert "max_qvel 0.5" in stability["runs"]["all_on"]["failure"]

    from neuromimic.bodies.rodent import build_rodent_spec

    rat = get_body("rodent")
    report = check_model(rat, build_rodent_spec(mjx_edits=False).compile(), "mjx", seconds=0.001)
    unsupported = report["checks"]["backend"]["unsupported"]
    assert not report["checks"]["backend"]["passed"]
    assert any("ELLIPSOID" in u["feature"] and "mujoco" in u["supported_by"] for u in unsupported)
    with pytest.raises(ValueError, match="unknown backend 'warp_drive'"):
        check_model(rat, rat.load_model(), "warp_drive")


@pytest.mark.parametrize("key", ZOO)
def test_every_body_passes_the_mujoco_warp_check(key):
    body = get_body(key)
    assert check_model(body, body.load_model(), "warp", seconds=0.01)["checks"]["backend"] == {
        "passed": True,
        "unsupported": [],
    }


@pytest.mark.slow
@pytest.mark.parametrize("key", ZOO)
def test_every_body_runs_on_the_warp_backend_as_on_native_mujoco(key):
    """Each zoo body steps on MuJoCo Warp (its CPU kernels here) and, after one control step
    from its rest pose with the same random controls, is where native MuJoCo puts it."""
    pytest.importorskip("mujoco_warp")
    import torch

    from neuromimic.physics import make_backend

    body = get_body(key)
    warp = make_backend("warp", body, num_envs=2, substeps=2, device="cpu")
    native = make_backend("mujoco", body, num_envs=2, substeps=2)
    ctrl = torch.rand(2, native.model.nu, generator=torch.Generator().manual_seed(0))
    warp.step(ctrl)
    native.step(ctrl)
    assert not warp.view.unstable.any() and not native.view.unstable.any()
    torch.testing.assert_close(warp.view.qpos.double(), native.view.qpos, rtol=0, atol=1e-4)
    torch.testing.assert_close(warp.view.act.double(), native.view.act, rtol=0, atol=1e-4)


def test_warp_check_names_what_mujoco_warp_cannot_simulate():
    # MuJoCo Warp 3.17 simulates nearly everything MuJoCo does; contact override is one
    # of the option flags it does not (read from mujoco_warp's own tables).
    body = get_body("mouse_forelimb")
    model = body.load_model()
    model.opt.enableflags |= mujoco.mjtEnableBit.mjENBL_OVERRIDE
    check = check_model(body, model, "warp", seconds=0.01)["checks"]["backend"]
    assert not check["passed"]
    assert [(u["feature"], u["element"], u["supported_by"]) for u in check["unsupported"]] == [
        ("flag mjENBL_OVERRIDE", "<option><flag>", ("mujoco",))
    ]


def test_bodies_check_cli_exit_code(capsys):
    from neuromimic.cli import main

    main(["bodies", "check", "mouse_forelimb", "--seconds", "0.1"])
    assert json.loads(capsys.readouterr().out)["passed"] is True
    with pytest.raises(SystemExit) as error:
        main(["bodies", "check", "no_such_body"])
    assert error.value.code == 2


#: Control step per body (s): physics timestep x substeps.
SUBSTEPS = {
    "fruitfly": 20,
    "mouse_forelimb": 2,
    "myoarm": 10,
    "myoarm_bimanual": 10,
    "myofullbody": 20,
    "myolegs": 10,
    "rodent": 10,
}


def _rest_env(key, directory, backend="mujoco", device=None):
    """The env of body ``key`` imitating a 12-frame clip of its rest pose."""
    body = get_body(key)
    model = body.load_model()
    rest = coupled_pose(model, body.rest_qpos(model))[0]
    fps = 1.0 / (SUBSTEPS[key] * model.opt.timestep)
    ReferenceClip.from_qpos(key, np.tile(rest, (12, 1)), fps, name="rest", split="train").save(directory / "rest.h5")
    rewards = {
        "joint_pos_error_exp": {"weight": 1.0},
        "site_pos_error_exp": {"weight": 1.0},
        "ctrl_l2": {"weight": -0.01},
    }
    if model.jnt_type[0] == mujoco.mjtJoint.mjJNT_FREE:
        rewards["root_pos_error_exp"] = {"weight": 1.0}
    config = EnvConfig(
        body=key,
        backend=backend,
        clips=str(directory),
        num_envs=2,
        substeps=SUBSTEPS[key],
        future_frames=(1, 2),
        rewards=rewards,
        terminations={"site_pos_error": {"distance": 1.0}},
    )
    return make_env(config, split=None, device=device)


@pytest.mark.parametrize("key", ZOO)
def test_every_body_runs_in_the_env(key, tmp_path):
    check_env_specs(_rest_env(key, tmp_path))


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.parametrize("key", ["rodent", "myoarm", "myolegs", "myoarm_bimanual", "myofullbody"])
def test_zoo_bodies_step_on_mjx_on_a_gpu(key, tmp_path):
    # Tier 3: these MJX steps take minutes to compile on a CPU (the rat's; MyoArm's first
    # call did not return in 15 minutes), so they run on a GPU only.
    env = _rest_env(key, tmp_path, backend="mjx", device="cuda")
    check_env_specs(env)
    td = env.reset()
    for _ in range(20):
        td["action"] = torch.rand(env.action_spec.shape, device="cuda")
        td = env.maybe_reset(env.step(td)["next"])
    assert torch.isfinite(td["observation"]).all()
    assert env.unstable_count.item() == 0


def test_installed_versions_are_the_pinned_set():
    # The bodies were written and checked against this set (pyproject.toml pins it).
    from importlib.metadata import version

    from neuromimic.bodies.musclemimic import MUSCLEMIMIC_MODELS_VERSION
    from neuromimic.bodies.myo import MYO_SIM_VERSION
    from neuromimic.bodies.rodent import DM_CONTROL_VERSION

    assert version("dm-control") == DM_CONTROL_VERSION
    assert version("myo-sim") == MYO_SIM_VERSION
    assert version("musclemimic-models") == MUSCLEMIMIC_MODELS_VERSION == "1.0.6"
    assert mujoco.__version__ == version("mujoco") == version("mujoco-mjx") == version("mujoco-warp") == "3.17.0"


@pytest.mark.slow
def test_short_cpu_training_lowers_tracking_error_on_the_human_arm(tmp_path, tiny_fit):
    """One elbow flexion out and back (0.8 rad), trained on and scored on a held-out copy:
    60 PPO iterations of 32 MyoArm bodies (about 2.5 minutes on 2 cores).

    A smoke test of MyoArm training, not of how well it learns (issue 17): trained over
    untrained held-out error, measured with ``--seed_everything S --model.seed S`` for
    seeds 0-9 (untrained 81.0 mm each time): 0.915, 0.853, 0.897, 0.960, 0.886, 0.932,
    0.918, 0.918, 0.871, 0.905. The test runs seed 0 and asserts < 0.98, which every seed
    met; the 0.85 asserted before held for none but seed 1.
    """
    from neuromimic.data.joint_reach import joint_reach_qpos

    qpos = joint_reach_qpos("myoarm", {"elbow_flexion_r": 0.8}, 50.0)
    clips = tmp_path / "clips"
    clips.mkdir()
    for split in ("train", "val"):
        ReferenceClip.from_qpos("myoarm", qpos, 50.0, name=f"elbow_{split}", split=split).save(clips / f"{split}.h5")
    last = tiny_fit(
        "myoarm_reach_mlp.yaml",
        "--model.env.clips",
        str(clips),
        "--model.env.num_envs",
        "32",
        "--model.ppo.rollout_steps",
        "32",
        "--model.ppo.epochs",
        "4",
        "--model.ppo.minibatches",
        "4",
        "--trainer.callbacks.every_n_train_steps",
        "960",
        "--trainer.check_val_every_n_epoch",
        "60",
        max_steps=960,
    )
    untrained, trained = _val_errors(last.parents[1])
    assert trained < 0.98 * untrained, (untrained, trained)


def _val_errors(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir))
    events.Reload()
    return (
        events.Scalars("val/site_pos_error_mm_untrained")[-1].value,
        events.Scalars("val/site_pos_error_mm")[-1].value,
    )
