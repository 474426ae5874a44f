"""`Keypoints`: 3-D keypoint trajectories of one animal in metres, with a validity mask.

Readers build them through `neuromimic.keypoints.rules.make_keypoints`, which applies the
rules every format shares (units, frame rate, masking, gaps, plausibility, up axis).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import numpy as np

from neuromimic.errors import InputError


class KeypointsError(InputError):
    """A keypoint file cannot be read as asked: the message names the file, the field and the fix."""


def mirror_name(name: str, names: Sequence[str]) -> str:
    """The name of a keypoint's partner on the other side of the body, or ``name`` itself
    for one on the midline.

    Sides spelled out are always sides (``LeftFoot``, ``left wrist``, ``hand_l``,
    ``l_knee``, ``R-hip``): their partner must be in ``names``. A bare capital ``L`` or
    ``R`` at the end (``EarL``, rat23's) or at the start (``LFHD``, Vicon's) marks a side
    only where its partner is in ``names``, so rat23's ``SpineL`` (lower spine) stays on
    the midline.

    Raises:
        KeypointsError: a side is spelled out and its partner is not in ``names``.
    """
    explicit = (
        r"(?<![a-z])(left|Left|LEFT|right|Right|RIGHT)(?![a-z])",  # LeftFoot, left_wrist
        r"(?<=[_\- ])[lrLR]$|^[lrLR](?=[_\- ])",  # hand_l, l_knee, R-hip
    )
    swapped = {"left": "right", "Left": "Right", "LEFT": "RIGHT", "l": "r", "L": "R"}
    swapped |= {v: k for k, v in swapped.items()}
    for pattern in explicit:
        match = re.search(pattern, name)
        if match:
            partner = name[: match.start()] + swapped[match.group()] + name[match.end() :]
            if partner not in names:
                raise KeypointsError(
                    f"cannot mirror keypoint {name!r}: its partner {partner!r} is not among the keypoints "
                    f"{list(names)}; select keypoints in left-right pairs, or fit without mirror"
                )
            return partner
    for pattern in (r"(?<=[a-z0-9])[LR]$", r"^[LR](?=[A-Z])"):  # EarL, LFHD: sides only in pairs
        match = re.search(pattern, name)
        if match:
            partner = name[: match.start()] + swapped[match.group()] + name[match.end() :]
            if partner in names:
                return partner
    return name


class Gap(NamedTuple):
    """A run of frames in which one keypoint stays invalid after interpolation.

    Attributes:
        name: keypoint name.
        start: first invalid frame.
        stop: one past the last invalid frame (half-open range, like `range`).
    """

    name: str
    start: int
    stop: int


@dataclass
class Keypoints:
    """3-D keypoint trajectories of one animal, in metres, with a validity mask.

    Args:
        positions: keypoint positions [T, K, 3] in m, float64; NaN where ``valid`` is False.
        names: the K keypoint names, in the order of ``positions``.
        fps: frame rate in Hz.
        valid: [T, K] bool, True where the position is measured or interpolated.
        source: path of the file the keypoints were read from.
        confidence: [T, K] confidence as stored in the file (its own scale), or None.
        interpolated: [T, K] bool, True where a short gap was filled by interpolation.
        units: the units the file's numbers were read in (``"m"``, ``"cm"``, ``"mm"``).
        units_from: where ``units`` came from, for example ``"argument units='mm'"`` or
            ``"file: POINT:UNITS = 'mm'"``.
        format: the reader that produced them (``"nwb"``, ``"dannce"``, ...).
        frame_offset: index in the file of frame 0 (non-zero for pieces made by
            `split_on_gaps` or `frames`).
        meta: free strings from the reader (for example the NWB path or DLC scorer).
    """

    positions: np.ndarray
    names: tuple[str, ...]
    fps: float
    valid: np.ndarray
    source: str
    confidence: np.ndarray | None = None
    interpolated: np.ndarray | None = None
    units: str = "m"
    units_from: str = ""
    format: str = ""
    frame_offset: int = 0
    meta: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.names = tuple(str(n) for n in self.names)
        if self.interpolated is None:
            self.interpolated = np.zeros(self.valid.shape, dtype=bool)

    @property
    def num_frames(self) -> int:
        """T, the number of frames."""
        return int(self.positions.shape[0])

    @property
    def num_keypoints(self) -> int:
        """K, the number of keypoints."""
        return int(self.positions.shape[1])

    def index(self, names: Sequence[str]) -> list[int]:
        """Column indices of ``names`` in ``positions``.

        Raises:
            KeypointsError: a name is missing; the message lists the available names.
        """
        missing = [n for n in names if n not in self.names]
        if missing:
            raise KeypointsError(
                f"keypoint file {self.source!r}: keypoint(s) {missing} not found; the file has "
                f"{list(self.names)}. Fix the names in your keypoint mapping (names are "
                "case-sensitive) or rename them with keypoint_names=[...] when reading"
            )
        return [self.names.index(n) for n in names]

    def select(self, names: Sequence[str]) -> Keypoints:
        """The keypoints ``names`` only, in that order.

        Args:
            names: keypoint names, each one of `names`.

        Raises:
            KeypointsError: a name is missing; the message lists the available names.
        """
        idx = self.index(names)
        return replace(
            self,
            positions=self.positions[:, idx],
            names=tuple(names),
            valid=self.valid[:, idx],
            confidence=None if self.confidence is None else self.confidence[:, idx],
            interpolated=self.interpolated[:, idx],
        )

    def mirrored(self) -> Keypoints:
        """The mirror image of the movement: positions reflected in the vertical x-z plane
        (y -> -y) and each left keypoint given its right partner's reflected track
        (`mirror_name`), so that the names still fit a left-right symmetric body.

        Raises:
            KeypointsError: a keypoint spells out its side but its partner is not in the file.
        """
        try:
            partners = [mirror_name(name, self.names) for name in self.names]
        except KeypointsError as error:
            raise KeypointsError(f"keypoint file {self.source!r}: {error}") from None
        idx = [self.names.index(partner) for partner in partners]
        positions = self.positions[:, idx] * np.array([1.0, -1.0, 1.0])
        return replace(
            self,
            positions=positions,
            valid=self.valid[:, idx].copy(),
            confidence=None if self.confidence is None else self.confidence[:, idx].copy(),
            interpolated=self.interpolated[:, idx].copy(),
            meta={**self.meta, "mirrored": "y -> -y, left and right keypoints swapped"},
        )

    def frames(self, start: int, stop: int) -> Keypoints:
        """Frames ``start`` to ``stop - 1`` as a new `Keypoints` (copies)."""
        sl = slice(start, stop)
        return replace(
            self,
            positions=self.positions[sl].copy(),
            valid=self.valid[sl].copy(),
            confidence=None if self.confidence is None else self.confidence[sl].copy(),
            interpolated=self.interpolated[sl].copy(),
            frame_offset=self.frame_offset + start,
        )

    def gaps(self) -> list[Gap]:
        """Runs of invalid frames that remain after interpolation (long or at an edge).

        Returns:
            One `Gap` per run and keypoint, sorted by keypoint then start frame.
        """
        out = []
        for k, name in enumerate(self.names):
            for start, stop in runs(~self.valid[:, k]):
                out.append(Gap(name, start, stop))
        return out

    def segments(
        self,
        required: Sequence[str] | None = None,
        *,
        min_valid_fraction: float = 1.0,
        min_length: int = 2,
    ) -> list[tuple[int, int]]:
        """Frame ranges without a long gap, for cutting the clip into usable pieces.

        A frame is usable when at least ``min_valid_fraction`` of the ``required``
        keypoints are valid in it; a segment is a maximal run of usable frames.

        Args:
            required: keypoints that must be present (default: all).
            min_valid_fraction: fraction in (0, 1] of ``required`` that must be valid in
                a frame; 1.0 (default) means all of them.
            min_length: shortest segment returned, in frames.

        Returns:
            Half-open ``(start, stop)`` frame ranges, in order.
        """
        if not 0.0 < min_valid_fraction <= 1.0:
            raise KeypointsError(
                f"keypoint file {self.source!r}: min_valid_fraction is {min_valid_fraction}; pass a fraction in (0, 1]"
            )
        idx = self.index(required) if required is not None else list(range(self.num_keypoints))
        frac = self.valid[:, idx].mean(axis=1) if idx else np.ones(self.num_frames)
        usable = frac >= min_valid_fraction - 1e-12
        return [(a, b) for a, b in runs(usable) if b - a >= min_length]

    def split_on_gaps(
        self,
        required: Sequence[str] | None = None,
        *,
        min_valid_fraction: float = 1.0,
        min_length: int = 2,
    ) -> list[Keypoints]:
        """The clip cut at its long gaps: one `Keypoints` per range of `segments`.

        Each piece keeps its place in the file in ``frame_offset``.
        """
        return [
            self.frames(a, b)
            for a, b in self.segments(required, min_valid_fraction=min_valid_fraction, min_length=min_length)
        ]

    def size(self) -> float:
        """Typical size of the keypoint cloud in m.

        The median over frames (with at least two valid keypoints) of the largest
        distance between two valid keypoints; NaN when no frame has two.
        """
        return cloud_size(self.positions, self.valid)

    def __repr__(self) -> str:
        return (
            f"Keypoints(T={self.num_frames}, K={self.num_keypoints}, fps={self.fps:g}, "
            f"valid={self.valid.mean():.1%}, interpolated={int(self.interpolated.sum())}, "
            f"units_from={self.units_from!r}, source={self.source!r})"
        )


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Half-open ``(start, stop)`` ranges of the consecutive True entries of a bool array [T]."""
    m = np.concatenate([[False], np.asarray(mask, dtype=bool), [False]])
    d = np.diff(m.astype(np.int8))
    starts = np.flatnonzero(d == 1)
    stops = np.flatnonzero(d == -1)
    return [(int(a), int(b)) for a, b in zip(starts, stops)]


def cloud_size(positions: np.ndarray, valid: np.ndarray, max_frames: int = 500) -> float:
    """Median over frames of the largest distance between two valid keypoints.

    Args:
        positions: keypoint positions [T, K, 3] in m.
        valid: [T, K] bool; frames with fewer than two valid keypoints are skipped.
        max_frames: at most this many frames, evenly spaced, are measured.

    Returns:
        The size in m; NaN when no frame has two valid keypoints.
    """
    frames = np.flatnonzero(valid.sum(axis=1) >= 2)
    if frames.size == 0:
        return float("nan")
    if frames.size > max_frames:  # a subsample is plenty for a median
        frames = frames[np.linspace(0, frames.size - 1, max_frames).astype(int)]
    sizes = []
    for t in frames:
        p = positions[t, valid[t]]
        d = p[:, None, :] - p[None, :, :]
        sizes.append(np.sqrt((d**2).sum(-1)).max())
    return float(np.median(sizes))
