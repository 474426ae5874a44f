"""`neuromimic view`: the scene a recording and clips make (without a browser), bad input, and
the page in headless Chromium (a screenshot shows the body; moving the time slider changes it)."""

from __future__ import annotations

import functools
import json
import shutil
import time
from pathlib import Path

import h5py
import mujoco
import numpy as np
import pytest
import torch

from neuromimic.analysis.record import record
from neuromimic.analysis.render import muscle_tendons
from neuromimic.analysis.viewer import ViewerInputError, parse_units, start_viewer
from neuromimic.analysis.viewer.scene import Poser, activation_rgb, body_meshes, geom_mesh
from neuromimic.bodies import get_body
from neuromimic.data.clips import BUNDLED_DIR, ReferenceClip
from neuromimic.envs import EnvConfig, controller_spec
from neuromimic.errors import InputError
from neuromimic.models import Controller, RateRNNCore

STEPS = 15
LEGACY_EXPORT = Path(__file__).parent / "data" / "legacy" / "mouse_forelimb_reach_rate_rnn_export"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
#: Chromium flags for a closed network: without the background-networking ones its own
#: connections are refused and it stalls.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def rollout(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    core = functools.partial(RateRNNCore, hidden_size=8, excitatory_fraction=0.75)
    recording = record(Controller(controller_spec(EnvConfig()), core), EnvConfig(), steps=STEPS)
    return recording.save_h5(tmp_path_factory.mktemp("viewer") / "rollout.h5")


@pytest.fixture
def viewer(rollout):
    viewer = start_viewer(recording=str(rollout), port=0)
    yield viewer
    viewer.stop()


def _volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    """Signed volume of a closed mesh: positive when its faces wind counter-clockwise seen
    from outside (what the browser draws as the front)."""
    a, b, c = (vertices[faces[:, k]] for k in range(3))
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6)


def test_primitives_enclose_their_volume_facing_out():
    model = mujoco.MjModel.from_xml_string(
        """<mujoco><worldbody><body>
        <geom type="sphere" size="1"/><geom type="capsule" size="1 2"/><geom type="cylinder" size="1 2"/>
        <geom type="box" size="1 2 3"/><geom type="ellipsoid" size="1 2 3"/>
        </body></worldbody></mujoco>"""
    )
    exact = [4 / 3 * np.pi, 4 / 3 * np.pi + 4 * np.pi, 4 * np.pi, 48.0, 8 * np.pi]
    for geom, volume in enumerate(exact):
        vertices, faces = geom_mesh(model, geom)
        assert faces.max() < len(vertices)
        assert _volume(vertices, faces) == pytest.approx(volume, rel=0.05)  # tessellated, so a little less


def test_meshes_sit_on_their_geoms_and_tendons_are_as_long_as_mujoco_says():
    model = get_body("mouse_forelimb").load_model()
    qpos = model.jnt_range.mean(axis=1) + 0.3 * np.diff(model.jnt_range, axis=1)[:, 0]
    data = mujoco.MjData(model)
    data.qpos[:] = qpos
    mujoco.mj_fwdPosition(model, data)
    pose = Poser(model)(qpos)
    meshes = body_meshes(model)
    assert sorted(meshes) == sorted({int(b) for b in model.geom_bodyid})  # every body with a geom, one capsule each
    for geom in range(model.ngeom):
        body = model.geom_bodyid[geom]
        (mesh,) = meshes[body]
        rotation = pose.xquat[body]
        matrix = np.zeros(9)
        mujoco.mju_quat2Mat(matrix, rotation)
        world = mesh.vertices @ matrix.reshape(3, 3).T + pose.xpos[body]
        np.testing.assert_allclose(world.mean(axis=0), data.geom_xpos[geom], atol=1e-6)  # a capsule is symmetric
    lengths = np.zeros(model.ntendon)
    np.add.at(lengths, pose.segment_tendon, np.linalg.norm(np.diff(pose.segments, axis=1)[:, 0], axis=1))
    np.testing.assert_allclose(lengths, data.ten_length, rtol=0.02)  # straight across wrap arcs
    assert (muscle_tendons(model) == np.arange(9)).all()  # each muscle pulls on its own tendon
    np.testing.assert_allclose(activation_rgb([-1.0, 0.0, 1.0, 2.0])[[0, 3]], activation_rgb([0.0, 1.0]))


def test_the_scene_follows_the_recording(viewer):
    source, episode = viewer.source, viewer.episode
    assert len(source.names) == 8 and episode.qpos.shape == (STEPS, 4)
    assert set(viewer._bodies) == set(viewer._ghosts) == {1, 2, 3, 4, 5, 6}
    frame = 9
    viewer.set_time(float(episode.times[frame]))
    assert viewer.frame == frame
    poser = Poser(source.model)
    pose, reference = poser(episode.qpos[frame]), poser(episode.ghost_qpos[frame])
    for body, node in viewer._bodies.items():
        np.testing.assert_allclose(node.position, pose.xpos[body] * viewer.unit, atol=1e-6)
        np.testing.assert_allclose(node.wxyz, pose.xquat[body], atol=1e-6)
        np.testing.assert_allclose(viewer._ghosts[body].position, reference.xpos[body] * viewer.unit, atol=1e-6)
    # tendons: coloured by their muscle's activation at that frame
    expected = activation_rgb(episode.activation[frame, muscle_tendons(source.model)[pose.segment_tendon]])
    np.testing.assert_allclose(viewer.nodes["tendons"].colors[:, 0] / 255.0, expected, atol=1.5 / 255)
    # tracked site and its reference, joined by the error line
    np.testing.assert_allclose(viewer.nodes["targets"].points, episode.targets[frame] * viewer.unit, atol=1e-6)
    # the plots: the whole clip, with the cursor at the frame's time
    x, error, cursor = viewer._plots["error"].data
    inserted = np.flatnonzero(cursor == 1.0)[0] + np.array([-1, 0, 1])  # the cursor goes 0 -> 1 -> 0 there
    assert (x[inserted] == episode.times[frame]).all() and (cursor[inserted] == [0, 1, 0]).all()
    np.testing.assert_allclose(np.delete(error, inserted), episode.error)
    np.testing.assert_allclose(np.delete(x, inserted), episode.times)
    assert len(viewer._plots["muscles"].data) == 1 + 4 + 1  # time, 4 muscles, the cursor
    viewer.set_env(3)
    assert viewer.episode.name == source.names[3] and viewer.frame == 0


def test_play_and_pause(viewer):
    viewer.play()
    deadline = time.monotonic() + 10
    while viewer.frame == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    viewer.pause()
    assert viewer.frame > 0 and viewer._play.label == "Play"


def test_units_to_plot_and_a_bad_choice_shown_on_the_page(viewer):
    assert next(iter(viewer.source.unit_arrays)) == "core/activity/rate"
    assert parse_units("0-2, 5,1", 8) == [0, 1, 2, 5]
    viewer._unit_text.value = "1, 3"
    assert len(viewer._plots["units"].data) == 1 + 2 + 1
    viewer._unit_text.value = "0-99"
    assert "unit 99 does not exist: there are 8 units" in viewer.error and viewer._error.visible
    viewer._unit_text.value = "2"  # fixed: the error goes
    assert viewer.error is None and not viewer._error.visible and len(viewer._plots["units"].data) == 3


def test_clips_show_the_fitted_and_the_measured_keypoints(tmp_path):
    """A clip as `keypoints fit` writes it (offsets in the frame of the body scaled by 2, the
    keypoint file's path in its meta) next to that file: the viewer reads the keypoints again,
    at the clip's frame rate, and shows them beside the fitted ones, 1 mm apart in the data
    (0.5 mm on the unscaled body of the clip)."""
    body, scale, fps_in = "mouse_forelimb", 2.0, 200.0
    clip = ReferenceClip.load(min((BUNDLED_DIR / "mouse_forelimb_reach").glob("*.h5")))
    model = get_body(body).load_model()
    hand = model.body("wrist_body").id
    offset = np.array([0.002, 0.0, 0.0])  # m, in the frame of the scaled body
    # the measured keypoint, at 200 Hz (the clip's rate is 100 Hz), in the data's (scaled)
    # world: 1 mm above where the fit puts it
    times_in = np.arange(round(clip.duration * fps_in) + 1) / fps_in
    data, measured = mujoco.MjData(model), []
    for t in times_in:
        data.qpos[:] = [np.interp(t, np.arange(clip.num_frames) / clip.fps, q) for q in clip.qpos.T]
        mujoco.mj_kinematics(model, data)
        fitted = data.xpos[hand] + data.xmat[hand].reshape(3, 3) @ (offset / scale)
        measured.append(scale * fitted + [0.0, 0.0, 0.001])
    keypoints = tmp_path / "session.npz"
    np.savez(keypoints, positions=np.array(measured)[:, None], names=np.array(["hand"]), fps=fps_in)
    meta = {
        "keypoint_names": json.dumps(["hand"]),
        "keypoint_bodies": json.dumps(["wrist_body"]),
        "keypoint_offsets_m": json.dumps([offset.tolist()]),
        "body_scale": scale,
        "input": str(keypoints),
        "input_fps": fps_in,
        "mean_residual_mm": 1.0,
    }
    clips = tmp_path / "clips"
    clips.mkdir()
    ReferenceClip.from_qpos(body, clip.qpos, clip.fps, name="fitted", split="train", meta=meta).save(clips / "a.h5")
    viewer = start_viewer(clips=str(clips), port=0, keypoint_units="m")
    try:
        episode = viewer.episode
        assert episode.marker_names == ("hand",) and not episode.notes
        np.testing.assert_allclose(episode.error, 1.0, atol=1e-3)
        residual = viewer.nodes["residuals"].points
        np.testing.assert_allclose(np.linalg.norm(np.diff(residual, axis=1), axis=2) / viewer.unit, 0.0005, atol=1e-6)
    finally:
        viewer.stop()
    broken = tmp_path / "broken"
    broken.mkdir()
    meta["keypoint_offsets_m"] = "[[0, 0]]"
    ReferenceClip.from_qpos(body, clip.qpos, clip.fps, name="broken", split="train", meta=meta).save(broken / "b.h5")
    viewer = start_viewer(clips=str(broken), port=0)
    try:
        assert "keypoint fields" in viewer.episode.notes[0] and viewer.episode.marker_names == ("wrist",)
    finally:
        viewer.stop()
    viewer = start_viewer(clips=str(clips), port=0)  # no units: said on the page, the body still shown
    try:
        assert "original keypoints are not shown" in viewer.episode.notes[0] and "--keypoint_units" in str(
            viewer.episode.notes
        )
        assert viewer.nodes["targets"].visible is False and viewer.nodes["markers"].visible is True
    finally:
        viewer.stop()


def _rewritten(rollout: Path, tmp_path: Path, change) -> Path:
    copy = tmp_path / "rollout.h5"
    shutil.copy(rollout, copy)
    with h5py.File(copy, "r+") as h5:
        change(h5)
    return copy


def _set(name, value):
    def change(h5):
        del h5[name]
        h5[name] = value

    return change


def _set_attrs(**values):
    def change(h5):
        attrs = json.loads(h5.attrs["attrs"]) | values
        h5.attrs["attrs"] = json.dumps(attrs)

    return change


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda rollout, tmp: tmp / "missing.h5", ["missing.h5", "does not exist", "neuromimic analyze record"]),
        (lambda rollout, tmp: (tmp / "notes.h5").write_text("hi") and tmp / "notes.h5", ["not an HDF5 file"]),
        (
            lambda rollout, tmp: next((BUNDLED_DIR / "mouse_forelimb_reach").glob("*.h5")),
            ["is a reference clip", "--clips"],
        ),
        (
            lambda rollout, tmp: _rewritten(rollout, tmp, _set("joint/qpos", np.zeros((8, STEPS, 3)))),
            ["rollout.h5", "`joint/qpos` has shape [8, 15, 3]", "[8, 15, 4]", "record it"],
        ),
        (
            lambda rollout, tmp: _rewritten(rollout, tmp, _set("valid", np.zeros((8, STEPS), dtype=bool))),
            ["`valid` marks no step of env 0"],
        ),
        (lambda rollout, tmp: _rewritten(rollout, tmp, _set_attrs(body="octopus")), ["octopus", "mouse_forelimb"]),
        (
            lambda rollout, tmp: _rewritten(rollout, tmp, lambda h5: h5.attrs.__setitem__("attrs", "{oops")),
            ["root attribute `attrs` is missing or not JSON"],
        ),
    ],
    ids=["missing", "not-hdf5", "a-clip", "wrong-shape", "no-valid-step", "unknown-body", "bad-attrs"],
)
def test_a_bad_recording_fails_at_once_naming_the_file_the_field_and_the_fix(rollout, tmp_path, make, expected):
    path = make(rollout, tmp_path)
    with pytest.raises(InputError) as caught:
        start_viewer(recording=str(path), port=0)
    message = str(caught.value)
    assert "\n" not in message
    for part in expected:
        assert part in message


def test_one_thing_at_a_time_and_missing_files(tmp_path):
    with pytest.raises(ViewerInputError, match="got recording, clips"):
        start_viewer(recording="a.h5", clips="b")
    with pytest.raises(ViewerInputError, match="got none"):
        start_viewer()
    with pytest.raises(ViewerInputError, match="'nowhere.ckpt' does not exist"):
        start_viewer(ckpt="nowhere.ckpt")
    with pytest.raises(InputError, match="does not exist"):
        start_viewer(clips=str(tmp_path / "no_clips"))
    with pytest.raises(ViewerInputError, match="keypoint file .*kp.npz' does not exist"):
        start_viewer(clips="bundled:mouse_forelimb_reach", keypoints=str(tmp_path / "kp.npz"))


def test_a_checkpoint_is_recorded_with_progress_then_shown():
    viewer = start_viewer(ckpt=str(LEGACY_EXPORT), port=0, steps=4)
    try:
        assert viewer.ready.wait(120), "the recording never finished"
        assert viewer.error is None and viewer.source.kind == "recording"
        assert viewer.episode.qpos.shape == (4, 4) and not viewer._progress.visible
        assert "core/activity/rate" in viewer.source.unit_arrays
    finally:
        viewer.stop()


# -- in a real browser -----------------------------------------------------------------------


def _drawn(pixels: np.ndarray) -> int:
    """Pixels that are not the page's white (the floor grid, the body, the plots' lines)."""
    return int((pixels.astype(int).min(axis=-1) < 235).sum())


def _changed(a: np.ndarray, b: np.ndarray) -> int:
    return int((np.abs(a.astype(int) - b.astype(int)).max(axis=-1) > 40).sum())


def test_the_page_shows_the_body_and_the_slider_moves_it(viewer, tmp_path):
    if CHROMIUM is None:
        pytest.skip("no Chromium: apt-get install chromium (.ci/run does)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install -e .[test]")
    import imageio.v2 as imageio

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 720})
            page.goto(viewer.url)
            # viser warns that WebGL runs in software: true here, and in the way of the scene
            page.add_style_tag(content=".mantine-Notifications-root { display: none !important; }")
            canvas = page.locator("canvas").first
            canvas.wait_for(timeout=30_000)

            def scene() -> np.ndarray:
                box = canvas.bounding_box()
                image = imageio.imread(page.screenshot(path=tmp_path / "page.png"))[..., :3]
                return image[
                    int(box["y"]) : int(box["y"] + box["height"]), int(box["x"]) : int(box["x"] + box["width"])
                ]

            def wait_for(condition, seconds: float = 30.0) -> np.ndarray:
                deadline = time.monotonic() + seconds
                while not condition(image := scene()) and time.monotonic() < deadline:
                    time.sleep(0.2)
                return image

            wait_for(lambda image: _drawn(image) > 5000, 60)  # the floor grid at least
            time.sleep(1.0)  # and what came with it
            shown = scene()
            # the body's pixels: those that change when the body, ghost, muscles and points are
            # hidden (the scene without them is the background); they come back when shown
            layers = ("body", "ghost", "tendons", "tracked points")
            for name in layers:
                viewer._show[name].value = False
            background = wait_for(lambda image: _changed(shown, image) > 500)
            assert _changed(shown, background) > 500, f"no body in the scene area (see {tmp_path}/page.png)"
            for name in layers:
                viewer._show[name].value = True
            shown = wait_for(lambda image: _changed(background, image) > 500)
            assert _changed(background, shown) > 500
            # move the time slider to its end, as a user does with the keyboard
            slider = page.get_by_role("slider").first
            slider.focus()
            page.keyboard.press("End")
            moved = wait_for(lambda image: _changed(shown, image) > 100)
            assert viewer.frame == STEPS - 1
            assert _changed(shown, moved) > 100, "moving the time slider did not change the scene"
            # an error is shown on the page, not only in the log
            viewer._unit_text.value = "0-99"
            page.get_by_text("unit 99 does not exist").wait_for(timeout=10_000)
        finally:
            browser.close()
