"""Checkpoints and exports from elsewhere (issue 16): nothing in a file runs code, and a damaged
or altered file is an error naming it, on every path that reads one.

The hostile files are made from a real checkpoint of a short run:

- ``config_code.ckpt``: ``hyper_parameters`` naming ``os.system`` (LightningCLI would parse
  them into the run's config and call it), with a valid content hash;
- ``pickled_code.ckpt``: an object whose ``__reduce__`` calls ``os.system``;
- ``bit_flip.ckpt``: one bit of a weight flipped inside the archive (a CRC mismatch);
- ``altered.ckpt``: a weight changed and the archive rewritten whole (CRCs match, the
  content hash does not);
- ``truncated.ckpt``: the first half of the file.

Each goes through fit/validate/test/predict ``--ckpt_path FILE`` and ``--ckpt_path last``,
``export``, ``analyze record``, ``analyze perturb`` and ``load_controller``: exit status 2
with one message naming the file (or `CheckpointError` from the API), and the marker file
the payloads would write never appears.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import zipfile
from pathlib import Path

import pytest
import torch

from neuromimic.checkpoint_files import (
    CONTENT_HASH_KEY,
    CheckpointError,
    content_hash,
    load_checkpoint_file,
)
from neuromimic.errors import INPUT_ERROR_EXIT_CODE, InputError

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "mouse_forelimb_reach_mlp.yaml"
MARKER = "MARKER"
HOSTILE = ("config_code", "pickled_code", "bit_flip", "altered", "truncated")
EXPECTED = {
    "config_code": "holds hyper_parameters",
    "pickled_code": "contains pickled objects other than tensors",
    "bit_flip": "does not match its CRC-32",
    "altered": "content hash does not match",
    "truncated": "truncated or not a checkpoint archive",
}


class _Payload:
    """Unpickling this would run a shell command that creates ``MARKER``."""

    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


def _flip_one_bit_of_a_weight(source: Path, target: Path) -> None:
    """Copy ``source`` flipping bit 6 of the last byte of its largest stored member (a
    weight tensor): the zip archive's CRC no longer matches."""
    shutil.copyfile(source, target)
    with zipfile.ZipFile(target) as archive:
        member = max(archive.infolist(), key=lambda info: info.file_size)
        assert member.compress_type == zipfile.ZIP_STORED
    with open(target, "r+b") as f:
        f.seek(member.header_offset)
        header = f.read(30)
        name_length = int.from_bytes(header[26:28], "little")
        extra_length = int.from_bytes(header[28:30], "little")
        position = member.header_offset + 30 + name_length + extra_length + member.file_size - 1
        f.seek(position)
        byte = f.read(1)[0]
        f.seek(position)
        f.write(bytes([byte ^ 0x40]))


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A genuine checkpoint (``good``) of a 4-step run, and the hostile files made from it."""
    from neuromimic.cli import main

    root = tmp_path_factory.mktemp("untrusted")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        main(
            [
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
                "4",
                "--trainer.check_val_every_n_epoch",
                "100",
            ]
        )
    finally:
        os.chdir(cwd)
    good = root / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    checkpoint = load_checkpoint_file(good)
    out = {"good": good}

    hparams = {
        **checkpoint,
        "hyper_parameters": {"controller": {"class_path": "os.system", "init_args": {"command": f"touch {MARKER}"}}},
    }
    hparams[CONTENT_HASH_KEY] = content_hash(hparams)  # a forger can write a matching hash
    torch.save(hparams, out.setdefault("config_code", root / "config_code.ckpt"))

    torch.save({**checkpoint, "payload": _Payload()}, out.setdefault("pickled_code", root / "pickled_code.ckpt"))

    _flip_one_bit_of_a_weight(good, out.setdefault("bit_flip", root / "bit_flip.ckpt"))

    altered = {**checkpoint, CONTENT_HASH_KEY: content_hash(checkpoint)}
    altered["state_dict"] = dict(checkpoint["state_dict"])
    name = next(k for k in altered["state_dict"] if k.startswith("controller.") and k.endswith("weight"))
    altered["state_dict"][name] = altered["state_dict"][name].clone()
    altered["state_dict"][name][0, 0] = 3.4e36
    torch.save(altered, out.setdefault("altered", root / "altered.ckpt"))

    data = good.read_bytes()
    out["truncated"] = root / "truncated.ckpt"
    out["truncated"].write_bytes(data[: len(data) // 2])
    return out


def _refused(caplog, monkeypatch, where: Path, argv: list[str], path: Path, kind: str) -> None:
    """``neuromimic argv`` in ``where`` exits with 2 and one message naming ``path``; no marker."""
    from neuromimic.cli import main

    monkeypatch.chdir(where)
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="neuromimic"), pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == INPUT_ERROR_EXIT_CODE, (argv, caplog.text)
    errors = [r.getMessage() for r in caplog.records if r.name == "neuromimic" and r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    named = (
        str(path) in errors[0] or str(path.relative_to(where)) in errors[0]
        if path.is_relative_to(where)
        else str(path) in errors[0]
    )
    assert named and EXPECTED[kind] in errors[0], errors[0]
    assert not (where / MARKER).exists()


def _with_fit_args(subcommand: str) -> list[str]:
    return [
        subcommand,
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
        "8",
    ]


@pytest.mark.slow
@pytest.mark.parametrize("kind", HOSTILE)
@pytest.mark.parametrize("subcommand", ["fit", "validate", "test", "predict"])
def test_lightning_subcommands_refuse_the_file(files, kind, subcommand, tmp_path, caplog, monkeypatch):
    path = files[kind]
    _refused(caplog, monkeypatch, tmp_path, [*_with_fit_args(subcommand), "--ckpt_path", str(path)], path, kind)


@pytest.mark.slow
@pytest.mark.parametrize("kind", HOSTILE)
@pytest.mark.parametrize("subcommand", ["fit", "validate"])
def test_lightning_subcommands_refuse_the_file_as_last(files, kind, subcommand, tmp_path, caplog, monkeypatch):
    last = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    shutil.copyfile(files[kind], last)
    _refused(caplog, monkeypatch, tmp_path, [*_with_fit_args(subcommand), "--ckpt_path", "last"], last, kind)
    assert (last.stat().st_size, last.read_bytes()) == (files[kind].stat().st_size, files[kind].read_bytes())


@pytest.mark.slow
@pytest.mark.parametrize("kind", HOSTILE)
def test_tool_commands_refuse_the_file(files, kind, tmp_path, caplog, monkeypatch):
    path = files[kind]
    perturbation = tmp_path / "perturb.yaml"
    perturbation.write_text("- weaken_muscles: {scales: {Biceps_Long: 0.5}}\n")
    for argv in (
        ["export", "--ckpt", str(path), "--output", str(tmp_path / "export")],
        ["analyze", "record", "--ckpt", str(path), "--output", str(tmp_path / "rollout.h5")],
        ["analyze", "perturb", "--ckpt", str(path), "--perturbation", str(perturbation)],
    ):
        _refused(caplog, monkeypatch, tmp_path, argv, path, kind)
    assert not (tmp_path / "export").exists() and not (tmp_path / "rollout.h5").exists()


@pytest.mark.parametrize("kind", HOSTILE)
def test_load_controller_refuses_the_file(files, kind, tmp_path, monkeypatch):
    from neuromimic import load_controller

    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError, match=EXPECTED[kind]) as error:
        load_controller(files[kind])
    assert str(files[kind]) in str(error.value)
    assert not (tmp_path / MARKER).exists()


def test_the_genuine_checkpoint_loads_and_exports(files, tmp_path):
    from neuromimic import load_controller
    from neuromimic.models import export_controller

    controller = load_controller(files["good"])
    directory = export_controller(controller, tmp_path / "export")
    assert torch.equal(load_controller(directory).core.layers[0].weight, controller.core.layers[0].weight)


def test_export_weights_are_verified_against_their_hash(files, tmp_path):
    from neuromimic import load_controller
    from neuromimic.models import export_controller
    from neuromimic.models.export import CONFIG_FILE, WEIGHTS_FILE, ControllerLoadError

    directory = export_controller(load_controller(files["good"]), tmp_path / "export")
    document = json.loads((directory / CONFIG_FILE).read_text())
    weights = directory / WEIGHTS_FILE
    assert document["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x40  # one bit of the last weight
    weights.write_bytes(bytes(data))
    with pytest.raises(ControllerLoadError, match="does not match the weights_sha256") as error:
        load_controller(directory)
    assert str(weights) in str(error.value)


def test_old_torch_is_refused_for_files_from_elsewhere(files, monkeypatch):
    monkeypatch.setattr(torch, "__version__", "2.9.1+cpu")
    with pytest.raises(CheckpointError, match="CVE-2026-24747") as error:
        load_checkpoint_file(files["good"])
    assert str(files["good"]) in str(error.value) and "torch>=2.10" in str(error.value)


def test_every_checkpoint_error_is_input_error():
    # The CLI turns InputError into one message and exit status 2 (not a traceback).
    assert issubclass(CheckpointError, InputError)
