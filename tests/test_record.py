"""`neuromimic.analysis.record`: what a recording holds, and its HDF5 and NWB round trips."""

from __future__ import annotations

import functools

import mujoco
import numpy as np
import pytest
import torch

from neuromimic.analysis.record import Recording, record
from neuromimic.bodies import get_body
from neuromimic.envs import EnvConfig, controller_spec
from neuromimic.models import Controller, RateRNNCore
from neuromimic.physics.model import compile_model

CONFIG = EnvConfig()


@pytest.fixture(scope="module")
def recording() -> Recording:
    torch.manual_seed(0)
    core = functools.partial(RateRNNCore, hidden_size=16, excitatory_fraction=0.75)
    return record(Controller(controller_spec(CONFIG), core), CONFIG, steps=30)


def test_recording_holds_every_layer_unit_and_body_quantity(recording):
    data, steps = recording.data, 30
    assert data["observation"].shape == (8, steps, 72) and data["action"].shape == (8, steps, 9)
    for name in (
        "layers/obs_norm",
        "layers/core.input",
        "layers/core.recurrent",
        "layers/readout",
        "core/activity/rate",
        "core/state/h",
        "muscle/activation",
        "muscle/force",
        "muscle/length",
        "muscle/velocity",
        "joint/qpos",
        "joint/qvel",
        "joint/actuator_torque",
        "joint/inverse_dynamics_torque",
        "body/contact_force",
        "reference/qpos",
        "metrics/site_pos_error_mm",
    ):
        assert name in data, name
        assert data[name].shape[:2] == (8, steps), name
        assert recording.units[name], name
    assert data["layers/core.recurrent"].shape[-1] == 16  # W r, not the weight matrix
    assert (data["core/activity/rate"] >= 0).all()  # softplus rates
    assert recording.units["muscle/force"].startswith("N") and recording.units["joint/qpos"] == "rad"
    assert len(recording.attrs["muscle_names"]) == 9 and len(recording.attrs["clip_names"]) == 8
    np.testing.assert_allclose(recording.time[:2], [0.01, 0.02])


def test_recomputed_torques_match_the_recorded_muscle_forces(recording):
    """The joint torque MuJoCo recomputes at each recorded state is the muscles' moment
    arms times the forces the sensors recorded during the run."""
    model = compile_model(get_body("mouse_forelimb"))
    data = mujoco.MjData(model)
    for env, step in ((0, 5), (3, 17), (7, 29)):
        data.qpos[:] = recording["joint/qpos"][env, step]
        data.qvel[:] = recording["joint/qvel"][env, step]
        data.act[:] = recording["muscle/activation"][env, step]
        mujoco.mj_forward(model, data)
        moment = np.zeros((model.nu, model.nv))
        mujoco.mju_sparse2dense(
            moment, data.actuator_moment, data.moment_rownnz, data.moment_rowadr, data.moment_colind
        )
        expected = moment.T @ recording["muscle/force"][env, step].astype(np.float64)
        np.testing.assert_allclose(recording["joint/actuator_torque"][env, step], expected, rtol=1e-3, atol=1e-7)


def test_hdf5_round_trip(recording, tmp_path):
    path = recording.save_h5(tmp_path / "rollout.h5")
    loaded = Recording.load_h5(path)
    assert loaded.attrs == recording.attrs and loaded.units == recording.units
    for name, value in recording.data.items():
        np.testing.assert_array_equal(loaded[name], value, err_msg=name)


def test_nwb_round_trip(recording, tmp_path):
    pynwb = pytest.importorskip("pynwb")
    path = recording.save_nwb(tmp_path / "rollout.nwb")
    with pynwb.NWBHDF5IO(str(path), "r") as io:
        module = io.read().processing["neuromimic"]
        series = module["muscle__force__env2"]
        assert series.unit == recording.units["muscle/force"]
        np.testing.assert_array_equal(series.data[:], recording["muscle/force"][2])
        np.testing.assert_allclose(series.timestamps[:], recording.time)


@pytest.mark.slow
def test_analyze_record_cli_from_a_checkpoint(tmp_path, tiny_fit):
    from neuromimic.cli import main

    checkpoint = tiny_fit("gru", max_steps=2)
    main(["analyze", "record", "--ckpt", str(checkpoint), "--output", str(tmp_path / "rollout.h5"), "--steps", "12"])
    loaded = Recording.load_h5(tmp_path / "rollout.h5")
    assert loaded["core/state/h"].shape == (8, 12, 128) and loaded.attrs["controller"]["core"]["class"] == "GRUCore"
    main(["export", "--ckpt", str(checkpoint), "--output", str(tmp_path / "export")])
    main(
        [
            "analyze",
            "record",
            "--ckpt",
            str(tmp_path / "export"),
            "--output",
            str(tmp_path / "rollout.nwb"),
            "--steps",
            "5",
        ]
    )
    assert (tmp_path / "rollout.nwb").stat().st_size > 0


def test_recording_inside_body_perturbations_uses_the_perturbed_body(recording):
    from neuromimic.analysis import perturb
    from neuromimic.envs import make_env

    assert (recording["body/contact_force"] == 0).all()  # the forelimb touches nothing
    env = make_env(CONFIG, split="val", evaluation=True)
    torch.manual_seed(0)
    controller = Controller(controller_spec(CONFIG))
    humerus = env.backend.model.body("humerus").id
    with (
        perturb.weaken_muscles(env, {"Biceps_Long": 0.3}),
        perturb.force_pulse(env, "humerus", [0, 0, -0.01], 0.05, 0.03),
    ):
        weak = record(controller, env, steps=12)
    pushed = weak["body/external_force"][:, :, humerus, 2]
    assert (pushed[:, 5:8] == np.float32(-0.01)).all() and (pushed[:, :5] == 0).all() and (pushed[:, 8:] == 0).all()
    model = env.backend.model
    data = mujoco.MjData(model)
    with perturb.weaken_muscles(env, {"Biceps_Long": 0.3}):
        for step in (3, 9):
            data.qpos[:], data.qvel[:] = weak["joint/qpos"][0, step], weak["joint/qvel"][0, step]
            data.act[:] = weak["muscle/activation"][0, step]
            mujoco.mj_forward(model, data)
            moment = np.zeros((model.nu, model.nv))
            mujoco.mju_sparse2dense(
                moment, data.actuator_moment, data.moment_rownnz, data.moment_rowadr, data.moment_colind
            )
            expected = moment.T @ weak["muscle/force"][0, step].astype(np.float64)
            np.testing.assert_allclose(weak["joint/actuator_torque"][0, step], expected, rtol=1e-3, atol=1e-7)
