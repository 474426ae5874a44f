"""C3D motion-capture files (format ``"c3d"``), read with the ``c3d`` package."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from neuromimic.keypoints.formats.base import KeypointFormat, RawKeypoints, keypoint_file
from neuromimic.keypoints.keypoints import KeypointsError
from neuromimic.keypoints.rules import as_length_unit


def read_c3d_raw(path: Path) -> RawKeypoints:
    """Read the 3-D points of a C3D file with the ``c3d`` package.

    Names from ``POINT:LABELS`` (and ``LABELS2``...), rate from ``POINT:RATE``, units from
    ``POINT:UNITS``; a point whose residual is negative is missing.
    """
    where = keypoint_file(path)
    try:
        import c3d
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise KeypointsError("reading C3D files needs the `c3d` package: pip install c3d") from e
    with open(path, "rb") as fh, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "No analog data found in file." and the like
        try:
            reader = c3d.Reader(fh)
        except Exception as e:  # c3d raises plain exceptions on malformed headers
            raise KeypointsError(f"{where} is not a readable C3D file ({e}); expected a C3D motion-capture file") from e
        names = [str(n).strip() for n in reader.point_labels]
        param = reader.get("POINT:UNITS")
        unit_found = param.string_value.strip() if param is not None else None
        rate = float(reader.point_rate) if reader.point_rate else None
        frames = [p[:, :4].astype(np.float64) for _, p, _ in reader.read_frames(copy=True)]
    if not frames:
        raise KeypointsError(f"{where} holds no frames")
    pts = np.stack(frames)  # [T, K, 4]: x, y, z, residual
    return RawKeypoints(
        positions=pts[..., :3],
        names=names,
        fps=rate,
        units=as_length_unit(unit_found),
        units_field="C3D parameter POINT:UNITS",
        units_found=unit_found,
        missing=pts[..., 3] < 0,
    )


FORMAT = KeypointFormat(
    name="c3d",
    read=read_c3d_raw,
    files=".c3d",
    needs="nothing: units, rate and labels are in it",
    suffixes=(".c3d",),
)
