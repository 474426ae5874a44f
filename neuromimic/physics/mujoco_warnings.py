"""MuJoCo's warnings, counted and sent to Python's logging instead of stderr.

MuJoCo warns when a body's simulation fails (``Nan, Inf or huge value in QACC``: a bad
acceleration, after which it resets that body's state, which the backends flag as
`unstable`), when a buffer fills up, or when an inertia matrix is near singular. By
default it prints them on stderr, where nothing counts them. `install` routes them, from
every thread of the native backend's rollout pool, to the ``neuromimic.physics.mujoco``
logger (the first of each kind as a warning, later ones at debug level) and counts them
by kind; `counts` reads the counts, which training logs once per PPO iteration. Other
messages (from editing and compiling models) are logged once per text and not counted.

MJX raises no MuJoCo warnings (a diverging body turns non-finite, which `unstable` flags).
"""

from __future__ import annotations

import logging
import threading

import mujoco

log = logging.getLogger("neuromimic.physics.mujoco")

#: Words of MuJoCo's simulation warnings -> the name of the kind (``mjtWarning`` without
#: its ``mjWARN_`` prefix, lower case); the first match wins.
_KINDS = (
    ("in QACC", "badqacc"),
    ("in QVEL", "badqvel"),
    ("in QPOS", "badqpos"),
    ("in CTRL", "badctrl"),
    ("Inertia matrix", "inertia"),
    ("contact buffer", "contactfull"),
    ("constraint", "cnstrfull"),
)

_lock = threading.Lock()
_counts: dict[str, int] = {}
_seen: set[str] = set()
_installed = False


def kind_of(message: str) -> str | None:
    """The kind of a MuJoCo simulation warning (``"badqacc"``, ``"contactfull"``...), or
    None for other messages (those of model editing and compiling)."""
    return next((kind for words, kind in _KINDS if words in message), None)


def _handle(message: str) -> None:
    kind = kind_of(message)
    with _lock:
        key = kind or message
        first = key not in _seen
        _seen.add(key)
        if kind is not None:
            _counts[kind] = _counts.get(kind, 0) + 1
    if kind is None:  # as MuJoCo would have printed it, once per text
        if first:
            log.warning("MuJoCo: %s", message)
        return
    log.log(
        logging.WARNING if first else logging.DEBUG,
        "MuJoCo: %s%s",
        message,
        f" (counted as train/mujoco_warnings/{kind}; later ones are logged at debug level)" if first else "",
    )


def install() -> None:
    """Route MuJoCo's warnings of this process to `counts` and logging (idempotent).

    The backends call it when they are built.
    """
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
    mujoco.set_mju_user_warning(_handle)


def counts() -> dict[str, int]:
    """MuJoCo's warnings in this process since `install`, by kind; only kinds that occurred."""
    with _lock:
        return dict(_counts)
