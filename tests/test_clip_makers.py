"""The reference makers of the body zoo: MyoLegs walking from a gait-cycle CSV and the fly's
synthetic poses, their configs, and the length unit of a body modelled in cm."""

from __future__ import annotations

import json

import mujoco
import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from neuromimic.bodies import get_body
from neuromimic.data.clips import ClipError, ReferenceClip, load_clips
from neuromimic.data.gait import (
    EULER_COLUMNS,
    JOINT_COLUMNS,
    VELOCITY_COLUMNS,
    gait_qpos,
    lowest_geom_z,
    read_gait_cycle,
)
from neuromimic.data.joint_reach import joint_reach_qpos, make_joint_reach_clips

FRAMES = 100  # one synthetic cycle
SPEED = 1.2  # m/s, its mean forward pelvis velocity
YAW_SWING = 0.03  # rad


def _synthetic_cycle(path, frames=FRAMES):
    """A gait-cycle CSV with MyoSuite's columns: smooth periodic angles and velocities."""
    s = np.arange(frames) / frames * 2 * np.pi
    columns = {
        "hip_flexion_l": 0.1 + 0.4 * np.cos(s),
        "hip_flexion_r": 0.1 - 0.4 * np.cos(s),
        "hip_adduction_l": 0.05 * np.sin(s),
        "hip_adduction_r": -0.05 * np.sin(s),
        "hip_rotation_l": -0.1 + 0 * s,
        "hip_rotation_r": -0.1 + 0 * s,
        "knee_angle_l": 0.5 + 0.55 * np.sin(s),
        "osl_knee_angle_r": 0.5 - 0.55 * np.sin(s),
        "ankle_angle_l": 0.2 * np.sin(s),
        "osl_ankle_angle_r": -0.2 * np.sin(s),
        "pelvis_euler_roll": 0.05 * np.sin(s),
        "pelvis_euler_pitch": 0.06 + 0 * s,
        "pelvis_euler_yaw": -np.pi / 2 + YAW_SWING * np.sin(s),
        "pelvis_vel_X": SPEED + 0.1 * np.cos(2 * s),
        "pelvis_vel_Y": 0.2 * np.sin(s),
        "pelvis_vel_Z": 0.1 * np.sin(2 * s),
        **{f"{side}_foot_relative_{axis}": 0 * s for side in "lr" for axis in "XYZ"},
    }
    header = list(columns)
    rows = np.stack([columns[name] for name in header], axis=1)
    path.write_text(",".join(header) + "\n" + "\n".join(",".join(f"{v:.9f}" for v in row) for row in rows) + "\n")
    return columns


def test_gait_clip_walks_on_the_floor_with_the_files_angles(tmp_path):
    csv = tmp_path / "cycle.csv"
    columns = _synthetic_cycle(csv)
    cycle = read_gait_cycle(csv, fps=100.0)
    assert cycle.period == pytest.approx(1.0)
    qpos = gait_qpos(cycle, fps=50.0, duration=2.0)
    model = get_body("myolegs").load_model()
    data = mujoco.MjData(model)
    assert qpos.shape == (101, model.nq)

    # The file's angles at phase 0 (the right knee and ankle from the prosthesis columns);
    # coupled knee joints follow the knee angle.
    for column, joint in JOINT_COLUMNS.items():
        expected = np.clip(columns[column][0], *model.joint(joint).range)
        assert qpos[0, model.joint(joint).qposadr[0]] == pytest.approx(expected, abs=1e-9), joint
    follower = model.joint("knee_angle_translation2_r").qposadr[0]
    assert np.ptp(qpos[:, follower]) > 0

    # Forward is MyoLegs' -y: two cycles at a mean 1.2 m/s (the swings integrate to zero).
    assert qpos[-1, 1] - qpos[0, 1] == pytest.approx(-2 * SPEED, rel=1e-4)
    assert abs(qpos[-1, 0] - qpos[0, 0]) < 1e-4
    # The pelvis faces the way it walks, turned by the file's yaw swing about its mean.
    forward = Rotation.from_quat(qpos[:, 3:7], scalar_first=True).apply([0.0, -1.0, 0.0])
    heading = np.arctan2(forward[:, 1], forward[:, 0])
    swing = YAW_SWING * np.sin(np.arange(101) / 50.0 * 2 * np.pi)
    np.testing.assert_allclose(heading, -np.pi / 2 + swing, atol=5e-3)

    # Every frame stands on the floor: the lowest foot geom touches z = 0.
    geoms = np.flatnonzero(model.geom_bodyid > 0)
    geoms = geoms[(model.geom_contype[geoms] | model.geom_conaffinity[geoms]) > 0]
    for k in range(0, 101, 10):
        data.qpos[:] = qpos[k]
        mujoco.mj_kinematics(model, data)
        assert lowest_geom_z(model, data, geoms) == pytest.approx(0.0, abs=1e-9)

    # A start phase shifts the cycle: half a cycle in, the legs have swapped.
    half = gait_qpos(cycle, fps=50.0, duration=0.1, phase=0.5)
    left, right = model.joint("hip_flexion_l").qposadr[0], model.joint("hip_flexion_r").qposadr[0]
    assert half[0, left] == pytest.approx(qpos[0, right], abs=1e-9)


def test_gait_csv_errors_name_the_file_and_the_fix(tmp_path):
    with pytest.raises(ClipError, match="does not exist.*sample_gait_cycle.csv"):
        read_gait_cycle(tmp_path / "none.csv")
    csv = tmp_path / "cycle.csv"
    _synthetic_cycle(csv)
    lines = csv.read_text().splitlines()
    header = lines[0].split(",")
    knee = header.index("osl_knee_angle_r")
    (tmp_path / "short.csv").write_text("\n".join([",".join(h for i, h in enumerate(header) if i != knee), *lines[1:]]))
    with pytest.raises(ClipError, match=r"short\.csv.*missing columns \['osl_knee_angle_r'\]"):
        read_gait_cycle(tmp_path / "short.csv")
    broken = lines[:6] + [lines[6].replace(lines[6].split(",")[0], "nan", 1)] + lines[7:]
    (tmp_path / "nan.csv").write_text("\n".join(broken))
    with pytest.raises(ClipError, match="'hip_flexion_l' is not finite at data row 6"):
        read_gait_cycle(tmp_path / "nan.csv")
    assert {*EULER_COLUMNS, *VELOCITY_COLUMNS} <= set(header)


def test_clips_gait_cli_writes_train_and_val_clips(tmp_path, capsys):
    from neuromimic.cli import main

    csv = tmp_path / "cycle.csv"
    _synthetic_cycle(csv)
    main(["clips", "gait", "--input", str(csv), "--fps", "100", "--seconds", "1", "--output", str(tmp_path / "gait")])
    summary = json.loads(capsys.readouterr().out)
    assert summary["splits"] == {"train": 4, "val": 1}
    assert summary["frames_per_clip"] == 51 and summary["cycle_s"] == pytest.approx(1.0)
    clips = load_clips(tmp_path / "gait", body="myolegs")
    assert [c.meta["start_phase"] for c in clips] == sorted(c.meta["start_phase"] for c in clips)


def test_fruitfly_pose_raises_both_front_legs_above_the_floor():
    clips = make_joint_reach_clips("fruitfly_pose", fps=100.0)
    model = get_body("fruitfly").load_model()
    floor = model.geom("floor").pos[2]
    assert [c.split for c in clips].count("val") == 2 and len(clips) == 8
    left, right = (model.joint(f"coxa_T1_{side}").qposadr[0] for side in ("left", "right"))
    for clip in clips:
        np.testing.assert_array_equal(clip.qpos[:, left], clip.qpos[:, right])
        claws = clip.site_pos_w[:, :6, 2]
        assert claws.min() > floor
        assert claws[:, :2].max() > claws[0, :2].max() + 0.04  # the front claws rise 0.4 mm or more
    with pytest.raises(ClipError, match="known sets"):
        make_joint_reach_clips("no_such_set")


def test_fly_tracking_errors_are_logged_in_mm_from_its_centimetres(tmp_path):
    from neuromimic.envs import EnvConfig, make_env

    qpos = joint_reach_qpos("fruitfly", {"coxa_T1_left": 0.8}, 500.0)[:40]
    ReferenceClip.from_qpos("fruitfly", qpos, 500.0, name="pose", split="train").save(tmp_path / "pose.h5")
    sigma = 0.05  # cm
    env = make_env(
        EnvConfig(
            body="fruitfly",
            clips=str(tmp_path),
            num_envs=2,
            substeps=20,
            rewards={"site_pos_error_exp": {"weight": 1.0, "sigma": sigma}},
            terminations={"site_pos_error": {"distance": 10.0}},
        ),
        split=None,
    )
    td = env.reset()
    for _ in range(5):
        td["action"] = torch.ones(2, env.action_spec.shape[-1])
        td = env.step(td)["next"]
    term, mm = td["metrics", "site_pos_error_exp"], td["metrics", "site_pos_error_mm"]
    error_cm = sigma * torch.sqrt(-torch.log(term))
    assert (mm > 0.01).all()
    torch.testing.assert_close(mm, 10.0 * error_cm, rtol=1e-3, atol=1e-4)


def test_default_rewards_drop_muscle_costs_on_bodies_without_muscles():
    from neuromimic.envs import EnvConfig
    from neuromimic.envs.config import body_info, term_set

    def reward_names(body: str) -> tuple[str, ...]:
        config = EnvConfig(body=body)
        return term_set(config, body_info(config, get_body(body).load_model())).reward_names

    assert "muscle_force_l2" in reward_names("mouse_forelimb")
    assert "muscle_force_l2" not in reward_names("fruitfly")


@pytest.mark.slow
def test_myolegs_gait_config_trains(tmp_path, tiny_fit):
    clips = tmp_path / "myolegs_gait"
    cycle_csv = tmp_path / "cycle.csv"
    _synthetic_cycle(cycle_csv)
    cycle = read_gait_cycle(cycle_csv, fps=100.0)
    for split, phase in (("train", 0.0), ("val", 0.5)):
        clips.mkdir(exist_ok=True)
        ReferenceClip.from_qpos("myolegs", gait_qpos(cycle, 50.0, 1.0, phase), 50.0, name=split, split=split).save(
            clips / f"{split}.h5"
        )
    last = tiny_fit("myolegs_gait_mlp.yaml", "--trainer.callbacks.every_n_train_steps", "2", max_steps=2)
    assert last.is_file()


@pytest.mark.slow
def test_fruitfly_pose_config_trains(tmp_path, tiny_fit):
    clips = tmp_path / "fruitfly_pose"
    clips.mkdir()
    for split, angle in (("train", 0.8), ("val", 0.6)):
        qpos = joint_reach_qpos("fruitfly", {"coxa_T1_left": angle, "coxa_T1_right": angle}, 500.0)[::4][:60]
        # Every 4th frame of a 500 Hz reach replayed at 500 Hz: a faster pose, 60 frames.
        ReferenceClip.from_qpos("fruitfly", qpos, 500.0, name=split, split=split).save(clips / f"{split}.h5")
    last = tiny_fit("fruitfly_pose_mlp.yaml", "--trainer.callbacks.every_n_train_steps", "2", max_steps=2)
    assert last.is_file()
