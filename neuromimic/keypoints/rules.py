"""The rules every reader applies to turn a file's raw arrays into `Keypoints` in metres.

A reader turns a lab file into raw arrays (positions in the file's units, names, frame
rate, optional confidence) and hands them to `make_keypoints`, which applies the same
rules to every format:

1. **Units.** Positions are converted to metres. The scale comes from the ``units``
   argument when given (it always wins), else from the file where the file states it in
   a field we trust (the NWB ``unit`` attribute, the C3D ``POINT:UNITS`` parameter),
   else reading fails with a `KeypointsError` that says to pass ``units=``.
2. **Frame rate.** ``fps`` comes from the argument when given, else from the file; a
   file without one (DANNCE, DeepLabCut, SLEAP, Anipose, CSV) needs ``fps=``.
3. **Masking.** A keypoint is invalid in a frame when any coordinate is NaN or infinite,
   when the file marks it missing, or when its confidence is below
   ``confidence_threshold``. Invalid positions are NaN and ``valid`` is False.
4. **Short gaps.** Interior runs of at most ``max_gap_frames`` invalid frames of one
   keypoint (valid frames on both sides) are filled by linear interpolation, marked valid
   again and recorded in ``interpolated``. Runs at the start or end of the clip are never
   extrapolated.
5. **Long gaps** stay invalid (NaN). `Keypoints.gaps` lists them and
   `Keypoints.segments` / `Keypoints.split_on_gaps` cut the clip into the frame ranges
   where the required keypoints are present, so a caller can fit each piece separately.
6. **Plausibility.** With ``body_size`` (metres) the size of the keypoint cloud (median
   over frames of the largest distance between two valid keypoints) must lie within
   [0.5, 2] x ``body_size``; otherwise reading fails and the message suggests a scale
   factor and, where it matches one, the unit mistake (``units='mm'``).
7. **Up axis.** Bodies stand on a floor at z = 0 with z up. ``up_axis`` names the axis
   of the file that points up (``"z"``, ``"y"``, ``"-z"``...); the positions are rotated
   so that it becomes +z. `check_up_axis` refuses data whose mean height is negative.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Literal

import numpy as np

from neuromimic.keypoints.keypoints import Keypoints, KeypointsError, runs

log = logging.getLogger(__name__)

#: A length unit, as ``units=`` takes it (the keys of `UNITS`).
LengthUnit = Literal["m", "cm", "mm"]
#: Length units accepted by ``units=`` and their size in metres.
UNITS: dict[str, float] = {"m": 1.0, "cm": 0.01, "mm": 0.001}
# Spellings of the same units found in files (NWB ``unit``, C3D ``POINT:UNITS``).
_UNIT_ALIASES: dict[str, str] = {
    "m": "m",
    "meter": "m",
    "meters": "m",
    "metre": "m",
    "metres": "m",
    "cm": "cm",
    "centimeter": "cm",
    "centimeters": "cm",
    "centimetre": "cm",
    "centimetres": "cm",
    "mm": "mm",
    "millimeter": "mm",
    "millimeters": "mm",
    "millimetre": "mm",
    "millimetres": "mm",
}
#: Default for ``max_gap_frames``: gaps up to this many frames are interpolated.
DEFAULT_MAX_GAP_FRAMES = 5
#: Default for ``confidence_threshold``: keep every keypoint whatever its confidence.
#: Confidence scales differ between tools (DeepLabCut likelihoods in [0, 1], DANNCE
#: maximum probabilities of 0.2 to 0.4 on good data), so no threshold fits all.
DEFAULT_CONFIDENCE_THRESHOLD = 0.0
#: Accepted ratio between the keypoint cloud's size and ``body_size``.
PLAUSIBLE_SIZE_RATIO = (0.5, 2.0)
#: An ``up_axis`` value, the file's axis that points up (the keys of `UP_AXES`).
UpAxis = Literal["z", "y", "-z", "-y", "x", "-x"]
#: ``up_axis`` values: the file's axis that points up -> rotation [3, 3] making it +z.
UP_AXES: dict[str, np.ndarray] = {
    "z": np.eye(3),
    "y": np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]]),  # +90 deg about x
    "-z": np.array([[1.0, 0, 0], [0, -1, 0], [0, 0, -1]]),  # 180 deg about x
    "-y": np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]]),  # -90 deg about x
    "x": np.array([[0.0, 0, -1], [0, 1, 0], [1, 0, 0]]),  # -90 deg about y
    "-x": np.array([[0.0, 0, 1], [0, 1, 0], [-1, 0, 0]]),  # +90 deg about y
}


def parse_units(units: str, *, where: str, field_name: str = "units") -> str:
    """Normalise a length unit to one of `UNITS` (``"m"``, ``"cm"``, ``"mm"``).

    Args:
        units: unit as given by the user or found in a file (``"mm"``, ``"meters"``...).
        where: the file, for the error message.
        field_name: what the unit came from, for the error message.

    Raises:
        KeypointsError: the unit is not a known length unit.
    """
    key = str(units).strip().lower()
    if key not in _UNIT_ALIASES:
        raise KeypointsError(
            f"{where}: {field_name} is {units!r}, which is not a length unit this reader "
            f"knows; pass units= one of {sorted(UNITS)} (for example units='mm')"
        )
    return _UNIT_ALIASES[key]


def as_length_unit(value: str | None) -> str | None:
    """The `UNITS` key a unit string found in a file names (``"millimeters"`` -> ``"mm"``), or None."""
    if value is None:
        return None
    return _UNIT_ALIASES.get(str(value).strip().lower())


def _interpolate_short_gaps(positions: np.ndarray, valid: np.ndarray, max_gap_frames: int) -> np.ndarray:
    """Fill interior gaps of at most ``max_gap_frames`` frames in place; return the filled mask."""
    filled = np.zeros_like(valid)
    if max_gap_frames <= 0:
        return filled
    num_frames = valid.shape[0]
    t = np.arange(num_frames)
    for k in range(valid.shape[1]):
        for start, stop in runs(~valid[:, k]):
            if start == 0 or stop == num_frames or stop - start > max_gap_frames:
                continue
            lo, hi = start - 1, stop
            for c in range(3):
                positions[start:stop, k, c] = np.interp(
                    t[start:stop], [lo, hi], [positions[lo, k, c], positions[hi, k, c]]
                )
            filled[start:stop, k] = True
    valid |= filled
    return filled


def _unit_mistake_hint(factor: float, units: str) -> str:
    """Name the unit mistake a scale factor points to, or '' when it matches none."""
    true_scale = UNITS[units] * factor
    best = min(UNITS, key=lambda u: abs(math.log10(UNITS[u] / true_scale)))
    if best != units and abs(math.log10(UNITS[best] / true_scale)) < math.log10(1.5):
        times = UNITS[units] / UNITS[best]
        size = f"{times:g} times too large" if times > 1 else f"{1 / times:g} times too small"
        return (
            f"looks like {best} read as {units}: pass units='{best}' (--units {best} on the "
            f"command line); read as {units} the keypoints are {size}"
        )
    return ""


def check_plausible_size(kp: Keypoints, body_size: float, *, body: str = "") -> None:
    """Fail when the keypoint cloud is far from ``body_size``.

    Args:
        kp: keypoints in m.
        body_size: a typical size of the target body in m (a rat: about 0.2).
        body: what ``body_size`` is the size of, for the message (for example
            ``"the rodent body (...)"``); empty for a size given as ``body_size=``.

    Raises:
        KeypointsError: the ratio of cloud size to ``body_size`` is outside
            `PLAUSIBLE_SIZE_RATIO`; the message gives the scale factor that would fix it
            and, when the factor is a unit conversion, the ``units=`` to pass.
    """
    if not body_size > 0:
        raise KeypointsError(
            f"keypoint file {kp.source!r}: body_size is {body_size}; pass a positive size in metres "
            "(for example body_size=0.2 for a rat)"
        )
    size = kp.size()
    if not np.isfinite(size):
        raise KeypointsError(
            f"keypoint file {kp.source!r}: no frame has two valid keypoints, so the body size cannot be "
            "checked; check the file's missing-value markers and confidence_threshold"
        )
    ratio = size / body_size
    lo, hi = PLAUSIBLE_SIZE_RATIO
    if lo <= ratio <= hi:
        return
    factor = body_size / size
    hint = _unit_mistake_hint(factor, kp.units)
    target = f"{body} spans {body_size:.3g} m" if body else f"body_size is {body_size:g} m"
    raise KeypointsError(
        f"keypoint file {kp.source!r}: the keypoints span {size:.4g} m (median over frames of the largest "
        f"keypoint distance) but {target}, a ratio of {ratio:.3g} "
        f"outside [{lo:g}, {hi:g}]; units were {kp.units!r} ({kp.units_from}). "
        f"Scaling by about {factor:.3g} would fit" + (f": {hint}" if hint else "; check units= and body_size=")
    )


def parse_up_axis(up_axis: str, *, where: str) -> str:
    """Check an ``up_axis`` value (one of `UP_AXES`) and return it normalised.

    Raises:
        KeypointsError: the value is not one of `UP_AXES`.
    """
    key = str(up_axis).strip().lower().replace("+", "")
    if key not in UP_AXES:
        raise KeypointsError(
            f"{where}: up_axis is {up_axis!r}; pass the file's axis that points up, one of "
            f"{list(UP_AXES)} (--up_axis on the command line)"
        )
    return key


def orient_up(positions: np.ndarray, up_axis: str) -> np.ndarray:
    """Positions [..., 3] rotated so that the axis ``up_axis`` (one of `UP_AXES`) becomes +z."""
    if up_axis == "z":
        return positions
    return positions @ UP_AXES[up_axis].T


def check_up_axis(kp: Keypoints, *, floor: str = "the body's floor") -> None:
    """Fail when the keypoints lie below the floor (z = 0) on average.

    Bodies that stand on a floor expect z up with the floor at z = 0; a negative mean
    height means the data's up axis is inverted or is not z.

    Args:
        kp: keypoints in m, already rotated by the reader's ``up_axis``.
        floor: what the floor belongs to, for the message.

    Raises:
        KeypointsError: the mean z of the valid keypoints is negative; the message gives
            the mean of each axis and the ``up_axis=`` option that fixes it.
    """
    points = kp.positions[kp.valid]
    if points.size == 0:
        return
    mean = points.mean(axis=0)
    if mean[2] >= 0:
        return
    axes = ", ".join(f"{a} {m:.3g}" for a, m in zip("xyz", mean, strict=True))
    read_as = kp.meta.get("up_axis", "z")
    flipped = read_as[1:] if read_as.startswith("-") else f"-{read_as}"
    raise KeypointsError(
        f"keypoint file {kp.source!r}: the mean height (z) of the valid keypoints is "
        f"{mean[2]:.3g} m, below {floor} at z = 0 (mean position: {axes} m, read with "
        f"up_axis={read_as!r}): the data's up axis looks inverted or is not z. Pass up_axis= "
        f"the file's axis that points up, one of {list(UP_AXES)} (--up_axis on the command "
        f"line), for example up_axis={flipped!r} if the data is upside down"
    )


def make_keypoints(
    positions: np.ndarray,
    names: Sequence[str],
    *,
    source: str,
    fps: float,
    units: str,
    units_from: str,
    confidence: np.ndarray | None = None,
    missing: np.ndarray | None = None,
    confidence_threshold: float = DEFAULT_CONFIDENCE_THRESHOLD,
    max_gap_frames: int = DEFAULT_MAX_GAP_FRAMES,
    body_size: float | None = None,
    format: str = "",
    meta: dict[str, str] | None = None,
    up_axis: str = "z",
) -> Keypoints:
    """Apply the reading rules (module docstring) to raw arrays from a file.

    Args:
        positions: [T, K, 3] positions in ``units``; NaN where missing.
        names: the K keypoint names.
        source: the file, for messages.
        fps: frame rate in Hz.
        units: one of `UNITS`, the units of ``positions``.
        units_from: where ``units`` came from, kept in `Keypoints.units_from`.
        confidence: [T, K] confidence, or None when the file has none.
        missing: [T, K] bool, True where the file marks a keypoint missing, or None.
        confidence_threshold: keypoints with confidence below it are masked.
        max_gap_frames: longest interior gap (frames) filled by interpolation.
        body_size: typical body size in m for the plausibility check, or None to skip.
        format: reader name.
        meta: free strings kept with the keypoints.
        up_axis: the axis of ``positions`` that points up, one of `UP_AXES`; the
            positions are rotated so that it becomes +z (kept in ``meta["up_axis"]``).

    Returns:
        The keypoints in m.
    """
    positions = np.array(positions, dtype=np.float64)  # a copy we may edit
    if positions.ndim != 3 or positions.shape[2] != 3:
        raise KeypointsError(
            f"keypoint file {source!r}: positions have shape {positions.shape}; 3-D keypoints need "
            "[T, K, 3]. Triangulate 2-D detections first (anipose, DANNCE)"
        )
    num_frames, num_kp, _ = positions.shape
    names = tuple(str(n) for n in names)
    if len(names) != num_kp:
        raise KeypointsError(
            f"keypoint file {source!r}: {len(names)} keypoint names for {num_kp} keypoints in the data; "
            "pass exactly one name per keypoint"
        )
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise KeypointsError(
            f"keypoint file {source!r}: keypoint names {dup} appear more than once; names must be unique"
        )
    if num_frames < 1:
        raise KeypointsError(f"keypoint file {source!r}: the file holds no frames")
    if fps is None or not np.isfinite(fps) or fps <= 0:
        raise KeypointsError(f"keypoint file {source!r}: frame rate is {fps}; pass fps= a positive rate in Hz")
    if max_gap_frames < 0:
        raise KeypointsError(f"keypoint file {source!r}: max_gap_frames is {max_gap_frames}; pass 0 or more frames")
    valid = np.isfinite(positions).all(axis=2)
    if missing is not None:
        valid &= ~np.asarray(missing, dtype=bool)
    if confidence is not None:
        confidence = np.asarray(confidence, dtype=np.float64)
        if confidence.shape != (num_frames, num_kp):
            raise KeypointsError(
                f"keypoint file {source!r}: confidence has shape {confidence.shape}, expected "
                f"[{num_frames}, {num_kp}] like the positions"
            )
        low = ~(confidence >= confidence_threshold)  # NaN confidence counts as low
        n_low = int((low & valid).sum())
        valid &= ~low
        if n_low and valid.mean() < 0.1:
            log.warning(
                "%s: confidence_threshold=%g masks %d keypoint samples and leaves %.1f%% valid; "
                "this file's confidence scale may differ from the threshold's",
                source,
                confidence_threshold,
                n_low,
                100 * valid.mean(),
            )
    up_axis = parse_up_axis(up_axis, where=f"keypoint file {source!r}")
    positions = orient_up(positions, up_axis) * UNITS[units]
    positions[~valid] = np.nan
    interpolated = _interpolate_short_gaps(positions, valid, max_gap_frames)
    kp = Keypoints(
        positions=positions,
        names=names,
        fps=float(fps),
        valid=valid,
        source=source,
        confidence=confidence,
        interpolated=interpolated,
        units=units,
        units_from=units_from,
        format=format,
        meta={**(meta or {}), "up_axis": up_axis},
    )
    gaps = kp.gaps()
    if gaps:
        log.info(
            "%s: %d gap(s) longer than max_gap_frames=%d or at the clip's ends remain; "
            "use Keypoints.segments() or split_on_gaps() to cut the clip",
            source,
            len(gaps),
            max_gap_frames,
        )
    if body_size is not None:
        check_plausible_size(kp, body_size)
    return kp
