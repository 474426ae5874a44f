"""Shared fixtures and paths for the test suite."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Keep JAX from grabbing memory or threads it does not need on CI machines.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def tiny_fit(tmp_path, monkeypatch):
    """``run(config, *flags, max_steps=4)``: a few optimiser steps of a bundled config
    (``configs/mouse_forelimb_reach_<config>.yaml``, or ``configs/<config>`` when it names a
    ``.yaml``; 8 bodies) in ``tmp_path``; returns the run's ``last.ckpt``."""
    from neuromimic.cli import main

    def run(config: str = "mlp", *flags: str, max_steps: int = 4) -> Path:
        monkeypatch.chdir(tmp_path)
        name = config if config.endswith(".yaml") else f"mouse_forelimb_reach_{config}.yaml"
        main(
            [
                "fit",
                "--config",
                str(REPO / "configs" / name),
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
                str(max_steps),
                "--trainer.check_val_every_n_epoch",
                "100",
                *flags,
            ]
        )
        return tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"

    return run
