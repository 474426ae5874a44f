"""Bad keypoint input (issue 16): every mistake is one `KeypointsError` naming the file and the fix.

Covers wrong units against the chosen body, keypoints missing in every frame (and valid
JSON reports), unreadable or empty files, inverted up axes, and frames or timestamps out
of order; two tests go through the ``neuromimic`` command (exit status 2, one message).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import h5py
import mujoco
import numpy as np
import pytest

from neuromimic.bodies import get_body
from neuromimic.data.keypoint_clips import check_keypoints_for_body, fit_file
from neuromimic.errors import INPUT_ERROR_EXIT_CODE
from neuromimic.keypoints import UP_AXES, KeypointsError, read_keypoints
from neuromimic.keypoints.fitting import FitOptions, KeypointFit, fit_keypoints
from neuromimic.keypoints.mapping import load_mapping

REPO = Path(__file__).resolve().parents[1]
RAT23 = REPO.parent / "shared" / "data" / "rat23" / "rat23_1000_frames.nwb"
NAMES = ["snout", "neck", "hip", "tail"]


@pytest.fixture(scope="module")
def rodent():
    body = get_body("rodent")
    model = body.load_model()
    return body, model, load_mapping(model, body.keypoint_sites)


def _rodent_mm(rodent, frames: int = 3) -> np.ndarray:
    """The rodent's mapped keypoints [T, K, 3] in mm: its rest pose walking along x."""
    body, model, mapping = rodent
    data = mujoco.MjData(model)
    out = []
    for t in range(frames):
        data.qpos[:] = body.rest_qpos(model)
        data.qpos[0] += 0.002 * t
        mujoco.mj_kinematics(model, data)
        rot = data.xmat[mapping.body_ids].reshape(-1, 3, 3)
        out.append(data.xpos[mapping.body_ids] + np.einsum("kij,kj->ki", rot, mapping.offsets))
    return 1000.0 * np.array(out)


def _npz(path: Path, positions: np.ndarray, names, fps: float = 30.0) -> Path:
    np.savez(path, positions=positions, names=np.array(names, dtype=str), fps=np.array(fps))
    return path


def _cli_fails(caplog, argv: list[str]) -> str:
    """Run ``neuromimic`` with ``argv``; assert exit status 2 and one logged message, return it."""
    from neuromimic.cli import main

    with caplog.at_level(logging.ERROR, logger="neuromimic"), pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == INPUT_ERROR_EXIT_CODE
    errors = [r for r in caplog.records if r.name == "neuromimic" and r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is None
    assert "Traceback" not in caplog.text
    message = errors[0].getMessage()
    assert "\n" not in message
    return message


# ------------------------------------------------------------------ 1. units against the body


@pytest.mark.slow  # about 10 s when it is the first test to import neuromimic.cli (Lightning)
@pytest.mark.skipif(not RAT23.exists(), reason=f"real rat23 NWB file not found at {RAT23}")
def test_cli_wrong_units_refused_with_factor(caplog, tmp_path):
    out = tmp_path / "rat.h5"
    message = _cli_fails(
        caplog,
        ["keypoints", "fit", "--body", "rodent", "--input", str(RAT23), "--units", "m", "--output", str(out)],
    )
    assert "rat23_1000_frames.nwb" in message and "the rodent body" in message
    assert "looks like mm read as m: pass units='mm' (--units mm on the command line)" in message
    assert "1000 times too large" in message
    assert not out.exists()


def test_fit_file_checks_size_against_body_whatever_the_units(rodent, tmp_path):
    path = _npz(tmp_path / "rat_mm.npz", _rodent_mm(rodent), rodent[2].names)
    for units, wrong in (("m", "mm read as m"), ("cm", "mm read as cm")):
        with pytest.raises(KeypointsError, match=rf"rat_mm\.npz.*rodent body.*{wrong}: pass units='mm'"):
            fit_file("rodent", str(path), str(tmp_path / "out.h5"), units=units, scale=0.9)
    # The right units pass the check (no fit needed to see it).
    body, model, mapping = rodent
    kp = read_keypoints(path, units="mm")
    check_keypoints_for_body(kp, "rodent", model, mapping, body.rest_qpos(model), 0.9)
    check_keypoints_for_body(kp, "rodent", model, mapping, body.rest_qpos(model), None)


# ------------------------------------------------------------ 2. keypoints missing everywhere


def test_keypoint_missing_in_every_frame_is_listed(rodent, tmp_path):
    _, model, mapping = rodent
    points = _rodent_mm(rodent)
    points[:, list(mapping.names).index("EarL")] = np.nan
    points[:, list(mapping.names).index("FootR")] = np.nan
    path = _npz(tmp_path / "no_ear.npz", points, mapping.names)
    kp = read_keypoints(path, units="mm")
    with pytest.raises(
        KeypointsError,
        match=r"no_ear\.npz.*\['EarL', 'FootR'\] have no valid frame.*--drop_missing_keypoints",
    ):
        fit_keypoints(model, mapping, kp, FitOptions(scale=0.9))
    everything = np.full_like(points, np.nan)
    everything[:, :, :2] = points[:, :, :2]
    everything[0, 0] = points[0, 0]  # one z: not a 2-D file, but nothing fits
    kp = read_keypoints(_npz(tmp_path / "empty.npz", everything, mapping.names), units="mm", max_gap_frames=0)
    with pytest.raises(KeypointsError, match=r"empty\.npz': none of the 23 mapped keypoints has a valid frame"):
        fit_keypoints(model, mapping, kp.frames(1, 3), FitOptions(scale=0.9))


def test_cli_missing_keypoint_error_then_dropped_with_valid_json(rodent, caplog, capsys, tmp_path):
    points = _rodent_mm(rodent)
    points[:, list(rodent[2].names).index("EarL")] = np.nan
    path = _npz(tmp_path / "no_ear.npz", points, rodent[2].names)
    argv = [
        "keypoints",
        "fit",
        "--body",
        "rodent",
        "--input",
        str(path),
        "--units",
        "mm",
        "--scale",
        "0.9",
        "--output",
        str(tmp_path / "clip.h5"),
    ]
    message = _cli_fails(caplog, argv)
    assert "no_ear.npz" in message and "['EarL']" in message and "--drop_missing_keypoints" in message

    from neuromimic.cli import main

    main([*argv, "--drop_missing_keypoints", "true"])

    def no_nan(constant):
        raise AssertionError(f"{constant} is not JSON")

    report = json.loads(capsys.readouterr().out, parse_constant=no_nan)
    assert "EarL" not in report["per_keypoint_mm"] and len(report["per_keypoint_mm"]) == 22
    assert report["frames"] == 3


def test_report_writes_null_for_keypoints_without_data():
    residual = np.array([[0.001, np.nan], [0.002, np.nan]])
    fit = KeypointFit(
        qpos=np.zeros((2, 7)),
        offsets=np.zeros((2, 3)),
        scale=1.0,
        names=("a", "b"),
        bodies=("x", "y"),
        predicted=np.zeros((2, 2, 3)),
        residual=residual,
        limit_violations_pct=float("nan"),
        seconds=0.1,
    )
    report = fit.report()
    assert report["per_keypoint_mm"] == {"a": 1.5, "b": None}
    assert report["joint_limit_violations_pct"] is None
    json.dumps(report, allow_nan=False)


# ---------------------------------------------------------------- 3. unreadable or empty files


@pytest.mark.parametrize(
    "name, expected",
    [
        ("junk.csv", r"is not a text file.*expected comma-separated UTF-8 text"),
        ("junk.h5", r"is not an HDF5 file; expected a DeepLabCut \.h5.*or a SLEAP analysis \.h5"),
        ("junk.slp", r"is not an HDF5 file; expected a SLEAP \.slp file"),
        ("junk.mat", r"is not a readable MATLAB \.mat file.*expected a \.mat saved by MATLAB"),
        ("junk.npz", r"is not a zip archive, so not a \.npz file; expected"),
        ("junk.nwb", r"is not an HDF5 file; expected an NWB file"),
        ("junk.c3d", r"is not a readable C3D file.*expected a C3D"),
    ],
)
def test_random_bytes_name_the_file_and_the_format(tmp_path, name, expected):
    path = tmp_path / name
    path.write_bytes(b"\xbb\x01" + np.random.default_rng(0).bytes(3000))
    with pytest.raises(KeypointsError, match=rf"'{path}'.*{expected}"):
        read_keypoints(path, units="mm", fps=30)


def test_hdf5_without_the_sleap_layout(tmp_path):
    path = tmp_path / "other.slp"
    with h5py.File(path, "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(KeypointsError, match=r"other\.slp' is an HDF5 file without \['metadata'.*SLEAP"):
        read_keypoints(path, units="mm", fps=30)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", r"is empty; expected comma-separated"),
        ("frame,a_x,a_y,a_z\n", r"has a header but no data rows"),
        ("a_x,a_y,a_z\n", r"has a header but no data rows"),
        ("frame,a_x,a_y,a_z\n0,1,2,3\n1,1,2\n", r"line 3 has 3 cells but the header has 4 columns"),
        ("frame,a_x,a_y,a_z\n0,1,2,3\n1,1,2,oops\n", r"line 3, column 'a_z' holds 'oops', which is not a number"),
        ("frame,a_x,a_y,a_z,b_x,b_y,b_z\n0,1,2,,4,5,\n1,1,2,nan,4,5,\n", r"every z value is missing.*2-D.*triangulate"),
    ],
)
def test_bad_csv_tables(tmp_path, text, expected):
    path = tmp_path / "table.csv"
    path.write_text(text)
    with pytest.raises(KeypointsError, match=rf"table\.csv'?:? .*{expected}"):
        read_keypoints(path, units="mm", fps=30)


def test_missing_input_file_and_directory(tmp_path, caplog):
    with pytest.raises(KeypointsError, match=r"absent\.nwb' does not exist; check the path"):
        read_keypoints(tmp_path / "absent.nwb")
    folder = tmp_path / "folder.csv"
    folder.mkdir()
    with pytest.raises(KeypointsError, match=r"folder\.csv' is not a file"):
        read_keypoints(folder, units="mm", fps=30)
    message = _cli_fails(
        caplog,
        [
            "keypoints",
            "fit",
            "--body",
            "rodent",
            "--input",
            str(tmp_path / "absent.csv"),
            "--output",
            str(tmp_path / "c.h5"),
        ],
    )
    assert "absent.csv' does not exist" in message and "--input" in message


# ------------------------------------------------------------------------------ 4. up axis


def test_inverted_up_axis_refused_and_fixed_by_up_axis(rodent, tmp_path):
    body, model, mapping = rodent
    points = _rodent_mm(rodent)
    upside_down = _npz(tmp_path / "upside_down.npz", points @ UP_AXES["-z"].T, mapping.names)
    with pytest.raises(
        KeypointsError,
        match=r"upside_down\.npz.*mean height \(z\).*-0\.04\d* m.*looks inverted or is not z.*"
        r"--up_axis.*up_axis='-z'",
    ):
        fit_file("rodent", str(upside_down), str(tmp_path / "c.h5"), units="mm", scale=0.9)
    kp = read_keypoints(upside_down, units="mm", up_axis="-z")
    np.testing.assert_allclose(kp.positions, points / 1000, atol=1e-12)
    check_keypoints_for_body(kp, "rodent", model, mapping, body.rest_qpos(model), 0.9)
    # Data recorded with y up is rotated so that y becomes z.
    y_up = _npz(tmp_path / "y_up.npz", points @ UP_AXES["y"], mapping.names)
    kp = read_keypoints(y_up, units="mm", up_axis="y")
    np.testing.assert_allclose(kp.positions, points / 1000, atol=1e-12)
    assert kp.meta["up_axis"] == "y"
    with pytest.raises(KeypointsError, match=r"y_up\.npz.*up_axis is 'w'.*one of \['z', 'y'"):
        read_keypoints(y_up, units="mm", up_axis="w")


def test_up_axes_are_rotations():
    for axis, rot in UP_AXES.items():
        assert np.linalg.det(rot) == pytest.approx(1.0)
        np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-12)
        up = np.zeros(3)
        up["xyz".index(axis[-1])] = -1.0 if axis.startswith("-") else 1.0
        np.testing.assert_allclose(rot @ up, [0, 0, 1], atol=1e-12)


# ------------------------------------------------------------------- 5. time order of frames


def _write_pose_nwb(path: Path, timestamps: np.ndarray) -> None:
    """A minimal ndx-pose layout (what the reader looks for), written with h5py."""
    xyz = np.random.default_rng(0).normal(0, 50, (len(timestamps), len(NAMES), 3))
    with h5py.File(path, "w") as f:
        pose = f.create_group("processing/behavior/PoseEstimation")
        pose.attrs["neurodata_type"] = "PoseEstimation"
        for k, name in enumerate(NAMES):
            series = pose.create_group(name)
            series.attrs["neurodata_type"] = "PoseEstimationSeries"
            data = series.create_dataset("data", data=xyz[:, k])
            data.attrs["unit"] = "mm"
            series.create_dataset("timestamps", data=timestamps)


@pytest.mark.parametrize(
    "timestamps, expected",
    [
        ([0.0, 0.02, 0.04, 0.03, 0.08], r"index 3 is 0\.03 s after 0\.04 s at index 2"),
        ([0.0, 0.02, 0.02, 0.04, 0.06], r"index 2 is 0\.02 s after 0\.02 s at index 1"),
    ],
)
def test_nwb_timestamps_must_increase(tmp_path, timestamps, expected):
    path = tmp_path / "pose.nwb"
    _write_pose_nwb(path, np.array(timestamps))
    with pytest.raises(
        KeypointsError,
        match=rf"pose\.nwb.*`processing/behavior/PoseEstimation/[a-z]+/timestamps` do not strictly "
        rf"increase: {expected}.*time order",
    ):
        read_keypoints(path)
    _write_pose_nwb(path, np.arange(5) * 0.02)
    assert read_keypoints(path).fps == pytest.approx(50.0)


@pytest.mark.parametrize(
    "frames, expected",
    [
        ([0, 1, 1, 2], r"data row 3 \(line 4\) repeats frame 1 after 1"),
        ([0, 2, 1, 3], r"data row 3 \(line 4\) goes back to frame 1 after 2"),
        ([0, 1, 2.5, 3], r"data row 3 \(line 4\) has frame 2\.5; the `frame` column must hold whole"),
    ],
)
def test_csv_frames_must_be_in_order_and_unique(tmp_path, frames, expected):
    lines = ["frame,a_x,a_y,a_z,b_x,b_y,b_z"] + [f"{f},1,2,30,100,2,40" for f in frames]
    path = tmp_path / "frames.csv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(KeypointsError, match=rf"frames\.csv': {expected}"):
        read_keypoints(path, units="mm", fps=30)


def test_anipose_fnum_must_be_in_order(tmp_path):
    cols = [f"a_{s}" for s in ("x", "y", "z", "error", "score", "ncams")] + ["fnum"]
    rows = [[1, 2, 3, 0.5, 0.9, 2, f] for f in (0, 1, 3, 2)]
    path = tmp_path / "pose-3d.csv"
    path.write_text(",".join(cols) + "\n" + "\n".join(",".join(map(str, r)) for r in rows) + "\n")
    with pytest.raises(KeypointsError, match=r"pose-3d\.csv': data row 4 \(line 5\) goes back to fnum 2 after 3"):
        read_keypoints(path, units="mm", fps=30)


# ------------------------------------------ 6. reader options on the command line (issue 20)


def _dannce_files(rodent, tmp_path: Path) -> tuple[Path, Path]:
    """A DANNCE prediction (``pred`` [T, 3, K] in mm, ``p_max`` [T, K]) of the rodent's
    keypoints and its skeleton .mat (``joint_names``, ``joints_idx``), as DANNCE saves them."""
    from scipy.io import savemat

    points = _rodent_mm(rodent)
    names = list(rodent[2].names)
    pred = tmp_path / "save_data_AVG0.mat"
    savemat(
        pred,
        {
            "pred": np.transpose(points, (0, 2, 1)),
            "p_max": np.full(points.shape[:2], 0.3),
            "sampleID": np.arange(len(points)),
        },
    )
    skeleton = tmp_path / "rat23.mat"
    savemat(
        skeleton,
        {
            "joint_names": np.array(names, dtype=object),
            "joints_idx": np.array([[k, k + 1] for k in range(1, len(names))]),
        },
    )
    return pred, skeleton


def test_cli_fits_dannce_with_skeleton(rodent, caplog, capsys, tmp_path):
    from neuromimic.cli import main
    from neuromimic.data.clips import ReferenceClip

    pred, skeleton = _dannce_files(rodent, tmp_path)
    out = tmp_path / "rat.h5"
    argv = [
        "keypoints",
        "fit",
        "--body",
        "rodent",
        "--input",
        str(pred),
        "--units",
        "mm",
        "--fps",
        "50",
        "--scale",
        "0.9",
        "--output",
        str(out),
    ]
    message = _cli_fails(caplog, argv)
    assert "save_data_AVG0.mat" in message and "--skeleton rat23.mat or --keypoint_names [a,b,c]" in message
    assert not out.exists()

    main([*argv, "--skeleton", str(skeleton), "--confidence_threshold", "0.1", "--max_gap_frames", "2"])
    report = json.loads(capsys.readouterr().out)
    assert report["frames"] == 3 and report["output"] == str(out)
    assert len(report["per_keypoint_mm"]) == 23
    clip = ReferenceClip.load(out, "rodent")
    assert clip.num_frames == 3 and clip.fps == 50.0


def test_cli_fits_sleap_anipose_points3d(rodent, caplog, capsys, tmp_path):
    from neuromimic.cli import main

    points = _rodent_mm(rodent)
    path = tmp_path / "points3d.h5"
    with h5py.File(path, "w") as f:  # sleap-anipose: [frames, tracks, nodes, 3], no names
        f["tracks"] = np.stack([points + 1000.0, points], axis=1)
    argv = [
        "keypoints",
        "fit",
        "--body",
        "rodent",
        "--input",
        str(path),
        "--units",
        "mm",
        "--fps",
        "50",
        "--scale",
        "0.9",
        "--output",
        str(tmp_path / "rat.h5"),
    ]
    message = _cli_fails(caplog, argv)
    assert "points3d.h5' is a sleap-anipose points3d.h5, which holds no node names" in message
    assert "(--keypoint_names [a,b,c] on the command line)" in message and "(--skeleton project.slp)" in message

    main([*argv, "--keypoint_names", "[" + ",".join(rodent[2].names) + "]", "--individual", "1"])
    assert json.loads(capsys.readouterr().out)["frames"] == 3
    assert (tmp_path / "rat.h5").exists()


def test_cli_passes_every_reader_option(monkeypatch, caplog, tmp_path):
    from neuromimic.data import keypoint_clips

    calls = []

    def read_keypoints(path, **kwargs):
        calls.append(kwargs)
        raise KeypointsError(f"keypoint file {str(path)!r}: stop here")

    monkeypatch.setattr(keypoint_clips, "read_keypoints", read_keypoints)
    argv = [
        "keypoints",
        "fit",
        "--body",
        "rodent",
        "--input",
        str(tmp_path / "kp.h5"),
        "--output",
        str(tmp_path / "c.h5"),
    ]
    _cli_fails(caplog, argv)
    assert calls[-1]["skeleton"] is None and calls[-1]["keypoint_names"] is None
    assert calls[-1]["individual"] is None
    assert calls[-1]["confidence_threshold"] == 0.0 and calls[-1]["max_gap_frames"] == 5  # the reader's defaults
    caplog.clear()
    _cli_fails(
        caplog,
        [
            *argv,
            "--format",
            "sleap",
            "--skeleton",
            "project.slp",
            "--keypoint_names",
            "[a, b, c]",
            "--individual",
            "1",
            "--confidence_threshold",
            "0.25",
            "--max_gap_frames",
            "3",
            "--units",
            "cm",
            "--fps",
            "100",
            "--up_axis",
            "y",
        ],
    )
    assert calls[-1] == {
        "format": "sleap",
        "units": "cm",
        "fps": 100.0,
        "up_axis": "y",
        "skeleton": "project.slp",
        "keypoint_names": ["a", "b", "c"],
        "individual": "1",
        "confidence_threshold": 0.25,
        "max_gap_frames": 3,
    }


def test_cli_keypoint_names_must_be_a_list(capsys, tmp_path):
    from neuromimic.cli import main

    argv = ["keypoints", "fit", "--body", "rodent", "--input", "x.mat", "--output", "c.h5"]
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--keypoint_names", "a,,b"])
    assert exit_info.value.code == INPUT_ERROR_EXIT_CODE
    error = capsys.readouterr().err
    assert 'Parser key "keypoint_names"' in error and "Given value: a,,b" in error


def test_cli_help_lists_what_each_format_needs(capsys):
    from neuromimic.cli import main
    from neuromimic.keypoints import FORMATS

    with pytest.raises(SystemExit) as exit_info:
        main(["keypoints", "fit", "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps to the terminal width
    for option in ("--skeleton", "--keypoint_names", "--individual", "--confidence_threshold", "--max_gap_frames"):
        assert option in text
    epilog = text[text.index("what each format needs") :]
    for fmt in FORMATS:
        assert f" {fmt} " in epilog
    assert "dannce .mat with pred [T, 3, K]" in epilog and "--skeleton <skeleton>.mat" in epilog
    assert "sleap-anipose points3d.h5" in epilog and "--keypoint_names or --skeleton <project>.slp" in epilog
