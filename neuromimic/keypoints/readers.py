"""`read_keypoints`: a lab pose file to `Keypoints` in metres, whatever its format.

The file's format (given, or inferred by `neuromimic.keypoints.formats.infer_format`)
picks its reader from `neuromimic.keypoints.formats.REGISTRY`; the reader returns the
file's raw arrays, and the rules every format shares (`neuromimic.keypoints.rules`) make
them `Keypoints`: names, units and frame rate resolved here, then `make_keypoints`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from neuromimic.keypoints.formats import get_format, infer_format
from neuromimic.keypoints.formats.base import TRIANGULATE, RawKeypoints, check_file, keypoint_file
from neuromimic.keypoints.keypoints import Keypoints, KeypointsError
from neuromimic.keypoints.rules import (
    DEFAULT_CONFIDENCE_THRESHOLD,
    DEFAULT_MAX_GAP_FRAMES,
    UNITS,
    make_keypoints,
    parse_units,
)

log = logging.getLogger(__name__)


def read_keypoints(
    path: str | os.PathLike,
    format: str | None = None,
    *,
    units: str | None = None,
    fps: float | None = None,
    keypoint_names: Sequence[str] | None = None,
    skeleton: str | os.PathLike | None = None,
    individual: str | None = None,
    confidence_threshold: float = DEFAULT_CONFIDENCE_THRESHOLD,
    max_gap_frames: int = DEFAULT_MAX_GAP_FRAMES,
    body_size: float | None = None,
    up_axis: str = "z",
) -> Keypoints:
    """Read 3-D keypoints from a lab pose file.

    Args:
        path: the file.
        format: one of `FORMATS`, or None to infer it (see `infer_format`).
        units: length unit of the file's numbers, ``"m"``, ``"cm"`` or ``"mm"``; required
            where the file does not state a length unit, and overrides it where it does.
        fps: frame rate in Hz; required where the file has none, overrides it otherwise.
        keypoint_names: K names, in the file's keypoint order; they name DANNCE and
            sleap-anipose ``points3d.h5`` keypoints and rename those of the other formats.
        skeleton: the file naming the keypoints of a format whose files carry no names:
            for DANNCE the skeleton ``.mat`` (with ``joint_names``), for a sleap-anipose
            ``points3d.h5`` the SLEAP project ``.slp`` the 2-D poses were predicted with
            (or a SLEAP skeleton ``.json`` / ``.yaml``). ``keypoint_names`` wins over it.
        individual: which animal to read from a multi-animal file (DeepLabCut individual,
            SLEAP identity, sleap-anipose track index, NWB ``PoseEstimation`` name); the
            error lists the choices.
        confidence_threshold: keypoints whose confidence is below it are masked (the
            file's own confidence scale; default 0 masks nothing).
        max_gap_frames: gaps of at most this many frames are linearly interpolated.
        body_size: typical size of the animal in m (a rat: about 0.2) for the scale
            check, or None to skip it.
        up_axis: the file's axis that points up, one of `UP_AXES` (``"z"``, ``"y"``,
            ``"-z"``, ``"-y"``, ``"x"``, ``"-x"``); the positions are rotated so that it
            becomes +z.

    Returns:
        `Keypoints` with positions [T, K, 3] in m.

    Raises:
        KeypointsError: the file cannot be read as asked; the message says how to fix it.
    """
    path = Path(path)
    where = keypoint_file(path)
    check_file(path)
    fmt = get_format(infer_format(path) if format is None else format, where)
    if skeleton is not None and "skeleton" not in fmt.options:
        raise KeypointsError(
            f"{where}: skeleton= names the keypoints of DANNCE predictions and sleap-anipose "
            f"points3d.h5 files only; {fmt.name} files name their keypoints themselves (use "
            "keypoint_names=[...], --keypoint_names on the command line, to rename them)"
        )
    if individual is not None and "individual" not in fmt.options:
        raise KeypointsError(
            f"{where}: individual= applies to multi-animal NWB, DeepLabCut and SLEAP files; "
            f"{fmt.name} files hold one animal"
        )
    given = {"keypoint_names": keypoint_names, "skeleton": skeleton, "individual": individual}
    raw = fmt.read(path, **{option: given[option] for option in fmt.options})
    return _finish(
        raw,
        path,
        fmt.name,
        units=units,
        fps=fps,
        keypoint_names=keypoint_names,
        confidence_threshold=confidence_threshold,
        max_gap_frames=max_gap_frames,
        body_size=body_size,
        up_axis=up_axis,
    )


def _finish(
    raw: RawKeypoints,
    path: Path,
    fmt: str,
    *,
    units: str | None,
    fps: float | None,
    keypoint_names: Sequence[str] | None,
    confidence_threshold: float,
    max_gap_frames: int,
    body_size: float | None,
    up_axis: str,
) -> Keypoints:
    """Resolve names, units and frame rate, then apply `make_keypoints`' rules."""
    where = keypoint_file(path)
    kind = f"{raw.meta['layout']} files" if "layout" in raw.meta else f"{fmt} files"
    _check_has_z(raw.positions, where)
    num_kp = raw.positions.shape[1]
    names = raw.names
    if keypoint_names is not None:
        if len(keypoint_names) != num_kp:
            raise KeypointsError(
                f"{where}: keypoint_names has {len(keypoint_names)} names but the file "
                f"holds {num_kp} keypoints ({raw.names}); pass one name per keypoint, in "
                "the file's order"
            )
        names = list(keypoint_names)
    if units is not None:
        unit = parse_units(units, where=where, field_name="units=")
        units_from = f"argument units={units!r}"
        if raw.units is not None and raw.units != unit:
            log.warning(
                "%s: the file's %s says %r; using units=%r as asked",
                where,
                raw.units_field,
                raw.units_found,
                units,
            )
    elif raw.units is not None:
        unit = raw.units
        units_from = f"file: {raw.units_field} = {raw.units_found!r}"
    else:
        found = (
            f"its {raw.units_field} says {raw.units_found!r}, which is not a length unit"
            if raw.units_found is not None
            else f"{kind} do not state their length units"
        )
        raise KeypointsError(
            f"{where}: {found}; pass units= the units the 3-D positions are in, one of "
            f"{sorted(UNITS)} (for example read_keypoints(path, units='mm'), the usual "
            "unit of a calibration done in millimetres)"
        )
    if raw.confidence is None and confidence_threshold != DEFAULT_CONFIDENCE_THRESHOLD:
        log.warning(
            "%s: the file has no confidence values, so confidence_threshold=%g masks nothing",
            where,
            confidence_threshold,
        )
    if fps is not None:
        if raw.fps is not None and abs(raw.fps - fps) > 0.01 * fps:
            log.warning("%s: the file says %g Hz; using fps=%g as asked", where, raw.fps, fps)
        rate = float(fps)
    elif raw.fps is not None:
        rate = float(raw.fps)
    else:
        raise KeypointsError(
            f"{where}: {kind} do not store a frame rate; pass fps= the rate the video "
            "was recorded at in Hz (for example read_keypoints(path, fps=50.0, ...))"
        )
    return make_keypoints(
        raw.positions,
        names,
        source=str(path),
        fps=rate,
        units=unit,
        units_from=units_from,
        confidence=raw.confidence,
        missing=raw.missing,
        confidence_threshold=confidence_threshold,
        max_gap_frames=max_gap_frames,
        body_size=body_size,
        format=fmt,
        meta=raw.meta,
        up_axis=up_axis,
    )


def _check_has_z(positions: np.ndarray, where: str) -> None:
    """Refuse positions [T, K, 3] whose z is missing everywhere while x and y are not."""
    if positions.ndim != 3 or positions.shape[2] != 3 or positions.size == 0:
        return  # make_keypoints explains wrong shapes
    if np.isfinite(positions[..., 2]).any() or not np.isfinite(positions[..., :2]).any():
        return
    raise KeypointsError(
        f"{where}: every z value is missing (empty or NaN) while x and y are not, so the file "
        f"holds 2-D positions; {TRIANGULATE}"
    )


def _per_format(fmt: str, doc: str):
    """A public per-format reader with `read_keypoints`' keyword arguments."""

    def reader(path: str | os.PathLike, **kwargs: Any) -> Keypoints:
        return read_keypoints(path, fmt, **kwargs)

    reader.__name__ = reader.__qualname__ = f"read_{fmt}"
    reader.__doc__ = f"Read {doc} as `Keypoints` in m; keyword arguments as in `read_keypoints`."
    return reader


read_nwb = _per_format("nwb", "an NWB file with an ndx-pose PoseEstimation")
read_dannce = _per_format("dannce", "a DANNCE prediction .mat file")
read_dlc = _per_format("dlc", "a DeepLabCut 3-D .h5 or .csv file")
read_sleap = _per_format("sleap", "a SLEAP .slp (3-D instances only) or a sleap-anipose points3d.h5 file")
read_anipose = _per_format("anipose", "an anipose 3-D .csv file")
read_c3d = _per_format("c3d", "a C3D motion-capture file")
read_csv = _per_format("csv", "a plain keypoint .csv file (see `neuromimic.keypoints.formats.plain_csv`)")
read_npz = _per_format("npz", "a keypoint .npz file (see `neuromimic.keypoints.formats.npz`)")
