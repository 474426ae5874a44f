"""What `neuromimic.analysis.viewer` shows, read and checked: episodes of a recording.

A source is a list of episodes (the envs of a recording, or the clips of a clip set), each
read when it is shown (`Source.episode`): the body's joint positions over time and what is
drawn with them (the reference as a ghost, muscle activations, contact forces, tracked
points and their targets, a tracking error), plus the recorded units to plot
(`Source.units`). `RecordingSource` reads an HDF5 file of ``neuromimic analyze record``
lazily, one env at a time, after checking every array the viewer uses against the body
(a malformed file fails at once, naming the file, the field and the fix);
`neuromimic.analysis.viewer.clips.ClipSource` shows reference clips the same way.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import h5py
import mujoco
import numpy as np

from neuromimic.analysis.record import FORMAT, VERSION, Recording
from neuromimic.bodies import get_body, known_bodies
from neuromimic.errors import InputError

log = logging.getLogger(__name__)

#: Prefixes of the recorded arrays [envs, steps, units] that the viewer can plot as units.
UNIT_PREFIXES = ("core/", "layers/", "afferent/")
#: The unit arrays shown first, when recorded.
PREFERRED_UNITS = ("core/activity/rate", "core/activity/h", "core/state/h")
_RECORD_HINT = "record it with `neuromimic analyze record --ckpt CKPT --output {path}`"


class ViewerInputError(InputError):
    """A file given to the viewer is missing or malformed; the message names the file, the
    field and the fix."""


@dataclass
class Episode:
    """One env of a recording or one clip, at the frames that are shown.

    Attributes:
        name: the clip's name.
        times: [T] time of each frame in s.
        qpos: [T, nq] joint positions of the body drawn solid.
        ghost_qpos: [T, nq] joint positions of the reference, drawn as a ghost, or None.
        activation: [T, na] muscle activations (``data.act``, 0..1), or None.
        contact_force: [T, nbody, 3] net contact force on each body (N, world frame), or None.
        markers: [T, K, 3] points on the body (tracked sites, fitted keypoints), world frame.
        targets: [T, K, 3] where ``markers`` should be (reference sites, measured
            keypoints; NaN where unknown), or None.
        marker_names: the K names.
        error: [T] the tracking error plotted against time, or None; ``error_label`` says
            what it is.
        notes: what the page should say about this episode (what is missing and why).
        steps: [T] the recorded steps (indices into the source's time axis) shown.
    """

    name: str
    times: np.ndarray
    qpos: np.ndarray
    ghost_qpos: np.ndarray | None = None
    activation: np.ndarray | None = None
    contact_force: np.ndarray | None = None
    markers: np.ndarray | None = None
    targets: np.ndarray | None = None
    marker_names: tuple[str, ...] = ()
    error: np.ndarray | None = None
    error_label: str = ""
    notes: list[str] = field(default_factory=list)
    steps: np.ndarray | None = None


class Source(Protocol):
    """Episodes to show, of one body."""

    label: str
    kind: str
    body: str
    model: mujoco.MjModel
    names: list[str]
    unit_arrays: dict[str, int]
    layers: list[str]

    def episode(self, index: int) -> Episode: ...

    def units(self, index: int, name: str) -> np.ndarray: ...


def activation_names(model: mujoco.MjModel) -> list[str]:
    """The name of the actuator owning each activation state (``data.act``), in order."""
    names = [f"act {i}" for i in range(model.na)]
    for actuator in range(model.nu):
        if model.actuator_actadr[actuator] >= 0:
            names[model.actuator_actadr[actuator]] = model.actuator(actuator).name
    return names


def _finite_rows(qpos: np.ndarray) -> tuple[np.ndarray, int]:
    """``qpos`` [T, nq] with each non-finite row replaced by the last finite one (the first
    finite row before that), and how many were replaced."""
    bad = ~np.isfinite(qpos).all(axis=1)
    if not bad.any():
        return qpos, 0
    good = np.flatnonzero(~bad)
    if not len(good):
        return np.zeros_like(qpos), int(bad.sum())
    source = np.maximum.accumulate(np.where(bad, 0, np.arange(len(qpos))))
    source[: good[0]] = good[0]
    return qpos[source], int(bad.sum())


class _Arrays(Protocol):
    def shape(self, name: str) -> tuple[int, ...] | None: ...

    def read(self, name: str, env: int | None = None) -> np.ndarray: ...

    def names(self) -> list[str]: ...


class _H5Arrays:
    """Datasets of a recording file, read one env at a time (the file is opened per read,
    so that the viewer's threads never share an HDF5 handle)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._shapes: dict[str, tuple[int, ...]] = {}
        with h5py.File(path, "r") as h5:
            h5.visititems(lambda name, node: self._keep(name, node))

    def _keep(self, name: str, node) -> None:
        if isinstance(node, h5py.Dataset):
            self._shapes[name] = tuple(node.shape)

    def shape(self, name: str) -> tuple[int, ...] | None:
        return self._shapes.get(name)

    def names(self) -> list[str]:
        return list(self._shapes)

    def read(self, name: str, env: int | None = None) -> np.ndarray:
        with self._lock, h5py.File(self.path, "r") as h5:
            dataset = h5[name]
            return np.asarray(dataset[()] if env is None else dataset[env])


class _MemoryArrays:
    def __init__(self, recording: Recording) -> None:
        self.data = recording.data

    def shape(self, name: str) -> tuple[int, ...] | None:
        return tuple(self.data[name].shape) if name in self.data else None

    def names(self) -> list[str]:
        return list(self.data)

    def read(self, name: str, env: int | None = None) -> np.ndarray:
        return np.asarray(self.data[name] if env is None else self.data[name][env])


class RecordingSource:
    """The envs of a `Recording` (or of its HDF5 file), checked against the body.

    Args:
        arrays: the recorded arrays.
        attrs: the recording's attributes (`Recording.attrs`).
        label: how the page and the errors name the recording (``recording 'rollout.h5'``).
        path: the recording's file, if it has one (named in the fix of an error).

    Raises:
        ViewerInputError: an array the viewer draws is missing or has the wrong shape for
            the body, the body is unknown, or an env has no valid step.
    """

    kind = "recording"

    def __init__(self, arrays: _Arrays, attrs: dict, label: str, path: str | Path | None = None) -> None:
        self.arrays, self.attrs, self.label = arrays, attrs, label
        where, hint = label, _RECORD_HINT.format(path=path or "rollout.h5")

        def fail(problem: str, fix: str | None = None) -> ViewerInputError:
            return ViewerInputError(f"{where}: {problem}; {fix or hint}")

        for key in ("body", "control_dt", "clip_names"):
            if key not in attrs:
                raise fail(f"its attributes lack `{key}` (they hold {sorted(attrs)})")
        self.body = str(attrs["body"])
        if self.body not in known_bodies():
            raise fail(
                f"attribute `body` is {self.body!r}, which is not a body of this neuromimic "
                f"(known: {', '.join(known_bodies())})",
                "view it with the neuromimic (and body plugins) that recorded it",
            )
        self.model = get_body(self.body).load_model()
        self.dt = float(attrs["control_dt"])
        if not np.isfinite(self.dt) or self.dt <= 0:
            raise fail(f"attribute `control_dt` is {attrs['control_dt']!r}, not a time step > 0 s")
        valid_shape = arrays.shape("valid")
        if valid_shape is None or len(valid_shape) != 2:
            raise fail(
                f"dataset `valid` is {'missing' if valid_shape is None else f'of shape {valid_shape}'}"
                ", not [envs, steps]"
            )
        envs, steps = valid_shape
        model = self.model
        expected = {
            "joint/qpos": (model.nq,),
            "reference/qpos": (model.nq,),
            "muscle/activation": (model.na,),
            "body/contact_force": (model.nbody, 3),
            "metrics/site_pos_error_mm": (),
            "metrics/joint_pos_error_deg": (),
        }
        for name, trailing in expected.items():
            shape = arrays.shape(name)
            if shape is None:
                if name == "joint/qpos":
                    raise fail("dataset `joint/qpos` (the body's joint positions) is missing")
                continue
            if shape != (envs, steps, *trailing):
                raise fail(
                    f"dataset `{name}` has shape {list(shape)}, but body {self.body!r} "
                    f"(nq={model.nq}, na={model.na}, nbody={model.nbody}) and `valid` "
                    f"[{envs}, {steps}] make it {[envs, steps, *trailing]}",
                    f"the body's model changed since: {hint}",
                )
        sites, targets = arrays.shape("site/pos"), arrays.shape("reference/site_pos_w")
        self._sites = (
            sites is not None and targets == sites and len(sites) == 4 and sites[:2] == (envs, steps) and sites[3] == 3
        )
        self.layers = [
            layer
            for layer, present in (
                ("ghost", arrays.shape("reference/qpos") is not None),
                ("contact forces", arrays.shape("body/contact_force") is not None),
                ("tracked points", self._sites),
            )
            if present
        ]
        names = attrs["clip_names"]
        if not isinstance(names, list) or len(names) != envs:
            raise fail(f"attribute `clip_names` should name the {envs} envs; it is {names!r}")
        valid = arrays.read("valid").astype(bool)
        empty = np.flatnonzero(~valid.any(axis=1))
        if len(empty):
            raise fail(f"dataset `valid` marks no step of env {int(empty[0])} ({names[empty[0]]}) as valid")
        self.valid = valid
        self.names = [str(name) for name in names]
        self.site_names = tuple(str(name) for name in attrs.get("site_names", ()))
        self.unit_arrays = {
            name: shape[2]
            for name in arrays.names()
            if name.startswith(UNIT_PREFIXES)
            and (shape := arrays.shape(name)) is not None
            and len(shape) == 3
            and shape[:2] == (envs, steps)
        }
        self.unit_arrays = dict(
            sorted(
                self.unit_arrays.items(),
                key=lambda item: (
                    PREFERRED_UNITS.index(item[0]) if item[0] in PREFERRED_UNITS else len(PREFERRED_UNITS),
                    item[0],
                ),
            )
        )

    @classmethod
    def from_h5(cls, path: str | Path) -> RecordingSource:
        """Open a recording written by `Recording.save_h5` (``neuromimic analyze record``).

        Raises:
            ViewerInputError: the file is missing, not HDF5, not a recording, or malformed.
        """
        path = Path(path)
        where = f"recording {str(path)!r}"
        if not path.is_file():
            raise ViewerInputError(f"{where} does not exist; {_RECORD_HINT.format(path=path)}")
        if not h5py.is_hdf5(path):
            hint = " (the viewer reads the HDF5 output, .h5, not NWB)" if path.suffix == ".nwb" else ""
            raise ViewerInputError(f"{where} is not an HDF5 file{hint}; {_RECORD_HINT.format(path=path)}")
        with h5py.File(path, "r") as h5:
            found = h5.attrs.get("format")
            found = found.decode() if isinstance(found, bytes) else found
            if found != FORMAT:
                if "schema_version" in h5.attrs:
                    raise ViewerInputError(
                        f"{where} is a reference clip, not a recording; view clips with `neuromimic view --clips {path}`"
                    )
                raise ViewerInputError(
                    f"{where} has root attribute `format` = {found!r}, not {FORMAT!r}: it is not a "
                    f"recording of neuromimic; {_RECORD_HINT.format(path=path)}"
                )
            version = int(h5.attrs.get("version", 0))
            if version > VERSION:
                raise ViewerInputError(
                    f"{where} has `version` {version}; this neuromimic reads recordings of version "
                    f"{VERSION}: upgrade neuromimic"
                )
            try:
                attrs = json.loads(h5.attrs["attrs"])
            except (KeyError, TypeError, ValueError) as error:
                raise ViewerInputError(
                    f"{where}: root attribute `attrs` is missing or not JSON ({error}); {_RECORD_HINT.format(path=path)}"
                ) from None
        if not isinstance(attrs, dict):
            raise ViewerInputError(
                f"{where}: root attribute `attrs` is not a JSON object; {_RECORD_HINT.format(path=path)}"
            )
        return cls(_H5Arrays(path), attrs, where, path)

    @classmethod
    def from_recording(cls, recording: Recording, label: str = "recording") -> RecordingSource:
        """The envs of a recording in memory (`neuromimic.analysis.record`)."""
        return cls(_MemoryArrays(recording), recording.attrs, label)

    def _read(self, name: str, env: int, steps: np.ndarray) -> np.ndarray | None:
        if self.arrays.shape(name) is None:
            return None
        return self.arrays.read(name, env)[steps].astype(np.float64)

    def episode(self, index: int) -> Episode:
        """Env ``index`` at its valid steps."""
        steps = np.flatnonzero(self.valid[index])
        notes = []
        qpos, replaced = _finite_rows(self._read("joint/qpos", index, steps))
        if replaced:
            notes.append(
                f"{replaced} steps have non-finite joint positions (the physics went unstable): "
                "the body is held at its last finite pose there"
            )
        ghost = self._read("reference/qpos", index, steps)
        if ghost is not None:
            ghost, _ = _finite_rows(ghost)
        error, label = self._read("metrics/site_pos_error_mm", index, steps), "tracked-site error (mm)"
        if error is None:
            error, label = self._read("metrics/joint_pos_error_deg", index, steps), "joint angle error (deg)"
        markers = targets = None
        if self._sites:
            markers = self._read("site/pos", index, steps)
            targets = self._read("reference/site_pos_w", index, steps)
        return Episode(
            name=self.names[index],
            times=(steps + 1) * self.dt,
            qpos=qpos,
            ghost_qpos=ghost,
            activation=self._read("muscle/activation", index, steps),
            contact_force=self._read("body/contact_force", index, steps),
            markers=markers,
            targets=targets,
            marker_names=self.site_names,
            error=error,
            error_label=label if error is not None else "",
            notes=notes,
            steps=steps,
        )

    def units(self, index: int, name: str) -> np.ndarray:
        """[T, N] recorded units ``name`` of env ``index`` at its valid steps."""
        if name not in self.unit_arrays:
            raise KeyError(f"no unit array {name!r}; recorded: {sorted(self.unit_arrays)}")
        return self.arrays.read(name, index)[np.flatnonzero(self.valid[index])].astype(np.float64)
