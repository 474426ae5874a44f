"""Checkpoint files that are verified when read and never run code (no Lightning needed).

Training writes them (`neuromimic.training.checkpoint_io.AtomicCheckpointIO`: atomic, with
the content hash of step 5 below); training, export and analysis read them here.

What a read checks, in order (`load_checkpoint_file`):

1. torch is at least `MIN_TORCH_FOR_THIRD_PARTY_FILES` (older ``weights_only`` loaders
   have a known escape, CVE-2026-24747);
2. the file is a zip archive whose every member matches its CRC-32 (a flipped bit or a
   truncated file is caught here, before any byte is unpickled);
3. ``torch.load(weights_only=True)``: pickled code (``__reduce__``) is refused, never run;
4. the content is a Lightning checkpoint without ``hyper_parameters``: neuromimic never
   writes them, and LightningCLI would import the classes they name;
5. the content hash neuromimic wrote beside the tensors at save time (`CONTENT_HASH_KEY`)
   matches what was read; files written elsewhere or by older versions have none.
"""

from __future__ import annotations

import hashlib
import logging
import zipfile
import zlib
from pathlib import Path
from typing import Any

import torch

from neuromimic.errors import InputError

log = logging.getLogger(__name__)

#: The oldest torch whose ``weights_only`` loader neuromimic trusts with files from elsewhere.
MIN_TORCH_FOR_THIRD_PARTY_FILES = (2, 10)
#: Top-level checkpoint key of the SHA-256 of everything else in it (`content_hash`).
CONTENT_HASH_KEY = "neuromimic_content_sha256"
#: Checkpoint keys that LightningCLI parses into a config (importing the classes they name).
_CONFIG_KEYS = ("hyper_parameters", "datamodule_hyper_parameters")


class CheckpointError(InputError):
    """A checkpoint file cannot be used; the message names the file and what to do."""


def content_hash(checkpoint: dict[str, Any]) -> str:
    """SHA-256 (hex) of a checkpoint's content: every key, value and tensor byte, in a
    canonical order, leaving out `CONTENT_HASH_KEY` itself."""
    digest = hashlib.sha256()
    _feed(digest, {k: v for k, v in checkpoint.items() if k != CONTENT_HASH_KEY})
    return digest.hexdigest()


def _feed(digest: Any, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        tensor = value.detach().to("cpu").contiguous()
        digest.update(f"T{tensor.dtype}{tuple(tensor.shape)}:".encode())
        if tensor.numel():  # an empty tensor has no bytes (and may have stride 0)
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, dict):
        digest.update(f"D{len(value)}:".encode())
        for key in sorted(value, key=repr):
            digest.update(f"{key!r}=".encode())
            _feed(digest, value[key])
    elif isinstance(value, (list, tuple)):
        digest.update(f"L{len(value)}:".encode())
        for item in value:
            _feed(digest, item)
    else:
        digest.update(f"V{value!r};".encode())


def require_trusted_torch(path: str | Path) -> None:
    """Refuse to read ``path`` with a torch whose ``weights_only`` loader is not trusted."""
    version = tuple(int(part) for part in torch.__version__.split("+")[0].split(".")[:2])
    if version < MIN_TORCH_FOR_THIRD_PARTY_FILES:
        minimum = ".".join(map(str, MIN_TORCH_FOR_THIRD_PARTY_FILES))
        raise CheckpointError(
            f"refusing to read {path} with torch {torch.__version__}: loaders older than torch "
            f"{minimum} can be made to run code by a crafted file (CVE-2026-24747); "
            f"upgrade torch (pip install 'torch>={minimum}')"
        )


def verify_archive(path: Path, what: str = "checkpoint") -> None:
    """Check that ``path`` is a zip archive whose members all match their CRC-32.

    Raises:
        CheckpointError: naming the file and, for a CRC mismatch, the damaged member.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except (zipfile.BadZipFile, EOFError, OSError, zlib.error) as error:
        raise CheckpointError(
            f"{what} {path} is truncated or not a checkpoint archive ({error}); use another "
            "checkpoint, e.g. the run's last.ckpt, which is always written atomically"
        ) from None
    if damaged is not None:
        raise CheckpointError(
            f"{what} {path} is corrupt: its member {damaged!r} does not match its CRC-32 (a "
            "flipped bit on disk or in transfer); use another copy or an earlier checkpoint"
        )


def load_checkpoint_file(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Read and verify a checkpoint (see the module docstring for every check).

    Args:
        path: the ``.ckpt`` file.
        map_location: ``torch.load``'s ``map_location``.

    Raises:
        CheckpointError: if the file is missing, truncated, corrupt, holds pickled code or
            a config that would name code, or was changed after neuromimic wrote it.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; check --ckpt_path")
    require_trusted_torch(path)
    verify_archive(path)
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # noqa: BLE001 (torch raises many types for corrupt or unsafe files)
        raise CheckpointError(
            f"cannot read checkpoint {path}: {type(error).__name__}: {error}. The file is "
            "corrupt or contains pickled objects other than tensors (which are never "
            "loaded). Use another checkpoint, e.g. the run's last.ckpt."
        ) from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"{path} is not a Lightning checkpoint (no 'state_dict' entry)")
    named = [key for key in _CONFIG_KEYS if checkpoint.get(key)]
    if named:
        raise CheckpointError(
            f"{path} holds {' and '.join(named)}, which neuromimic checkpoints never contain "
            "and which could name code to import; it was not written by neuromimic fit. "
            "Refusing it: train with your own config, or load only its weights after "
            "removing that entry yourself"
        )
    expected = checkpoint.pop(CONTENT_HASH_KEY, None)
    if expected is None:
        log.debug("%s carries no content hash (written elsewhere or by an older neuromimic)", path)
    elif content_hash(checkpoint) != expected:
        raise CheckpointError(
            f"checkpoint {path} was changed after neuromimic wrote it: its content hash does "
            "not match; use another copy or an earlier checkpoint"
        )
    return checkpoint
