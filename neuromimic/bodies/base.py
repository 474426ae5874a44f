"""The `Body` description shared by every body model, and the body registry."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import mujoco

log = logging.getLogger(__name__)


class UnknownBodyError(KeyError):
    """Raised when a body key is not in the registry; the message lists the known keys."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly.
        return str(self.args[0])


@dataclass(frozen=True)
class Body:
    """A body model: where its MJCF lives and what the tasks need to know about it.

    Args:
        key: registry key, snake_case (for example ``"mouse_forelimb"``); clips store it.
        mjcf_path: path of the MJCF file, inside the installed package or another wheel.
        end_effector_sites: site names tracked by the tasks (for example the wrist), in the
            order in which their positions appear in clips and observations.
        muscle_groups: named groups of actuator names (for analysis and perturbation).
        default_qpos: joint angles of the rest pose [nq] in radians; ``None`` means ``qpos0``.
    """

    key: str
    mjcf_path: Path
    end_effector_sites: tuple[str, ...]
    muscle_groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    default_qpos: tuple[float, ...] | None = None

    def load_spec(self) -> mujoco.MjSpec:
        """Parse the MJCF into an editable `mujoco.MjSpec`."""
        return mujoco.MjSpec.from_file(str(self.mjcf_path))

    def load_model(self) -> mujoco.MjModel:
        """Compile the body's MJCF into a `mujoco.MjModel`."""
        return mujoco.MjModel.from_xml_path(str(self.mjcf_path))

    @property
    def model_hash(self) -> str:
        """First 16 hex digits of the SHA-256 of the MJCF text; clips record it."""
        return hashlib.sha256(self.mjcf_path.read_bytes()).hexdigest()[:16]


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
