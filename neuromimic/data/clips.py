"""`ReferenceClip`: one reference movement of one body, stored as one versioned HDF5 file.

Schema (``schema_version`` 1). Root attributes:

========================  ==========================================================
``schema_version``        int, ``1``
``body``                  registry key of the body the clip was made for
``model_hash``            `Body.model_hash` of the MJCF the clip was made with
``fps``                   frame rate in Hz (> 0)
``name``                  clip name
``split``                 ``"train"`` or ``"val"``
========================  ==========================================================

Datasets (T frames; every numeric dataset carries a ``units`` attribute):

==============  =================  ==========  =====================================
dataset         shape              ``units``   meaning
==============  =================  ==========  =====================================
``qpos``        [T, nq] float64    ``rad``     joint positions (hinge angles)
``qvel``        [T, nv] float64    ``rad/s``   joint velocities
``xpos``        [T, nbody, 3]      ``m``       body frame origins, world frame
``xquat``       [T, nbody, 4]      ``wxyz``    body orientations, world frame
``site_pos_w``  [T, S, 3]          ``m``       tracked sites, world frame
``site_names``  [S] str                        names of the tracked sites, in order
==============  =================  ==========  =====================================

Group ``meta``: free attributes (str, float or int), for example how the clip was made.

Readers never guess: a file that does not follow this schema is rejected with a
`ClipError` that names the file, the field and the fix.
"""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import mujoco
import numpy as np

from neuromimic.bodies import UnknownBodyError, get_body
from neuromimic.data.contacts import lift_out_of_floor
from neuromimic.errors import InputError

log = logging.getLogger(__name__)

#: Version of the HDF5 layout written by `ReferenceClip.save`.
SCHEMA_VERSION = 1
#: Versions `ReferenceClip.load` can read.
SUPPORTED_SCHEMA_VERSIONS = (1,)
#: Splits a clip can belong to.
SPLITS = ("train", "val")
#: Prefix of clip sources shipped with the package (``"bundled:<name>"``).
BUNDLED_PREFIX = "bundled:"
#: Directory holding the bundled clip sets, one sub-directory per set.
BUNDLED_DIR = Path(__file__).parent / "clips"

# dataset name -> (units attribute, trailing shape with symbolic sizes).
_ARRAYS: dict[str, tuple[str, tuple[str | int, ...]]] = {
    "qpos": ("rad", ("nq",)),
    "qvel": ("rad/s", ("nv",)),
    "xpos": ("m", ("nbody", 3)),
    "xquat": ("wxyz", ("nbody", 4)),
    "site_pos_w": ("m", ("S", 3)),
}
_ROOT_ATTRS = ("body", "model_hash", "fps", "name", "split")
_MAKE_CLIPS_HINT = (
    "make clips for {body!r} with `ReferenceClip.from_qpos({body!r}, qpos, fps, ...).save(...)` "
    "(for 'mouse_forelimb' reaching: `python tools/make_reach_clips.py`) or point the env "
    "at clips of {body!r}"
)


class ClipError(InputError):
    """A clip file or clip set is missing, malformed, or does not fit the body or env."""


@dataclass
class ReferenceClip:
    """A reference movement of one body: joint angles plus their forward kinematics.

    Args:
        body: registry key of the body (for example ``"mouse_forelimb"``).
        model_hash: `Body.model_hash` of the model the clip was made with.
        fps: frame rate in Hz.
        qpos: joint positions [T, nq] in rad.
        qvel: joint velocities [T, nv] in rad/s.
        xpos: body positions [T, nbody, 3] in m, world frame.
        xquat: body orientations [T, nbody, 4], unit quaternions wxyz, world frame.
        site_names: names of the S tracked sites (the body's end effectors, in order).
        site_pos_w: tracked site positions [T, S, 3] in m, world frame.
        name: clip name.
        split: ``"train"`` or ``"val"``.
        meta: free attributes (str, float or int), for example the generation procedure.
    """

    body: str
    model_hash: str
    fps: float
    qpos: np.ndarray
    qvel: np.ndarray
    xpos: np.ndarray
    xquat: np.ndarray
    site_names: tuple[str, ...]
    site_pos_w: np.ndarray
    name: str
    split: str
    meta: dict[str, str | float | int] = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        """T, the number of frames."""
        return int(self.qpos.shape[0])

    @property
    def duration(self) -> float:
        """Time from the first to the last frame in seconds, ``(T - 1) / fps``."""
        return (self.num_frames - 1) / self.fps

    @classmethod
    def from_qpos(
        cls,
        body: str,
        qpos: np.ndarray,
        fps: float,
        name: str,
        split: str,
        meta: dict[str, str | float | int] | None = None,
    ) -> ReferenceClip:
        """Build a clip from joint angles by replaying them through the body's kinematics.

        A free-root body standing on a floor is first lifted, frame by frame, by as much
        as it penetrates the floor (`neuromimic.data.contacts.lift_out_of_floor`; the
        largest lift and the frames lifted are kept in ``meta``), so that no episode
        starts inside the floor.

        ``qvel`` is the central finite difference of ``qpos`` (one-sided at both ends,
        through `mujoco.mj_differentiatePos`, so it is also right for ball and free
        joints); ``xpos``, ``xquat`` and ``site_pos_w`` come from `mujoco.mj_kinematics`
        of every frame.

        Args:
            body: registry key of the body.
            qpos: joint positions [T, nq] in rad, T >= 2.
            fps: frame rate in Hz.
            name: clip name.
            split: ``"train"`` or ``"val"``.
            meta: free attributes stored with the clip.
        """
        spec = get_body(body)
        model = spec.load_model()
        data = mujoco.MjData(model)
        qpos = np.asarray(qpos, dtype=np.float64)
        if qpos.ndim != 2 or qpos.shape[1] != model.nq or qpos.shape[0] < 2:
            raise ClipError(f"qpos of clip {name!r} has shape {qpos.shape}; body {body!r} needs [T >= 2, {model.nq}]")
        check_quaternions(qpos, model, spec.rest_qpos(model), f"clip {name!r}")
        qpos, lift = lift_out_of_floor(model, qpos)
        meta = dict(meta or {})
        if lift.any():
            meta |= {
                "floor_lift_max_mm": round(float(lift.max()) * 1e3 * spec.length_unit_m, 3),
                "floor_lifted_frames": int((lift > 0).sum()),
            }
        num_frames = qpos.shape[0]
        site_ids = [model.site(site).id for site in spec.end_effector_sites]
        qvel = np.empty((num_frames, model.nv))
        for k in range(num_frames):
            lo, hi = max(k - 1, 0), min(k + 1, num_frames - 1)
            mujoco.mj_differentiatePos(model, qvel[k], (hi - lo) / fps, qpos[lo], qpos[hi])
        xpos = np.empty((num_frames, model.nbody, 3))
        xquat = np.empty((num_frames, model.nbody, 4))
        site_pos_w = np.empty((num_frames, len(site_ids), 3))
        for k in range(num_frames):
            data.qpos[:] = qpos[k]
            mujoco.mj_kinematics(model, data)
            xpos[k] = data.xpos
            xquat[k] = data.xquat
            site_pos_w[k] = data.site_xpos[site_ids]
        return cls(
            body=body,
            model_hash=spec.model_hash,
            fps=float(fps),
            qpos=qpos,
            qvel=qvel,
            xpos=xpos,
            xquat=xquat,
            site_names=tuple(spec.end_effector_sites),
            site_pos_w=site_pos_w,
            name=name,
            split=split,
            meta=meta,
        )

    def save(self, path: str | os.PathLike) -> Path:
        """Write the clip to ``path`` atomically (a temporary file, then `os.replace`).

        Args:
            path: destination ``.h5`` file; its directory must exist.

        Returns:
            The path written.
        """
        path = Path(path)
        # A fresh name in the same directory, created by HDF5 itself (so the file gets
        # the usual permissions), then renamed over ``path`` in one step.
        tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
        try:
            # HDF5 1.10 file format: compact metadata, readable by any HDF5 since 2017.
            with h5py.File(tmp, "x", libver=("v110", "v110")) as f:
                f.attrs["schema_version"] = SCHEMA_VERSION
                f.attrs["body"] = self.body
                f.attrs["model_hash"] = self.model_hash
                f.attrs["fps"] = float(self.fps)
                f.attrs["name"] = self.name
                f.attrs["split"] = self.split
                for key, (units, _) in _ARRAYS.items():
                    # Shuffle + gzip is lossless and keeps the bundled clips small.
                    dset = f.create_dataset(
                        key,
                        data=np.asarray(getattr(self, key), dtype=np.float64),
                        compression="gzip",
                        compression_opts=9,
                        shuffle=True,
                    )
                    dset.attrs["units"] = units
                f.create_dataset("site_names", data=list(self.site_names), dtype=h5py.string_dtype())
                meta = f.create_group("meta")
                for key, value in self.meta.items():
                    meta.attrs[key] = value
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, body: str | None = None) -> ReferenceClip:
        """Read and validate a clip file.

        Args:
            path: a ``.h5`` file written by `save` (schema above).
            body: registry key of the body the clip will drive; ``None`` accepts any body.

        Raises:
            ClipError: the file is not a clip of a supported schema version, misses a
                field, has inconsistent shapes, wrong units, non-finite values,
                ``fps <= 0``, an unknown split, or was recorded for another body than
                ``body``. The message names the file, the field and the fix.

        A ``model_hash`` that differs from the registered body's is logged as a warning:
        the clip may have been made with an older version of the model.
        """
        path = Path(path)
        where = f"clip file {str(path)!r}"
        if not path.is_file():
            raise ClipError(f"{where} does not exist")
        if not h5py.is_hdf5(path):
            raise ClipError(
                f"{where} is not an HDF5 file; reference clips are HDF5 files written by `ReferenceClip.save`"
            )
        with h5py.File(path, "r") as f:
            if "schema_version" not in f.attrs:
                raise ClipError(
                    f"{where} has no `schema_version` root attribute, so it is not a "
                    "neuromimic reference clip; write clips with `ReferenceClip.save`"
                )
            version = int(f.attrs["schema_version"])
            if version not in SUPPORTED_SCHEMA_VERSIONS:
                raise ClipError(
                    f"{where} has schema_version {version}; this neuromimic reads "
                    f"schema versions {list(SUPPORTED_SCHEMA_VERSIONS)}. Upgrade neuromimic or "
                    "regenerate the clip"
                )
            for key in _ROOT_ATTRS:
                if key not in f.attrs:
                    raise ClipError(
                        f"{where} misses the root attribute `{key}` required by clip "
                        f"schema {version}; regenerate the clip with `ReferenceClip.save`"
                    )
            for key in (*_ARRAYS, "site_names"):
                if key not in f or not isinstance(f[key], h5py.Dataset):
                    raise ClipError(
                        f"{where} misses the dataset `{key}` required by clip schema "
                        f"{version}; regenerate the clip with `ReferenceClip.save`"
                    )
            if "meta" not in f or not isinstance(f["meta"], h5py.Group):
                raise ClipError(
                    f"{where} misses the group `meta` required by clip schema "
                    f"{version} (it may be empty); regenerate the clip with `ReferenceClip.save`"
                )
            arrays = {}
            for key, (units, _) in _ARRAYS.items():
                found = f[key].attrs.get("units")
                found = found.decode() if isinstance(found, bytes) else found
                if found != units:
                    raise ClipError(
                        f"{where}: dataset `{key}` has units {found!r} but the clip "
                        f"schema stores it in {units!r}; convert it to {units!r} and set the "
                        "dataset's `units` attribute"
                    )
                arrays[key] = np.asarray(f[key][()], dtype=np.float64)
            site_names = tuple(
                name.decode() if isinstance(name, bytes) else str(name) for name in np.atleast_1d(f["site_names"][()])
            )
            attrs = {key: f.attrs[key] for key in _ROOT_ATTRS}
            meta = {key: _python_scalar(value) for key, value in f["meta"].attrs.items()}
        clip = cls(
            body=_python_str(attrs["body"]),
            model_hash=_python_str(attrs["model_hash"]),
            fps=float(attrs["fps"]),
            site_names=site_names,
            name=_python_str(attrs["name"]),
            split=_python_str(attrs["split"]),
            meta=meta,
            **arrays,
        )
        clip.validate(source=str(path))
        if body is not None and clip.body != body:
            raise ClipError(
                f"clip {str(path)!r} was recorded for body {clip.body!r} but the env uses "
                f"{body!r}; " + _MAKE_CLIPS_HINT.format(body=body)
            )
        _check_model_hash(clip, source=str(path))
        return clip

    def validate(self, source: str | None = None) -> None:
        """Check shapes, values, fps and split; raise `ClipError` naming ``source``.

        Args:
            source: how to name the clip in messages (its file); defaults to its name.
        """
        where = f"clip file {source!r}" if source is not None else f"clip {self.name!r}"
        if not np.isfinite(self.fps) or self.fps <= 0:
            raise ClipError(
                f"{where}: fps is {self.fps}; it must be a positive frame rate in Hz. "
                "Set the root attribute `fps` to the rate the clip was recorded at"
            )
        if self.split not in SPLITS:
            raise ClipError(f"{where}: split is {self.split!r}; it must be one of {list(SPLITS)}")
        shapes = {key: tuple(np.shape(getattr(self, key))) for key in _ARRAYS}
        for key, (_, trailing) in _ARRAYS.items():
            fixed = [(i + 1, dim) for i, dim in enumerate(trailing) if isinstance(dim, int)]
            if len(shapes[key]) != 1 + len(trailing) or any(shapes[key][i] != dim for i, dim in fixed):
                dims = ", ".join(str(d) for d in ("T", *trailing))
                raise ClipError(f"{where}: dataset `{key}` has shape {shapes[key]}; expected [{dims}]")
        for key in _ARRAYS:
            if shapes[key][0] != shapes["qpos"][0]:
                raise ClipError(
                    f"{where}: dataset `{key}` has shape {shapes[key]} but `qpos` has "
                    f"{shapes['qpos']}; every field needs the same number of frames T"
                )
        if shapes["qpos"][0] < 1:
            raise ClipError(f"{where}: the clip has no frames")
        if shapes["xpos"][1] != shapes["xquat"][1]:
            raise ClipError(
                f"{where}: dataset `xpos` has shape {shapes['xpos']} but `xquat` has "
                f"{shapes['xquat']}; both need one entry per body (nbody)"
            )
        if shapes["site_pos_w"][1] != len(self.site_names):
            raise ClipError(
                f"{where}: dataset `site_pos_w` has shape {shapes['site_pos_w']} but "
                f"`site_names` has {len(self.site_names)} names {list(self.site_names)}; "
                "they need one entry per tracked site (S)"
            )
        for key in _ARRAYS:
            value = getattr(self, key)
            bad = ~np.isfinite(value).reshape(value.shape[0], -1).all(axis=1)
            if bad.any():
                raise ClipError(
                    f"{where}: dataset `{key}` has non-finite values (NaN or Inf), first at "
                    f"frame {int(np.argmax(bad))}; fill or cut the gap before making the clip"
                )


#: Largest accepted deviation of a quaternion's norm from 1 (MuJoCo normalises silently).
QUATERNION_NORM_TOLERANCE = 1e-3


def _rotate_up(quat: np.ndarray) -> np.ndarray:
    """World z of each rotated z axis: for unit quaternions [..., 4] (wxyz), the (2, 2)
    entry of their rotation matrix, [...]."""
    x, y = quat[..., 1], quat[..., 2]
    return 1.0 - 2.0 * (x * x + y * y)


def check_quaternions(qpos: np.ndarray, model: mujoco.MjModel, rest_qpos: np.ndarray, where: str) -> None:
    """Check the quaternions in a clip's joint angles: MuJoCo's convention and unit norm.

    Every ball and free joint's quaternion must have norm 1 (within
    `QUATERNION_NORM_TOLERANCE`) in every frame. For a body with a free root, the root
    must not be upside down (compared with the rest pose) in most frames: a clip whose
    quaternions are in x, y, z, w order (scipy's) instead of MuJoCo's w, x, y, z, or whose
    data had another up axis, turns the body over.

    Args:
        qpos: joint positions [T, nq].
        model: the body's compiled model.
        rest_qpos: the body's rest pose [nq] (`Body.rest_qpos`).
        where: the clip, for messages.

    Raises:
        ClipError: naming the joint, the frame and the likely fix.
    """
    kinds = {int(mujoco.mjtJoint.mjJNT_FREE): 3, int(mujoco.mjtJoint.mjJNT_BALL): 0}
    for j in range(model.njnt):
        offset = kinds.get(int(model.jnt_type[j]))
        if offset is None:
            continue
        start = int(model.jnt_qposadr[j]) + offset
        quat = qpos[:, start : start + 4]
        norm = np.linalg.norm(quat, axis=1)
        bad = np.abs(norm - 1.0) > QUATERNION_NORM_TOLERANCE
        name = model.joint(j).name or f"#{j}"
        if bad.any():
            frame = int(np.argmax(bad))
            raise ClipError(
                f"{where}: the quaternion of joint {name!r} (qpos[{start}:{start + 4}]) has norm "
                f"{norm[frame]:.4g} at frame {frame} ({int(bad.sum())} frames off); quaternions "
                "must be unit length, in MuJoCo's w, x, y, z order. Normalise them"
            )
        if offset == 3 and j == 0:
            _check_root_upright(quat, _rotate_up(rest_qpos[start : start + 4]), name, where)


def _check_root_upright(quat: np.ndarray, rest_up: float, name: str, where: str) -> None:
    """Refuse root quaternions [T, 4] that turn the body over, naming the likely cause.

    Read in the wrong order, the quaternion of an upright body turning by a yaw angle
    becomes a half turn that tilts its up axis by that yaw; so a clip of a body that turns
    round shows it upside down in many frames, while the reordered quaternions keep it
    upright in every one. (Of a body that barely turns, the misread is a half turn about a
    near-vertical axis, which no check can tell from a real one.)
    """
    sign = 1.0 if rest_up >= 0 else -1.0
    over = np.mean(sign * _rotate_up(quat) < 0)
    upright_if_xyzw = np.all(sign * _rotate_up(quat[:, [3, 0, 1, 2]]) > 0)
    if upright_if_xyzw and over > 0.1:
        cause = (
            "the quaternions look like x, y, z, w (scipy's order), which keeps it upright in "
            "every frame; MuJoCo's order is w, x, y, z, so move the last component first"
        )
    elif over > 0.5:
        cause = "check the quaternion order (MuJoCo: w, x, y, z) and the up axis of the source data (z up)"
    else:
        return
    raise ClipError(
        f"{where}: the root joint {name!r} turns the body upside down (against its rest pose) "
        f"in {100 * over:.0f}% of the frames; {cause}"
    )


def load_clips(source: str | os.PathLike, body: str | None = None, split: str | None = None) -> list[ReferenceClip]:
    """Load and validate every clip of a source, optionally keeping one split.

    Args:
        source: a ``.h5`` clip file, a directory of ``*.h5`` clips (read in sorted order),
            or ``"bundled:<name>"`` for a clip set shipped with the package (for example
            ``"bundled:mouse_forelimb_reach"``).
        body: registry key of the body the clips will drive; ``None`` accepts any body.
        split: keep only clips of this split (``"train"`` or ``"val"``); ``None`` keeps all.

    Returns:
        The clips, in file order.

    Raises:
        ClipError: the source does not exist, a clip is invalid, or no clip is left.
    """
    if split is not None and split not in SPLITS:
        raise ClipError(f"split must be one of {list(SPLITS)} or None, not {split!r}")
    text = os.fspath(source)
    if text.startswith(BUNDLED_PREFIX):
        name = text[len(BUNDLED_PREFIX) :]
        path = BUNDLED_DIR / name
        if not name or not path.is_dir():
            known = sorted(p.name for p in BUNDLED_DIR.iterdir() if p.is_dir())
            raise ClipError(
                f"unknown bundled clip set {text!r}; bundled sets: "
                f"{', '.join(BUNDLED_PREFIX + k for k in known) or 'none'}"
            )
    else:
        path = Path(text)
    if path.is_dir():
        files = sorted(path.glob("*.h5"))
    elif path.is_file():
        files = [path]
    else:
        raise ClipError(
            f"clip source {text!r} does not exist; give a .h5 file, a directory of .h5 files or {BUNDLED_PREFIX}<name>"
        )
    clips = [ReferenceClip.load(file, body=body) for file in files]
    if split is not None:
        clips = [clip for clip in clips if clip.split == split]
    if not clips:
        raise ClipError(
            f"clip source {text!r} has no clips"
            + (f" of split {split!r}" if split is not None else "")
            + f" ({len(files)} .h5 files read)"
        )
    log.info("loaded %d clips from %s (split %s)", len(clips), text, split)
    return clips


def save_clips(clips: list[ReferenceClip], directory: str | os.PathLike) -> list[Path]:
    """Write each clip atomically as ``<directory>/<clip.name>.h5`` (the directory is
    created if needed), the layout `load_clips` reads; returns the paths written."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    return [clip.save(directory / f"{clip.name}.h5") for clip in clips]


def save_clips_report(clips: list[ReferenceClip], directory: str | os.PathLike) -> dict:
    """`save_clips`, then what was written: ``{"clips": [paths], "splits": {split: count},
    "frames_per_clip", "fps"}``."""
    return {
        "clips": [str(path) for path in save_clips(clips, directory)],
        "splits": {split: sum(clip.split == split for clip in clips) for split in ("train", "val")},
        "frames_per_clip": clips[0].num_frames,
        "fps": clips[0].fps,
    }


def _check_model_hash(clip: ReferenceClip, source: str) -> None:
    """Warn when the clip was made with another version of its body's MJCF."""
    try:
        current = get_body(clip.body).model_hash
    except UnknownBodyError:
        log.warning(
            "clip %s is for body %r, which is not registered; its model hash is not checked",
            source,
            clip.body,
        )
        return
    if current != clip.model_hash:
        log.warning(
            "clip %s was made with model hash %s but body %r now has %s; the clip may not "
            "match the current model (regenerate it if the kinematics changed)",
            source,
            clip.model_hash,
            clip.body,
            current,
        )


def _python_str(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _python_scalar(value: object) -> str | float | int:
    """An HDF5 attribute as a plain Python str, float or int."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value  # type: ignore[return-value]
