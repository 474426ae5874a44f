"""Reference clips for the viewer, with the keypoints they were fitted to.

`ClipSource` shows reference clips (``neuromimic keypoints fit`` writes them) as episodes of
a `neuromimic.analysis.viewer.sources.Source`: the body at the clip's poses and, for clips
fitted to keypoints, the fitted keypoints (the clip's offsets on its bodies) and the
keypoints of the file the fit read, with their residuals.
"""

from __future__ import annotations

import json
from pathlib import Path

import mujoco
import numpy as np

from neuromimic.analysis.viewer.sources import Episode, ViewerInputError
from neuromimic.bodies import get_body
from neuromimic.errors import InputError


class ClipSource:
    """Reference clips, with the keypoints they were fitted to where those can be found.

    A clip written by ``neuromimic keypoints fit`` keeps in its ``meta`` the keypoint names,
    the body each sits on, the fitted offsets, the body scale and the path of the keypoint
    file it was fitted to, but not the keypoints themselves: they are read again from
    ``keypoints`` (default: that path) to be drawn with their residuals.

    Args:
        source: a clip file, a directory of clips, or ``bundled:<name>``.
        split: ``"train"``, ``"val"`` or None (all clips).
        keypoints: the keypoint file the clips were fitted to; default the path in their
            ``meta``.
        keypoint_units: the length unit of that file where it states none (``"mm"``...),
            as given to ``neuromimic keypoints fit --units``.

    Raises:
        InputError: the clips are missing or malformed (`neuromimic.data.clips.ClipError`), of
            several bodies (`ViewerInputError`), or ``keypoints`` does not exist.
    """

    kind = "clips"

    def __init__(
        self,
        source: str | Path,
        split: str | None = None,
        keypoints: str | Path | None = None,
        keypoint_units: str | None = None,
    ) -> None:
        from neuromimic.data.clips import load_clips

        self.clips = load_clips(source, split=split)
        self.label = f"clips {str(source)!r}"
        bodies = sorted({clip.body for clip in self.clips})
        if len(bodies) > 1:
            raise ViewerInputError(
                f"{self.label} hold clips of several bodies ({bodies}); view one body's clips at a time"
            )
        self.body = bodies[0]
        self.body_spec = get_body(self.body)
        self.model = self.body_spec.load_model()
        self.names = [clip.name for clip in self.clips]
        self.unit_arrays: dict[str, int] = {}
        self.layers = ["tracked points"]
        self.source = Path(str(source))
        self.keypoint_file = Path(keypoints) if keypoints else None
        if self.keypoint_file is not None and not self.keypoint_file.is_file():
            raise ViewerInputError(
                f"keypoint file {str(keypoints)!r} does not exist; give the file the clips were fitted to"
            )
        self.keypoint_units = keypoint_units
        self._read_keypoints: dict[Path, object] = {}

    def episode(self, index: int) -> Episode:
        clip = self.clips[index]
        episode = Episode(
            name=clip.name,
            times=np.arange(clip.num_frames) / clip.fps,
            qpos=clip.qpos,
            markers=clip.site_pos_w,
            marker_names=tuple(clip.site_names),
            steps=np.arange(clip.num_frames),
        )
        meta = clip.meta
        if not all(key in meta for key in ("keypoint_names", "keypoint_bodies", "keypoint_offsets_m", "body_scale")):
            episode.notes.append(
                "this clip was not fitted to keypoints (no keypoint offsets in its meta): its tracked sites are shown"
            )
            return episode
        try:
            names = tuple(json.loads(meta["keypoint_names"]))
            bodies = json.loads(meta["keypoint_bodies"])
            offsets = np.asarray(json.loads(meta["keypoint_offsets_m"]), dtype=np.float64).reshape(len(names), 3)
            scale = float(meta["body_scale"])
            for name in bodies:
                self.model.body(name)  # KeyError for a body the model does not have
        except (ValueError, TypeError, KeyError) as error:
            episode.notes.append(
                f"this clip's keypoint fields (meta keypoint_names, keypoint_bodies, keypoint_offsets_m, body_scale) "
                f"are malformed ({error}): its tracked sites are shown; fit the keypoints again"
            )
            return episode
        episode.markers = self._fitted_keypoints(clip.qpos, bodies, offsets / scale)
        episode.marker_names = names
        episode.targets = self._measured_keypoints(clip, names, scale, episode.notes)
        if episode.targets is not None:
            # in the data's mm: the clip's body is the data's divided by the scale
            residual = scale * 1000.0 * np.linalg.norm(episode.markers - episode.targets, axis=2)  # [T, K]
            seen = np.isfinite(residual)
            counts = seen.sum(axis=1)
            episode.error = np.where(
                counts > 0, np.where(seen, residual, 0.0).sum(axis=1) / np.maximum(counts, 1), np.nan
            )
            episode.error_label = "keypoint residual in the data, mean over keypoints (mm)"
            fitted = float(meta.get("mean_residual_mm", np.nan))
            shown = float(residual[seen].mean()) if seen.any() else np.nan
            lift = float(meta.get("floor_lift_max_mm", 0.0) or 0.0)
            if lift > 0:
                episode.notes.append(
                    f"the clip's body was lifted out of the floor by up to {lift:.1f} mm in "
                    f"{meta.get('floor_lifted_frames', 'some')} frames after the fit: the residual shown includes it"
                )
            if np.isfinite(fitted) and np.isfinite(shown) and shown > 2 * fitted + 1.0 + lift:
                episode.notes.append(
                    f"the keypoints shown are {shown:.1f} mm from the fitted ones on average, against the fit's "
                    f"{fitted:.1f} mm: the file was probably read with other options (units, up axis) than the fit's"
                )
        return episode

    def _fitted_keypoints(self, qpos: np.ndarray, bodies: list[str], offsets: np.ndarray) -> np.ndarray:
        """[T, K, 3] the fitted keypoints on the unscaled body: each body's frame plus its
        offset divided by the body scale (the clip's poses are for the unscaled body)."""
        model, data = self.model, mujoco.MjData(self.model)
        ids = [model.body(name).id for name in bodies]
        out = np.zeros((len(qpos), len(ids), 3))
        for t, pose in enumerate(qpos):
            data.qpos[:] = pose
            mujoco.mj_kinematics(model, data)
            rotations = data.xmat[ids].reshape(-1, 3, 3)
            out[t] = data.xpos[ids] + np.einsum("kij,kj->ki", rotations, offsets)
        return out

    def _keypoint_path(self, clip) -> Path | None:
        if self.keypoint_file is not None:
            return self.keypoint_file
        recorded = clip.meta.get("input")
        if not recorded:
            return None
        recorded = Path(str(recorded))
        folder = self.source if self.source.is_dir() else self.source.parent
        for candidate in (recorded, folder / recorded.name, folder.parent / recorded.name):
            if candidate.is_file():
                return candidate
        return recorded

    def _measured_keypoints(self, clip, names: tuple[str, ...], scale: float, notes: list[str]) -> np.ndarray | None:
        """[T, K, 3] the keypoints the clip was fitted to, at the clip's frames, in the
        frame of the unscaled body (divided by the body scale), or None with a note."""
        path = self._keypoint_path(clip)
        if path is None:
            notes.append(
                "the original keypoints are not shown: the clip does not name its keypoint file "
                "(give it with --keypoints FILE)"
            )
            return None
        if path not in self._read_keypoints:
            from neuromimic.keypoints import read_keypoints

            try:
                self._read_keypoints[path] = read_keypoints(
                    path, units=self.keypoint_units, fps=float(clip.meta.get("input_fps", 0)) or None
                )
            except (InputError, OSError) as error:
                self._read_keypoints[path] = str(error)
        read = self._read_keypoints[path]
        if isinstance(read, str):
            notes.append(
                f"the original keypoints are not shown: {read} (give the file and its units with "
                "--keypoints FILE --keypoint_units mm, as given to keypoints fit)"
            )
            return None
        index = {name: k for k, name in enumerate(read.names)}
        missing = [name for name in names if name not in index]
        if missing:
            notes.append(f"keypoints {missing} of the fit are not in {str(path)!r}")
        positions = np.full((read.positions.shape[0], len(names), 3), np.nan)
        for k, name in enumerate(names):
            if name in index:
                positions[:, k] = np.where(read.valid[:, index[name], None], read.positions[:, index[name]], np.nan)
        # clip frame i is frame (first_frame + i) of the fit's output, at the clip's rate
        first = int(clip.meta.get("first_frame", 0))
        source_frames = (first + np.arange(clip.num_frames)) / clip.fps * read.fps
        low = np.clip(np.floor(source_frames).astype(int), 0, len(positions) - 1)
        high = np.clip(low + 1, 0, len(positions) - 1)
        weight = (source_frames - low)[:, None, None]
        between = (1 - weight) * positions[low] + weight * positions[high]
        return np.where(weight > 0, between, positions[low]) / scale  # NaN after an exact frame is not used

    def units(self, index: int, name: str) -> np.ndarray:
        raise KeyError("reference clips have no recorded units")
