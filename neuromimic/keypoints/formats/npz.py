"""The keypoint ``.npz`` layout (format ``"npz"``), loaded with ``allow_pickle=False``."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from neuromimic.keypoints.formats.base import TRIANGULATE, KeypointFormat, RawKeypoints, decode, keypoint_file
from neuromimic.keypoints.keypoints import KeypointsError


def read_npz_raw(path: Path) -> RawKeypoints:
    """Read the keypoint ``.npz`` layout, never unpickling.

    Arrays: ``positions`` [T, K, 3] float, ``names`` [K] str (a fixed-width string array:
    ``np.array(names, dtype=str)``), optional ``fps`` (scalar, Hz), ``valid`` [T, K] bool
    and ``confidence`` [T, K]. Units are not stored: pass ``units=``. Object arrays
    (pickles) are refused.
    """
    where = keypoint_file(path)
    expected = "a .npz saved by numpy.savez with `positions` [T, K, 3] and `names` [K]"
    if not zipfile.is_zipfile(path):
        raise KeypointsError(f"{where} is not a zip archive, so not a .npz file; expected {expected}")
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
            arrays = {k: z[k] for k in keys}
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise KeypointsError(
                f"{where} holds pickled object arrays, which are never loaded; save the "
                "names as a string array (np.array(names, dtype=str)) and numbers as "
                "numeric arrays"
            ) from e
        raise KeypointsError(f"{where} is not a readable .npz file ({e}); expected {expected}") from e
    except (zipfile.BadZipFile, OSError) as e:  # a damaged archive or member
        raise KeypointsError(f"{where} is not a readable .npz file ({e}); expected {expected}") from e
    for key in ("positions", "names"):
        if key not in arrays:
            raise KeypointsError(f"{where} has no `{key}` array; it holds {sorted(keys)}")
    positions = np.asarray(arrays["positions"], dtype=np.float64)
    if positions.ndim == 3 and positions.shape[2] == 2:
        raise KeypointsError(f"{where}: `positions` holds 2-D (x, y) keypoints; {TRIANGULATE}")
    if positions.ndim != 3 or positions.shape[2] != 3:
        raise KeypointsError(f"{where}: `positions` has shape {positions.shape}; expected [T, K, 3]")
    names = arrays["names"]
    if names.dtype.kind not in "US":
        raise KeypointsError(f"{where}: `names` has dtype {names.dtype}; store it as a string array")
    missing = None
    if "valid" in arrays:
        valid = np.asarray(arrays["valid"])
        if valid.shape != positions.shape[:2]:
            raise KeypointsError(f"{where}: `valid` has shape {valid.shape}; expected {positions.shape[:2]}")
        missing = ~valid.astype(bool)
    fps = float(arrays["fps"]) if "fps" in arrays else None
    return RawKeypoints(
        positions=positions,
        names=[decode(n) for n in names.ravel()],
        fps=fps,
        confidence=arrays.get("confidence"),
        missing=missing,
    )


FORMAT = KeypointFormat(
    name="npz",
    read=read_npz_raw,
    files=".npz: positions, names (, fps)",
    needs="--units; --fps where it has no fps",
    suffixes=(".npz",),
)
