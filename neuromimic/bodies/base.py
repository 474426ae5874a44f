"""The `Body` description shared by every body model, and the body registry."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import mujoco
import numpy as np

from neuromimic.errors import InputError

log = logging.getLogger(__name__)


class UnknownBodyError(InputError, KeyError):
    """Raised when a body key is not in the registry; the message lists the known keys."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly.
        return str(self.args[0])


@dataclass(frozen=True)
class Body:
    """A body model: where its MJCF comes from and what the tasks need to know about it.

    A body is built either from an MJCF file (``mjcf_path``) or by code (``build_spec``, a
    zero-argument function returning a `mujoco.MjSpec`, for models loaded from another
    wheel and edited at run time); exactly one of the two is given.

    Args:
        key: registry key, snake_case (for example ``"mouse_forelimb"``); clips store it.
        mjcf_path: path of the MJCF file, inside the installed package or another wheel.
        end_effector_sites: site names tracked by the tasks (for example the wrist), in the
            order in which their positions appear in clips and observations.
        muscle_groups: named groups of actuator names (for analysis and perturbation).
        default_qpos: joint angles of the rest pose [nq] (m for free-joint positions,
            unit quaternion wxyz for free-joint rotations, radians for hinges); ``None``
            means the model's first keyframe if it has one, else its ``qpos0``
            (`rest_qpos`).
        build_spec: zero-argument function that builds the body's `mujoco.MjSpec` (a new,
            editable spec per call); used instead of ``mjcf_path``.
        keypoint_sites: keypoint name -> site name, for the keypoint sets this body can be
            fitted to (for example the 23 rat23 keypoints of the rodent); empty if none.
        keypoint_scale: default body scale factor when fitting keypoints
            (``neuromimic keypoints fit --scale``), for a body whose model is not the size
            of the animals it is fitted to (the dm-control rat: 0.9, as in stac-mjx).
        trunk_keypoints: the keypoints of ``keypoint_sites`` on the axial skeleton (head,
            spine, hips), which the keypoint fitter places the root and the trunk joints by
            before it fits the limbs (`FitOptions.trunk_keypoints`); empty: every keypoint.
        source: the installed distribution the model comes from (``"neuromimic"``,
            ``"dm-control"``, ``"myo-sim"``); ``neuromimic bodies list`` shows its version.
        side_suffixes: name suffixes of the right and left copies of mirrored parts (for
            example ``("_r", "_l")``); ``neuromimic bodies check`` compares such pairs.
            ``None`` for a one-sided body.
        max_qvel: joint speed above which the backends flag a body as unstable (rad/s, or
            the model's length unit per s for slide and free joints).
        counts: the documented size, ``{"dof": nv, "actuators": nu, "muscles": ...}``;
            ``neuromimic bodies check`` holds the compiled model to it.
        known_issues: findings of ``neuromimic bodies check`` in the upstream model that the
            loader does not correct, ``"<check>:<element>" -> why``; the check reports them
            as accepted (with the reason) instead of failing.
        length_unit_m: metres per length unit of the model (1 for SI models; 0.01 for the
            fly, modelled in cm); tracking errors are logged in mm through it.
    """

    key: str
    mjcf_path: Path | None = None
    end_effector_sites: tuple[str, ...] = ()
    muscle_groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    default_qpos: tuple[float, ...] | None = None
    build_spec: Callable[[], mujoco.MjSpec] | None = None
    keypoint_sites: dict[str, str] = field(default_factory=dict)
    keypoint_scale: float = 1.0
    trunk_keypoints: tuple[str, ...] = ()
    source: str = "neuromimic"
    side_suffixes: tuple[str, str] | None = None
    max_qvel: float = 1e3
    counts: dict[str, int] = field(default_factory=dict)
    known_issues: dict[str, str] = field(default_factory=dict)
    length_unit_m: float = 1.0

    def __post_init__(self) -> None:
        if (self.mjcf_path is None) == (self.build_spec is None):
            raise ValueError(f"body {self.key!r}: give exactly one of mjcf_path and build_spec")
        unknown = [name for name in self.trunk_keypoints if name not in self.keypoint_sites]
        if unknown:
            raise ValueError(f"body {self.key!r}: trunk_keypoints {unknown} are not keys of keypoint_sites")

    def rest_qpos(self, model: mujoco.MjModel) -> np.ndarray:
        """The rest pose [nq] of the compiled ``model`` (see ``default_qpos``)."""
        if self.default_qpos is not None:
            return np.asarray(self.default_qpos, dtype=np.float64)
        return np.array(model.key_qpos[0] if model.nkey else model.qpos0)

    def load_spec(self) -> mujoco.MjSpec:
        """The body as an editable `mujoco.MjSpec` (a new one per call)."""
        if self.build_spec is not None:
            return self.build_spec()
        return mujoco.MjSpec.from_file(str(self.mjcf_path))

    def load_model(self) -> mujoco.MjModel:
        """Compile the body into a `mujoco.MjModel` (without the sensors the backends add)."""
        if self.build_spec is not None:
            return self.build_spec().compile()
        return mujoco.MjModel.from_xml_path(str(self.mjcf_path))

    @property
    def model_hash(self) -> str:
        """First 16 hex digits of a SHA-256 of the model; clips record it.

        For a file body, the hash of the MJCF text. For a body built by code, the hash of
        the XML MuJoCo writes for the built (and compiled) spec, ``spec.to_xml()``: it
        changes when the source model, the edits or the MuJoCo version's XML writer change.
        """
        if self.build_spec is None:
            return hashlib.sha256(self.mjcf_path.read_bytes()).hexdigest()[:16]
        spec = self.build_spec()
        spec.compile()  # to_xml needs a compiled spec
        return hashlib.sha256(spec.to_xml().encode()).hexdigest()[:16]


_REGISTRY: dict[str, Callable[[], Body]] = {}


def register_body(key: str) -> Callable[[Callable[[], Body]], Callable[[], Body]]:
    """Decorator that registers a zero-argument body factory under ``key``."""

    def decorator(factory: Callable[[], Body]) -> Callable[[], Body]:
        if key in _REGISTRY:
            raise ValueError(f"body key {key!r} is registered twice")
        _REGISTRY[key] = factory
        return factory

    return decorator


def known_bodies() -> list[str]:
    """Sorted keys of every registered body."""
    return sorted(_REGISTRY)


def get_body(key: str) -> Body:
    """Return the body registered under ``key``.

    Raises:
        UnknownBodyError: if no body has that key; the message lists the known keys.
    """
    try:
        factory = _REGISTRY[key]
    except KeyError:
        raise UnknownBodyError(
            f"unknown body {key!r}; known bodies: {', '.join(known_bodies())}. "
            "Check the `body` field of your config or clip."
        ) from None
    return factory()
