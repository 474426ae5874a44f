"""Reference clips from a lab's 3-D keypoint file: `fit_file` (``neuromimic keypoints fit``).

`fit_file` reads the file (`neuromimic.keypoints.read_keypoints`), checks it against the
body (`check_keypoints_for_body`), fits the body's joint angles to it
(`neuromimic.keypoints.fitting.fit_keypoints`) and writes `ReferenceClip`s of the fitted
poses (`fit_to_clips`): resampled to the clip rate, with the joints no keypoint constrains
(a rat's tail) posed to clear the floor, and cut into held-out segments if asked.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import mujoco
import numpy as np

from neuromimic.bodies import get_body
from neuromimic.data.clips import ReferenceClip, save_clips
from neuromimic.data.contacts import clear_floor, unobserved_dofs
from neuromimic.keypoints import Keypoints, KeypointsError, read_keypoints
from neuromimic.keypoints.fitting import FitOptions, KeypointFit, fit_keypoints, json_safe
from neuromimic.keypoints.formats import FormatName
from neuromimic.keypoints.mapping import KeypointMapping, body_keypoint_size, load_mapping
from neuromimic.keypoints.rules import (
    DEFAULT_CONFIDENCE_THRESHOLD,
    DEFAULT_MAX_GAP_FRAMES,
    LengthUnit,
    UpAxis,
    check_plausible_size,
    check_up_axis,
)

log = logging.getLogger(__name__)


def fit_file(
    body: str,
    input: str,
    output: str,
    format: FormatName | None = None,
    units: LengthUnit | None = None,
    fps: float | None = None,
    up_axis: UpAxis = "z",
    skeleton: str | None = None,
    keypoint_names: list[str] | None = None,
    individual: str | None = None,
    confidence_threshold: float = DEFAULT_CONFIDENCE_THRESHOLD,
    max_gap_frames: int = DEFAULT_MAX_GAP_FRAMES,
    mapping: str | None = None,
    scale: float | Literal["fit"] | None = None,
    iterations: int = 1,
    drop_missing_keypoints: bool = False,
    fps_out: float | None = None,
    name: str | None = None,
    split: Literal["train", "val"] = "train",
    segment_seconds: float | None = None,
    val_fraction: float = 0.2,
    mirror: bool = False,
) -> dict:
    """Fit a body's joint angles to a 3-D keypoint file (STAC-style) and write a reference clip.

    Before fitting, the data is checked against the body (`check_keypoints_for_body`):
    its size must be plausible whatever the units came from (so ``units="m"`` for a file
    in mm is refused with the factor), and for a body on a floor it must not lie below it.

    Args:
        body: registry key of the body (for example ``"rodent"``).
        input: keypoint file (nwb, dannce, dlc, sleap, anipose, c3d, csv, npz; see below).
        output: reference clip to write (.h5); with ``segment_seconds``, a directory that
            gets one ``<name>_<i>.h5`` per segment.
        format: file format (default: from the file name and layout).
        units: units of the file's numbers: m, cm or mm (where the file does not say).
        fps: frame rate of the file in Hz (where the file does not say).
        up_axis: the file's axis that points up; the data is rotated so that it becomes z
            (write a negative axis as ``--up_axis=-z`` on the command line).
        skeleton: file naming the keypoints where the keypoint file has no names: the
            DANNCE skeleton .mat (joint_names) of a DANNCE prediction, the SLEAP project
            .slp (or skeleton .json/.yaml) of a sleap-anipose points3d.h5.
        keypoint_names: keypoint names in the file's order: name DANNCE and points3d.h5
            keypoints, rename those of other formats.
        individual: animal of a multi-animal file: NWB PoseEstimation name, DeepLabCut
            individual, SLEAP identity, or sleap-anipose track index (0, 1, ...).
        confidence_threshold: mask keypoint samples whose confidence is below this, in
            the file's own scale (0: mask none).
        max_gap_frames: interpolate gaps of at most this many frames.
        mapping: YAML {keypoint: site | body | {body:, offset: [x, y, z]}} (default: the
            body's keypoint_sites).
        scale: body scale factor, or 'fit' to search for one (noisy); default the body's
            keypoint_scale (0.9 for the rodent, stac-mjx's value; else 1).
        iterations: closed-form offset / pose alternations after the joint pose+offset fit.
        drop_missing_keypoints: fit without keypoints that have no valid frame (default:
            refuse the file and list them).
        fps_out: frame rate of the clip in Hz (default: the input's).
        name: clip name (default: the input file's stem).
        split: split of the clip (unsegmented).
        segment_seconds: cut the recording into clips of this many seconds; ``output`` is
            then a directory.
        val_fraction: with ``segment_seconds``: the last fraction of segments is the
            held-out 'val' split.
        mirror: with ``segment_seconds``: also fit the mirror image of the training part
            of the recording (`Keypoints.mirrored`: left and right swapped, for a
            left-right symmetric body) and write its segments as more 'train' clips,
            ``<name>_mirror_<i>``; the held-out part is not mirrored. Twice the data to
            train on, for about twice the fitting time (rat23: 75 s more).

    Returns:
        The fit's report (`KeypointFit.report`, valid JSON: no NaN), with the output
        (``"output"``) and the clips' splits (``"clips"``: ``{name: split}``).

    Raises:
        KeypointsError: the file or the options are wrong; the message says how to fix it.
    """
    spec = get_body(body)
    model = spec.load_model()
    keypoint_map = load_mapping(model, spec.keypoint_sites, mapping)
    kp = read_keypoints(
        input,
        format=format,
        units=units,
        fps=fps,
        up_axis=up_axis,
        skeleton=skeleton,
        keypoint_names=keypoint_names,
        individual=individual,
        confidence_threshold=confidence_threshold,
        max_gap_frames=max_gap_frames,
    )
    if mirror:
        if segment_seconds is None:
            raise KeypointsError(
                "mirror: true needs segment_seconds (only the training segments are mirrored); set both or neither"
            )
        kp.mirrored()  # every side has its partner, before the long fit
    body_scale = None if scale == "fit" else spec.keypoint_scale if scale is None else float(scale)
    check_keypoints_for_body(kp, body, model, keypoint_map, spec.rest_qpos(model), body_scale)
    options = FitOptions(
        scale=body_scale,
        iterations=iterations,
        trunk_keypoints=spec.trunk_keypoints,
        drop_missing_keypoints=drop_missing_keypoints,
    )
    fit = fit_keypoints(model, keypoint_map, kp, options)
    clips = fit_to_clips(
        fit,
        body,
        kp.fps,
        fps_out,
        name=name or Path(input).stem,
        split=split,
        segment_seconds=segment_seconds,
        val_fraction=val_fraction,
        meta={"input": str(input)},
    )
    mirror_fit = None
    if mirror:
        mirror_fit, mirrored = _mirrored_training_clips(
            model, keypoint_map, kp, options, clips, body, fps_out, segment_seconds, name or Path(input).stem, input
        )
        clips += mirrored
    if segment_seconds is None:
        clips[0].save(output)
    else:
        save_clips(clips, output)
    report = fit.report()
    report["output"] = str(output)
    report["clips"] = {clip.name: clip.split for clip in clips}
    report["seconds"] = round(fit.seconds, 2)
    if mirror_fit is not None:
        mirror_report = mirror_fit.report()
        report["mirror"] = {
            key: mirror_report[key] for key in ("mean_residual_mm", "p95_residual_mm") if key in mirror_report
        } | {"seconds": round(mirror_fit.seconds, 2)}
    report = json_safe(report)
    json.dumps(report, allow_nan=False)  # the CLI prints it: it must be valid JSON
    return report


def _mirrored_training_clips(
    model, keypoint_map, kp, options, clips, body, fps_out, segment_seconds, name, input
) -> tuple[KeypointFit, list[ReferenceClip]]:
    """The fit and the 'train' clips of the mirror image of the recording's frames before
    its first 'val' clip (so nothing of the held-out part is trained on)."""
    fps_out = float(fps_out or kp.fps)
    held_out = [clip.meta["first_frame"] for clip in clips if clip.split == "val"]
    end_s = min(held_out) / fps_out if held_out else math.inf
    last = min(kp.num_frames, math.floor(end_s * kp.fps + 1e-9))  # input frames before the held-out part
    mirrored = kp.frames(0, last).mirrored()
    fit = fit_keypoints(model, keypoint_map, mirrored, options)
    return fit, fit_to_clips(
        fit,
        body,
        kp.fps,
        fps_out,
        name=f"{name}_mirror",
        segment_seconds=segment_seconds,
        val_fraction=0.0,
        meta={"input": str(input), "mirrored": "y -> -y, left and right keypoints swapped; training part only"},
    )


def check_keypoints_for_body(
    kp: Keypoints, body: str, model: mujoco.MjModel, mapping: KeypointMapping, qpos: np.ndarray, scale: float | None
) -> None:
    """Run the input checks `fit_file` makes before fitting ``kp`` to a body.

    The size of the mapped keypoints must be plausible for the body (`check_plausible_size`
    against `body_keypoint_size` in the rest pose ``qpos``, at ``scale``, 1 when the scale
    is fitted), whatever the units came from; and for a body on a floor the data must
    not lie below it (`check_up_axis`).

    Raises:
        KeypointsError: a mapped keypoint is not in the data, or the data is implausible;
            the message names the likely fix.
    """
    size = body_keypoint_size(model, mapping, qpos, 1.0 if scale is None else scale)
    scaled = "" if scale is None else f" at scale {scale:g}"
    subset = kp.select(mapping.names)
    check_plausible_size(subset, size, body=f"the {body} body (its mapped keypoints in the rest pose{scaled})")
    if _has_floor(model):
        check_up_axis(subset, floor=f"the floor of the {body} body")


def _has_floor(model: mujoco.MjModel) -> bool:
    """Whether the model has a free root over a world plane (a body that stands on a floor)."""
    planes = (model.geom_type == mujoco.mjtGeom.mjGEOM_PLANE) & (model.geom_bodyid == 0)
    return bool(planes.any()) and bool((model.jnt_type == mujoco.mjtJoint.mjJNT_FREE).any())


def fit_to_clips(
    fit: KeypointFit,
    body: str,
    fps: float,
    fps_out: float | None = None,
    name: str = "keypoint_fit",
    split: Literal["train", "val"] = "train",
    segment_seconds: float | None = None,
    val_fraction: float = 0.0,
    meta: dict | None = None,
) -> list[ReferenceClip]:
    """`ReferenceClip`s of the fitted poses, for the unscaled body ``body``.

    The clips' qpos is `KeypointFit.clip_qpos` (free-joint position / scale, angles as
    fitted) resampled to ``fps_out``; qvel, xpos, xquat and site positions come from
    replaying it through MuJoCo (`ReferenceClip.from_qpos`). The scale, keypoint names,
    bodies and fitted offsets (JSON, m, body frame of the scaled body) and the residuals
    are stored in each clip's ``meta`` attributes.

    Args:
        fit: the fit.
        body: registry key of the body.
        fps: frame rate of the fitted frames (Hz); ``fps_out`` that of the clips.
        name: clip name; segments are named ``<name>_000``, ``<name>_001``...
        split: split of the clip when it is not segmented.
        segment_seconds: cut the recording into clips of this duration (s); a remainder
            shorter than half a segment (or 2 frames) joins the last one. None: one clip.
        val_fraction: with segments, the last ``ceil(val_fraction * n)`` segments are the
            ``"val"`` split (held out in time), the others ``"train"``.
        meta: more attributes for each clip's ``meta`` (the input file...).
    """
    fps_out = float(fps_out or fps)
    qpos = resample_qpos(fit.clip_qpos(), fps, fps_out, fit.info["free_qposadr"])
    qpos, cleared = _clear_floor_with_unobserved_joints(body, qpos, fit.bodies)
    report = fit.report()
    info = {
        "source": "neuromimic.data.keypoint_clips",
        "body_scale": float(fit.scale),
        "keypoint_names": _json(list(fit.names)),
        "keypoint_bodies": _json(list(fit.bodies)),
        "keypoint_offsets_m": _json(np.round(fit.offsets, 7)),
        "keypoint_offsets_frame": "body frame of the body scaled by body_scale, m",
        "qpos_note": "for the unscaled body: free-joint position = fitted position / body_scale",
        "input_fps": float(fps),
        # HDF5 attributes hold no None: NaN there means "no valid keypoint".
        "mean_residual_mm": _nan_if_none(report["mean_residual_mm"]),
        "p95_residual_mm": _nan_if_none(report["p95_residual_mm"]),
        **cleared,
        **(meta or {}),
    }
    if segment_seconds is None:
        return [ReferenceClip.from_qpos(body, qpos, fps_out, name=name, split=split, meta=info)]
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1); got {val_fraction}")
    length = round(segment_seconds * fps_out)
    if length < 2:
        raise ValueError(f"segment_seconds={segment_seconds} gives fewer than 2 frames at {fps_out:g} Hz")
    bounds = list(range(0, len(qpos), length)) + [len(qpos)]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] < max(2, length / 2):
        del bounds[-2]
    count = len(bounds) - 1
    num_val = math.ceil(val_fraction * count) if count > 1 else 0
    return [
        ReferenceClip.from_qpos(
            body,
            qpos[bounds[i] : bounds[i + 1]],
            fps_out,
            name=f"{name}_{i:03d}",
            split="val" if i >= count - num_val else "train",
            meta={**info, "segment": i, "first_frame": bounds[i]},
        )
        for i in range(count)
    ]


def _clear_floor_with_unobserved_joints(
    body: str, qpos: np.ndarray, keypoint_bodies: Sequence[str]
) -> tuple[np.ndarray, dict]:
    """``qpos`` [T, nq] of the unscaled body with the joints that move no keypoint (a
    rat's tail) posed to clear the floor (`neuromimic.data.contacts.clear_floor`), and
    what was done, for the clips' meta."""
    model = get_body(body).load_model()
    dofs = unobserved_dofs(model, [model.body(name).id for name in keypoint_bodies])
    cleared, depth_left = clear_floor(model, qpos, dofs)
    names = sorted({model.joint(model.dof_jntid[d]).name for d in np.flatnonzero(dofs)})
    changed = np.abs(cleared - qpos).max(axis=1) > 0
    log.info(
        "floor: joints without keypoints (%d) moved in %d of %d frames to clear the floor",
        len(names),
        changed.sum(),
        len(qpos),
    )
    return cleared, {
        "floor_cleared_by_joints": _json(names),
        "floor_cleared_frames": int(changed.sum()),
        "floor_depth_left_max_mm": round(float(depth_left.max(initial=0.0)) * 1e3 * get_body(body).length_unit_m, 3),
    }


def resample_qpos(qpos: np.ndarray, fps: float, fps_out: float, free_qposadr: Sequence[int]) -> np.ndarray:
    """Resample poses [T, nq] from ``fps`` to ``fps_out`` (Hz) over the same time span.

    Linear interpolation per coordinate; free-joint quaternions are made sign-continuous
    first and renormalised after (a first-order slerp).
    """
    qpos = np.array(qpos, dtype=np.float64)
    if abs(fps_out - fps) < 1e-9 * fps:
        return qpos
    for a in free_qposadr:
        quat = qpos[:, a + 3 : a + 7]
        for t in range(1, len(quat)):
            if np.dot(quat[t], quat[t - 1]) < 0:
                quat[t] = -quat[t]
    t_in = np.arange(len(qpos)) / fps
    t_out = np.arange(0.0, t_in[-1] + 1e-9, 1.0 / fps_out)
    out = np.stack([np.interp(t_out, t_in, qpos[:, i]) for i in range(qpos.shape[1])], axis=1)
    for a in free_qposadr:
        out[:, a + 3 : a + 7] /= np.linalg.norm(out[:, a + 3 : a + 7], axis=1, keepdims=True)
    return out


def _json(value: Any) -> str:
    """Valid JSON of ``value`` (non-finite floats as null; never ``NaN``)."""
    return json.dumps(json_safe(value), allow_nan=False)


def _nan_if_none(value: float | None) -> float:
    return float("nan") if value is None else float(value)
