"""Lightning's checkpoint I/O with atomic writes and verified reads (`AtomicCheckpointIO`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from neuromimic.checkpoint_files import CONTENT_HASH_KEY, content_hash, load_checkpoint_file
from neuromimic.files import atomic_write


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint I/O: atomic writes with a content hash, verified reads.

    A checkpoint is written to a temporary file in the same directory, flushed to disk
    and renamed over the target, so a crash leaves either the old or the new file, never
    a truncated one; its content hash is stored in it (`CONTENT_HASH_KEY`). Reading goes
    through `load_checkpoint_file`: a corrupt, foreign-code or tampered file raises
    `CheckpointError` instead of loading or silently starting afresh.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        checkpoint = {**checkpoint, CONTENT_HASH_KEY: content_hash(checkpoint)}
        atomic_write(path, lambda f: torch.save(checkpoint, f))

    def load_checkpoint(
        self, path: str | Path, map_location: Any = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        return load_checkpoint_file(path, map_location=map_location)
