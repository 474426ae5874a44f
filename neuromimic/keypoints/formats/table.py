"""CSV tables, for the formats stored as CSV (DeepLabCut, anipose, the plain layout):
reading rows, parsing numbers with messages that name the line and column, and tables
with one row per frame and ``<name>_x/_y/_z`` columns."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from neuromimic.keypoints.formats.base import TRIANGULATE, RawKeypoints, keypoint_file
from neuromimic.keypoints.keypoints import KeypointsError

#: The layouts a CSV may have, for messages.
_CSV_EXPECTED = (
    "expected comma-separated UTF-8 text: a DeepLabCut 3-D CSV, an anipose CSV or the plain "
    "layout (a header row `frame,<name>_x,<name>_y,<name>_z,...`, then one row per frame)"
)


def csv_rows(path: Path, n: int | None = None) -> list[list[str]]:
    """The first ``n`` (default all) rows of a CSV file, as strings."""
    rows: list[list[str]] = []
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            for row in csv.reader(fh):
                rows.append(row)
                if n is not None and len(rows) >= n:
                    break
    except UnicodeDecodeError as e:
        raise KeypointsError(
            f"{keypoint_file(path)} is not a text file (line {len(rows) + 1}: {e.reason} at byte "
            f"{e.start}); {_CSV_EXPECTED}"
        ) from e
    except csv.Error as e:
        raise KeypointsError(
            f"{keypoint_file(path)}: line {len(rows) + 1} is not valid CSV ({e}); {_CSV_EXPECTED}"
        ) from e
    return rows


def _float(s: str) -> float:
    s = s.strip()
    return float(s) if s else np.nan


def parse_numbers(rows: list[list[str]], columns: list[str], first_line: int, where: str, skip: int = 0) -> np.ndarray:
    """Cells of data rows as floats [N, len(columns) - skip]; empty cells and ``nan`` are NaN.

    Args:
        rows: the data rows; blank lines are skipped.
        columns: the column names, for messages; every row must have this many cells.
        first_line: line number in the file of ``rows[0]`` (1-based), for messages.
        where: the file, for messages.
        skip: leading columns that are counted but not read (an index column).

    Raises:
        KeypointsError: no data rows, a row of the wrong length, or a cell that is not a
            number; the message names the line and column.
    """
    values = []
    for i, row in enumerate(rows):
        if not row:
            continue
        line = first_line + i
        if len(row) != len(columns):
            raise KeypointsError(
                f"{where}: line {line} has {len(row)} cells but the header has "
                f"{len(columns)} columns; every row must have one cell per column"
            )
        try:
            values.append([_float(v) for v in row[skip:]])
        except ValueError:
            c = next(c for c in range(skip, len(row)) if not _is_number(row[c]))
            col, cell = columns[c], row[c]
            raise KeypointsError(
                f"{where}: line {line}, column {col!r} holds {cell[:40]!r}, which is not a "
                "number; cells must be numbers, or empty / nan where a value is missing"
            ) from None
    if not values:
        raise KeypointsError(f"{where} has a header but no data rows; {_CSV_EXPECTED}")
    return np.array(values, dtype=np.float64)


def _is_number(s: str) -> bool:
    try:
        _float(s)
    except ValueError:
        return False
    return True


def _read_table_csv(path: Path) -> tuple[list[str], np.ndarray]:
    """(header, values [N, C]) of a CSV with one header row and one row per frame."""
    rows = csv_rows(path)
    if not rows:
        raise KeypointsError(f"{keypoint_file(path)} is empty; {_CSV_EXPECTED}")
    header = [c.strip() for c in rows[0]]
    return header, parse_numbers(rows[1:], header, 2, keypoint_file(path))


def _xyz_names(header: list[str]) -> tuple[list[str], bool]:
    """Keypoint names with ``_x``/``_y``(/``_z``) columns, in order; and whether z exists."""
    names = [c[:-2] for c in header if c.endswith("_x") and f"{c[:-2]}_y" in header]
    has_z = bool(names) and all(f"{n}_z" in header for n in names)
    return names, has_z


def _place_frames(
    values: np.ndarray, frame: np.ndarray | None, where: str, column: str = "frame"
) -> tuple[np.ndarray, np.ndarray]:
    """Rows placed at their frame number (from 0 at the first); returns (rows, index).

    Frame numbers must be whole and strictly increasing (rows in time order, none
    repeated); missing numbers become missing frames. Rows are never re-sorted.

    Raises:
        KeypointsError: a frame number is not whole, repeats or goes back; the message
            names the first offending data row and its line in the file.
    """
    if frame is None:
        return values, np.arange(values.shape[0])
    whole = np.isfinite(frame) & (frame == np.round(frame))
    if not whole.all():
        row = int(np.flatnonzero(~whole)[0])
        raise KeypointsError(
            f"{where}: data row {row + 1} (line {row + 2}) has {column} {frame[row]:g}; the "
            f"`{column}` column must hold whole frame numbers"
        )
    step = np.diff(frame)
    if (step <= 0).any():
        row = int(np.flatnonzero(step <= 0)[0]) + 1
        what = "repeats" if step[row - 1] == 0 else "goes back to"
        raise KeypointsError(
            f"{where}: data row {row + 1} (line {row + 2}) {what} {column} {int(frame[row])} "
            f"after {int(frame[row - 1])}; rows must be in time order with each frame once "
            f"(the `{column}` column strictly increasing). Remove the duplicate rows or sort "
            "the file by frame if that is the true order"
        )
    idx = (frame - frame[0]).astype(int)
    out = np.full((idx[-1] + 1, values.shape[1]), np.nan)
    out[idx] = values
    return out, idx


def xyz_table(
    header: list[str], values: np.ndarray, names: list[str], frame_column: str, confidence_suffix: str, where: str
) -> RawKeypoints:
    """Keypoints of a one-row-per-frame table with ``<name>_x/_y/_z`` columns: rows placed
    at ``frame_column`` (when present), confidence from ``<name>_<confidence_suffix>``
    (keypoints without that column count as fully confident)."""
    frame = values[:, header.index(frame_column)] if frame_column in header else None
    values, _ = _place_frames(values, frame, where, frame_column)
    col = {c: i for i, c in enumerate(header)}
    positions = np.stack([values[:, [col[f"{n}_{a}"] for a in "xyz"]] for n in names], axis=1)
    confidence = None
    if any(f"{n}_{confidence_suffix}" in col for n in names):
        confidence = np.stack(
            [
                values[:, col[f"{n}_{confidence_suffix}"]]
                if f"{n}_{confidence_suffix}" in col
                else np.full(len(values), np.inf)
                for n in names
            ],
            axis=1,
        )
    return RawKeypoints(positions=positions, names=names, confidence=confidence)


def xyz_csv(path: Path, missing: str) -> tuple[str, list[str], np.ndarray, list[str]]:
    """``(where, header, values, keypoint names)`` of a CSV with ``<name>_x/_y/_z`` columns.

    Raises:
        KeypointsError: no such columns (the message ends with ``missing``), or 2-D data.
    """
    where = keypoint_file(path)
    header, values = _read_table_csv(path)
    names, has_z = _xyz_names(header)
    if not names:
        raise KeypointsError(f"{where} has no {missing}")
    if not has_z:
        raise KeypointsError(f"{where} holds 2-D (x, y) columns only; {TRIANGULATE}")
    return where, header, values, names
