"""Headless rendering: a short MP4 of a recorded rollout whose frames are not blank."""

from __future__ import annotations

import imageio.v2 as imageio
import numpy as np
import pytest

from neuromimic.analysis.record import record
from neuromimic.analysis.render import RenderingUnavailable, gif_bytes, recording_frames, render_frames, render_video
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
    assert recording_frames(recording, 1, step=4, width=64, height=48).shape == (3, 48, 64, 3)
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


def _or_skip(function, *args, **kwargs):
    try:
        return function(*args, **kwargs)
    except RenderingUnavailable as error:
        pytest.skip(f"no headless OpenGL here: {error}")


def test_frames_show_a_sky_a_floor_and_the_overlay(recording):
    """The forelimb's MJCF has neither floor nor sky: the stage adds both, and the overlay
    gives time and error at the top left, and the colour bar of its muscles at the bottom."""
    frames = _or_skip(recording_frames, recording, 1, width=160, height=128)
    frame = frames[6].astype(int)
    assert (frame.max(axis=-1) < 30).mean() < 0.02  # not a black background
    sky = (frame[..., 2] > frame[..., 0] + 40) & (frame[..., 2] > 150)
    assert sky[:20].mean() > 0.3 and sky[-40:].mean() < 0.05  # blue above, not below
    grey = (np.ptp(frame, axis=-1) < 25) & (frame.mean(axis=-1) > 90)
    assert grey[-40:].mean() > 0.3  # the chequered floor below
    bare = _or_skip(recording_frames, recording, 1, width=160, height=128, overlay=False)[6]
    changed = np.abs(frame - bare).max(axis=-1) > 0
    assert changed[:40, :60].mean() > 0.3 and changed[-20:, :120].mean() > 0.3
    rows, columns = np.nonzero(changed)
    assert np.all(((rows < 60) & (columns < 90)) | (rows >= 98))  # the top left box, the bar below


def test_overlay_text_follows_time_and_error():
    """Two frames of one pose differ only in the overlay's corner, where time and error are."""
    qpos = np.zeros((2, 4))
    frames = _or_skip(
        render_frames, "mouse_forelimb", qpos, width=160, height=128, times=[0.02, 1.24], error_mm=[0.5, 12.5]
    )
    changed = np.argwhere(np.abs(frames[0].astype(int) - frames[1]).max(axis=-1) > 0)
    assert len(changed) > 20
    assert changed[:, 0].max() < 60 and changed[:, 1].max() < 90  # rows, columns: the top left box


def test_muscles_are_coloured_by_activation():
    qpos = np.zeros((2, 4))
    activation = np.stack([np.zeros(9), np.ones(9)])
    frames = _or_skip(
        render_frames, "mouse_forelimb", qpos, width=160, height=128, activation=activation, overlay=False
    )
    red, green, blue = np.moveaxis(frames.astype(int), -1, 0)
    reddish = ((red > green + 80) & (red > blue + 80)).sum(axis=(1, 2))
    bluish = ((blue > red + 40) & (blue > green + 30) & (red < 150)).sum(axis=(1, 2))
    assert reddish[1] > 50 and reddish[1] > 10 * reddish[0]
    assert bluish[0] > bluish[1] + 50


def test_camera_follows_a_free_body_at_its_size():
    """The rat runs 1 m in 1 s: the camera keeps it near the image centre, at a size set by
    its own (its pixels span a good part of the frame), without the lag of a plain filter."""
    pytest.importorskip("dm_control")
    from neuromimic.analysis.render import _render
    from neuromimic.bodies import get_body

    body = get_body("rodent")
    rest = body.rest_qpos(body.load_model())
    times = np.arange(0, 1.01, 0.1)
    qpos = np.repeat(rest[None], len(times), axis=0)
    qpos[:, 0] += 1.0 * times
    qpos[:, 1] += 0.2 * np.sin(3 * times)
    labels = _or_skip(_render, "rodent", qpos, width=96, height=72, times=times, segment=True)
    for frame in labels:
        rows, columns = np.nonzero(frame >= 0)
        assert len(rows) > 0.03 * frame.size
        assert abs(columns.mean() / 96 - 0.5) < 0.12 and abs(rows.mean() / 72 - 0.5) < 0.15
        assert max(np.ptp(columns) / 96, np.ptp(rows) / 72) > 0.4


def test_zero_lag_smoothing():
    from neuromimic.analysis.render import _smooth

    times = np.arange(40) * 0.02
    line = np.stack([0.3 * times, -0.1 * times, np.full_like(times, 0.05)], axis=1)
    np.testing.assert_allclose(_smooth(line, times, 0.2), line, atol=1e-12)  # no lag, to the last frame
    noise = np.random.default_rng(0).normal(0.0, 0.01, line.shape)
    assert np.std(_smooth(line + noise, times, 0.2) - line) < 0.5 * np.std(noise)
    np.testing.assert_array_equal(_smooth(line[:1], times[:1], 0.2), line[:1])


def test_ghost_shows_where_the_body_departs_from_it():
    """A ghost on the body hides inside it; one elsewhere is drawn, tinted green, at one opacity.
    (A fixed-base body is framed with its ghost: compare frames with the same ghost pose.)"""
    pose = np.zeros((1, 4))
    bent = pose + [[0.0, 0.0, 0.0, 1.2]]  # the elbow

    def frame(reference, alpha):
        kwargs = {"width": 160, "height": 128, "overlay": False, "ghost_alpha": alpha}
        return _or_skip(render_frames, "mouse_forelimb", pose, reference, **kwargs)[0].astype(int)

    on, off = frame(pose, 0.4), frame(bent, 0.4)
    assert (np.abs(on - frame(pose, 0.0)).max(axis=-1) > 30).mean() < 0.002
    alone = frame(bent, 0.0)
    changed = np.abs(off - alone).max(axis=-1) > 20
    assert changed.sum() > 80  # the forearm and the hand
    red, green, blue = off[changed].mean(axis=0)
    assert green > red + 20 and green > blue + 10


def test_stage_adds_floor_sky_and_light_but_no_joint():
    import mujoco

    from neuromimic.analysis.render import STAGE_PREFIX, stage_model
    from neuromimic.bodies import get_body

    plain, staged = get_body("mouse_forelimb").load_model(), stage_model("mouse_forelimb")
    assert (staged.nq, staged.nbody, staged.ntendon) == (plain.nq, plain.nbody, plain.ntendon)
    for kind, name in ((mujoco.mjtObj.mjOBJ_GEOM, "floor"), (mujoco.mjtObj.mjOBJ_TEXTURE, "sky")):
        assert mujoco.mj_name2id(staged, kind, STAGE_PREFIX + name) >= 0
    sun = mujoco.mj_name2id(staged, mujoco.mjtObj.mjOBJ_LIGHT, STAGE_PREFIX + "sun")
    assert staged.light_castshadow[sun] and staged.light_active.sum() == 1  # the MJCF's own light is off
