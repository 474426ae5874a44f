"""Headless rendering: a short MP4 of a recorded rollout whose frames are not blank."""

from __future__ import annotations

import imageio.v2 as imageio
import numpy as np
import pytest

from neuromimic.analysis.record import record
from neuromimic.analysis.render import RenderingUnavailable, gif_bytes, recording_frames, render_video
from neuromimic.envs import EnvConfig, controller_spec
from neuromimic.models import Controller


@pytest.fixture(scope="module")
def recording():
    return record(Controller(controller_spec(EnvConfig())), EnvConfig(), steps=12)


def _frames_or_skip(recording, **kwargs):
    try:
        return recording_frames(recording, 1, **kwargs)
    except RenderingUnavailable as error:  # .ci/run installs EGL, so CI does render
        pytest.skip(f"no headless OpenGL here: {error}")


def test_frames_show_the_body_and_its_ghost(recording):
    frames = _frames_or_skip(recording, width=160, height=128)
    assert frames.shape == (12, 128, 160, 3) and frames.dtype == np.uint8
    lit = (frames.max(axis=-1) > 30).mean(axis=(1, 2))
    assert (lit > 0.01).all()  # every frame draws the arm
    alone = _frames_or_skip(recording, width=160, height=128, ghost_alpha=0.0)
    assert not np.array_equal(frames, alone)  # the ghost is drawn


def test_mp4_and_gif(recording, tmp_path):
    _frames_or_skip(recording, width=64, height=48)
    path = render_video(recording, tmp_path / "rollout.mp4", env=1, width=160, height=128)
    reader = imageio.get_reader(path)
    frames = [frame for frame in reader]
    assert len(frames) == 12 and frames[5].std() > 5
    assert gif_bytes(np.zeros((3, 8, 8, 3), np.uint8), fps=10).startswith(b"GIF89a")
    with pytest.raises(ValueError, match="has 8 envs"):
        recording_frames(recording, 8)


@pytest.mark.slow
def test_video_logger_writes_videos_to_tensorboard(tmp_path, tiny_fit):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from neuromimic.analysis.render import _gl_context

    try:
        _gl_context(8, 8).free()
    except RenderingUnavailable as error:
        pytest.skip(f"no headless OpenGL here: {error}")
    tiny_fit(
        "mlp",
        "--trainer.callbacks+=neuromimic.analysis.video.VideoLogger",
        "--trainer.callbacks.every_n_steps",
        "4",
        "--trainer.callbacks.width",
        "64",
        "--trainer.callbacks.height",
        "48",
        max_steps=6,
    )
    (events,) = (tmp_path / "lightning_logs" / "version_0").glob("events*")
    accumulator = EventAccumulator(str(events), size_guidance={"images": 0})
    accumulator.Reload()
    steps = [image.step for image in accumulator.Images("video/val")]
    assert 4 in steps and 6 in steps  # at the interval and at the end
    assert all(image.encoded_image_string.startswith(b"GIF89a") for image in accumulator.Images("video/val"))
