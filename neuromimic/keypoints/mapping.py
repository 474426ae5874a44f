"""Where each keypoint sits on a body model: `KeypointMapping`.

A mapping names, for each keypoint, the model body it is attached to and its starting
offset in that body's frame; the fitter refines the offsets. It comes from a body's
``keypoint_sites`` or from a YAML file (`load_mapping`), whose entries are a site, a body,
or a body with an offset (`make_mapping`); `usable_mapping` leaves out the keypoints a
recording never sees.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import mujoco
import numpy as np
import yaml

from neuromimic.keypoints.keypoints import Keypoints, KeypointsError, cloud_size

log = logging.getLogger(__name__)


@dataclass
class KeypointMapping:
    """Which body each keypoint is attached to, and its starting offset.

    Attributes:
        names: keypoint names (K).
        bodies: body names (K).
        body_ids: body ids [K] in the model.
        offsets: starting offsets [K, 3] in m, body frame of the unscaled model.
    """

    names: tuple[str, ...]
    bodies: tuple[str, ...]
    body_ids: np.ndarray
    offsets: np.ndarray


def _available(model: mujoco.MjModel) -> str:
    bodies = [model.body(i).name for i in range(1, model.nbody)]
    sites = [model.site(i).name for i in range(model.nsite)]
    return f"bodies: {', '.join(bodies)}; sites: {', '.join(sites)}"


def make_mapping(model: mujoco.MjModel, entries: dict[str, object]) -> KeypointMapping:
    """Build a `KeypointMapping` from ``{keypoint: entry}``.

    An entry is a site name (the keypoint starts at that site: its body and its ``pos``),
    a body name (offset 0), or a dict ``{"body": name, "offset": [x, y, z]}`` (m) or
    ``{"site": name}``.

    Raises:
        KeypointsError: an entry names no body or site of the model; the message lists
            the model's bodies and sites.
    """
    names, bodies, ids, offsets = [], [], [], []
    for keypoint, entry in entries.items():
        if isinstance(entry, str):
            entry = (
                {"site": entry} if mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, entry) >= 0 else {"body": entry}
            )
        if not isinstance(entry, dict) or not ({"site", "body"} & set(entry)):
            raise KeypointsError(
                f"keypoint mapping entry {keypoint!r}: {entry!r} is neither a site name, a body "
                "name nor {body: NAME, offset: [x, y, z]}"
            )
        if "site" in entry:
            sid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, str(entry["site"]))
            if sid < 0:
                raise KeypointsError(
                    f"keypoint mapping: keypoint {keypoint!r} names site {entry['site']!r}, which "
                    f"the model does not have. Available {_available(model)}"
                )
            bid, offset = int(model.site_bodyid[sid]), np.array(model.site_pos[sid])
        else:
            bid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, str(entry["body"]))
            if bid < 1:
                raise KeypointsError(
                    f"keypoint mapping: keypoint {keypoint!r} names body {entry['body']!r}, which "
                    f"the model does not have. Available {_available(model)}"
                )
            offset = np.zeros(3)
        if "offset" in entry:
            offset = np.asarray(entry["offset"], dtype=np.float64).reshape(3)
        names.append(str(keypoint))
        bodies.append(model.body(bid).name)
        ids.append(bid)
        offsets.append(offset)
    if not names:
        raise KeypointsError("the keypoint mapping is empty")
    return KeypointMapping(tuple(names), tuple(bodies), np.array(ids), np.array(offsets, dtype=np.float64))


def load_mapping(
    model: mujoco.MjModel, keypoint_sites: dict[str, str], path: str | Path | None = None
) -> KeypointMapping:
    """The mapping of a YAML file (``{keypoint: site | body | {body:, offset:}}``), or the
    body's ``keypoint_sites`` when ``path`` is None."""
    if path is None:
        if not keypoint_sites:
            raise KeypointsError("this body has no keypoint_sites; pass a mapping file (--mapping map.yaml)")
        return make_mapping(model, dict(keypoint_sites))
    entries = yaml.safe_load(Path(path).read_text())
    if not isinstance(entries, dict):
        raise KeypointsError(f"mapping file {str(path)!r} must hold a YAML mapping {{keypoint: site or body}}")
    return make_mapping(model, entries)


def body_keypoint_size(model: mujoco.MjModel, mapping: KeypointMapping, qpos: np.ndarray, scale: float = 1.0) -> float:
    """Size of a body's mapped keypoints in a pose, measured like `Keypoints.size`.

    Args:
        model: the body's compiled model.
        mapping: its keypoints (bodies and offsets, m, unscaled body frame).
        qpos: the pose [nq] (the body's rest pose).
        scale: body scale factor the size is multiplied by.

    Returns:
        The largest distance between two mapped keypoints, in m.
    """
    data = mujoco.MjData(model)
    data.qpos[:] = qpos
    mujoco.mj_kinematics(model, data)
    rot = data.xmat[mapping.body_ids].reshape(-1, 3, 3)
    points = data.xpos[mapping.body_ids] + np.einsum("kij,kj->ki", rot, mapping.offsets)
    return scale * cloud_size(points[None], np.ones((1, len(points)), dtype=bool))


def usable_mapping(
    keypoints: Keypoints,
    mapping: KeypointMapping,
    frames: np.ndarray,
    drop_missing_keypoints: bool,
    offsets: np.ndarray | None,
) -> tuple[KeypointMapping, np.ndarray | None]:
    """The mapping (and ``offsets`` [K, 3]) without keypoints that have no valid frame.

    Args:
        keypoints: the data; its names must include ``mapping.names``.
        mapping: the keypoints to fit.
        frames: indices of the frames to fit.
        drop_missing_keypoints: drop the keypoints without a valid frame among ``frames``
            (with a warning) instead of refusing the data.
        offsets: offsets [K, 3] in m given with the mapping, or None.

    Raises:
        KeypointsError: a mapped keypoint is not in the data, or has no valid frame and
            ``drop_missing_keypoints`` is False, or no mapped keypoint has a valid frame.
    """
    idx = keypoints.index(mapping.names)
    present = keypoints.valid[np.ix_(frames, idx)].any(axis=0)
    if present.all():
        return mapping, offsets
    missing = [n for n, ok in zip(mapping.names, present, strict=True) if not ok]
    where = f"keypoint file {keypoints.source!r}"
    if not present.any():
        raise KeypointsError(
            f"{where}: none of the {len(missing)} mapped keypoints has a valid frame among "
            f"the {len(frames)} fitted frames (NaN, marked missing or below the confidence "
            "threshold everywhere); check the file's missing-value markers, its z columns "
            "and confidence_threshold"
        )
    if not drop_missing_keypoints:
        raise KeypointsError(
            f"{where}: keypoint(s) {missing} have no valid frame among the {len(frames)} "
            "fitted frames (NaN, marked missing or below the confidence threshold "
            "everywhere), so they cannot be fitted. Fix the file, remove them from the "
            "mapping (--mapping), or pass drop_missing_keypoints=True "
            "(--drop_missing_keypoints true) to fit without them"
        )
    log.warning("%s: keypoint(s) %s have no valid frame; fitting without them", where, missing)
    keep = np.flatnonzero(present)
    mapping = replace(
        mapping,
        names=tuple(mapping.names[k] for k in keep),
        bodies=tuple(mapping.bodies[k] for k in keep),
        body_ids=mapping.body_ids[keep],
        offsets=mapping.offsets[keep],
    )
    return mapping, None if offsets is None else np.asarray(offsets)[keep]
