"""Tier 2: a run stopped by ``kill -9`` or SIGTERM and resumed is bitwise the uninterrupted run."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from neuromimic.checkpoint_files import load_checkpoint_file

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "mouse_forelimb_reach_mlp.yaml"
# 8 bodies, 16-step rollouts, 2 x 2 = 4 updates per PPO iteration; checkpoints every 5
# optimiser steps, so a checkpoint falls inside an iteration (25 = 6 iterations + 1 update).
RUN = [
    "--config",
    str(CONFIG),
    "--trainer.enable_progress_bar",
    "false",
    "--model.env.num_envs",
    "8",
    "--model.ppo.rollout_steps",
    "16",
    "--model.ppo.epochs",
    "2",
    "--model.ppo.minibatches",
    "2",
    "--trainer.check_val_every_n_epoch",
    "100",
    "--trainer.callbacks.every_n_train_steps",
    "5",
    "--trainer.max_steps",
    "36",
]


def _fit(cwd: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``neuromimic fit`` in a subprocess (so that it can be killed) in ``cwd``."""
    env = dict(os.environ, **(env or {}), PYTHONPATH=f"{REPO / 'tests'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    command = [sys.executable, "-m", "neuromimic.cli", "fit", *RUN, *extra]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False)


def _last(cwd: Path) -> dict:
    return load_checkpoint_file(cwd / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt")


def _differences(a, b, path: str = "") -> list[str]:
    """Paths at which two checkpoint entries are not bitwise equal."""
    if isinstance(a, torch.Tensor):
        same = isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
        return [] if same else [path]
    if isinstance(a, dict):
        if not isinstance(b, dict) or set(a) != set(b):
            return [path]
        return [d for key in a for d in _differences(a[key], b[key], f"{path}/{key}")]
    if isinstance(a, (list, tuple)):
        if not isinstance(b, (list, tuple)) or len(a) != len(b):
            return [path]
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in _differences(x, y, f"{path}/{i}")]
    return [] if a == b else [path]


def _state(checkpoint: dict) -> dict:
    """What must be bitwise equal: weights, optimiser, generators and the training in flight."""
    return {
        "global_step": checkpoint["global_step"],
        "state_dict": checkpoint["state_dict"],
        "optimizer_states": checkpoint["optimizer_states"],
        "ranks": checkpoint["neuromimic"]["ranks"],
    }


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    cwd = tmp_path_factory.mktemp("uninterrupted")
    result = _fit(cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    return _last(cwd)


@pytest.mark.slow
def test_a_run_killed_with_sigkill_resumes_bitwise_equal(tmp_path, uninterrupted):
    killed = _fit(tmp_path, "--trainer.callbacks+=probes.KillAt", "--trainer.callbacks.step=27")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert _last(tmp_path)["global_step"] == 25  # the newest checkpoint, mid-iteration
    resumed = _fit(tmp_path, "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "not bitwise equal" not in resumed.stderr
    final = _last(tmp_path)
    assert final["global_step"] == 36
    assert _differences(_state(uninterrupted), _state(final)) == []


@pytest.mark.slow
def test_sigterm_saves_exits_with_the_requeue_code_and_resumes_bitwise_equal(tmp_path, uninterrupted):
    stopped = _fit(tmp_path, "--trainer.callbacks+=probes.SignalAt", "--trainer.callbacks.step=18")
    assert stopped.returncode == 128 + signal.SIGTERM, (stopped.returncode, stopped.stderr[-3000:])
    assert "requeue" in stopped.stderr
    assert _last(tmp_path)["global_step"] == 19  # saved after the step the signal came in, not at step 15
    resumed = _fit(tmp_path, "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _differences(_state(uninterrupted), _state(_last(tmp_path))) == []


@pytest.mark.slow
def test_resuming_with_another_num_envs_warns_that_it_is_not_exact(tmp_path):
    first = _fit(tmp_path, "--trainer.max_steps", "8")
    assert first.returncode == 0, first.stderr[-3000:]
    resumed = _fit(tmp_path, "--ckpt_path", "last", "--trainer.max_steps", "12", "--model.env.num_envs", "4")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "num_envs 8 -> 4" in resumed.stderr and "not bitwise equal" in resumed.stderr


@pytest.mark.slow
def test_slurm_requeue_signal_saves_between_steps_requeues_and_resumes_bitwise_equal(tmp_path, uninterrupted):
    # A SLURM job (as Lightning detects one) warned by SIGUSR1 before its time limit; a
    # stand-in scontrol records what it is asked.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "scontrol_calls"
    scontrol = bin_dir / "scontrol"
    scontrol.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    scontrol.chmod(0o755)
    slurm = {
        "SLURM_NTASKS": "1",
        "SLURM_PROCID": "0",
        "SLURM_LOCALID": "0",
        "SLURM_NODEID": "0",
        "SLURM_JOB_ID": "4242",
        "SLURM_JOB_NAME": "train",
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
    }
    stopped = _fit(
        tmp_path,
        "--trainer.callbacks+=probes.SignalAt",
        "--trainer.callbacks.step=18",
        "--trainer.callbacks.name=SIGUSR1",
        env=slurm,
    )
    assert stopped.returncode == 128 + signal.SIGTERM, (stopped.returncode, stopped.stderr[-3000:])
    assert calls.read_text().split() == ["requeue", "4242"]
    assert _last(tmp_path)["global_step"] == 19
    assert not list(tmp_path.glob("hpc_ckpt_*.ckpt"))  # Lightning's mid-step save never ran
    resumed = _fit(tmp_path, "--ckpt_path", "last", env=slurm)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _differences(_state(uninterrupted), _state(_last(tmp_path))) == []
