"""Dumps of bodies whose physics went unstable, and their replay in plain MuJoCo.

`neuromimic.training.callbacks.UnstableBodyDump` keeps the last control steps of every
training body; when one turns unstable (NaN or Inf, a runaway joint speed, or MuJoCo's
reset after a bad acceleration) it writes them with `save_dump`. Replay one with::

    python -m neuromimic.physics.replay lightning_logs/version_0/unstable_bodies/step120_envstep1930_body3.npz

which steps the saved model through the saved controls and prints, per control step, one
JSON line: whether the state stayed finite, the fastest joint, MuJoCo's warnings, and how
far the replay is from the state the run recorded.

A dump is two files with one stem:

- ``<stem>.mjb``: the compiled model as it was simulated (sensors and any perturbation of
  its parameters included), `mujoco.MjModel.from_binary_path` reads it;
- ``<stem>.npz``: for the last H control steps, oldest first, the state at the start of
  each step ``qpos`` [H, nq], ``qvel`` [H, nv], ``act`` [H, na], ``time`` [H] (s), the
  controls held during it ``ctrl`` [H, nu] and the external forces ``external_force``
  [H, nbody, 6] (N, N m); the state after the last step (``final_qpos``, ``final_qvel``,
  ``final_act``); ``substeps`` and the run's notes (``body``, ``env_index``,
  ``global_step``, ``backend``).

The solver's warm start is not saved, so the replay can differ from the run in the last
digits; a blow-up caused by the model, the controls or the forces shows again.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import mujoco
import numpy as np

from neuromimic.errors import InputError

#: Arrays every dump holds (see the module docstring).
DUMP_ARRAYS = ("qpos", "qvel", "act", "time", "ctrl", "external_force", "final_qpos", "final_qvel", "final_act")


def save_dump(
    stem: Path, model: mujoco.MjModel, arrays: dict[str, np.ndarray], substeps: int, notes: dict[str, str | int]
) -> Path:
    """Write ``<stem>.mjb`` and ``<stem>.npz`` (the module docstring lists ``arrays``).

    Returns:
        The ``.npz`` path (the argument of the replay command).
    """
    missing = sorted(set(DUMP_ARRAYS) - set(arrays))
    if missing:
        raise ValueError(f"a dump needs the arrays {missing}")
    stem.parent.mkdir(parents=True, exist_ok=True)
    mujoco.mj_saveModel(model, str(stem.with_suffix(".mjb")), None)
    path = stem.with_suffix(".npz")
    np.savez(path, substeps=np.array(substeps), notes=np.array(json.dumps(notes)), **arrays)
    return path


def replay(path: str | Path) -> list[dict]:
    """Step a dump's model through its saved controls from its first saved state.

    Args:
        path: the dump's ``.npz`` (its ``.mjb`` beside it).

    Returns:
        One dict per control step: ``step``, ``finite`` (every qpos, qvel and act),
        ``max_abs_qvel``, ``mujoco_warnings`` (kinds raised during the step) and
        ``max_abs_qpos_difference`` from the state the run recorded after that step.

    Raises:
        InputError: the files are missing or not a dump.
    """
    path = Path(path)
    model_path = path.with_suffix(".mjb")
    if not path.is_file() or not model_path.is_file():
        raise InputError(
            f"{path}: a dump is a .npz with its .mjb beside it; {'the .npz' if not path.is_file() else model_path} is missing"
        )
    try:
        with np.load(path) as dump:
            arrays = {name: dump[name] for name in DUMP_ARRAYS}
            substeps = int(dump["substeps"])
    except (OSError, KeyError, ValueError) as error:
        raise InputError(f"{path} is not a dump written by UnstableBodyDump ({error})") from None
    model = mujoco.MjModel.from_binary_path(str(model_path))
    data = mujoco.MjData(model)
    data.qpos[:], data.qvel[:], data.act[:] = arrays["qpos"][0], arrays["qvel"][0], arrays["act"][0]
    data.time = float(arrays["time"][0])
    recorded_next = [*arrays["qpos"][1:], arrays["final_qpos"]]
    steps = []
    for i, (ctrl, force) in enumerate(zip(arrays["ctrl"], arrays["external_force"], strict=True)):
        before = [w.number for w in data.warning]
        data.ctrl[:] = ctrl
        data.xfrc_applied[:] = force
        for _ in range(substeps):
            mujoco.mj_step(model, data)
        warned = [
            name.removeprefix("mjWARN_").lower()
            for name, kind in mujoco.mjtWarning.__members__.items()
            if name != "mjNWARNING" and data.warning[int(kind)].number > before[int(kind)]
        ]
        finite = bool(np.isfinite(data.qpos).all() and np.isfinite(data.qvel).all() and np.isfinite(data.act).all())
        with np.errstate(invalid="ignore", over="ignore"):
            difference = float(np.abs(data.qpos - recorded_next[i]).max(initial=0.0))
        steps.append(
            {
                "step": i,
                "finite": finite,
                "max_abs_qvel": float(np.abs(data.qvel).max(initial=0.0)) if finite else None,
                "mujoco_warnings": warned,
                "max_abs_qpos_difference": difference if np.isfinite(difference) else None,
            }
        )
    return steps


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m neuromimic.physics.replay", description=__doc__.split("\n\n")[0])
    parser.add_argument("dump", help="the .npz of a dump (its .mjb beside it)")
    args = parser.parse_args(argv)
    try:
        steps = replay(args.dump)
    except InputError as error:
        sys.stderr.write(f"{error}\n")
        raise SystemExit(2) from None
    for step in steps:
        sys.stdout.write(json.dumps(step) + "\n")


if __name__ == "__main__":
    main()
