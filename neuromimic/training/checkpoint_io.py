"""Checkpoint files that are written atomically and read without executing code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from neuromimic.errors import InputError
from neuromimic.files import atomic_write


class CheckpointError(InputError):
    """A checkpoint file cannot be used; the message names the file and what to do."""


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint I/O: atomic writes, ``weights_only`` reads, clear errors.

    A checkpoint is written to a temporary file in the same directory, flushed to disk
    and renamed over the target, so a crash leaves either the old or the new file, never
    a truncated one. Reading uses ``torch.load(weights_only=True)``: a checkpoint from
    elsewhere cannot execute code, and a corrupt file raises `CheckpointError` instead of
    a silent fresh start.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        atomic_write(path, lambda f: torch.save(checkpoint, f))

    def load_checkpoint(self, path: str | Path, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        return load_checkpoint_file(path, map_location=map_location)


def load_checkpoint_file(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``.

    Raises:
        CheckpointError: if the file is missing, truncated, corrupt, or holds pickled
            code (which is refused, never run).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; check --ckpt_path")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises many types for corrupt or unsafe files
        raise CheckpointError(
            f"cannot read checkpoint {path}: {type(error).__name__}: {error}. The file is "
            "truncated, corrupt, or contains pickled objects other than tensors (which are "
            "never loaded). Use another checkpoint, e.g. the run's last.ckpt, which is "
            "always written atomically."
        ) from error
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"{path} is not a Lightning checkpoint (no 'state_dict' entry)")
    return checkpoint
