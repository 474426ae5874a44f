"""Readers of lab pose files: one function per format, all returning `Keypoints` in metres.

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
``"csv"``         plain ``.csv``               ``units=`` and ``fps=`` required; see `read_csv`
``"npz"``         ``.npz``                     ``units=`` required; see `read_npz`
================  ===========================  ==============================================

When ``format`` is not given it is inferred from the extension. ``.h5`` and ``.csv`` are
shared by several tools, so for those the reader looks at the layout (never at whether a
reader happens to succeed): an ``.h5`` with a pandas DataFrame group is DeepLabCut, one
with ``tracks`` and ``node_names`` is a SLEAP analysis file, one with a ``tracks`` dataset of
rank 3 or 4 whose last axis is x, y(, z) and no ``node_names`` is a sleap-anipose
``points3d.h5`` (read by the ``"sleap"`` reader); a ``.csv`` whose first cell is
``scorer`` is DeepLabCut, one with ``<name>_score`` / ``<name>_ncams`` columns is anipose,
anything else is the plain CSV layout.

Nothing pickled is ever loaded: DeepLabCut ``.h5`` files are read with h5py (see
`neuromimic.keypoints._pandas_hdf`), ``.npz`` files with ``allow_pickle=False``, ``.mat``
files with scipy or h5py. NWB files are read with h5py following the ndx-pose layout, so
files written by ndx-pose 0.1 and 0.2+ both work (pynwb with ndx-pose 0.4 refuses some
real 0.1 files, e.g. ones with an empty ``edges`` dataset).
"""

from __future__ import annotations

import csv
import logging
import os
import warnings
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from neuromimic.keypoints import _pandas_hdf
from neuromimic.keypoints.keypoints import Keypoints, KeypointsError
from neuromimic.keypoints.rules import (
    DEFAULT_CONFIDENCE_THRESHOLD,
    DEFAULT_MAX_GAP_FRAMES,
    UNITS,
    as_length_unit,
    make_keypoints,
    parse_units,
)

log = logging.getLogger(__name__)

#: Formats `read_keypoints` understands.
FORMATS = ("nwb", "dannce", "dlc", "sleap", "anipose", "c3d", "csv", "npz")
_BY_EXTENSION = {".nwb": "nwb", ".mat": "dannce", ".slp": "sleap", ".c3d": "c3d", ".npz": "npz"}
_TRIANGULATE = (
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


def _where(path: Path) -> str:
    return f"keypoint file {str(path)!r}"


def _check_file(path: Path) -> None:
    """Refuse a path that does not exist or is not a file."""
    if not path.exists():
        raise KeypointsError(f"{_where(path)} does not exist; check the path (--input on the command line)")
    if not path.is_file():
        raise KeypointsError(f"{_where(path)} is not a file; pass the keypoint file itself")


def _open_h5(path: Path, expected: str) -> h5py.File:
    """``h5py.File(path, "r")``, refusing a file that is not HDF5 with a message naming it.

    Args:
        path: the file.
        expected: what the file should be, for the message ("an NWB file (HDF5)"...).

    Raises:
        KeypointsError: the file is not HDF5 or cannot be opened as such.
    """
    where = _where(path)
    if not h5py.is_hdf5(path):
        raise KeypointsError(f"{where} is not an HDF5 file; expected {expected}")
    try:
        return h5py.File(path, "r")
    except OSError as e:  # a damaged or truncated HDF5 file
        raise KeypointsError(
            f"{where} cannot be opened as HDF5 ({e}); expected {expected}. Is it truncated "
            "or still being written? Copy it again from its source"
        ) from e


# --------------------------------------------------------------------------- entry point


def infer_format(path: str | os.PathLike) -> str:
    """The format of ``path`` from its extension (and layout for ``.h5`` / ``.csv``).

    Raises:
        KeypointsError: the extension or layout matches no known format.
    """
    path = Path(path)
    ext = path.suffix.lower()
    where = _where(path)
    if ext in _BY_EXTENSION:
        return _BY_EXTENSION[ext]
    if ext in (".h5", ".hdf5", ".csv"):
        _check_file(path)
    if ext in (".h5", ".hdf5"):
        expected = "a DeepLabCut .h5 (pandas DataFrame) or a SLEAP analysis .h5 (or a sleap-anipose points3d.h5)"
        with _open_h5(path, expected) as f:
            if _pandas_hdf.find_frame_group(f) is not None:
                return "dlc"
            if "tracks" in f and "node_names" in f:
                return "sleap"
            if _points3d_layout(f):
                return "sleap"
            tracks = f.get("tracks")
            shape = getattr(tracks, "shape", None)
        found = f" (its `tracks` has shape {shape})" if shape is not None else ""
        raise KeypointsError(
            f"{where} is an HDF5 file with neither a DeepLabCut DataFrame, SLEAP "
            "`tracks`/`node_names`, nor the sleap-anipose points3d layout (one `tracks` "
            f"dataset [frames, tracks, nodes, 3]){found}; pass format= one of {list(FORMATS)}"
        )
    if ext == ".csv":
        header = _csv_rows(path, 1)
        first = header[0] if header else []
        if first and first[0].strip().lower() == "scorer":
            return "dlc"
        cols = [c.strip() for c in first]
        if any(c.endswith(("_score", "_ncams", "_error")) for c in cols):
            return "anipose"
        return "csv"
    raise KeypointsError(f"{where}: extension {ext!r} matches no keypoint format; pass format= one of {list(FORMATS)}")


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
    where = _where(path)
    _check_file(path)
    fmt = infer_format(path) if format is None else str(format).lower()
    if fmt not in FORMATS:
        raise KeypointsError(f"{where}: format {format!r} is unknown; pass one of {list(FORMATS)}")
    if skeleton is not None and fmt not in ("dannce", "sleap"):
        raise KeypointsError(
            f"{where}: skeleton= names the keypoints of DANNCE predictions and sleap-anipose "
            f"points3d.h5 files only; {fmt} files name their keypoints themselves (use "
            "keypoint_names=[...], --keypoint-names on the command line, to rename them)"
        )
    if individual is not None and fmt not in ("nwb", "dlc", "sleap"):
        raise KeypointsError(
            f"{where}: individual= applies to multi-animal NWB, DeepLabCut and SLEAP files; {fmt} files hold one animal"
        )
    if fmt == "nwb":
        raw = read_nwb_raw(path, individual=individual)
    elif fmt == "dannce":
        raw = read_dannce_raw(path, skeleton=skeleton, keypoint_names=keypoint_names)
        keypoint_names = None  # already used as the names
    elif fmt == "dlc":
        raw = read_dlc_raw(path, individual=individual)
    elif fmt == "sleap" and is_points3d(path):
        raw = read_points3d_raw(path, keypoint_names=keypoint_names, skeleton=skeleton, individual=individual)
        keypoint_names = None  # already used as the names
    elif fmt == "sleap":
        if skeleton is not None:
            raise KeypointsError(
                f"{where}: skeleton= names the keypoints of sleap-anipose points3d.h5 files; "
                "SLEAP .slp and analysis files name them themselves (use keypoint_names=[...], "
                "--keypoint-names on the command line, to rename them)"
            )
        raw = read_sleap_raw(path, individual=individual)
    elif fmt == "anipose":
        raw = read_anipose_raw(path)
    elif fmt == "c3d":
        raw = read_c3d_raw(path)
    elif fmt == "csv":
        raw = read_csv_raw(path)
    else:
        raw = read_npz_raw(path)
    return _finish(
        raw,
        path,
        fmt,
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
    where = _where(path)
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
        f"holds 2-D positions; {_TRIANGULATE}"
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
read_csv = _per_format("csv", "a plain keypoint .csv file (see `read_csv_raw`)")
read_npz = _per_format("npz", "a keypoint .npz file (see `read_npz_raw`)")


# --------------------------------------------------------------------------- NWB / ndx-pose


def _pick_individual(where: str, available: list[str], individual: str | None, what: str, hint: str) -> str:
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


def _decode(value: Any) -> str:
    if isinstance(value, bytes | np.bytes_):
        return bytes(value).decode("utf-8")
    if isinstance(value, np.ndarray) and value.shape == ():
        return _decode(value[()])
    return str(value)


def read_nwb_raw(path: Path, *, individual: str | None = None) -> RawKeypoints:
    """Read an ndx-pose ``PoseEstimation`` from an NWB file with h5py.

    Layout: a group with ``neurodata_type == "PoseEstimation"`` (usually
    ``processing/behavior/PoseEstimation``) holding one ``PoseEstimationSeries`` group per
    keypoint with ``data`` [T, 3] (attributes ``unit``, ``conversion``, ``offset``),
    optional ``confidence`` [T], and ``timestamps`` [T] or ``starting_time`` (attribute
    ``rate``). Keypoint order: the ``nodes`` of the ``PoseEstimation`` (ndx-pose 0.1) or
    of its linked ``Skeleton`` (0.2+), else the series' order in the file.
    """
    where = _where(path)
    with _open_h5(path, "an NWB file (HDF5) with an ndx-pose PoseEstimation") as f:
        found: list[str] = []
        f.visititems(
            lambda name, obj: (
                found.append(name)
                if isinstance(obj, h5py.Group) and _decode(obj.attrs.get("neurodata_type", "")) == "PoseEstimation"
                else None
            )
        )
        if not found:
            raise KeypointsError(
                f"{where} holds no ndx-pose `PoseEstimation` group; write the keypoints with "
                "ndx-pose (PoseEstimation with one PoseEstimationSeries per keypoint)"
            )
        if individual is not None:
            chosen = [p for p in found if p == individual or p.rsplit("/", 1)[-1] == individual]
            if len(chosen) != 1:
                raise KeypointsError(
                    f"{where}: individual={individual!r} matches {len(chosen)} PoseEstimation "
                    f"groups; the file has {found}"
                )
            pe_path = chosen[0]
        elif len(found) > 1:
            raise KeypointsError(
                f"{where} holds {len(found)} PoseEstimation groups {found}; pick one with "
                "individual=<name or path> (--individual on the command line)"
            )
        else:
            pe_path = found[0]
        pe = f[pe_path]
        series = {
            k: pe[k]
            for k in pe
            if isinstance(pe[k], h5py.Group)
            and _decode(pe[k].attrs.get("neurodata_type", "")) == "PoseEstimationSeries"
        }
        if not series:
            raise KeypointsError(f"{where}: `{pe_path}` holds no PoseEstimationSeries")
        nodes: list[str] | None = None
        if "nodes" in pe and isinstance(pe["nodes"], h5py.Dataset):
            nodes = [_decode(n) for n in pe["nodes"][()]]
        else:
            for k in pe:
                obj = pe[k]
                if isinstance(obj, h5py.Group) and _decode(obj.attrs.get("neurodata_type", "")) == "Skeleton":
                    nodes = [_decode(n) for n in obj["nodes"][()]]
        if nodes is not None and set(nodes) == set(series):
            order = nodes
        else:
            order = list(series)
        positions, confidence, units_seen, rates = [], [], set(), set()
        num_frames = None
        for name in order:
            s = series[name]
            data = s["data"]
            if data.ndim != 2 or data.shape[1] not in (2, 3):
                raise KeypointsError(f"{where}: `{pe_path}/{name}/data` has shape {data.shape}; expected [T, 3]")
            if data.shape[1] == 2:
                raise KeypointsError(f"{where}: `{pe_path}/{name}/data` holds 2-D (x, y) positions; {_TRIANGULATE}")
            if num_frames is None:
                num_frames = data.shape[0]
            elif data.shape[0] != num_frames:
                raise KeypointsError(
                    f"{where}: `{pe_path}/{name}/data` has {data.shape[0]} frames, other "
                    f"keypoints {num_frames}; all series must cover the same frames"
                )
            values = data[()].astype(np.float64)
            values = values * float(data.attrs.get("conversion", 1.0)) + float(data.attrs.get("offset", 0.0))
            positions.append(values)
            units_seen.add(_decode(data.attrs.get("unit", "")))
            confidence.append(s["confidence"][()].astype(np.float64) if "confidence" in s else None)
            if "starting_time" in s:
                rates.add(float(s["starting_time"].attrs["rate"]))
            elif "timestamps" in s:
                ts = np.asarray(s["timestamps"][()], dtype=np.float64)
                if ts.size >= 2:
                    _check_timestamps(ts, f"`{pe_path}/{name}/timestamps`", where)
                    dt = np.diff(ts)
                    step = float(np.median(dt))
                    if np.abs(dt - step).max() > 0.01 * step:
                        log.warning("%s: %s timestamps are irregular; using their median step", where, name)
                    rates.add(round(1.0 / step, 6))
        if len(units_seen) != 1:
            raise KeypointsError(
                f"{where}: the series of `{pe_path}` use different units {sorted(units_seen)}; "
                "store all keypoints in one unit"
            )
        unit_found = units_seen.pop()
        unit = as_length_unit(unit_found)  # "pixels" and the like are not trusted
        if len(rates) > 1:
            raise KeypointsError(f"{where}: the series of `{pe_path}` have different rates {sorted(rates)} Hz")
        conf = None
        if all(c is not None for c in confidence):
            conf = np.stack(confidence, axis=1)
        return RawKeypoints(
            positions=np.stack(positions, axis=1),
            names=order,
            fps=rates.pop() if rates else None,
            units=unit,
            units_field="NWB `unit` attribute of the series data",
            units_found=unit_found,
            confidence=conf,
            meta={"nwb_path": pe_path},
        )


def _check_timestamps(ts: np.ndarray, series: str, where: str) -> None:
    """Refuse timestamps [T] (s) that do not strictly increase (or are not finite)."""
    bad = np.flatnonzero(~(np.diff(ts) > 0))
    if bad.size == 0:
        return
    i = int(bad[0]) + 1
    raise KeypointsError(
        f"{where}: {series} do not strictly increase: index {i} is {ts[i]:.6g} s after "
        f"{ts[i - 1]:.6g} s at index {i - 1} (first of {bad.size} bad step(s)); frames "
        "must be stored in time order, one per timestamp. Re-export the pose series sorted "
        "by time without repeated frames"
    )


# --------------------------------------------------------------------------- DANNCE


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
        with _open_h5(path, "a MATLAB v7.3 .mat file") as f:
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
            f"{_where(path)} is not a readable MATLAB .mat file ({e}); expected a .mat saved "
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
    where = _where(path)
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
        raise KeypointsError(f"{where}: `pred` holds 2-D (x, y) positions; {_TRIANGULATE}")
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
            "line --skeleton rat23.mat or --keypoint-names a,b,c)"
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


# --------------------------------------------------------------------------- DeepLabCut


_CSV_EXPECTED = (
    "expected comma-separated UTF-8 text: a DeepLabCut 3-D CSV, an anipose CSV or the plain "
    "layout (a header row `frame,<name>_x,<name>_y,<name>_z,...`, then one row per frame)"
)


def _csv_rows(path: Path, n: int | None = None) -> list[list[str]]:
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
            f"{_where(path)} is not a text file (line {len(rows) + 1}: {e.reason} at byte {e.start}); {_CSV_EXPECTED}"
        ) from e
    except csv.Error as e:
        raise KeypointsError(f"{_where(path)}: line {len(rows) + 1} is not valid CSV ({e}); {_CSV_EXPECTED}") from e
    return rows


def _float(s: str) -> float:
    s = s.strip()
    return float(s) if s else np.nan


def _numbers(rows: list[list[str]], columns: list[str], first_line: int, where: str, skip: int = 0) -> np.ndarray:
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


def _read_dlc_csv(path: Path) -> tuple[np.ndarray, list[tuple[str, ...]]]:
    """DLC CSV: header rows scorer, (individuals,) bodyparts, coords, then index + values."""
    rows = _csv_rows(path)
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
            f"{_where(path)}: the header rows are {levels}; a DeepLabCut CSV starts with "
            "rows scorer, (individuals,) bodyparts, coords"
        )
    ncols = len(header[0]) - 1
    columns = [tuple(h[c + 1] for h in header) for c in range(ncols)]
    # The index column (frame numbers, or image paths in labelled data) is not read.
    names = ["index"] + ["/".join(c) for c in columns]
    values = _numbers(rows[len(header) :], names, len(header) + 1, _where(path), skip=1)
    return values, columns


def read_dlc_raw(path: Path, *, individual: str | None = None) -> RawKeypoints:
    """Read DeepLabCut 3-D output (``.h5`` via h5py, or ``.csv``).

    Columns are (scorer, [individuals,] bodyparts, coords); 3-D files have coords x, y, z
    (2-D files with x, y, likelihood are refused). Multi-animal files need ``individual``.
    """
    where = _where(path)
    if path.suffix.lower() == ".csv":
        values, columns = _read_dlc_csv(path)
    else:
        with _open_h5(path, "a DeepLabCut .h5 (HDF5 with a pandas DataFrame)") as f:
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
        individual = _pick_individual(where, individuals, individual, "individuals", "<name>")
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
            f"{where} holds 2-D DeepLabCut coordinates {sorted(coords)}; {_TRIANGULATE} "
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


# --------------------------------------------------------------------------- SLEAP


def _sleap_io():
    try:
        import sleap_io
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise KeypointsError("reading SLEAP files needs the `sleap-io` package: pip install sleap-io") from e
    return sleap_io


#: Datasets every SLEAP .slp file has; an analysis .h5 has ``tracks`` and ``node_names``.
_SLP_KEYS = ("metadata", "frames", "instances", "points")


def _check_sleap_layout(path: Path) -> None:
    """Refuse a file that is not HDF5 or lacks the SLEAP layout, before sleap-io opens it."""
    slp = path.suffix.lower() == ".slp"
    expected = "a SLEAP .slp file (HDF5)" if slp else "a SLEAP analysis .h5 file"
    keys = _SLP_KEYS if slp else ("tracks", "node_names")
    with _open_h5(path, expected) as f:
        missing = [k for k in keys if k not in f]
        tracks = f.get("tracks") if not slp else None
        shape = getattr(tracks, "shape", None)
    if shape is not None and missing == ["node_names"]:
        raise KeypointsError(
            f"{_where(path)} has a `tracks` dataset of shape {shape} but no `node_names`, so "
            f"it is neither a SLEAP analysis .h5 nor {_POINTS3D}; export it again with SLEAP "
            "or sleap-anipose (or pass format= the format it is in)"
        )
    if missing:
        raise KeypointsError(
            f"{_where(path)} is an HDF5 file without {missing}, so not {expected}; save it "
            "again with SLEAP (or pass format= the format it is in)"
        )


def read_sleap_raw(path: Path, *, individual: str | None = None) -> RawKeypoints:
    """Read triangulated 3-D instances from a SLEAP ``.slp`` (or refuse a 2-D file).

    SLEAP stores 3-D poses in the recording sessions of a ``.slp``: per frame group, each
    instance group may carry an ``Instance3D`` (points [K, 3], for predicted ones also
    point scores, used as confidence). Instance groups are told apart by their identity
    name (else their index in the frame group); pick one with ``individual``. Analysis
    ``.h5`` files and ``.slp`` files without 3-D instances hold 2-D poses only.
    """
    where = _where(path)
    _check_sleap_layout(path)
    sio = _sleap_io()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if path.suffix.lower() == ".slp":
            labels = sio.load_slp(str(path), open_videos=False)
        else:
            labels = sio.load_analysis_h5(str(path))
    per_key: dict[str, dict[int, Any]] = {}
    skeleton = None
    for session in labels.sessions:
        for frame_idx, fg in session.frame_groups.items():
            for i, ig in enumerate(fg.instance_groups):
                inst = ig.instance_3d
                if inst is None or inst.points is None:
                    continue
                key = ig.identity.name if ig.identity is not None else str(i)
                per_key.setdefault(key, {})[int(frame_idx)] = inst
                skeleton = inst.skeleton
    if not per_key:
        raise KeypointsError(
            f"{where} holds 2-D SLEAP poses only ({len(labels.labeled_frames)} labeled "
            f"frames, no triangulated 3-D instances); {_TRIANGULATE}"
        )
    individual = _pick_individual(
        where, list(per_key), individual, "3-D instances of individuals", "<identity name or index>"
    )
    frames = per_key[individual]
    names = list(skeleton.node_names)
    num_frames = max(frames) + 1
    positions = np.full((num_frames, len(names), 3), np.nan)
    confidence = None
    if any(getattr(inst, "point_scores", None) is not None for inst in frames.values()):
        confidence = np.full((num_frames, len(names)), np.nan)
    for t, inst in frames.items():
        positions[t] = inst.points
        scores = getattr(inst, "point_scores", None)
        if confidence is not None:
            confidence[t] = scores if scores is not None else np.inf
    return RawKeypoints(positions=positions, names=names, confidence=confidence)


#: Suffixes `skeleton=` may have for a sleap-anipose points3d.h5 (read by sleap-io).
_SLEAP_SKELETON_SUFFIXES = (".slp", ".json", ".yaml", ".yml")
_POINTS3D = "a sleap-anipose points3d.h5 (one `tracks` dataset [frames, tracks, nodes, 3])"


def _points3d_layout(f: h5py.File) -> bool:
    """Whether an open HDF5 file has the sleap-anipose layout: a numeric ``tracks`` dataset
    [frames, tracks, nodes, xyz] or [frames, nodes, xyz] (xyz of length 3, or 2 for its 2-D
    ``reprojections.h5``, refused later) and no SLEAP ``node_names``."""
    tracks = f.get("tracks")
    return (
        isinstance(tracks, h5py.Dataset)
        and "node_names" not in f
        and tracks.ndim in (3, 4)
        and tracks.shape[-1] in (2, 3)
        and tracks.dtype.kind in "fiu"
    )


def is_points3d(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a sleap-anipose ``points3d.h5`` (see `read_points3d_raw`); False
    for anything else, including files that are not HDF5 (their reader explains)."""
    path = Path(path)
    if path.suffix.lower() == ".slp" or not path.is_file() or not h5py.is_hdf5(path):
        return False
    try:
        with h5py.File(path, "r") as f:
            return _points3d_layout(f)
    except OSError:  # damaged: the SLEAP reader's layout check names the problem
        return False


def _sleap_skeleton_names(skeleton: Path, num_kp: int, where: str) -> list[str]:
    """Node names of the SLEAP skeleton in ``skeleton`` (a project ``.slp``, or a skeleton
    ``.json`` / ``.yaml`` as SLEAP exports it); with several skeletons, the only one with
    ``num_kp`` nodes. ``where`` is the keypoint file, for messages."""
    named = f"{where}: skeleton {str(skeleton)!r}"
    fix = (
        "pass skeleton= the SLEAP project .slp the 2-D poses were predicted with (--skeleton "
        "project.slp on the command line) or keypoint_names=[...] (--keypoint-names a,b,c)"
    )
    suffix = skeleton.suffix.lower()
    if suffix == ".mat":
        raise KeypointsError(
            f"{named} is a .mat (a DANNCE skeleton), but the file is a sleap-anipose points3d.h5; {fix}"
        )
    if suffix not in _SLEAP_SKELETON_SUFFIXES:
        raise KeypointsError(
            f"{named}: extension {skeleton.suffix!r} is not one of {list(_SLEAP_SKELETON_SUFFIXES)}; {fix}"
        )
    if not skeleton.is_file():
        raise KeypointsError(f"{named} does not exist or is not a file; {fix}")
    sio = _sleap_io()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if hasattr(sio, "load_skeleton"):
                loaded = sio.load_skeleton(str(skeleton))
            elif suffix == ".slp":  # sleap-io before load_skeleton
                loaded = sio.load_slp(str(skeleton), open_videos=False).skeletons
            else:
                raise KeypointsError(
                    f"{named}: this sleap-io version reads skeletons from .slp files only; "
                    "pass the SLEAP project .slp or upgrade sleap-io"
                )
    except KeypointsError:
        raise
    except Exception as e:  # sleap-io raises what its parsers (h5py, json, yaml) raise
        raise KeypointsError(
            f"{named} cannot be read by sleap-io ({type(e).__name__}: {' '.join(str(e).split())}); {fix}"
        ) from e
    skeletons = loaded if isinstance(loaded, list) else [loaded]
    if not skeletons:
        raise KeypointsError(f"{named} holds no skeleton; {fix}")
    if len(skeletons) > 1:
        fitting = [sk for sk in skeletons if len(sk.node_names) == num_kp]
        if len(fitting) != 1:
            found = {sk.name: len(sk.node_names) for sk in skeletons}
            raise KeypointsError(
                f"{named} holds {len(skeletons)} skeletons (nodes each: {found}) and "
                f"{len(fitting)} of them have the {num_kp} nodes of the points; pass "
                "keypoint_names=[...] (--keypoint-names a,b,c on the command line) instead"
            )
        skeletons = fitting
    return [str(n) for n in skeletons[0].node_names]


def read_points3d_raw(
    path: Path,
    *,
    keypoint_names: Sequence[str] | None = None,
    skeleton: str | os.PathLike | None = None,
    individual: str | None = None,
) -> RawKeypoints:
    """Read the ``points3d.h5`` of sleap-anipose (``slap-triangulate``).

    Layout (`sleap_anipose.triangulate`, the same from 0.1.0 to 0.1.8): one float dataset
    ``tracks`` [frames, tracks, nodes, 3] in the calibration board's units, NaN where a
    point was not triangulated, and, when a frame range was asked, ``frames`` = (start,
    end) of the videos' frames (kept as ``meta["video_frames"]``). [frames, nodes, 3] (one
    track, squeezed) is read too. The file has no node names, scores, units or frame rate:
    names come from ``keypoint_names`` or from the SLEAP project ``.slp`` (or skeleton
    ``.json`` / ``.yaml``) given as ``skeleton``, in the skeleton's node order;
    ``individual`` is the track index (``"0"``, ``"1"``...), needed with several tracks.

    Raises:
        KeypointsError: 2-D points (its ``reprojections.h5``), no names, a wrong number of
            names, or an unknown track; the message names the file and the fix.
    """
    where = _where(path)
    with _open_h5(path, _POINTS3D) as f:
        if not _points3d_layout(f):
            raise KeypointsError(f"{where} does not have the layout of {_POINTS3D}")
        tracks = f["tracks"]
        shape = tracks.shape
        if shape[-1] == 2:
            raise KeypointsError(
                f"{where}: `tracks` {shape} holds 2-D (x, y) points (like the "
                f"reprojections.h5 of sleap-anipose); {_TRIANGULATE}"
            )
        num_kp = shape[-2]
        if keypoint_names is not None:
            names, source = list(keypoint_names), "keypoint_names (--keypoint-names)"
        elif skeleton is not None:
            names = _sleap_skeleton_names(Path(skeleton), num_kp, where)
            source = f"the skeleton in {str(skeleton)!r}"
        else:
            raise KeypointsError(
                f"{where} is a sleap-anipose points3d.h5, which holds no node names; pass "
                f"keypoint_names=[...] with its {num_kp} node names in the skeleton's order "
                "(--keypoint-names a,b,c on the command line) or skeleton= the SLEAP project "
                ".slp the 2-D poses were predicted with (--skeleton project.slp)"
            )
        if len(names) != num_kp:
            raise KeypointsError(
                f"{where}: {source} gives {len(names)} names but `tracks` {shape} holds "
                f"{num_kp} nodes; pass one name per node, in the order of the SLEAP skeleton "
                "the points were triangulated with"
            )
        if tracks.ndim == 3:
            if individual is not None and str(individual) != "0":
                raise KeypointsError(
                    f"{where}: `tracks` {shape} is [frames, nodes, 3], one animal; drop "
                    f"individual={individual!r} (--individual)"
                )
            positions = tracks[()]
        else:
            pick = _pick_individual(
                where,
                [str(i) for i in range(shape[1])],
                None if individual is None else str(individual),
                "tracks (sleap-anipose track indices)",
                "<track index>",
            )
            positions = tracks[:, int(pick)]
        meta = {"layout": "sleap-anipose points3d.h5"}
        frames = f.get("frames")
        if isinstance(frames, h5py.Dataset) and frames.size == 2:
            start, end = (int(v) for v in np.asarray(frames[()]).ravel())
            meta["video_frames"] = f"{start}:{end}"
    return RawKeypoints(positions=np.asarray(positions, dtype=np.float64), names=names, meta=meta)


# --------------------------------------------------------------------------- CSV family


def _read_table_csv(path: Path) -> tuple[list[str], np.ndarray]:
    """(header, values [N, C]) of a CSV with one header row and one row per frame."""
    rows = _csv_rows(path)
    if not rows:
        raise KeypointsError(f"{_where(path)} is empty; {_CSV_EXPECTED}")
    header = [c.strip() for c in rows[0]]
    return header, _numbers(rows[1:], header, 2, _where(path))


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


def _xyz_table(
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


def _xyz_csv(path: Path, missing: str) -> tuple[str, list[str], np.ndarray, list[str]]:
    """``(where, header, values, keypoint names)`` of a CSV with ``<name>_x/_y/_z`` columns.

    Raises:
        KeypointsError: no such columns (the message ends with ``missing``), or 2-D data.
    """
    where = _where(path)
    header, values = _read_table_csv(path)
    names, has_z = _xyz_names(header)
    if not names:
        raise KeypointsError(f"{where} has no {missing}")
    if not has_z:
        raise KeypointsError(f"{where} holds 2-D (x, y) columns only; {_TRIANGULATE}")
    return where, header, values, names


def read_anipose_raw(path: Path) -> RawKeypoints:
    """Read an anipose triangulation CSV.

    Columns per keypoint ``<name>_x, <name>_y, <name>_z, <name>_error, <name>_score,
    <name>_ncams``; ``<name>_score`` is kept as confidence; other columns (``fnum``, the
    ``M_ij`` / ``center_i`` alignment) are ignored except ``fnum``, which places each row
    at its frame. Positions are in the calibration board's units (``units=`` required).
    """
    where, header, values, names = _xyz_csv(path, "`<name>_x` / `<name>_y` column pairs; is it an anipose CSV?")
    return _xyz_table(header, values, names, "fnum", "score", where)


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
    where, header, values, names = _xyz_csv(
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
    return _xyz_table(header, values, names, "frame", "confidence", where)


# --------------------------------------------------------------------------- C3D


def read_c3d_raw(path: Path) -> RawKeypoints:
    """Read the 3-D points of a C3D file with the ``c3d`` package.

    Names from ``POINT:LABELS`` (and ``LABELS2``...), rate from ``POINT:RATE``, units from
    ``POINT:UNITS``; a point whose residual is negative is missing.
    """
    where = _where(path)
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


# --------------------------------------------------------------------------- NPZ


def read_npz_raw(path: Path) -> RawKeypoints:
    """Read the keypoint ``.npz`` layout, never unpickling.

    Arrays: ``positions`` [T, K, 3] float, ``names`` [K] str (a fixed-width string array:
    ``np.array(names, dtype=str)``), optional ``fps`` (scalar, Hz), ``valid`` [T, K] bool
    and ``confidence`` [T, K]. Units are not stored: pass ``units=``. Object arrays
    (pickles) are refused.
    """
    where = _where(path)
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
        raise KeypointsError(f"{where}: `positions` holds 2-D (x, y) keypoints; {_TRIANGULATE}")
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
        names=[_decode(n) for n in names.ravel()],
        fps=fps,
        confidence=arrays.get("confidence"),
        missing=missing,
    )
