"""DANNCE predictions (format ``"dannce"``): a ``.mat`` with ``pred`` [T, 3, K] and
``p_max`` [T, K] (used as confidence), named by a DANNCE skeleton ``.mat``.

MATLAB v7.3 files (HDF5) are read with h5py, older ones with `scipy.io.loadmat`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from neuromimic.keypoints.formats.base import TRIANGULATE, KeypointFormat, RawKeypoints, keypoint_file, open_h5
from neuromimic.keypoints.keypoints import KeypointsError

log = logging.getLogger(__name__)


def _mat_strings_h5(f: h5py.File, ds: h5py.Dataset) -> list[str]:
    """Strings of a MATLAB v7.3 cell array of char arrays (or one char matrix)."""
    arr = ds[()]
    if ds.dtype == h5py.ref_dtype or arr.dtype == object:
        return ["".join(chr(c) for c in np.asarray(f[ref][()]).ravel()) for ref in arr.ravel()]
    return ["".join(chr(c) for c in row).rstrip() for row in np.asarray(arr).T]


def _load_mat(path: Path, variables: Sequence[str]) -> dict[str, Any]:
    """Variables of a .mat file; v7.3 (HDF5) files through h5py, transposed to MATLAB order."""
    if h5py.is_hdf5(path):
        out: dict[str, Any] = {}
        with open_h5(path, "a MATLAB v7.3 .mat file") as f:
            for v in variables:
                if v not in f:
                    continue
                ds = f[v]
                if (
                    ds.dtype == h5py.ref_dtype
                    or ds.dtype.kind in "u"
                    and ds.attrs.get("MATLAB_class", b"") in (b"char", "char")
                ):
                    out[v] = _mat_strings_h5(f, ds)
                else:
                    out[v] = np.transpose(ds[()])  # MATLAB is column-major
        return out
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    try:
        return loadmat(str(path), variable_names=list(variables), squeeze_me=False)
    except (MatReadError, ValueError) as e:  # scipy's errors for a non-MATLAB header
        raise KeypointsError(
            f"{keypoint_file(path)} is not a readable MATLAB .mat file ({e}); expected a .mat saved "
            "by MATLAB or scipy.io.savemat (v5) or a v7.3 (HDF5) .mat"
        ) from e


def _skeleton_names(skeleton: Path) -> list[str]:
    where = f"DANNCE skeleton file {str(skeleton)!r}"
    if not Path(skeleton).exists():
        raise KeypointsError(f"{where} does not exist; pass skeleton= the .mat with `joint_names`")
    mat = _load_mat(Path(skeleton), ["joint_names"])
    if "joint_names" not in mat:
        raise KeypointsError(
            f"{where} has no `joint_names`; pass a DANNCE skeleton .mat (with `joint_names` "
            "and `joints_idx`) or keypoint_names=[...]"
        )
    names = mat["joint_names"]
    if isinstance(names, list):
        return names
    return [str(np.asarray(n).ravel()[0]) if np.asarray(n).size else "" for n in np.asarray(names).ravel()]


def read_dannce_raw(
    path: Path,
    *,
    skeleton: str | os.PathLike | None = None,
    keypoint_names: Sequence[str] | None = None,
) -> RawKeypoints:
    """Read DANNCE predictions: ``pred`` [T, 3, K] and, when present, ``p_max`` [T, K].

    The keypoint names are not in the prediction file: they come from ``keypoint_names``
    or from the ``joint_names`` of the DANNCE skeleton ``.mat`` given as ``skeleton``.
    MATLAB v7.3 files (HDF5) are read with h5py, older ones with `scipy.io.loadmat`.
    """
    where = keypoint_file(path)
    mat = _load_mat(path, ["pred", "p_max"])
    if "pred" not in mat:
        raise KeypointsError(
            f"{where} has no `pred` variable; DANNCE predictions (save_data_AVG*.mat) store "
            "the keypoints in `pred` [T, 3, K]"
        )
    pred = np.asarray(mat["pred"], dtype=np.float64)
    if pred.ndim != 3 or pred.shape[1] not in (2, 3):
        raise KeypointsError(f"{where}: `pred` has shape {pred.shape}; DANNCE stores [T, 3, K]")
    if pred.shape[1] == 2:
        raise KeypointsError(f"{where}: `pred` holds 2-D (x, y) positions; {TRIANGULATE}")
    positions = np.transpose(pred, (0, 2, 1))
    num_kp = positions.shape[1]
    if keypoint_names is not None:
        names = list(keypoint_names)
    elif skeleton is not None:
        names = _skeleton_names(Path(skeleton))
    else:
        raise KeypointsError(
            f"{where}: DANNCE prediction files carry no keypoint names; pass "
            "skeleton='<skeleton>.mat' (the DANNCE skeleton with `joint_names`) or "
            f"keypoint_names=[...] with {num_kp} names in the order of `pred` (on the command "
            "line --skeleton rat23.mat or --keypoint_names [a,b,c])"
        )
    if len(names) != num_kp:
        source = "keypoint_names" if keypoint_names is not None else f"skeleton {str(skeleton)!r}"
        raise KeypointsError(
            f"{where}: {source} gives {len(names)} keypoint names but `pred` holds {num_kp} "
            "keypoints; pass the skeleton the predictions were made with"
        )
    conf = None
    if "p_max" in mat:
        p = np.asarray(mat["p_max"], dtype=np.float64)
        if p.shape == positions.shape[:2]:
            conf = p
        else:
            log.warning("%s: `p_max` has shape %s, not [T, K]; ignored", where, p.shape)
    return RawKeypoints(positions=positions, names=names, confidence=conf)


FORMAT = KeypointFormat(
    name="dannce",
    read=read_dannce_raw,
    files=".mat with pred [T, 3, K] (p_max used as confidence)",
    needs="--skeleton <skeleton>.mat (its joint_names) or --keypoint_names; --units; --fps",
    suffixes=(".mat",),
    options=("keypoint_names", "skeleton"),
)
