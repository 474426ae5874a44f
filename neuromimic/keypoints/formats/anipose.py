"""anipose triangulation CSVs (format ``"anipose"``)."""

from __future__ import annotations

from pathlib import Path

from neuromimic.keypoints.formats.base import KeypointFormat, RawKeypoints
from neuromimic.keypoints.formats.table import xyz_csv, xyz_table


def read_anipose_raw(path: Path) -> RawKeypoints:
    """Read an anipose triangulation CSV.

    Columns per keypoint ``<name>_x, <name>_y, <name>_z, <name>_error, <name>_score,
    <name>_ncams``; ``<name>_score`` is kept as confidence; other columns (``fnum``, the
    ``M_ij`` / ``center_i`` alignment) are ignored except ``fnum``, which places each row
    at its frame. Positions are in the calibration board's units (``units=`` required).
    """
    where, header, values, names = xyz_csv(path, "`<name>_x` / `<name>_y` column pairs; is it an anipose CSV?")
    return xyz_table(header, values, names, "fnum", "score", where)


def is_anipose_header(row: list[str]) -> bool:
    """Whether the first row of a CSV is anipose's (``<name>_score/_ncams/_error`` columns)."""
    return any(cell.strip().endswith(("_score", "_ncams", "_error")) for cell in row)


FORMAT = KeypointFormat(
    name="anipose",
    read=read_anipose_raw,
    files="anipose pose-3d .csv",
    needs="--units; --fps",
    csv_header=is_anipose_header,
)
