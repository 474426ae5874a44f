"""NWB files with an ndx-pose ``PoseEstimation`` (format ``"nwb"``).

Read with h5py following the ndx-pose layout, so that files written by ndx-pose 0.1 and
0.2+ both work (pynwb with ndx-pose 0.4 refuses some real 0.1 files, e.g. ones with an
empty ``edges`` dataset). The series' ``unit`` attribute is trusted when it is a length
unit (``"pixels"`` needs ``units=``); the rate comes from ``starting_time`` or the
timestamps.
"""

from __future__ import annotations

import logging
from pathlib import Path

import h5py
import numpy as np

from neuromimic.keypoints.formats.base import (
    TRIANGULATE,
    KeypointFormat,
    RawKeypoints,
    decode,
    keypoint_file,
    open_h5,
)
from neuromimic.keypoints.keypoints import KeypointsError
from neuromimic.keypoints.rules import as_length_unit

log = logging.getLogger(__name__)


def read_nwb_raw(path: Path, *, individual: str | None = None) -> RawKeypoints:
    """Read an ndx-pose ``PoseEstimation`` from an NWB file with h5py.

    Layout: a group with ``neurodata_type == "PoseEstimation"`` (usually
    ``processing/behavior/PoseEstimation``) holding one ``PoseEstimationSeries`` group per
    keypoint with ``data`` [T, 3] (attributes ``unit``, ``conversion``, ``offset``),
    optional ``confidence`` [T], and ``timestamps`` [T] or ``starting_time`` (attribute
    ``rate``). Keypoint order: the ``nodes`` of the ``PoseEstimation`` (ndx-pose 0.1) or
    of its linked ``Skeleton`` (0.2+), else the series' order in the file.
    """
    where = keypoint_file(path)
    with open_h5(path, "an NWB file (HDF5) with an ndx-pose PoseEstimation") as f:
        found: list[str] = []
        f.visititems(
            lambda name, obj: (
                found.append(name)
                if isinstance(obj, h5py.Group) and decode(obj.attrs.get("neurodata_type", "")) == "PoseEstimation"
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
            if isinstance(pe[k], h5py.Group) and decode(pe[k].attrs.get("neurodata_type", "")) == "PoseEstimationSeries"
        }
        if not series:
            raise KeypointsError(f"{where}: `{pe_path}` holds no PoseEstimationSeries")
        nodes: list[str] | None = None
        if "nodes" in pe and isinstance(pe["nodes"], h5py.Dataset):
            nodes = [decode(n) for n in pe["nodes"][()]]
        else:
            for k in pe:
                obj = pe[k]
                if isinstance(obj, h5py.Group) and decode(obj.attrs.get("neurodata_type", "")) == "Skeleton":
                    nodes = [decode(n) for n in obj["nodes"][()]]
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
                raise KeypointsError(f"{where}: `{pe_path}/{name}/data` holds 2-D (x, y) positions; {TRIANGULATE}")
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
            units_seen.add(decode(data.attrs.get("unit", "")))
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


FORMAT = KeypointFormat(
    name="nwb",
    read=read_nwb_raw,
    files=".nwb with an ndx-pose PoseEstimation",
    needs='--units where the series\' unit is not m, cm or mm (e.g. "pixels"); --individual with several '
    "PoseEstimation groups",
    suffixes=(".nwb",),
    options=("individual",),
)
