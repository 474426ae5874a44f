"""``neuromimic view``: a web viewer of recorded rollouts and reference clips (viser).

`view` serves a page (on 127.0.0.1 by default; ``--host``/``--port``) showing a body in 3-D
with, over time: the reference as a translucent ghost, the muscles' tendons coloured by their
activation (blue at 0, red at 1, as in the videos), the net contact force on each body as
an arrow, the tracked points and their targets joined by their error, a time slider with
play/pause and speed, a picker for the env (clip), and plots beside the scene that follow
the slider: the tracking error, the activation of the chosen muscles and the activity of
the chosen recorded units (rate RNN rates, GRU states, any layer's outputs). It shows:

- a recording of ``neuromimic analyze record`` (``neuromimic view rollout.h5``);
- a checkpoint or export (``--ckpt``): its held-out clips are recorded first, with a
  progress bar in the terminal and on the page;
- reference clips alone (``--clips DIR``), for example what ``neuromimic keypoints fit``
  wrote: the fitted body, its fitted keypoints (blue), the keypoints it was fitted to
  (magenta) and each keypoint's residual as a dark line.

The scene is made of MuJoCo's geoms as meshes (`neuromimic.analysis.viewer.scene`), one
node per body whose pose is set from the forward kinematics of the recorded ``qpos`` at
each shown frame; the data are read one env at a time (`neuromimic.analysis.viewer.sources`
and `.clips`); the page is built and updated by `neuromimic.analysis.viewer.app.Viewer`.
The viewer is its own process: it never touches a training run. `start_viewer` returns the
running `Viewer` without blocking (tests, notebooks).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from pathlib import Path
from typing import Literal

from neuromimic.analysis.viewer.app import Viewer
from neuromimic.analysis.viewer.clips import ClipSource
from neuromimic.analysis.viewer.plots import parse_units
from neuromimic.analysis.viewer.sources import RecordingSource, Source, ViewerInputError
from neuromimic.keypoints.rules import LengthUnit

__all__ = ["Viewer", "ViewerInputError", "parse_units", "start_viewer", "view"]

log = logging.getLogger(__name__)


def _announce(text: str) -> None:
    """Log ``text`` (the URL a person must open), or write it to stderr where logging is not
    set up to show it (a script or notebook calling `view`): stdout is the CLI's JSON."""
    if log.isEnabledFor(logging.INFO) and log.hasHandlers():
        log.info("%s", text)
    else:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()


def _record_checkpoint(viewer: Viewer, ckpt: str, controller, config, split: str, steps: int | None) -> None:
    """Record ``controller`` (of ``ckpt``) in the env ``config`` on the clips of ``split``,
    with progress on the page and in the terminal, then show the recording."""
    from tqdm import tqdm

    from neuromimic.analysis.record import record
    from neuromimic.envs import make_env

    try:
        viewer.show_progress(f"Building the env of `{ckpt}`...", 0.0)
        env = make_env(config, split=None if split == "all" else split, evaluation=True)
        total = int(env.clips.length.max()) - 1 if steps is None else steps
        bar = tqdm(total=total, desc=f"recording {env.clips.num_clips} {split} clips", unit="step", leave=False)
        step = env.step

        def counted(tensordict):
            out = step(tensordict)
            bar.update(1)
            viewer.show_progress(f"Recording {env.clips.num_clips} {split} clips of `{ckpt}`", bar.n / total)
            return out

        env.step = counted  # record() steps the env it is given: count its steps
        try:
            recording = record(controller, env, steps=steps)
        finally:
            bar.close()
        viewer.show_progress("", None)
        viewer.load(RecordingSource.from_recording(recording, label=f"{Path(ckpt).name} ({split} clips)"))
    except Exception as error:  # noqa: BLE001 (the page shows it; view() raises it)
        viewer.show_progress("", None)
        viewer.show_error(f"{ckpt}: {error}")
        viewer.failure = error
        viewer.ready.set()


def start_viewer(
    recording: str | None = None,
    ckpt: str | None = None,
    clips: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8080,
    split: Literal["val", "train", "all"] | None = None,
    steps: int | None = None,
    keypoints: str | None = None,
    keypoint_units: LengthUnit | None = None,
) -> Viewer:
    """Start serving the viewer and return it at once (see `view` for the arguments).

    A recording or clips are read and checked before the server starts; a checkpoint is
    loaded, then recorded in the background while the page shows the progress
    (`Viewer.ready` is set when it is shown, or when it failed: `Viewer.error`).

    Raises:
        ViewerInputError: not exactly one of ``recording``, ``ckpt`` and ``clips``, or the
            file is missing or malformed (the message names the file, the field and the fix).
    """
    given = {"recording": recording, "ckpt": ckpt, "clips": clips}
    if sum(value is not None for value in given.values()) != 1:
        raise ViewerInputError(
            "neuromimic view shows one thing: give a recording (neuromimic view rollout.h5), a checkpoint "
            f"(--ckpt last.ckpt) or clips (--clips DIR); got {', '.join(k for k, v in given.items() if v) or 'none'}"
        )
    if (keypoints is not None or keypoint_units is not None) and clips is None:
        raise ViewerInputError("--keypoints and --keypoint_units go with --clips (the clips fitted to them)")
    source: Source | None = None
    if recording is not None:
        source = RecordingSource.from_h5(recording)
    elif clips is not None:
        source = ClipSource(
            clips, split=None if split in (None, "all") else split, keypoints=keypoints, keypoint_units=keypoint_units
        )
    else:
        from neuromimic.analysis.record import load_controller_and_env

        if not Path(ckpt).exists():
            raise ViewerInputError(
                f"checkpoint {ckpt!r} does not exist; give a last.ckpt of neuromimic fit or an export"
            )
        loaded = load_controller_and_env(ckpt)  # a bad file fails here, before the server starts
    viewer = Viewer(host, port)
    remote = f"on a remote machine: ssh -L {viewer.port}:127.0.0.1:{viewer.port} HOST, then open http://localhost:{viewer.port}"
    _announce(f"neuromimic view: serving {viewer.url}" + (f" ({remote})" if host in ("127.0.0.1", "localhost") else ""))
    try:
        if source is not None:
            viewer.load(source)
        else:
            arguments = (viewer, ckpt, *loaded, split or "val", steps)
            threading.Thread(target=_record_checkpoint, args=arguments, daemon=True).start()
    except BaseException:
        viewer.stop()
        raise
    return viewer


def view(
    recording: str | None = None,
    ckpt: str | None = None,
    clips: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8080,
    split: Literal["val", "train", "all"] | None = None,
    steps: int | None = None,
    keypoints: str | None = None,
    keypoint_units: LengthUnit | None = None,
    block: bool = True,
) -> dict:
    """Serve a web page showing a recorded rollout, a checkpoint's rollouts or reference clips.

    The page shows the body with the reference as a ghost, muscles coloured by activation,
    contact forces as arrows, tracked points and their errors, a time slider with
    play/pause and speed, an env (clip) picker and synchronised plots of the tracking
    error, chosen muscles' activation and chosen units' activity. The URL is logged; stop
    with Ctrl-C.

    Args:
        recording: a recording written by neuromimic analyze record (rollout.h5).
        ckpt: a checkpoint of neuromimic fit or an export directory: its clips of the split
            are recorded first (progress in the terminal and on the page).
        clips: reference clips (a .h5 clip, a directory of them, or bundled:NAME) shown
            alone, with the keypoints they were fitted to where those can be read.
        host: address to serve on; 127.0.0.1 serves this machine only (forward the port
            with ssh -L to look from another), 0.0.0.0 every network interface.
        port: port to serve on (the next free one if it is taken).
        split: clips to play or show: val, train or all (default val for ckpt, all for clips).
        steps: control steps to record from a checkpoint (default the longest clip).
        keypoints: with clips, the keypoint file they were fitted to (default the path
            saved in the clips).
        keypoint_units: with clips, the length unit of that file where it states none
            (m, cm or mm), as given to keypoints fit.
        block: serve until Ctrl-C; False returns at once and leaves the server running in
            this process (a notebook; start_viewer returns a handle to stop it).

    Returns:
        ``{"url", "shown": what was shown, "envs": how many, "served_s": seconds served}``.
    """
    started = time.perf_counter()
    viewer = start_viewer(recording, ckpt, clips, host, port, split, steps, keypoints, keypoint_units)
    result = {"url": viewer.url, "shown": recording or ckpt or clips}
    if not block:
        return result | {"envs": len(viewer.source.names) if viewer.source else None, "served_s": 0.0}
    try:
        viewer.wait()
    finally:
        viewer.stop()
    if viewer.failure is not None:
        raise viewer.failure
    return result | {
        "envs": len(viewer.source.names) if viewer.source else 0,
        "served_s": round(time.perf_counter() - started, 1),
    }
