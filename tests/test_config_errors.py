"""Bad configs (issue 16): one message naming the config field and the fix, exit status 2,
no traceback; ``--debug`` keeps the traceback."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from neuromimic.errors import INPUT_ERROR_EXIT_CODE, ConfigError

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "mouse_forelimb_reach_mlp.yaml"
FIT = [
    "fit",
    "--config",
    str(CONFIG),
    "--trainer.enable_progress_bar",
    "false",
    "--model.env.num_envs",
    "8",
    "--model.ppo.rollout_steps",
    "16",
    "--model.ppo.epochs",
    "1",
    "--model.ppo.minibatches",
    "2",
    "--trainer.max_steps",
    "2",
    "--trainer.check_val_every_n_epoch",
    "100",
]


def _one_error(caplog, monkeypatch, where: Path, argv: list[str]) -> str:
    """Run ``neuromimic argv`` in ``where``; assert exit status 2 and one logged message."""
    from neuromimic.cli import main

    monkeypatch.chdir(where)
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="neuromimic"), pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == INPUT_ERROR_EXIT_CODE, caplog.text
    errors = [r for r in caplog.records if r.name == "neuromimic" and r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is None, caplog.text
    message = errors[0].getMessage()
    assert "\n" not in message and "Traceback" not in caplog.text
    return message


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--model.env.substeps", "0"], "model.env.substeps is 0; it must be an integer >= 1"),
        (["--model.env.num_envs", "-4"], "model.env.num_envs is -4; it must be an integer >= 1"),
        (
            ["--model.env.backend", "mjxx"],
            "model.env.backend is 'mjxx'; it must be one of ['mujoco', 'mjx', 'warp'] (did you mean 'mjx'?)",
        ),
        (
            ["--model.env.future_frames", "[0, 2]"],
            "model.env.future_frames is [0, 2]; it must be a non-empty list of positive",
        ),
        (
            ["--model.env.rewards", '{"joint_pos_eror_exp": {"weight": 1.0}}'],
            "model.env.rewards names 'joint_pos_eror_exp'; it must be one of",
        ),
        (
            ["--model.env.rewards", '{"site_pos_error_exp": {"weight": 1.0, "sigma": 0}}'],
            "model.env.rewards.site_pos_error_exp.sigma is 0.0; it must be a number > 0",
        ),
        (["--model.ppo.rollout_steps", "0"], "model.ppo.rollout_steps is 0; it must be an integer >= 1"),
        (["--model.ppo.gamma", "1.5"], "model.ppo.gamma is 1.5; it must be in (0, 1]"),
        (
            ["--model.ppo.minibatches", "1000"],
            "a rollout holds 128 steps per process, fewer than model.ppo.minibatches (1000)",
        ),
        (["--model.env.body", "rabbit"], "unknown body 'rabbit'; known bodies:"),
        (["--model.env.clips", "/nonexistent/clips"], "clip source '/nonexistent/clips' does not exist"),
        (["--model.env.substeps", "3"], "clips are at 100 Hz but the control step is 3 x 0.005 s"),
    ],
    ids=lambda value: value[0] if isinstance(value, list) else None,
)
def test_bad_config_values_are_one_message_naming_the_field(flags, expected, tmp_path, caplog, monkeypatch):
    message = _one_error(caplog, monkeypatch, tmp_path, [*FIT, *flags])
    assert expected in message, message


def test_debug_shows_the_traceback(tmp_path, monkeypatch):
    from neuromimic.cli import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(Exception) as error:  # jsonargparse's error, caused by ours
        main([*FIT, "--model.env.substeps", "0", "--debug"])
    chain, seen = [], error.value
    while seen is not None:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    assert any(isinstance(e, ConfigError) for e in chain)


@pytest.mark.slow
def test_resuming_with_another_controller_size_names_the_tensor_and_both_shapes(tmp_path, caplog, monkeypatch):
    from neuromimic.cli import main

    monkeypatch.chdir(tmp_path)
    main(FIT)
    message = _one_error(
        caplog,
        monkeypatch,
        tmp_path,
        [
            *FIT,
            "--ckpt_path",
            "last",
            "--trainer.max_steps",
            "4",
            "--model.controller.init_args.core.init_args.hidden_sizes",
            "[64, 64]",
        ],
    )
    assert "lightning_logs/version_0/checkpoints/last.ckpt does not fit the configured controller" in message
    assert (
        "is [256, " in message
        and "but [64, " in message
        and "resume with the config the run was started with" in message
    )


@pytest.mark.slow
def test_a_controller_for_another_body_is_refused_naming_both_actuator_counts(tmp_path, caplog, monkeypatch):
    import json

    from neuromimic.cli import main
    from neuromimic.models.export import CONFIG_FILE

    monkeypatch.chdir(tmp_path)
    main(FIT)
    export = tmp_path / "export"
    main(["export", "--ckpt", "lightning_logs/version_0/checkpoints/last.ckpt", "--output", str(export)])
    myoarm = tmp_path / "myoarm_export"
    shutil.copytree(export, myoarm)
    document = json.loads((myoarm / CONFIG_FILE).read_text())
    document["metadata"]["env"] |= {"body": "myoarm", "clips": "bundled:myoarm_reach", "substeps": 10}
    (myoarm / CONFIG_FILE).write_text(json.dumps(document))
    message = _one_error(
        caplog, monkeypatch, tmp_path, ["analyze", "record", "--ckpt", str(myoarm), "--output", "r.h5"]
    )
    assert "the controller drives 9 actuator values but body 'myoarm' in this env takes 63" in message
