"""ReferenceClip schema, validation messages, ClipBank sampling and the bundled reach clips."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import h5py
import mujoco
import numpy as np
import pytest
import torch

from neuromimic.bodies import get_body
from neuromimic.data import SCHEMA_VERSION, ClipBank, ClipError, ReferenceClip, load_clips, reach

BUNDLED = "bundled:mouse_forelimb_reach"

# The eight published reach targets (world frame, m), copied from the body's FACTS sheet.
PUBLISHED_TARGETS = np.array(
    [
        (0.007, 0.010, -0.006),
        (0.0055355, 0.010, -0.0024645),
        (0.002, 0.010, -0.001),
        (-0.0015355, 0.010, -0.0024645),
        (-0.003, 0.010, -0.006),
        (-0.0015355, 0.010, -0.0095355),
        (0.002, 0.010, -0.011),
        (0.0055355, 0.010, -0.0095355),
    ]
)


@pytest.fixture(scope="module")
def bundled() -> list[ReferenceClip]:
    return load_clips(BUNDLED, body="mouse_forelimb")


@pytest.fixture
def clip_file(bundled, tmp_path) -> Path:
    """A valid clip file to corrupt."""
    return bundled[0].save(tmp_path / "good.h5")


def assert_clips_equal(a: ReferenceClip, b: ReferenceClip) -> None:
    for f in dataclasses.fields(ReferenceClip):
        va, vb = getattr(a, f.name), getattr(b, f.name)
        if isinstance(va, np.ndarray):
            assert va.dtype == vb.dtype and np.array_equal(va, vb), f.name
        else:
            assert va == vb and type(va) is type(vb), f.name


# --- schema -----------------------------------------------------------------------------


def test_round_trip_is_exact(bundled, tmp_path):
    clip = dataclasses.replace(bundled[3], meta={"a": "text", "b": 1.5, "c": 7}, split="val")
    path = clip.save(tmp_path / "clip.h5")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.h5"]  # no temp file left
    loaded = ReferenceClip.load(path, body="mouse_forelimb")
    assert_clips_equal(clip, loaded)
    assert loaded.num_frames == 101 and loaded.duration == pytest.approx(1.0)
    with h5py.File(path) as f:
        assert f.attrs["schema_version"] == SCHEMA_VERSION
        assert {k: f[k].attrs["units"] for k in ("qpos", "qvel", "xpos", "site_pos_w")} == {
            "qpos": "rad",
            "qvel": "rad/s",
            "xpos": "m",
            "site_pos_w": "m",
        }
    clip.save(path)  # overwriting an existing file works too
    assert_clips_equal(clip, ReferenceClip.load(path))


def test_from_qpos_replays_kinematics():
    body = get_body("mouse_forelimb")
    model = body.load_model()
    t = np.linspace(0.0, 0.5, 51)[:, None]
    qpos = model.jnt_range.mean(axis=1) + 0.2 * np.sin(2 * np.pi * 2 * t + np.arange(4))
    clip = ReferenceClip.from_qpos("mouse_forelimb", qpos, 100.0, name="wave", split="train")
    assert clip.model_hash == body.model_hash and clip.site_names == ("wrist",)
    # Central differences inside, one-sided at the ends.
    np.testing.assert_allclose(clip.qvel, np.gradient(qpos, 0.01, axis=0), atol=1e-12)
    data = mujoco.MjData(model)
    data.qpos[:] = qpos[17]
    mujoco.mj_kinematics(model, data)
    np.testing.assert_array_equal(clip.xpos[17], data.xpos)
    np.testing.assert_array_equal(clip.xquat[17], data.xquat)
    np.testing.assert_array_equal(clip.site_pos_w[17, 0], data.site("wrist").xpos)


def _rewrite(path: Path, key: str, value) -> None:
    """Replace dataset ``key`` of ``path`` by ``value``, keeping its units attribute."""
    with h5py.File(path, "r+") as f:
        units = f[key].attrs.get("units")
        del f[key]
        f.create_dataset(key, data=value)
        if units is not None:
            f[key].attrs["units"] = units


def test_missing_dataset_is_named(clip_file):
    with h5py.File(clip_file, "r+") as f:
        del f["qvel"]
    with pytest.raises(ClipError, match=r"good\.h5.*dataset `qvel`.*ReferenceClip\.save"):
        ReferenceClip.load(clip_file)


def test_wrong_schema_version_names_supported_versions(clip_file):
    with h5py.File(clip_file, "r+") as f:
        f.attrs["schema_version"] = 99
    with pytest.raises(ClipError, match=r"good\.h5.*schema_version 99.*\[1\]"):
        ReferenceClip.load(clip_file)


def test_not_a_clip_file(tmp_path):
    text = tmp_path / "notes.h5"
    text.write_text("not hdf5")
    with pytest.raises(ClipError, match=r"notes\.h5.* not an HDF5 file"):
        ReferenceClip.load(text)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(ClipError, match=r"other\.h5.*no `schema_version`"):
        ReferenceClip.load(other)
    with pytest.raises(ClipError, match="does not exist"):
        ReferenceClip.load(tmp_path / "missing.h5")


def test_frame_count_mismatch_names_both_shapes(clip_file):
    with h5py.File(clip_file) as f:
        qvel = f["qvel"][:-1]
    _rewrite(clip_file, "qvel", qvel)
    message = r"good\.h5.*`qvel` has shape \(100, 4\).*`qpos` has \(101, 4\)"
    with pytest.raises(ClipError, match=message):
        ReferenceClip.load(clip_file)


def test_body_count_mismatch_names_both_shapes(clip_file):
    with h5py.File(clip_file) as f:
        xquat = f["xquat"][:, :-1]
    _rewrite(clip_file, "xquat", xquat)
    message = r"`xpos` has shape \(101, 7, 3\).*`xquat` has \(101, 6, 4\)"
    with pytest.raises(ClipError, match=message):
        ReferenceClip.load(clip_file)


def test_site_count_mismatch(clip_file):
    with h5py.File(clip_file, "r+") as f:
        del f["site_names"]
        f.create_dataset("site_names", data=["wrist", "elbow"], dtype=h5py.string_dtype())
    with pytest.raises(ClipError, match=r"`site_pos_w` has shape \(101, 1, 3\).*2 names"):
        ReferenceClip.load(clip_file)


def test_wrong_rank(clip_file):
    _rewrite(clip_file, "qpos", np.zeros((101, 4, 1)))
    with pytest.raises(ClipError, match=r"`qpos` has shape \(101, 4, 1\); expected \[T, nq\]"):
        ReferenceClip.load(clip_file)


def test_non_finite_values_name_the_first_bad_frame(clip_file):
    with h5py.File(clip_file, "r+") as f:
        f["site_pos_w"][42, 0, 1] = np.nan
        f["site_pos_w"][77, 0, 0] = np.inf
    with pytest.raises(ClipError, match=r"good\.h5.*`site_pos_w`.*non-finite.*frame 42\b"):
        ReferenceClip.load(clip_file)


@pytest.mark.parametrize("fps", [0.0, -100.0])
def test_non_positive_fps(clip_file, fps):
    with h5py.File(clip_file, "r+") as f:
        f.attrs["fps"] = fps
    with pytest.raises(ClipError, match=r"good\.h5.*fps is .*positive"):
        ReferenceClip.load(clip_file)


def test_wrong_units(clip_file):
    with h5py.File(clip_file, "r+") as f:
        f["qpos"].attrs["units"] = "deg"
    with pytest.raises(ClipError, match=r"good\.h5.*`qpos` has units 'deg'.*'rad'"):
        ReferenceClip.load(clip_file)


def test_wrong_body_is_an_error_that_says_what_to_do(clip_file):
    with pytest.raises(ClipError) as info:
        ReferenceClip.load(clip_file, body="rodent")
    message = str(info.value)
    assert "good.h5" in message
    assert "recorded for body 'mouse_forelimb' but the env uses 'rodent'" in message
    assert "make clips for 'rodent'" in message


def test_model_hash_mismatch_is_a_warning(clip_file, caplog):
    with h5py.File(clip_file, "r+") as f:
        f.attrs["model_hash"] = "0123456789abcdef"
    with caplog.at_level(logging.WARNING, logger="neuromimic.data.clips"):
        clip = ReferenceClip.load(clip_file, body="mouse_forelimb")
    assert clip.model_hash == "0123456789abcdef"
    assert "0123456789abcdef" in caplog.text and "good.h5" in caplog.text


def test_load_clips_sources_and_splits(bundled, tmp_path):
    for clip in bundled[:3]:
        clip.save(tmp_path / f"{clip.name}.h5")
    from_dir = load_clips(tmp_path, body="mouse_forelimb", split="train")
    assert [c.name for c in from_dir] == sorted(c.name for c in bundled[:3] if c.split == "train")
    assert len(load_clips(tmp_path / f"{bundled[0].name}.h5")) == 1
    train_only = tmp_path / "train_only"
    train_only.mkdir()
    bundled[0].save(train_only / "a.h5")
    with pytest.raises(ClipError, match=r"'.*train_only' has no clips of split 'val'"):
        load_clips(train_only, split="val")
    with pytest.raises(ClipError, match="unknown bundled clip set 'bundled:nope'"):
        load_clips("bundled:nope")
    with pytest.raises(ClipError, match="does not exist"):
        load_clips(tmp_path / "nowhere")


# --- ClipBank ---------------------------------------------------------------------------


def _short(clip: ReferenceClip, frames: int) -> ReferenceClip:
    arrays = {k: getattr(clip, k)[:frames] for k in ("qpos", "qvel", "xpos", "xquat", "site_pos_w")}
    return dataclasses.replace(clip, name=f"{clip.name}_short", **arrays)


def test_clip_bank_pads_with_the_last_frame(bundled):
    long, short = bundled[0], _short(bundled[1], 30)
    bank = ClipBank([long, short], dtype=torch.float64)
    assert bank.num_clips == 2 and bank.fps == 100.0 and bank.body == "mouse_forelimb"
    assert bank.site_names == ("wrist",)
    assert bank.qpos.shape == (2, 101, 4) and bank.site_pos_w.shape == (2, 101, 1, 3)
    assert bank.length.tolist() == [101, 30] and bank.length.dtype == torch.long
    np.testing.assert_array_equal(bank.qpos[1, :30].numpy(), short.qpos)
    assert (bank.qpos[1, 30:] == bank.qpos[1, 29]).all()
    assert (bank.qvel[1, 30:] == bank.qvel[1, 29]).all()
    assert (bank.site_pos_w[1, 30:] == bank.site_pos_w[1, 29]).all()
    assert ClipBank([long]).qpos.dtype == torch.float32


def test_clip_bank_rejects_mixed_clips(bundled):
    other_fps = dataclasses.replace(bundled[1], fps=50.0)
    with pytest.raises(ClipError, match="has fps 50.0 .* has 100.0"):
        ClipBank([bundled[0], other_fps])
    with pytest.raises(ClipError, match="at least one clip"):
        ClipBank([])


def test_sample_ranges(bundled):
    clips = [bundled[0], _short(bundled[1], 30), _short(bundled[2], 5)]
    bank = ClipBank(clips, seed=3, min_frames_left=10)
    clip, start = bank.sample(20_000)
    assert clip.dtype == start.dtype == torch.long and clip.shape == start.shape == (20_000,)
    assert set(clip.tolist()) == {0, 1, 2}
    for c, last in enumerate([91, 20, 0]):  # length - min_frames_left, floored at 0
        starts = start[clip == c]
        assert starts.min() == 0 and starts.max() == last
    clip, start = bank.sample(100, random_start=False)
    assert (start == 0).all()


def test_random_starts_only_on_valid_frames(bundled):
    clips = [bundled[0], _short(bundled[1], 30)]
    valid = [np.arange(bundled[0].num_frames) % 3 == 0, np.zeros(30, dtype=bool)]
    bank = ClipBank(clips, seed=3, valid_starts=valid)
    clip, start = bank.sample(5_000)
    assert set(clip.tolist()) == {0}  # clip 1 has no valid start
    assert set(start.tolist()) == set(range(0, bundled[0].num_frames - 10 + 1, 3))
    with pytest.raises(ClipError, match="no frame of the 2 clips .* can start an episode"):
        ClipBank(clips, valid_starts=[np.zeros(bundled[0].num_frames, dtype=bool), np.zeros(30, dtype=bool)])


def test_same_seed_same_samples_and_resume(bundled):
    a, b = ClipBank(bundled, seed=7), ClipBank(bundled, seed=7)
    for _ in range(3):
        for x, y in zip(a.sample(64), b.sample(64)):
            assert torch.equal(x, y)
    assert not torch.equal(a.sample(64)[0], ClipBank(bundled, seed=8).sample(64)[0])
    state = a.state_dict()
    expected = [a.sample(32) for _ in range(2)]
    fresh = ClipBank(bundled, seed=123)
    fresh.load_state_dict(state)
    for (c0, s0), (c1, s1) in zip(expected, [fresh.sample(32) for _ in range(2)]):
        assert torch.equal(c0, c1) and torch.equal(s0, s1)


# --- bundled reaching clips -------------------------------------------------------------


def test_bundled_splits(bundled):
    assert len(bundled) == 40
    assert len(load_clips(BUNDLED, body="mouse_forelimb", split="train")) == 32
    val = load_clips(BUNDLED, split="val")
    assert len(val) == 8 and all(c.meta["reach_duration_s"] == 0.35 for c in val)
    assert len({c.name for c in bundled}) == 40
    body = get_body("mouse_forelimb")
    for clip in bundled:
        assert clip.body == body.key and clip.model_hash == body.model_hash
        assert clip.fps == 100.0 and clip.num_frames == 101 and clip.site_names == ("wrist",)


def test_targets_are_the_published_ones():
    np.testing.assert_allclose(reach.reach_targets(), PUBLISHED_TARGETS, atol=1e-7)


def test_bundled_wrist_follows_the_min_jerk_path(bundled):
    for clip in bundled:
        k, duration = clip.meta["target_index"], clip.meta["reach_duration_s"]
        assert clip.name == f"reach_t{k}_d{duration:.2f}"
        assert clip.meta["ik_max_residual_m"] < 1e-6
        # The documented path, written out independently of `reach.wrist_path`.
        t = np.arange(clip.num_frames) / clip.fps
        out = np.clip((t - 0.1) / duration, 0, 1)[:, None]
        back = np.clip((t - 0.55) / duration, 0, 1)[:, None]
        centre = np.array([0.002, 0.010, -0.006])
        fraction = (10 * out**3 - 15 * out**4 + 6 * out**5) - (10 * back**3 - 15 * back**4 + 6 * back**5)
        path = centre + fraction * (PUBLISHED_TARGETS[k] - centre)
        np.testing.assert_allclose(clip.site_pos_w[:, 0], path, rtol=0, atol=1e-5)
        # Holds: at the centre, then at the published target, then back at the centre.
        arrive = round((reach.REACH_ONSET + duration) * clip.fps)
        leave = round(reach.RETURN_ONSET * clip.fps)
        start = np.broadcast_to(centre, (11, 3))
        np.testing.assert_allclose(clip.site_pos_w[:11, 0], start, atol=1e-5)
        target = np.broadcast_to(PUBLISHED_TARGETS[k], (leave - arrive + 1, 3))
        np.testing.assert_allclose(clip.site_pos_w[arrive : leave + 1, 0], target, atol=1e-5)
        np.testing.assert_allclose(clip.site_pos_w[-1, 0], centre, atol=1e-5)
        # The joints are exactly still while the wrist holds.
        assert (clip.qvel[1:10] == 0).all() and (clip.qvel[arrive + 1 : leave] == 0).all()


def test_bundled_clips_match_kinematics_and_joint_ranges(bundled):
    model = get_body("mouse_forelimb").load_model()
    data = mujoco.MjData(model)
    lower, upper = model.jnt_range.T
    for clip in bundled:
        assert (clip.qpos >= lower).all() and (clip.qpos <= upper).all(), clip.name
        qvel = np.gradient(clip.qpos, 1 / clip.fps, axis=0)
        np.testing.assert_allclose(clip.qvel, qvel, atol=1e-9)
        for t in range(0, clip.num_frames, 7):
            data.qpos[:] = clip.qpos[t]
            mujoco.mj_kinematics(model, data)
            np.testing.assert_allclose(clip.site_pos_w[t, 0], data.site("wrist").xpos, atol=1e-12)
            np.testing.assert_allclose(clip.xpos[t], data.xpos, atol=1e-12)
            np.testing.assert_allclose(clip.xquat[t], data.xquat, atol=1e-12)


def test_bundled_clips_are_reproducible(bundled):
    model = get_body("mouse_forelimb").load_model()
    remade = reach.make_reach_clip(model, reach.start_pose(model), 6, 0.35, "val")
    stored = next(c for c in bundled if c.name == remade.name)
    assert remade.split == stored.split and remade.meta.keys() == stored.meta.keys()
    np.testing.assert_allclose(remade.qpos, stored.qpos, rtol=0, atol=1e-9)


def test_quaternions_must_be_unit_length_and_in_mujocos_order():
    from neuromimic.data.clips import check_quaternions

    body = get_body("rodent")
    model = body.load_model()
    rest = body.rest_qpos(model)
    yaw = np.linspace(-3.0, 3.0, 40)  # a rat turning round, upright
    qpos = np.repeat(rest[None], yaw.size, axis=0)
    qpos[:, 3:7] = np.stack([np.cos(yaw / 2), 0 * yaw, 0 * yaw, np.sin(yaw / 2)], axis=1)
    check_quaternions(qpos, model, rest, "clip 'walk'")
    scipy_order = qpos.copy()
    scipy_order[:, 3:7] = qpos[:, [4, 5, 6, 3]]  # x, y, z, w
    with pytest.raises(
        ClipError, match=r"clip 'walk'.*upside down .* in 50% of the frames.*x, y, z, w \(scipy's order\)"
    ):
        check_quaternions(scipy_order, model, rest, "clip 'walk'")
    upside_down = qpos.copy()
    upside_down[:, 3:7] = [0.0, 1.0, 0.0, 0.0]  # half a turn about x
    with pytest.raises(ClipError, match=r"in 100% of the frames; check the quaternion order .* and the up axis"):
        check_quaternions(upside_down, model, rest, "clip 'walk'")
    unnormalised = qpos.copy()
    unnormalised[2, 3:7] *= 1.5
    with pytest.raises(ClipError, match=r"joint .* has norm 1.5 at frame 2 \(1 frames off\)"):
        ReferenceClip.from_qpos("rodent", unnormalised, 50.0, name="walk", split="train")
