"""SLEAP files (format ``"sleap"``): triangulated 3-D instances of a ``.slp`` (through
sleap-io), and the ``points3d.h5`` of sleap-anipose (read with h5py; no names, so they
come from ``keypoint_names=`` or ``skeleton=``). SLEAP analysis ``.h5`` files hold 2-D
poses only and are refused with the fix."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from neuromimic.keypoints.formats.base import (
    TRIANGULATE,
    KeypointFormat,
    RawKeypoints,
    keypoint_file,
    open_h5,
    pick_individual,
)
from neuromimic.keypoints.keypoints import KeypointsError


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
    with open_h5(path, expected) as f:
        missing = [k for k in keys if k not in f]
        tracks = f.get("tracks") if not slp else None
        shape = getattr(tracks, "shape", None)
    if shape is not None and missing == ["node_names"]:
        raise KeypointsError(
            f"{keypoint_file(path)} has a `tracks` dataset of shape {shape} but no `node_names`, so "
            f"it is neither a SLEAP analysis .h5 nor {_POINTS3D}; export it again with SLEAP "
            "or sleap-anipose (or pass format= the format it is in)"
        )
    if missing:
        raise KeypointsError(
            f"{keypoint_file(path)} is an HDF5 file without {missing}, so not {expected}; save it "
            "again with SLEAP (or pass format= the format it is in)"
        )


def read_slp_raw(path: Path, *, individual: str | None = None) -> RawKeypoints:
    """Read triangulated 3-D instances from a SLEAP ``.slp`` (or refuse a 2-D file).

    SLEAP stores 3-D poses in the recording sessions of a ``.slp``: per frame group, each
    instance group may carry an ``Instance3D`` (points [K, 3], for predicted ones also
    point scores, used as confidence). Instance groups are told apart by their identity
    name (else their index in the frame group); pick one with ``individual``. Analysis
    ``.h5`` files and ``.slp`` files without 3-D instances hold 2-D poses only.
    """
    where = keypoint_file(path)
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
            f"frames, no triangulated 3-D instances); {TRIANGULATE}"
        )
    individual = pick_individual(
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
        "project.slp on the command line) or keypoint_names=[...] (--keypoint_names [a,b,c])"
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
                "keypoint_names=[...] (--keypoint_names [a,b,c] on the command line) instead"
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
    where = keypoint_file(path)
    with open_h5(path, _POINTS3D) as f:
        if not _points3d_layout(f):
            raise KeypointsError(f"{where} does not have the layout of {_POINTS3D}")
        tracks = f["tracks"]
        shape = tracks.shape
        if shape[-1] == 2:
            raise KeypointsError(
                f"{where}: `tracks` {shape} holds 2-D (x, y) points (like the "
                f"reprojections.h5 of sleap-anipose); {TRIANGULATE}"
            )
        num_kp = shape[-2]
        if keypoint_names is not None:
            names, source = list(keypoint_names), "keypoint_names (--keypoint_names)"
        elif skeleton is not None:
            names = _sleap_skeleton_names(Path(skeleton), num_kp, where)
            source = f"the skeleton in {str(skeleton)!r}"
        else:
            raise KeypointsError(
                f"{where} is a sleap-anipose points3d.h5, which holds no node names; pass "
                f"keypoint_names=[...] with its {num_kp} node names in the skeleton's order "
                "(--keypoint_names [a,b,c] on the command line) or skeleton= the SLEAP project "
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
            pick = pick_individual(
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


def read_sleap_raw(
    path: Path,
    *,
    keypoint_names: Sequence[str] | None = None,
    skeleton: str | os.PathLike | None = None,
    individual: str | None = None,
) -> RawKeypoints:
    """Read a SLEAP file: a sleap-anipose ``points3d.h5`` (`read_points3d_raw`, named by
    ``keypoint_names`` or ``skeleton``), else a ``.slp`` or analysis ``.h5`` (`read_slp_raw`).

    Raises:
        KeypointsError: ``skeleton`` for a file that names its keypoints, or what the
            reader of the file's layout refuses.
    """
    if is_points3d(path):
        return read_points3d_raw(path, keypoint_names=keypoint_names, skeleton=skeleton, individual=individual)
    if skeleton is not None:
        raise KeypointsError(
            f"{keypoint_file(path)}: skeleton= names the keypoints of sleap-anipose points3d.h5 files; "
            "SLEAP .slp and analysis files name them themselves (use keypoint_names=[...], "
            "--keypoint_names on the command line, to rename them)"
        )
    return read_slp_raw(path, individual=individual)


def has_sleap_layout(f: h5py.File) -> bool:
    """Whether an open HDF5 file is a SLEAP analysis ``.h5`` or a sleap-anipose ``points3d.h5``."""
    return ("tracks" in f and "node_names" in f) or _points3d_layout(f)


FORMAT = KeypointFormat(
    name="sleap",
    read=read_sleap_raw,
    files="sleap-anipose points3d.h5: tracks [frames, tracks, nodes, 3] or [frames, nodes, 3], no names; "
    ".slp with triangulated 3-D instances",
    needs="--keypoint_names or --skeleton <project>.slp for a points3d.h5; --units; --fps; --individual "
    "<track index or identity> with several animals",
    suffixes=(".slp",),
    h5_layout=has_sleap_layout,
    options=("keypoint_names", "skeleton", "individual"),
)
