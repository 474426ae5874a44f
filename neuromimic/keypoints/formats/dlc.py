"""DeepLabCut 3-D output (format ``"dlc"``): ``.h5`` (a pandas DataFrame, read with h5py
by `neuromimic.keypoints.formats._pandas_hdf`, never unpickled) or ``.csv``, with columns
(scorer, [individuals,] bodyparts, coords)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from neuromimic.keypoints.formats import _pandas_hdf
from neuromimic.keypoints.formats.base import (
    TRIANGULATE,
    KeypointFormat,
    RawKeypoints,
    keypoint_file,
    open_h5,
    pick_individual,
)
from neuromimic.keypoints.formats.table import csv_rows, parse_numbers
from neuromimic.keypoints.keypoints import KeypointsError


def _read_dlc_csv(path: Path) -> tuple[np.ndarray, list[tuple[str, ...]]]:
    """DLC CSV: header rows scorer, (individuals,) bodyparts, coords, then index + values."""
    rows = csv_rows(path)
    header = []
    for row in rows:
        if not row or row[0].strip().lower() not in (
            "scorer",
            "individuals",
            "bodyparts",
            "coords",
        ):
            break
        header.append(row)
    levels = [h[0].strip().lower() for h in header]
    if levels not in (
        ["scorer", "bodyparts", "coords"],
        ["scorer", "individuals", "bodyparts", "coords"],
    ):
        raise KeypointsError(
            f"{keypoint_file(path)}: the header rows are {levels}; a DeepLabCut CSV starts with "
            "rows scorer, (individuals,) bodyparts, coords"
        )
    ncols = len(header[0]) - 1
    columns = [tuple(h[c + 1] for h in header) for c in range(ncols)]
    # The index column (frame numbers, or image paths in labelled data) is not read.
    names = ["index"] + ["/".join(c) for c in columns]
    values = parse_numbers(rows[len(header) :], names, len(header) + 1, keypoint_file(path), skip=1)
    return values, columns


def read_dlc_raw(path: Path, *, individual: str | None = None) -> RawKeypoints:
    """Read DeepLabCut 3-D output (``.h5`` via h5py, or ``.csv``).

    Columns are (scorer, [individuals,] bodyparts, coords); 3-D files have coords x, y, z
    (2-D files with x, y, likelihood are refused). Multi-animal files need ``individual``.
    """
    where = keypoint_file(path)
    if path.suffix.lower() == ".csv":
        values, columns = _read_dlc_csv(path)
    else:
        with open_h5(path, "a DeepLabCut .h5 (HDF5 with a pandas DataFrame)") as f:
            group = _pandas_hdf.find_frame_group(f)
            if group is None:
                raise KeypointsError(
                    f"{where} holds no pandas DataFrame (key `df_with_missing`); is it a "
                    "DeepLabCut output file? For other layouts pass format="
                )
            try:
                values, columns = _pandas_hdf.read_frame(group)
            except _pandas_hdf.UnsafePickleError as e:
                raise KeypointsError(
                    f"{where}: the column labels of `{group.name}` are a pickle that holds "
                    f"more than strings ({e}); refused. Export the file to CSV with "
                    "DeepLabCut and read the CSV"
                ) from e
    nlevels = {len(c) for c in columns}
    if nlevels not in ({3}, {4}):
        raise KeypointsError(
            f"{where}: columns have {sorted(nlevels)} levels; DeepLabCut uses 3 (scorer, "
            "bodyparts, coords) or 4 (scorer, individuals, bodyparts, coords)"
        )
    if nlevels == {4}:
        individuals = list(dict.fromkeys(c[1] for c in columns))
        individual = pick_individual(where, individuals, individual, "individuals", "<name>")
        keep = [i for i, c in enumerate(columns) if c[1] == individual]
        values = values[:, keep]
        columns = [(c[0], c[2], c[3]) for c in (columns[i] for i in keep)]
    elif individual is not None:
        raise KeypointsError(f"{where} holds a single animal; drop individual={individual!r}")
    bodyparts = list(dict.fromkeys(c[1] for c in columns))
    col = {(c[1], c[2]): i for i, c in enumerate(columns)}
    coords = {c[2] for c in columns}
    if "z" not in coords:
        raise KeypointsError(
            f"{where} holds 2-D DeepLabCut coordinates {sorted(coords)}; {TRIANGULATE} "
            "(DeepLabCut 3-D projects write x, y, z)"
        )
    positions = np.full((values.shape[0], len(bodyparts), 3), np.nan)
    confidence = None
    if "likelihood" in coords:
        confidence = np.full((values.shape[0], len(bodyparts)), np.nan)
    for k, bp in enumerate(bodyparts):
        for a, axis in enumerate("xyz"):
            if (bp, axis) not in col:
                raise KeypointsError(f"{where}: body part {bp!r} has no {axis!r} column")
            positions[:, k, a] = values[:, col[(bp, axis)]]
        if confidence is not None and (bp, "likelihood") in col:
            confidence[:, k] = values[:, col[(bp, "likelihood")]]
    return RawKeypoints(
        positions=positions,
        names=bodyparts,
        confidence=confidence,
        meta={"scorer": columns[0][0]} if columns else {},
    )


def has_frame_group(f: h5py.File) -> bool:
    """Whether an open HDF5 file holds a pandas DataFrame (DeepLabCut's ``.h5``)."""
    return _pandas_hdf.find_frame_group(f) is not None


def is_dlc_header(row: list[str]) -> bool:
    """Whether the first row of a CSV is DeepLabCut's (its first cell ``scorer``)."""
    return bool(row) and row[0].strip().lower() == "scorer"


FORMAT = KeypointFormat(
    name="dlc",
    read=read_dlc_raw,
    files="DeepLabCut 3-D .h5 / .csv (x, y, z)",
    needs="--units; --fps; --individual in multi-animal files",
    h5_layout=has_frame_group,
    csv_header=is_dlc_header,
    options=("individual",),
)
