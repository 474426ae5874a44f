"""What the format modules share: `RawKeypoints`, `KeypointFormat` and the file checks
and messages every reader uses."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from neuromimic.keypoints.keypoints import KeypointsError

#: The fix named when a file holds 2-D positions.
TRIANGULATE = (
    "3-D keypoints are needed: triangulate the 2-D detections of several cameras first "
    "(for example with anipose, sleap-anipose or DANNCE) and read the 3-D output"
)


@dataclass
class RawKeypoints:
    """What a format reader found in a file, before the common rules are applied.

    Attributes:
        positions: [T, K, 3] positions in the file's units, NaN where missing.
        names: K keypoint names (may be None when the file has none, e.g. DANNCE).
        fps: frame rate in Hz from the file, or None.
        units: a length unit (`UNITS` key) stated by a trusted field of the file, or None.
        units_field: the field the units were looked up in (for messages).
        units_found: the raw value of that field (``"pixels"``...), or None.
        confidence: [T, K] confidence, or None.
        missing: [T, K] bool marked missing by the file, or None.
        meta: free strings kept with the keypoints.
    """

    positions: np.ndarray
    names: list[str] | None
    fps: float | None = None
    units: str | None = None
    units_field: str = ""
    units_found: str | None = None
    confidence: np.ndarray | None = None
    missing: np.ndarray | None = None
    meta: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class KeypointFormat:
    """A lab format `read_keypoints` reads: its reader, how its files are recognised, its help.

    Attributes:
        name: the ``format=`` value (``"nwb"``, ``"dannce"``...).
        read: ``read(path, **options) -> RawKeypoints``: the file's arrays, before the
            rules every format shares; its keyword arguments are ``options``.
        files: what its files are, for the help (one line).
        needs: what reading them takes besides the file, as command-line options, for the
            help (one line).
        suffixes: file extensions (lower case, with the dot) that are this format's
            alone, so that `infer_format` needs no look inside.
        h5_layout: whether an open ``.h5`` / ``.hdf5`` file has this format's layout, for a
            format with such files; None otherwise.
        csv_header: whether the first row of a ``.csv`` file (its cells) is this format's
            header, for a format with such files; None otherwise.
        options: the keyword arguments of ``read``, among ``"keypoint_names"``,
            ``"skeleton"`` and ``"individual"``; `read_keypoints` refuses ``skeleton=`` and
            ``individual=`` for a format whose reader does not take them.
    """

    name: str
    read: Callable[..., RawKeypoints]
    files: str
    needs: str
    suffixes: tuple[str, ...] = ()
    h5_layout: Callable[[h5py.File], bool] | None = None
    csv_header: Callable[[list[str]], bool] | None = None
    options: tuple[str, ...] = ()


def keypoint_file(path: Path) -> str:
    """``"keypoint file '<path>'"``, how every message names the file."""
    return f"keypoint file {str(path)!r}"


def check_file(path: Path) -> None:
    """Refuse a path that does not exist or is not a file."""
    if not path.exists():
        raise KeypointsError(f"{keypoint_file(path)} does not exist; check the path (--input on the command line)")
    if not path.is_file():
        raise KeypointsError(f"{keypoint_file(path)} is not a file; pass the keypoint file itself")


def open_h5(path: Path, expected: str) -> h5py.File:
    """``h5py.File(path, "r")``, refusing a file that is not HDF5 with a message naming it.

    Args:
        path: the file.
        expected: what the file should be, for the message ("an NWB file (HDF5)"...).

    Raises:
        KeypointsError: the file is not HDF5 or cannot be opened as such.
    """
    where = keypoint_file(path)
    if not h5py.is_hdf5(path):
        raise KeypointsError(f"{where} is not an HDF5 file; expected {expected}")
    try:
        return h5py.File(path, "r")
    except OSError as e:  # a damaged or truncated HDF5 file
        raise KeypointsError(
            f"{where} cannot be opened as HDF5 ({e}); expected {expected}. Is it truncated "
            "or still being written? Copy it again from its source"
        ) from e


def pick_individual(where: str, available: list[str], individual: str | None, what: str, hint: str) -> str:
    """The individual to read: ``individual`` if the file has it, the only one if there is
    one; otherwise an error listing what the file has."""
    if individual is None:
        if len(available) > 1:
            raise KeypointsError(
                f"{where} holds several {what} {available}; pick one with individual={hint} "
                "(--individual on the command line)"
            )
        return available[0]
    if individual not in available:
        raise KeypointsError(
            f"{where}: individual={individual!r} is not in the file; it has {available} "
            "(pick one with --individual on the command line)"
        )
    return individual


def decode(value: Any) -> str:
    """A string stored in a file (UTF-8 bytes, a 0-d array of them, or anything else) as ``str``."""
    if isinstance(value, bytes | np.bytes_):
        return bytes(value).decode("utf-8")
    if isinstance(value, np.ndarray) and value.shape == ():
        return decode(value[()])
    return str(value)
