"""Files written by earlier versions (``tests/data/legacy``, see its README) still load: their
controllers load, the env their stored config describes makes the observation and action
layouts they were trained for, they record, and training resumes from the checkpoint."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from neuromimic import load_controller
from neuromimic.envs import EnvConfig, controller_spec
from neuromimic.models.export import controller_metadata

LEGACY = Path(__file__).resolve().parent / "data" / "legacy"
EXPORTS = sorted(path.name for path in LEGACY.glob("*_export"))
REPO = Path(__file__).resolve().parents[1]


def test_the_legacy_files_are_there():
    assert len(EXPORTS) == 9 and (LEGACY / "mouse_forelimb_reach_mlp.ckpt").is_file()


@pytest.mark.parametrize("name", [*EXPORTS, "mouse_forelimb_reach_mlp.ckpt"])
def test_legacy_controllers_load_and_fit_the_env_their_config_describes(name):
    path = LEGACY / name
    controller = load_controller(path)
    config = EnvConfig.from_dict(controller_metadata(path)["env"])
    assert controller.spec.mismatch(controller_spec(config), config.body) is None


def test_a_legacy_checkpoint_records(tmp_path):
    from neuromimic.analysis.record import record

    path = LEGACY / "mouse_forelimb_reach_mlp.ckpt"
    recording = record(load_controller(path), EnvConfig.from_dict(controller_metadata(path)["env"]), steps=3)
    assert recording["observation"].shape[:2] == (8, 3)  # the 8 held-out clips, 3 steps


@pytest.mark.slow
def test_training_resumes_from_a_legacy_checkpoint(tmp_path, monkeypatch):
    from neuromimic.cli import main

    checkpoint = tmp_path / "legacy.ckpt"
    shutil.copyfile(LEGACY / "mouse_forelimb_reach_mlp.ckpt", checkpoint)
    monkeypatch.chdir(tmp_path)
    main(
        [
            "fit",
            "--config",
            str(REPO / "configs" / "mouse_forelimb_reach_mlp.yaml"),
            "--trainer.enable_progress_bar",
            "false",
            "--model.env.num_envs",
            "4",
            "--model.ppo.rollout_steps",
            "8",
            "--model.ppo.epochs",
            "1",
            "--model.ppo.minibatches",
            "2",
            "--trainer.max_steps",
            "4",
            "--trainer.check_val_every_n_epoch",
            "100",
            "--model.controller.init_args.core.init_args.hidden_sizes",
            "[16, 16]",
            "--model.ppo.critic_hidden_sizes",
            "[16, 16]",
            "--ckpt_path",
            str(checkpoint),
        ]
    )
    assert (tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt").is_file()
