"""Tier 2 (issue 16): MuJoCo's warnings are counted and logged, low friction is warned about
at load, and the NaN debug mode dumps an unstable body's last steps with a replay command."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import mujoco
import numpy as np
import pytest
import torch

from neuromimic.bodies import get_body
from neuromimic.physics import mujoco_warnings
from neuromimic.physics.model import low_friction, warn_low_friction
from neuromimic.physics.mujoco_backend import MujocoBackend


def test_mujoco_warnings_from_the_rollout_threads_are_counted_and_logged(caplog):
    backend = MujocoBackend(get_body("mouse_forelimb"), num_envs=4, substeps=2, nthread=2)
    before = mujoco_warnings.counts().get("badqvel", 0)
    view = backend.view
    qvel = view.qvel.clone()
    qvel[3] = 1e30  # MuJoCo refuses this velocity, warns and resets the body
    mask = torch.tensor([False, False, False, True])
    with caplog.at_level(logging.DEBUG, logger="neuromimic.physics.mujoco"):
        backend.reset(mask, view.qpos.clone(), qvel, view.act.clone())
        backend.step(torch.zeros(4, backend.model.nu))
    assert backend.unstable.tolist() == [False, False, False, True]
    assert mujoco_warnings.counts()["badqvel"] > before
    assert any("Nan, Inf or huge value in QVEL" in r.getMessage() for r in caplog.records)


def test_warning_texts_map_to_their_kind():
    assert mujoco_warnings.kind_of("Nan, Inf or huge value in QACC at DOF 3. The simulation is unstable.") == "badqacc"
    assert mujoco_warnings.kind_of("Pre-allocated contact buffer is full. Increase nconmax above 10.") == "contactfull"
    assert mujoco_warnings.kind_of("Attaching a spec with an empty prefix may prevent ...") is None


def test_friction_below_mujocos_minimum_is_warned_at_load(caplog):
    xml = """
    <mujoco>
      <worldbody>
        <geom name="floor" type="plane" size="1 1 0.1" friction="0 0.005 0.0001"/>
        <body><freejoint/><geom name="ball" size="0.1" condim="6" friction="1 0 0.0001"/></body>
        <body pos="1 0 0"><freejoint/><geom name="puck" size="0.1" condim="1" friction="0 0 0"/></body>
      </worldbody>
    </mujoco>"""
    model = mujoco.MjModel.from_xml_string(xml)
    found = low_friction(model)
    # The floor's sliding friction and the ball's torsional one; condim 1 uses no friction.
    assert found == ["geom 'floor': sliding 0", "geom 'ball': torsional 0"]
    with caplog.at_level(logging.WARNING, logger="neuromimic.physics.model"):
        warn_low_friction(model, "test_body_with_ice")
    assert "2 friction coefficient(s) below MuJoCo's minimum 1e-05" in caplog.text and "geom 'floor'" in caplog.text
    for key in ("mouse_forelimb", "rodent", "fruitfly", "myoarm", "myolegs"):
        assert low_friction(get_body(key).load_model()) == [], key


@pytest.mark.slow
def test_unstable_body_is_dumped_and_replays(tmp_path, tiny_fit, caplog):
    with caplog.at_level(logging.WARNING):
        tiny_fit(
            "mlp",
            "--trainer.callbacks+=neuromimic.training.callbacks.UnstableBodyDump",
            "--trainer.callbacks.max_dumps=2",
            "--trainer.callbacks+=probes.PushBody",
            "--trainer.callbacks.step=2",
            "--model.env.terminations",
            '{"site_pos_error": {"distance": 1.0}}',
            max_steps=4,
        )
    dumps = sorted((tmp_path / "lightning_logs" / "version_0" / "unstable_bodies").glob("*.npz"))
    assert len(dumps) == 2 and all(d.with_suffix(".mjb").is_file() for d in dumps)
    assert dumps[0].name.startswith("step2_envstep") and dumps[0].stem.endswith("_body0")
    assert f"python -m neuromimic.physics.replay {dumps[0].relative_to(tmp_path)}" in caplog.text
    assert "more unstable bodies were not dumped (max_dumps=2)" in caplog.text  # body 0 is pushed on

    with np.load(dumps[0]) as dump:
        steps = dump["ctrl"].shape[0]
        assert dump["external_force"][-1, 1, 0] == 1e9
        assert dump["external_force"][0, 1, 0] == 0.0  # the history reaches back before the push
        assert json.loads(str(dump["notes"]))["body"] == "mouse_forelimb"
    result = subprocess.run(
        [sys.executable, "-m", "neuromimic.physics.replay", str(dumps[0])],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == steps
    calm, blown = lines[:-1], lines[-1]
    # Before the push the replay follows the run; the pushed step blows up again.
    assert all(step["finite"] and step["max_abs_qpos_difference"] < 1e-6 for step in calm)
    assert (
        not blown["finite"] or blown["mujoco_warnings"] or blown["max_abs_qvel"] > get_body("mouse_forelimb").max_qvel
    )


@pytest.mark.skipif(sys.platform == "win32", reason="paths")
def test_replay_of_a_missing_dump_is_one_message(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "neuromimic.physics.replay", str(tmp_path / "nothing.npz")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2 and "nothing.npz" in result.stderr and "Traceback" not in result.stderr
