"""Tier 2: the rat in the imitation env, on clips fitted to the real rat23 recording:
actuators other than muscles (position servos mapped from 0..1), the free root's own
tracking terms, and the bundled rodent config training from a keypoint-fitted clip set."""

import importlib.util
from pathlib import Path

import pytest
import torch

if importlib.util.find_spec("dm_control") is None:
    pytest.skip("dm-control is not installed: pip install dm-control==1.0.50", allow_module_level=True)

from torchrl.envs.utils import check_env_specs

from neuromimic.envs import EnvConfig, make_env

RAT23 = Path(__file__).resolve().parents[2] / "shared" / "data" / "rat23" / "rat23_1000_frames.nwb"
if not RAT23.is_file():
    RAT23 = Path("/work/shared/data/rat23/rat23_1000_frames.nwb")

REWARDS = {
    "joint_pos_error_exp": {"weight": 1.0, "sigma": 0.1},
    "site_pos_error_exp": {"weight": 1.0, "sigma": 0.01},
    "root_pos_error_exp": {"weight": 1.0, "sigma": 0.02},
    "root_rot_error_exp": {"weight": 1.0, "sigma": 0.3},
    "ctrl_l2": {"weight": -0.01},
}


@pytest.fixture(scope="module")
def rat23_clips(tmp_path_factory):
    """Clips fitted to 30 frames (1 s) of rat23 at 50 Hz, cut into 0.2-s segments."""
    if not RAT23.is_file():
        pytest.skip(f"rat23 recording not found at {RAT23}")
    import numpy as np

    from neuromimic.data.keypoint_clips import fit_file
    from neuromimic.keypoints import read_keypoints

    kp = read_keypoints(RAT23, units="mm")
    part = tmp_path_factory.mktemp("rat23") / "rat23_30.npz"
    np.savez(part, positions=kp.positions[:30] * 1e3, names=np.array(kp.names), fps=kp.fps)
    out = part.parent / "clips"
    report = fit_file(
        "rodent", str(part), str(out), units="mm", fps_out=50.0, scale=0.9, segment_seconds=0.2, val_fraction=0.2
    )
    assert report["mean_residual_mm"] < 3.0
    return out, report


def _config(clips, **overrides) -> EnvConfig:
    settings = {"rewards": REWARDS, "terminations": {"site_pos_error": {"distance": 0.03}}} | overrides
    return EnvConfig(body="rodent", clips=str(clips), num_envs=4, substeps=10, future_frames=(1, 2), **settings)


def test_rat_env_specs_and_servo_controls(rat23_clips):
    clips, report = rat23_clips
    assert list(report["clips"].values()).count("val") == 1
    env = make_env(_config(clips))
    check_env_specs(env)
    assert env.action_layout[0][0] == "ctrl" and env.action_spec.shape == (4, 38)
    names = [name for name, _, _ in env.observation_layout]
    assert names[:7] == [
        "root_height",
        "gravity_b",
        "root_lin_vel_b",
        "root_ang_vel_b",
        "joint_pos",
        "joint_vel",
        "actuator_activation",
    ]
    assert names[7:11] == [
        "ref_root_pos_h_t+1",
        "ref_root_rot_b_t+1",
        "ref_joint_pos_minus_joint_pos_t+1",
        "ref_site_minus_site_h_t+1",
    ]
    world = make_env(_config(clips, frame="world"))
    assert [name for name, _, _ in world.observation_layout][:3] == ["qpos", "qvel", "actuator_activation"]
    env.reset()
    # Actions 0..1 span each servo's ctrlrange (-1..1 for every rat actuator).
    action = torch.zeros(4, 38)
    action[1] = 1.0
    action[2] = 0.5
    env.step(env.reset().set("action", action))
    ctrl = env.backend.view.ctrl
    assert torch.all(ctrl[0] == -1.0) and torch.all(ctrl[1] == 1.0) and torch.all(ctrl[2] == 0.0)


def test_rat_root_is_tracked_apart_from_the_joints(rat23_clips):
    clips, _ = rat23_clips
    env = make_env(_config(clips), evaluation=True, split="val")
    td = env.reset()
    metrics = td["metrics"]
    # At the first frame the rat is placed on its reference: every error is zero.
    assert torch.allclose(metrics["root_pos_error_exp"], torch.ones(1))
    assert torch.allclose(metrics["root_rot_error_exp"], torch.ones(1))
    assert metrics["joint_pos_error_deg"].abs().max() < 1e-6
    # Moving the root 2 cm moves only the root position term (sigma 2 cm: exp(-1)).
    view = env.backend.view
    qpos = view.qpos.clone()
    qpos[:, 0] += 0.02
    env.backend.reset(torch.ones(1, dtype=torch.bool), qpos, view.qvel.clone(), view.act.clone())
    _, _, metrics = env._split(env._evaluate(env.backend.view, env.clip_index, env.frame)[0])
    assert metrics["root_pos_error_exp"].item() == pytest.approx(float(torch.exp(torch.tensor(-1.0))), rel=1e-5)
    assert metrics["root_rot_error_exp"].item() == pytest.approx(1.0)
    assert metrics["joint_pos_error_deg"].item() < 1e-6


def test_rat_config_errors_name_the_fix(rat23_clips):
    clips, _ = rat23_clips
    with pytest.raises(
        ValueError, match=r"model.env.rewards names 'muscle_force_l2', which needs muscles; body 'rodent' has none"
    ):
        make_env(_config(clips, rewards={**REWARDS, "muscle_force_l2": {"weight": -0.1}}))
    with pytest.raises(ValueError, match="needs muscles.*use proprioception: joints"):
        make_env(_config(clips, proprioception="afferents"))
    with pytest.raises(
        ValueError, match=r"'root_pos_error_exp', which needs free_root; body 'mouse_forelimb' has none"
    ):
        make_env(
            EnvConfig(
                rewards={"joint_pos_error_exp": {"weight": 1.0}, "root_pos_error_exp": {"weight": 1.0}}, num_envs=2
            )
        )
    with pytest.raises(ValueError, match=r"'reference_relative' needs servos; body 'mouse_forelimb' has none"):
        make_env(EnvConfig(action={"name": "reference_relative"}, num_envs=2))


def test_reference_relative_actions_hold_the_servos_on_the_next_reference_frame(rat23_clips):
    import mujoco

    clips, _ = rat23_clips
    env = make_env(_config(clips, action={"name": "reference_relative", "scale": 0.5}), evaluation=True, split="val")
    assert env.action_layout[0][0] == "ctrl_offset" and env.controller_spec.action_term == {
        "name": "reference_relative",
        "scale": 0.5,
    }
    td = env.reset()
    target = env.clips.qpos[env.clip_index, env.frame + 1]
    env.step(td.set("action", torch.full(env.action_spec.shape, 0.5)))
    # At action 0.5 each servo's equilibrium length is the reference's at the next frame.
    model = env.backend.model
    data = mujoco.MjData(model)
    data.qpos[:] = target[0].numpy()
    mujoco.mj_forward(model, data)
    ctrl = env.backend.view.ctrl[0].numpy()
    gain, bias = model.actuator_gainprm[:, 0], model.actuator_biasprm[:, :2]
    inside = (ctrl > model.actuator_ctrlrange[:, 0]) & (ctrl < model.actuator_ctrlrange[:, 1])
    assert inside.sum() > 30
    equilibrium = -(bias[:, 0] + gain * ctrl) / bias[:, 1]
    assert abs(equilibrium - data.actuator_length)[inside].max() < 1e-9
    # Actions 0 and 1 move each control by half of scale x its range either way (then clip).
    env.step(td.set("action", torch.ones(env.action_spec.shape)))
    span = model.actuator_ctrlrange[:, 1] - model.actuator_ctrlrange[:, 0]
    shifted = env.clips.qpos[env.clip_index, env.frame]
    data.qpos[:] = shifted[0].numpy()
    mujoco.mj_forward(model, data)
    base = -(bias[:, 0] + bias[:, 1] * data.actuator_length) / gain
    expected = torch.as_tensor(base + 0.25 * span).clamp(
        torch.as_tensor(model.actuator_ctrlrange[:, 0]), torch.as_tensor(model.actuator_ctrlrange[:, 1])
    )
    torch.testing.assert_close(env.backend.view.ctrl[0], expected, rtol=0, atol=1e-9)


def test_rodent_config_trains_on_fitted_clips(rat23_clips, tiny_fit):
    clips, _ = rat23_clips
    last = tiny_fit(
        "rodent_imitation_mlp.yaml",
        "--model.env.clips",
        str(clips),
        "--model.env.num_envs",
        "4",
        "--trainer.callbacks.every_n_train_steps",
        "2",
        max_steps=2,
    )
    assert last.is_file()


def test_an_exported_controller_brings_its_action_mapping(rat23_clips, tmp_path):
    import neuromimic
    from neuromimic.models import Controller, export_controller

    clips, _ = rat23_clips
    config = _config(clips, action={"name": "reference_relative", "scale": 0.3})
    env = make_env(config)
    directory = export_controller(
        Controller(env.controller_spec), tmp_path / "export", {"body": "rodent", "env": config.to_dict()}
    )
    assert neuromimic.load_controller(directory).spec.action_term == {"name": "reference_relative", "scale": 0.3}
    action_map = neuromimic.load_action_map(directory)
    generator = torch.Generator().manual_seed(0)
    action = torch.rand(4, 38, generator=generator, dtype=torch.float64)
    reference = env.clips.qpos[0, :4]
    torch.testing.assert_close(action_map(action, reference), env.action_map(action, reference), rtol=0, atol=1e-12)


def test_servos_start_holding_the_start_pose(rat23_clips):
    import mujoco

    clips, _ = rat23_clips
    env = make_env(_config(clips), evaluation=True, split="val")
    env.reset()
    model = env.backend.model
    data = mujoco.MjData(model)
    data.qpos[:] = env.backend.view.qpos[0].numpy()
    mujoco.mj_forward(model, data)
    act = env.backend.view.act[0].numpy()  # the servos' filtered controls
    gain, bias = model.actuator_gainprm[:, 0], model.actuator_biasprm[:, :2]
    inside = (act > model.actuator_ctrlrange[:, 0]) & (act < model.actuator_ctrlrange[:, 1])
    assert inside.sum() > 30
    equilibrium = -(bias[:, 0] + gain * act) / bias[:, 1]
    assert abs(equilibrium - data.actuator_length)[inside].max() < 1e-9


def test_pushes_move_the_free_root_the_way_they_push(rat23_clips):
    """A push is ``mass x velocity / duration`` on the root body, horizontal, for its whole
    duration; the pushed rats end up displaced along it, against rats not pushed."""
    clips, _ = rat23_clips
    relative = {"action": {"name": "reference_relative", "scale": 0.5}, "terminations": {}}
    # 50 pushes per second at 50 Hz control: a push starts whenever none is under way
    pushes = {"push_rate_hz": 50.0, "push_velocity": 0.2, "push_duration_s": 0.1}
    pushed = make_env(_config(clips, disturbances=pushes, **relative), seed=0)
    still = make_env(_config(clips, **relative), seed=0)
    model = pushed.backend.model
    mass = model.body_subtreemass[model.jnt_bodyid[0]]
    assert pushed.disturbances.push_force == pytest.approx(mass * 0.2 / 0.1)
    runs = [(env, env.reset()) for env in (pushed, still)]
    assert torch.equal(pushed.frame, still.frame)
    for _ in range(5):  # 0.1 s: one push
        runs = [(env, env.step(td.set("action", torch.full(env.action_spec.shape, 0.5)))["next"]) for env, td in runs]
        force = pushed.backend.external_force
        root = model.jnt_bodyid[0]
        assert torch.allclose(force[:, root, :2].norm(dim=-1), torch.tensor(pushed.disturbances.push_force).double())
        assert torch.count_nonzero(force[:, root, 2:]) == 0
        assert torch.count_nonzero(force) == torch.count_nonzero(force[:, root])  # nothing but the root
    displacement = (pushed.backend.view.qpos[:, :2] - still.backend.view.qpos[:, :2]).float()
    direction = pushed.disturbances.force[:, :2].float()
    assert (displacement.norm(dim=-1) > 0.003).all()  # 4.8-12.4 mm
    assert (torch.nn.functional.cosine_similarity(displacement, direction) > 0.8).all()  # 0.83-0.98
