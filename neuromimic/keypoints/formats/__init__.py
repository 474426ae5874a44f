"""The lab formats `read_keypoints` reads: one module per format, behind `REGISTRY`.

================  ===========================  ==============================================
format            files                        units / frame rate / names
================  ===========================  ==============================================
``"nwb"``         ``.nwb`` with ndx-pose       ``unit`` attribute of the series data (trusted
                  ``PoseEstimation``           when it is a length unit, so ``"pixels"`` needs
                                               ``units=``); rate or timestamps; series names
``"dannce"``      ``.mat`` with ``pred``       ``units=`` and ``fps=`` required; names from
                  [T, 3, K] (``p_max`` [T, K]  ``skeleton=`` (a DANNCE skeleton ``.mat`` with
                  as confidence)               ``joint_names``) or ``keypoint_names=``
``"dlc"``         DeepLabCut ``.h5`` / ``.csv``  ``units=`` and ``fps=`` required; body parts;
                  with x/y/z coordinates       ``individual=`` for multi-animal files
``"sleap"``       SLEAP ``.slp`` / analysis    ``units=`` and ``fps=`` required; skeleton
                  ``.h5`` (via sleap-io)       nodes; 3-D only from triangulated instance
                                               groups of a recording session
``"sleap"``       sleap-anipose                ``units=`` and ``fps=`` required; names from
                  ``points3d.h5``: ``tracks``  ``keypoint_names=`` or ``skeleton=`` (the
                  [T, tracks, K, 3] or         SLEAP project ``.slp``, or a skeleton
                  [T, K, 3]                    ``.json`` / ``.yaml``); ``individual=`` the
                                               track index; no confidence
``"anipose"``     anipose ``.csv``             ``units=`` and ``fps=`` required; columns
                                               ``<name>_x/_y/_z`` (``_score`` as confidence)
``"c3d"``         ``.c3d`` (via ``c3d``)       ``POINT:UNITS``, ``POINT:RATE``,
                                               ``POINT:LABELS``; residual < 0 means missing
``"csv"``         plain ``.csv``               ``units=`` and ``fps=`` required; see `read_csv_raw`
``"npz"``         ``.npz``                     ``units=`` required; see `read_npz_raw`
================  ===========================  ==============================================

Each format module declares a `KeypointFormat` (``FORMAT``): its reader, the extensions
that are its alone, how it recognises its layout in a shared container, the options its
reader takes and a line of help. When ``format`` is not given, `infer_format` picks it
from the extension; ``.h5`` and ``.csv`` are shared by several tools, so for those it asks
each format, in `REGISTRY` order, whether the file has its layout (never whether a reader
happens to succeed): an ``.h5`` with a pandas DataFrame group is DeepLabCut, one with
``tracks`` and ``node_names`` is a SLEAP analysis file, one with a ``tracks`` dataset of
rank 3 or 4 whose last axis is x, y(, z) and no ``node_names`` is a sleap-anipose
``points3d.h5`` (read by the ``"sleap"`` reader); a ``.csv`` whose first cell is
``scorer`` is DeepLabCut, one with ``<name>_score`` / ``<name>_ncams`` columns is anipose,
anything else is the plain CSV layout.

Nothing pickled is ever loaded: DeepLabCut ``.h5`` files are read with h5py (see
`neuromimic.keypoints.formats._pandas_hdf`), ``.npz`` files with ``allow_pickle=False``,
``.mat`` files with scipy or h5py.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Literal

from neuromimic.keypoints.formats import anipose, c3d, dannce, dlc, npz, nwb, plain_csv, sleap
from neuromimic.keypoints.formats.base import KeypointFormat, check_file, keypoint_file, open_h5
from neuromimic.keypoints.formats.table import csv_rows
from neuromimic.keypoints.keypoints import KeypointsError

#: The formats by ``format=`` name, in the order `infer_format` asks them about a shared
#: container (DeepLabCut before SLEAP for ``.h5``; DeepLabCut, anipose, plain for ``.csv``).
REGISTRY: dict[str, KeypointFormat] = {
    fmt.name: fmt
    for fmt in (
        nwb.FORMAT,
        dannce.FORMAT,
        dlc.FORMAT,
        sleap.FORMAT,
        anipose.FORMAT,
        c3d.FORMAT,
        plain_csv.FORMAT,
        npz.FORMAT,
    )
}
#: Formats `read_keypoints` understands.
FORMATS = tuple(REGISTRY)
#: A ``format=`` value (the keys of `REGISTRY`), for typed signatures.
FormatName = Literal["nwb", "dannce", "dlc", "sleap", "anipose", "c3d", "csv", "npz"]
#: Extensions of the containers several formats use; the file's layout decides.
H5_SUFFIXES = (".h5", ".hdf5")
CSV_SUFFIXES = (".csv",)


def _formats_help() -> str:
    """The table of what each format needs, from `REGISTRY`, between its heading and notes."""
    rows = ["  format   file                                     needs"]
    for fmt in REGISTRY.values():
        files = textwrap.wrap(fmt.files, 40, break_on_hyphens=False, break_long_words=False)
        needs = textwrap.wrap(fmt.needs, 46, break_on_hyphens=False, break_long_words=False)
        for i in range(max(len(files), len(needs))):
            name = fmt.name if i == 0 else ""
            cells = f"  {name:<8} {files[i] if i < len(files) else '':<40} {needs[i] if i < len(needs) else ''}"
            rows.append(cells.rstrip())
    return (
        "what each format needs besides --input and --output (--format overrides the inferred one):\n"
        + "\n".join(rows)
        + """

2-D files (a SLEAP analysis .h5, DeepLabCut 2-D output, sleap-anipose's reprojections.h5)
are refused: triangulate first. --keypoint_names also renames the keypoints of files that
name them. --confidence_threshold applies where the file has confidence (NWB confidence,
DANNCE p_max, DeepLabCut likelihood, SLEAP point scores, anipose score, csv/npz
confidence). --max_gap_frames: longer gaps stay missing (the fit skips those samples).

example, a DANNCE prediction:
  neuromimic keypoints fit --input save_data_AVG0.mat --skeleton rat23.mat --units mm \\
      --fps 50 --output rat.h5
"""
    )


#: What each format needs besides the file (a table for the command line's help).
KEYPOINT_FORMATS_HELP = _formats_help()


def get_format(name: str, where: str) -> KeypointFormat:
    """The `KeypointFormat` called ``name`` (any case).

    Args:
        name: a ``format=`` value.
        where: the file, for the message.

    Raises:
        KeypointsError: no format has that name; the message lists `FORMATS`.
    """
    fmt = REGISTRY.get(str(name).lower())
    if fmt is None:
        raise KeypointsError(f"{where}: format {name!r} is unknown; pass one of {list(FORMATS)}")
    return fmt


def infer_format(path: str | os.PathLike) -> str:
    """The format of ``path`` from its extension (and layout for ``.h5`` / ``.csv``).

    Raises:
        KeypointsError: the extension or layout matches no known format.
    """
    path = Path(path)
    ext = path.suffix.lower()
    where = keypoint_file(path)
    for fmt in REGISTRY.values():
        if ext in fmt.suffixes:
            return fmt.name
    if ext in H5_SUFFIXES + CSV_SUFFIXES:
        check_file(path)
    if ext in H5_SUFFIXES:
        expected = "a DeepLabCut .h5 (pandas DataFrame) or a SLEAP analysis .h5 (or a sleap-anipose points3d.h5)"
        with open_h5(path, expected) as f:
            for fmt in REGISTRY.values():
                if fmt.h5_layout is not None and fmt.h5_layout(f):
                    return fmt.name
            shape = getattr(f.get("tracks"), "shape", None)
        found = f" (its `tracks` has shape {shape})" if shape is not None else ""
        raise KeypointsError(
            f"{where} is an HDF5 file with neither a DeepLabCut DataFrame, SLEAP "
            "`tracks`/`node_names`, nor the sleap-anipose points3d layout (one `tracks` "
            f"dataset [frames, tracks, nodes, 3]){found}; pass format= one of {list(FORMATS)}"
        )
    if ext in CSV_SUFFIXES:
        header = csv_rows(path, 1)
        first = header[0] if header else []
        return next(fmt.name for fmt in REGISTRY.values() if fmt.csv_header is not None and fmt.csv_header(first))
    raise KeypointsError(f"{where}: extension {ext!r} matches no keypoint format; pass format= one of {list(FORMATS)}")
