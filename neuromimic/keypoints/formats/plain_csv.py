"""The plain keypoint CSV layout (format ``"csv"``): any ``.csv`` that is neither
DeepLabCut's nor anipose's."""

from __future__ import annotations

from pathlib import Path

from neuromimic.keypoints.formats.base import KeypointFormat, RawKeypoints
from neuromimic.keypoints.formats.table import xyz_csv, xyz_table
from neuromimic.keypoints.keypoints import KeypointsError


def read_csv_raw(path: Path) -> RawKeypoints:
    """Read the plain keypoint CSV layout.

    One header row, then one row per frame. Columns: ``frame`` (optional: whole frame
    numbers; missing numbers become missing frames), then per keypoint
    ``<name>_x, <name>_y, <name>_z`` and optionally ``<name>_confidence``. Empty cells
    and ``nan`` are missing values. The file holds no units or rate: pass ``units=`` and
    ``fps=``. Example::

        frame,snout_x,snout_y,snout_z,tail_x,tail_y,tail_z
        0,12.1,40.3,8.0,-150.2,38.9,10.4
    """
    where, header, values, names = xyz_csv(
        path,
        "`<name>_x, <name>_y, <name>_z` columns; the plain CSV layout is `frame` (optional) "
        "then three columns per keypoint",
    )
    known = {"frame"} | {f"{n}_{s}" for n in names for s in ("x", "y", "z", "confidence")}
    extra = [c for c in header if c not in known]
    if extra:
        raise KeypointsError(
            f"{where}: columns {extra} are not part of the plain CSV layout (`frame`, "
            "`<name>_x/_y/_z`, `<name>_confidence`); remove them or pass format="
        )
    return xyz_table(header, values, names, "frame", "confidence", where)


FORMAT = KeypointFormat(
    name="csv",
    read=read_csv_raw,
    files="plain .csv: frame, <name>_x/_y/_z",
    needs="--units; --fps",
    csv_header=lambda row: True,  # the last CSV format tried: any other layout
)
