"""Keypoint fitting: torch forward kinematics, the STAC-style fitter, clips and the CLI."""

from __future__ import annotations

import inspect
import json
import typing

import mujoco
import numpy as np
import pytest
import torch

from neuromimic.bodies import get_body
from neuromimic.data.clips import ReferenceClip
from neuromimic.data.keypoint_clips import fit_file, fit_to_clips
from neuromimic.keypoints import FORMATS, UP_AXES, KeypointsError, make_keypoints
from neuromimic.keypoints.fitting import FitOptions, fit_keypoints
from neuromimic.keypoints.kinematics import TorchKinematics, random_qpos
from neuromimic.keypoints.mapping import load_mapping, make_mapping

SCALE = 0.9

# Free, ball, slide and hinge joints (the rodent has free + hinges only).
ALL_JOINTS_XML = """
<mujoco><worldbody>
  <body pos="0.1 0 0.2" quat="0.9 0.1 0.2 0.3"><joint type="ball" pos="0.01 0.02 0"/><geom size="0.1"/>
    <body pos="0.1 0.2 0" quat="0.5 0.5 0.1 0"><joint type="slide" axis="0 1 1" pos="0 0 0.1"/>
      <joint type="hinge" axis="1 0 1" pos="0.03 0 0"/><geom size="0.1"/><site pos="0.1 0.1 0.1"/>
    </body>
  </body>
  <body pos="0 0 0.1"><freejoint/><geom size="0.1"/><site pos="0.05 0 0"/>
    <body pos="0 0.1 0"><joint type="hinge" axis="0 0 1"/><geom size="0.05"/><site pos="0 0.04 0.02"/></body>
  </body>
</worldbody></mujoco>
"""


@pytest.fixture(scope="module")
def rodent():
    body = get_body("rodent")
    return body, body.load_model()


def _mujoco_fk(model, qpos):
    data = mujoco.MjData(model)
    sites, xpos, xquat = [], [], []
    for q in qpos:
        data.qpos[:] = q
        mujoco.mj_kinematics(model, data)
        sites.append(data.site_xpos.copy())
        xpos.append(data.xpos.copy())
        xquat.append(data.xquat * np.where(data.xquat[:, :1] < 0, -1.0, 1.0))
    return np.array(sites), np.array(xpos), np.array(xquat)


@pytest.mark.parametrize("which", ["rodent", "all_joints"])
def test_torch_fk_matches_mujoco(rodent, which):
    model = rodent[1] if which == "rodent" else mujoco.MjModel.from_xml_string(ALL_JOINTS_XML)
    qpos = random_qpos(model, 16, np.random.default_rng(1))
    out = TorchKinematics(model)(torch.as_tensor(qpos))
    sites, xpos, xquat = _mujoco_fk(model, qpos)
    np.testing.assert_allclose(out.site_xpos.numpy(), sites, atol=1e-9, rtol=0)
    np.testing.assert_allclose(out.xpos.numpy(), xpos, atol=1e-9, rtol=0)
    np.testing.assert_allclose(out.xquat.numpy(), xquat, atol=1e-9, rtol=0)


def test_torch_fk_scale_and_gradients(rodent):
    _, model = rodent
    fk = TorchKinematics(model)
    qpos = torch.as_tensor(random_qpos(model, 4, np.random.default_rng(2)))
    scaled = fk(qpos, scale=SCALE).site_xpos
    unscaled_root = qpos.clone()
    unscaled_root[:, :3] /= SCALE
    np.testing.assert_allclose(scaled.numpy(), SCALE * fk(unscaled_root).site_xpos.numpy(), atol=1e-12)
    q = qpos.clone().requires_grad_(True)
    fk(q).site_xpos.sum().backward()
    assert torch.isfinite(q.grad).all() and q.grad[:, 7:].abs().sum() > 0


def _synthetic(model, mapping, frames=5, seed=0, beyond_limits=False):
    """Keypoints [T, K, 3] (m) from known qpos (scaled model) and known offsets."""
    rng = np.random.default_rng(seed)
    qpos = np.tile(model.qpos0, (frames, 1))
    lo, hi = model.jnt_range[1:, 0], model.jnt_range[1:, 1]
    angles = rng.uniform(0.3 * lo, 0.3 * hi, (1, model.nq - 7)) + rng.normal(0, 0.03, (frames, model.nq - 7))
    if beyond_limits:  # ask for knees and elbows 0.4 rad beyond their ranges
        for name in ("knee_L", "knee_R", "elbow_L", "elbow_R"):
            j = model.joint(name)
            angles[:, j.qposadr[0] - 7] = j.range[1] + 0.4
    qpos[:, 7:] = np.clip(angles, lo - 1.0, hi + 1.0)
    qpos[:, :3] = [0.3, -0.1, 0.05] + 0.003 * np.arange(frames)[:, None]
    quat = np.array([np.cos(0.4), 0.0, 0.0, np.sin(0.4)])
    qpos[:, 3:7] = quat
    offsets = mapping.offsets * SCALE + rng.normal(0, 0.002, mapping.offsets.shape)
    fk = TorchKinematics(model)
    out = fk(torch.as_tensor(qpos), scale=SCALE)
    points = fk.points(out, torch.as_tensor(mapping.body_ids), torch.as_tensor(offsets)).numpy()
    return qpos, offsets, points


def _keypoints(points, names, fps=30.0):
    return make_keypoints(points, names, source="synthetic", fps=fps, units="m", units_from="test")


@pytest.fixture(scope="module")
def synthetic_fit(rodent):
    body, model = rodent
    mapping = load_mapping(model, body.keypoint_sites)
    qpos, offsets, points = _synthetic(model, mapping, frames=5)
    fit = fit_keypoints(
        model,
        mapping,
        _keypoints(points, mapping.names),
        FitOptions(scale=SCALE, iterations=4, trunk_keypoints=body.trunk_keypoints),
    )
    return mapping, qpos, offsets, points, fit


def test_fit_recovers_synthetic_keypoints(synthetic_fit):
    _, qpos, offsets, _, fit = synthetic_fit
    report = fit.report()
    assert report["frames"] == 5
    assert report["mean_residual_mm"] < 0.3, report
    assert report["p95_residual_mm"] < 1.0, report
    # Offsets are identifiable only up to what the poses can absorb: a few mm.
    assert np.abs(fit.offsets - offsets).max() < 0.006
    # The root is recovered to within a few mm and a few degrees.
    assert np.abs(fit.qpos[:, :3] - qpos[:, :3]).max() < 0.006
    assert np.abs(np.abs((fit.qpos[:, 3:7] * qpos[:, 3:7]).sum(1)) - 1).max() < 0.01


def test_fit_respects_joint_limits(rodent):
    body, model = rodent
    mapping = load_mapping(model, body.keypoint_sites)
    _, _, points = _synthetic(model, mapping, frames=3, seed=3, beyond_limits=True)
    fit = fit_keypoints(
        model,
        mapping,
        _keypoints(points, mapping.names),
        FitOptions(scale=SCALE, iterations=1, trunk_keypoints=body.trunk_keypoints),
    )
    assert fit.report()["joint_limit_violations_pct"] == 0.0
    limited = np.flatnonzero(model.jnt_limited & (model.jnt_type == mujoco.mjtJoint.mjJNT_HINGE))
    adr = model.jnt_qposadr[limited]
    assert (fit.qpos[:, adr] >= model.jnt_range[limited, 0] - 1e-12).all()
    assert (fit.qpos[:, adr] <= model.jnt_range[limited, 1] + 1e-12).all()
    knee = model.joint("knee_L")
    np.testing.assert_allclose(fit.qpos[:, knee.qposadr[0]], knee.range[1], atol=0.1)


def test_clip_validates_and_replays(synthetic_fit, tmp_path):
    mapping, _, _, _, fit = synthetic_fit
    (clip,) = fit_to_clips(fit, "rodent", fps=30.0, fps_out=60.0, name="synthetic")
    path = clip.save(tmp_path / "clip.h5")
    loaded = ReferenceClip.load(path, body="rodent")
    assert loaded.fps == 60.0 and loaded.num_frames == 9  # 5 frames at 30 Hz = 4/30 s
    assert loaded.meta["body_scale"] == pytest.approx(SCALE)
    assert json.loads(loaded.meta["keypoint_names"]) == list(mapping.names)
    np.testing.assert_allclose(json.loads(loaded.meta["keypoint_offsets_m"]), fit.offsets, atol=1e-6)
    model = get_body("rodent").load_model()
    sites, xpos, _ = _mujoco_fk(model, loaded.qpos)
    ids = [model.site(s).id for s in loaded.site_names]
    np.testing.assert_allclose(sites[:, ids], loaded.site_pos_w, atol=1e-12)
    np.testing.assert_allclose(xpos, loaded.xpos, atol=1e-12)
    # The unscaled replay, scaled back, puts the keypoints where the fit did.
    fk = TorchKinematics(model)
    out = fk(torch.as_tensor(fit.clip_qpos()))
    points = fk.points(out, torch.as_tensor(mapping.body_ids), torch.as_tensor(fit.offsets / SCALE))
    np.testing.assert_allclose(SCALE * points.numpy(), fit.predicted, atol=1e-9)


def test_segments_hold_out_the_end_of_the_recording(synthetic_fit):
    fit = synthetic_fit[-1]
    whole = fit_to_clips(fit, "rodent", fps=30.0, fps_out=60.0)[0]
    # 9 frames at 60 Hz in 2-frame segments: 4 of them, the short remainder joins the last.
    clips = fit_to_clips(fit, "rodent", fps=30.0, fps_out=60.0, name="s", segment_seconds=2 / 60, val_fraction=0.3)
    assert [c.name for c in clips] == ["s_000", "s_001", "s_002", "s_003"]
    assert [c.split for c in clips] == ["train", "train", "val", "val"]
    assert [c.num_frames for c in clips] == [2, 2, 2, 3]
    np.testing.assert_array_equal(np.concatenate([c.qpos for c in clips]), whole.qpos)
    with pytest.raises(ValueError, match="fewer than 2 frames"):
        fit_to_clips(fit, "rodent", fps=30.0, fps_out=60.0, segment_seconds=0.01)


def test_unknown_mapping_name_lists_bodies_and_sites(rodent):
    _, model = rodent
    with pytest.raises(KeypointsError, match=r"nose_tip.*Available bodies: torso.*skull.*sites: .*Snout"):
        make_mapping(model, {"Snout": {"body": "nose_tip", "offset": [0, 0, 0]}})
    with pytest.raises(KeypointsError, match=r"no_such_site.*Available bodies"):
        make_mapping(model, {"Snout": {"site": "no_such_site"}})


def test_fit_file_is_a_typed_and_documented_command():
    # jsonargparse builds `neuromimic keypoints fit` from the signature and the Args section.
    hints = typing.get_type_hints(fit_file)
    args = fit_file.__doc__.split("Args:")[1].split("Returns:")[0]
    for name in inspect.signature(fit_file).parameters:
        assert name in hints and f"\n        {name}: " in args, name
    assert typing.get_args(hints["split"]) == ("train", "val")
    assert typing.get_args(hints["up_axis"]) == tuple(UP_AXES)
    formats, none = typing.get_args(hints["format"])
    assert typing.get_args(formats) == FORMATS and none is type(None)
    assert hints["keypoint_names"] == list[str] | None


def test_fit_file_scale_is_the_bodys_unless_given_or_fit(rodent, tmp_path, monkeypatch):
    from neuromimic.data import keypoint_clips

    body, model = rodent
    mapping = load_mapping(model, body.keypoint_sites)
    _, _, points = _synthetic(model, mapping, frames=3, seed=5)
    npz = tmp_path / "tiny.npz"
    np.savez(npz, positions=points * 1000.0, names=np.array(mapping.names, dtype=str), fps=np.array(30.0))
    options = []

    def fit_keypoints(model, mapping, keypoints, opts):
        options.append(opts)
        raise KeypointsError("stop here")

    monkeypatch.setattr(keypoint_clips, "fit_keypoints", fit_keypoints)
    for scale, expected in ((None, body.keypoint_scale), ("fit", None), (1.1, 1.1)):
        with pytest.raises(KeypointsError, match="stop here"):
            fit_file("rodent", str(npz), str(tmp_path / "c.h5"), units="mm", scale=scale)
        assert options[-1].scale == expected and options[-1].trunk_keypoints == body.trunk_keypoints


def test_cli_keypoints_fit_on_npz(rodent, tmp_path, capsys):
    from neuromimic.cli import main

    body, model = rodent
    mapping = load_mapping(model, body.keypoint_sites)
    _, _, points = _synthetic(model, mapping, frames=3, seed=5)
    npz = tmp_path / "tiny.npz"
    np.savez(npz, positions=points * 1000.0, names=np.array(mapping.names, dtype=str), fps=np.array(30.0))
    out = tmp_path / "tiny.h5"
    main(
        [
            "keypoints",
            "fit",
            "--body",
            "rodent",
            "--input",
            str(npz),
            "--units",
            "mm",
            "--output",
            str(out),
            "--scale",
            "0.9",
            "--iterations",
            "1",
        ]
    )
    report = json.loads(capsys.readouterr().out)
    assert set(report) >= {
        "mean_residual_mm",
        "p95_residual_mm",
        "per_keypoint_mm",
        "joint_limit_violations_pct",
        "frames",
        "seconds",
    }
    assert report["frames"] == 3 and report["mean_residual_mm"] < 1.0
    assert ReferenceClip.load(out, body="rodent").num_frames == 3


def test_fit_scale_runs_and_lands_near_the_truth(rodent):
    body, model = rodent
    mapping = load_mapping(model, body.keypoint_sites)
    _, _, points = _synthetic(model, mapping, frames=6, seed=7)
    fit = fit_keypoints(
        model,
        mapping,
        _keypoints(points, mapping.names),
        FitOptions(scale=None, iterations=1, joint_steps=20, final_steps=10, trunk_keypoints=body.trunk_keypoints),
    )
    assert 0.75 < fit.scale < 1.05
    assert fit.report()["mean_residual_mm"] < 0.5


def test_mirror_names_pair_the_sides_and_keep_the_midline():
    from neuromimic.keypoints.keypoints import mirror_name

    names = ["EarL", "EarR", "SpineL", "Snout", "hand_l", "hand_r", "l_knee", "r_knee", "LeftFoot", "RightFoot"]
    names += ["LFHD", "RFHD", "LASI", "upright"]
    expected = ["EarR", "EarL", "SpineL", "Snout", "hand_r", "hand_l", "r_knee", "l_knee", "RightFoot", "LeftFoot"]
    expected += ["RFHD", "LFHD", "LASI", "upright"]  # rat23's SpineL is the lower spine: no SpineR, no side
    assert [mirror_name(n, names) for n in names] == expected
    with pytest.raises(KeypointsError, match=r"'hand_l': its partner 'hand_r' is not among"):
        mirror_name("hand_l", ["hand_l", "Snout"])


def test_mirrored_keypoints_reflect_y_and_swap_the_sides():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(4, 3, 3))
    kp = _keypoints(points, ["EarL", "Snout", "EarR"])
    mirrored = kp.mirrored()
    assert mirrored.names == kp.names
    np.testing.assert_array_equal(mirrored.positions[:, 0], points[:, 2] * [1, -1, 1])
    np.testing.assert_array_equal(mirrored.positions[:, 1], points[:, 1] * [1, -1, 1])
    np.testing.assert_array_equal(mirrored.mirrored().positions, points)
    with pytest.raises(KeypointsError, match=r"synthetic.*'hand_l'.*left-right pairs"):
        _keypoints(points, ["hand_l", "Snout", "EarR"]).mirrored()


def test_fit_file_mirror_adds_the_mirror_image_of_the_training_part(rodent, tmp_path):
    """12 frames in 3 segments of 4, the last held out: the mirror image of the first 8
    frames becomes 2 more training clips, the body reflected in the x-z plane."""
    body, model = rodent
    mapping = load_mapping(model, body.keypoint_sites)
    _, _, points = _synthetic(model, mapping, frames=12, seed=3)
    npz = tmp_path / "walk.npz"
    np.savez(npz, positions=points * 1000.0, names=np.array(mapping.names, dtype=str), fps=np.array(30.0))
    options = {"units": "mm", "scale": SCALE, "segment_seconds": 4 / 30, "val_fraction": 0.3}
    report = fit_file("rodent", str(npz), str(tmp_path / "clips"), mirror=True, **options)
    assert report["clips"] == {
        "walk_000": "train",
        "walk_001": "train",
        "walk_002": "val",
        "walk_mirror_000": "train",
        "walk_mirror_001": "train",
    }
    assert report["mirror"]["mean_residual_mm"] < 1.0
    for i in range(2):
        original = ReferenceClip.load(tmp_path / "clips" / f"walk_{i:03d}.h5", body="rodent")
        mirror = ReferenceClip.load(tmp_path / "clips" / f"walk_mirror_{i:03d}.h5", body="rodent")
        np.testing.assert_allclose(mirror.qpos[:, :3], original.qpos[:, :3] * [1, -1, 1], atol=1e-3)  # 0.2 mm
        sides = [original.site_names.index(name) for name in ("HandR", "HandL", "FootR", "FootL", "Snout")]
        reflected = original.site_pos_w[:, sides] * [1, -1, 1]
        assert np.abs(mirror.site_pos_w - reflected).max() < 1e-3  # 0.2 mm
    with pytest.raises(KeypointsError, match="mirror: true needs segment_seconds"):
        fit_file("rodent", str(npz), str(tmp_path / "one.h5"), units="mm", mirror=True)
