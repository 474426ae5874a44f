"""Lab pose-file readers: every format written by its own library, every reading rule."""

from __future__ import annotations

import datetime
import pickle
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

from neuromimic.keypoints import Keypoints, KeypointsError, infer_format, read_keypoints

RAT23 = Path(__file__).resolve().parents[2] / "shared" / "data" / "rat23" / "rat23_1000_frames.nwb"
RAT23_NAMES = [
    "Snout",
    "EarL",
    "EarR",
    "SpineF",
    "SpineM",
    "SpineL",
    "TailBase",
    "ShoulderL",
    "ElbowL",
    "WristL",
    "HandL",
    "ShoulderR",
    "ElbowR",
    "WristR",
    "HandR",
    "HipL",
    "KneeL",
    "AnkleL",
    "FootL",
    "HipR",
    "KneeR",
    "AnkleR",
    "FootR",
]
NAMES = ["snout", "neck", "hip", "tail"]


def _walk(num_frames: int = 40, seed: int = 0) -> np.ndarray:
    """A rat-sized (about 0.2 m) four-keypoint body walking along x, in mm [T, 4, 3]."""
    rng = np.random.default_rng(seed)
    body = np.array([[100.0, 0, 30], [50, 0, 40], [-50, 0, 35], [-100, 0, 20]])
    t = np.arange(num_frames)[:, None, None]
    return body[None] + np.array([2.0, 0, 0]) * t + rng.normal(0, 1.0, (num_frames, 4, 3))


# ----------------------------------------------------------------------------- real file


@pytest.mark.skipif(not RAT23.exists(), reason=f"real rat23 NWB file not found at {RAT23}")
def test_rat23_real_nwb():
    # The file's unit attribute says "pixels": not trusted, so units= is required.
    with pytest.raises(KeypointsError, match=r"'pixels'.*units="):
        read_keypoints(RAT23)
    kp = read_keypoints(RAT23, units="mm", body_size=0.2)
    assert kp.format == "nwb"
    assert kp.positions.shape == (1000, 23, 3)
    assert list(kp.names) == RAT23_NAMES
    assert kp.fps == pytest.approx(30.0)
    assert kp.units_from == "argument units='mm'"
    assert kp.valid.all() and np.isfinite(kp.positions).all()
    assert kp.confidence.shape == (1000, 23)
    # Snout to tail base is about 162 mm (README); the whole cloud is rat-sized.
    snout_tail = np.linalg.norm(kp.positions[:, 0] - kp.positions[:, 6], axis=1)
    assert 0.12 < np.median(snout_tail) < 0.2
    assert 0.1 < kp.size() < 0.3
    # Read as metres, the plausibility check names the mistake.
    with pytest.raises(KeypointsError, match=r"mm read as m: pass units='mm'"):
        read_keypoints(RAT23, units="m", body_size=0.2)


# ----------------------------------------------------------------------------- NWB


def _write_nwb(path: Path, data: np.ndarray, unit: str = "mm", rate: float = 50.0) -> None:
    pynwb = pytest.importorskip("pynwb")
    ndx_pose = pytest.importorskip("ndx_pose")
    nwb = pynwb.NWBFile(
        session_description="test",
        identifier="kp",
        session_start_time=datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc),
    )
    skeleton = ndx_pose.Skeleton(name="rat", nodes=list(NAMES), edges=np.array([[0, 1], [1, 2], [2, 3]], dtype="uint8"))
    series = [
        ndx_pose.PoseEstimationSeries(
            name=name,
            data=data[:, k],
            unit=unit,
            reference_frame="arena",
            confidence=np.full(len(data), 0.9),
            rate=rate,
            starting_time=0.0,
        )
        for k, name in enumerate(NAMES)
    ]
    pose = ndx_pose.PoseEstimation(
        name="PoseEstimation",
        pose_estimation_series=series,
        skeleton=skeleton,
        source_software="test",
    )
    behavior = nwb.create_processing_module("behavior", "pose")
    behavior.add(ndx_pose.Skeletons(skeletons=[skeleton]))
    behavior.add(pose)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pynwb.NWBHDF5IO(str(path), "w") as io:
            io.write(nwb)


def test_nwb_units_from_file_and_override(tmp_path):
    xyz = _walk()
    path = tmp_path / "pose.nwb"
    _write_nwb(path, xyz, unit="mm", rate=50.0)
    kp = read_keypoints(path, body_size=0.2)
    assert list(kp.names) == NAMES and kp.fps == 50.0
    assert kp.units_from == "file: NWB `unit` attribute of the series data = 'mm'"
    np.testing.assert_allclose(kp.positions, xyz / 1000)
    np.testing.assert_allclose(kp.confidence, 0.9)
    # units= always wins over the file, fps= over its rate.
    kp_cm = read_keypoints(path, units="cm", fps=100.0)
    np.testing.assert_allclose(kp_cm.positions, xyz / 100)
    assert kp_cm.fps == 100.0


def test_nwb_2d_refused(tmp_path):
    path = tmp_path / "pose2d.nwb"
    _write_nwb(path, _walk()[..., :2], unit="pixels")
    with pytest.raises(KeypointsError, match=r"pose2d\.nwb.*2-D.*triangulate"):
        read_keypoints(path, units="mm")


# ----------------------------------------------------------------------------- DANNCE


def test_dannce_mat_with_skeleton(tmp_path):
    from scipy.io import savemat

    xyz = _walk()
    pred = np.transpose(xyz, (0, 2, 1))  # DANNCE: [T, 3, K]
    p_max = np.full(xyz.shape[:2], 0.3)
    p_max[5, 2] = 0.01
    path = tmp_path / "save_data_AVG0.mat"
    savemat(path, {"pred": pred, "p_max": p_max, "sampleID": np.arange(len(xyz))})
    skel = tmp_path / "rat4.mat"
    savemat(
        skel,
        {
            "joint_names": np.array(NAMES, dtype=object),
            "joints_idx": np.array([[1, 2], [2, 3], [3, 4]]),
        },
    )
    assert infer_format(path) == "dannce"

    with pytest.raises(KeypointsError, match=r"no keypoint names; pass skeleton="):
        read_keypoints(path, units="mm", fps=50)
    with pytest.raises(KeypointsError, match=r"do not state their length units; pass units="):
        read_keypoints(path, skeleton=skel, fps=50)
    with pytest.raises(KeypointsError, match=r"do not store a frame rate; pass fps="):
        read_keypoints(path, skeleton=skel, units="mm")

    kp = read_keypoints(path, skeleton=skel, units="mm", fps=50, confidence_threshold=0.1)
    assert list(kp.names) == NAMES and kp.positions.shape == (40, 4, 3)
    # The low-confidence sample was masked, then filled as a one-frame gap.
    assert kp.interpolated[5, 2] and kp.interpolated.sum() == 1
    np.testing.assert_allclose(kp.positions[5, 2], (xyz[4, 2] + xyz[6, 2]) / 2000)
    kp2 = read_keypoints(path, keypoint_names=["a", "b", "c", "d"], units="mm", fps=50)
    assert kp2.names == ("a", "b", "c", "d")
    with pytest.raises(KeypointsError, match=r"keypoint_names gives 3 keypoint names but `pred` holds 4"):
        read_keypoints(path, keypoint_names=["a", "b", "c"], units="mm", fps=50)


def test_dannce_mat_v73(tmp_path):
    xyz = _walk()
    path = tmp_path / "pred73.mat"
    with h5py.File(path, "w") as f:  # MATLAB v7.3 stores arrays column-major
        f["pred"] = np.transpose(np.transpose(xyz, (0, 2, 1)))
    kp = read_keypoints(path, keypoint_names=NAMES, units="mm", fps=50)
    np.testing.assert_allclose(kp.positions, xyz / 1000)


# ----------------------------------------------------------------------------- DeepLabCut


def _dlc_csv(path: Path, xyz: np.ndarray, individuals: list[str] | None = None, coords=("x", "y", "z")) -> None:
    inds = individuals or [None]
    cols = [(ind, bp, c) for ind in inds for bp in NAMES for c in coords]
    rows = [["scorer"] + ["DLC_3D"] * len(cols)]
    if individuals:
        rows.append(["individuals"] + [c[0] for c in cols])
    rows.append(["bodyparts"] + [c[1] for c in cols])
    rows.append(["coords"] + [c[2] for c in cols])
    for t in range(len(xyz)):
        vals = []
        for i, _ in enumerate(inds):
            for k in range(len(NAMES)):
                p = xyz[t, k] + 1000 * i
                vals += ["" if np.isnan(v) else f"{v:.6f}" for v in p[: len(coords)]]
        rows.append([str(t)] + vals)
    path.write_text("\n".join(",".join(r) for r in rows) + "\n")


def test_dlc_csv_3d_multi_animal_and_2d(tmp_path):
    xyz = _walk()
    xyz[10:20, 1] = np.nan  # a long gap in "neck"
    path = tmp_path / "videoDLC_3D.csv"
    _dlc_csv(path, xyz, individuals=["rat1", "rat2"])
    assert infer_format(path) == "dlc"
    with pytest.raises(KeypointsError, match=r"several individuals \['rat1', 'rat2'\].*individual="):
        read_keypoints(path, units="mm", fps=50)
    with pytest.raises(KeypointsError, match=r"individual='rat3' is not in the file; it has \['rat1', 'rat2'\]"):
        read_keypoints(path, units="mm", fps=50, individual="rat3")
    kp = read_keypoints(path, units="mm", fps=50, individual="rat2")
    np.testing.assert_allclose(kp.positions[:10], (xyz[:10] + 1000) / 1000, atol=1e-8)
    assert not kp.valid[10:20, 1].any() and kp.valid[:10].all()

    flat = tmp_path / "videoDLC.csv"
    _dlc_csv(flat, _walk(), coords=("x", "y", "likelihood"))
    with pytest.raises(KeypointsError, match=r"videoDLC\.csv.*2-D DeepLabCut.*triangulate"):
        read_keypoints(flat, units="mm", fps=50)


def _dlc_h5(path: Path, xyz: np.ndarray, layout: str) -> None:
    """Write a DeepLabCut-style h5 with pandas + PyTables, or the same layout with h5py."""
    columns = [("DLC_3D", n, c) for n in NAMES for c in "xyz"]
    values = xyz.reshape(len(xyz), -1)
    try:
        import pandas as pd
        import tables  # noqa: F401  (pandas' HDF5 backend)
    except ImportError:
        pd = None
    if pd is not None:
        df = pd.DataFrame(
            values,
            columns=pd.MultiIndex.from_tuples(columns, names=["scorer", "bodyparts", "coords"]),
        )
        df.to_hdf(path, key="df_with_missing", format=layout, mode="w")
        return
    with h5py.File(path, "w") as f:  # the datasets pandas' HDFStore writes
        g = f.create_group("df_with_missing")
        if layout == "fixed":
            g.attrs.update(pandas_type=np.bytes_("frame"), nblocks=1, block0_items_nlevels=3)
            g["block0_values"] = values
            for j in range(3):
                levels = list(dict.fromkeys(c[j] for c in columns))
                g[f"block0_items_level{j}"] = np.array(levels, dtype="S")
                g[f"block0_items_label{j}"] = np.array([levels.index(c[j]) for c in columns], dtype=np.int8)
        else:
            g.attrs["pandas_type"] = np.bytes_("frame_table")
            dtype = np.dtype([("index", "<i8"), ("values_block_0", "<f8", (values.shape[1],))])
            table = np.zeros(len(values), dtype)
            table["index"], table["values_block_0"] = np.arange(len(values)), values
            g["table"] = table
            g["table"].attrs["values_block_0_kind"] = np.bytes_(pickle.dumps(columns, protocol=0))


@pytest.mark.parametrize("layout", ["table", "fixed"])
def test_dlc_h5_read_without_pickle(tmp_path, layout):
    xyz = _walk()
    xyz[3, 0] = np.nan
    path = tmp_path / f"video_{layout}.h5"
    _dlc_h5(path, xyz, layout)
    assert infer_format(path) == "dlc"
    kp = read_keypoints(path, units="mm", fps=50, max_gap_frames=0)
    assert list(kp.names) == NAMES
    assert not kp.valid[3, 0] and kp.valid.sum() == kp.valid.size - 1
    np.testing.assert_allclose(kp.positions[~np.isnan(xyz[..., 0])], xyz[~np.isnan(xyz[..., 0])] / 1000)


def test_dlc_h5_malicious_labels_refused(tmp_path):
    path = tmp_path / "evil.h5"
    _dlc_h5(path, _walk(), "table")
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    with h5py.File(path, "r+") as f:
        f["df_with_missing/table"].attrs["values_block_0_kind"] = np.void(pickle.dumps([Evil()], protocol=0))
    with pytest.raises(KeypointsError, match=r"pickle.*refused"):
        read_keypoints(path, units="mm", fps=50)
    assert not marker.exists()


# ----------------------------------------------------------------------------- SLEAP


def _sleap_labels(xyz: np.ndarray | None):
    sio = pytest.importorskip("sleap_io")
    skeleton = sio.Skeleton(list(NAMES))  # sleap-io edits the list it gets
    cams = [sio.Camera(name=f"cam{i}", rvec=np.zeros(3), tvec=np.array([float(i), 0, 0])) for i in range(2)]
    videos = [sio.Video(filename=f"cam{i}.mp4", open_backend=False) for i in range(2)]
    session = sio.RecordingSession(camera_group=sio.CameraGroup(cameras=cams))
    for v, c in zip(videos, cams):
        session.add_video(v, c)
    frames = []
    for t in range(10):
        by_cam, lf_by_cam = {}, {}
        for v, c in zip(videos, cams):
            inst = sio.PredictedInstance.from_numpy(
                np.random.rand(4, 2), skeleton=skeleton, point_scores=np.ones(4), score=1.0
            )
            lf = sio.LabeledFrame(video=v, frame_idx=t, instances=[inst])
            frames.append(lf)
            by_cam[c], lf_by_cam[c] = inst, lf
        inst3d = None
        if xyz is not None:
            inst3d = sio.PredictedInstance3D(points=xyz[t], skeleton=skeleton, point_scores=np.full(4, 0.8))
        group = sio.InstanceGroup(instance_by_camera=by_cam, instance_3d=inst3d)
        session.frame_groups[t] = sio.FrameGroup(
            frame_idx=t, instance_groups=[group], labeled_frame_by_camera=lf_by_cam
        )
    return sio, sio.Labels(labeled_frames=frames, videos=videos, skeletons=[skeleton], sessions=[session])


def test_sleap_slp_3d_and_2d(tmp_path):
    xyz = _walk(10)
    sio, labels = _sleap_labels(xyz)
    path = tmp_path / "session.slp"
    sio.save_slp(labels, str(path))
    kp = read_keypoints(path, units="mm", fps=50)
    assert kp.format == "sleap" and list(kp.names) == NAMES
    np.testing.assert_allclose(kp.positions, xyz / 1000)
    np.testing.assert_allclose(kp.confidence, 0.8)

    sio, labels2d = _sleap_labels(None)
    flat = tmp_path / "flat.slp"
    sio.save_slp(labels2d, str(flat))
    with pytest.raises(KeypointsError, match=r"flat\.slp.*2-D SLEAP poses only.*triangulate"):
        read_keypoints(flat, units="mm", fps=50)
    analysis = tmp_path / "flat.analysis.h5"
    sio.save_analysis_h5(labels2d, str(analysis), video=0)
    assert infer_format(analysis) == "sleap"
    with pytest.raises(KeypointsError, match=r"2-D SLEAP poses only"):
        read_keypoints(analysis, units="mm", fps=50)


# ----------------------------------------------------------------------------- sleap-anipose


def _points3d(path: Path, tracks: np.ndarray, frames: tuple[int, int] | None = None) -> Path:
    """What ``sleap_anipose.triangulate(..., fname=path)`` writes: ``tracks`` (gzip, with
    its Description attribute) and, for a frame range, ``frames``."""
    with h5py.File(path, "w") as f:
        f.create_dataset("tracks", data=tracks, chunks=True, compression="gzip", compression_opts=1)
        f["tracks"].attrs["Description"] = "Shape: (n_frames, n_tracks, n_nodes, 3)."
        if frames is not None:
            f.create_dataset("frames", data=frames)
    return path


def _two_rats(num_frames: int = 20) -> np.ndarray:
    """[T, 2 tracks, 4 nodes, 3] in mm; track 1 is track 0 moved by 500 mm, NaN where a
    point was not triangulated (as sleap-anipose leaves it)."""
    xyz = _walk(num_frames)
    tracks = np.stack([xyz, xyz + 500.0], axis=1)
    tracks[3, 1, 2] = np.nan
    return tracks


@pytest.mark.parametrize("squeezed", [False, True], ids=["frames_tracks_nodes_3", "frames_nodes_3"])
def test_sleap_anipose_points3d_names_from_keypoint_names(tmp_path, squeezed):
    tracks = _two_rats()
    data = tracks[:, 1] if squeezed else tracks
    path = _points3d(tmp_path / "points3d.h5", data, frames=(100, 120))
    assert infer_format(path) == "sleap"
    pick = {} if squeezed else {"individual": "1"}
    # Inferred, and chosen with format="sleap" (it used to be refused there).
    for fmt in (None, "sleap"):
        kp = read_keypoints(path, fmt, keypoint_names=NAMES, units="mm", fps=50, max_gap_frames=0, **pick)
        assert kp.format == "sleap" and list(kp.names) == NAMES
        assert kp.positions.shape == (20, 4, 3) and kp.confidence is None
        ok = ~np.isnan(tracks[:, 1, :, 0])
        np.testing.assert_allclose(kp.positions[ok], tracks[:, 1][ok] / 1000)
        assert not kp.valid[3, 2] and kp.valid.sum() == kp.valid.size - 1
        assert kp.meta["layout"] == "sleap-anipose points3d.h5" and kp.meta["video_frames"] == "100:120"
    if not squeezed:
        kp0 = read_keypoints(path, keypoint_names=NAMES, units="mm", fps=50, individual="0")
        np.testing.assert_allclose(kp0.positions, tracks[:, 0] / 1000)


@pytest.mark.parametrize("suffix", [".slp", ".json", ".yaml"])
def test_sleap_anipose_points3d_names_from_sleap_skeleton(tmp_path, suffix):
    sio = pytest.importorskip("sleap_io")
    if suffix != ".slp" and not hasattr(sio, "save_skeleton"):
        pytest.skip(f"sleap-io {sio.__version__} reads and writes skeletons from .slp files only")
    skeleton = sio.Skeleton(list(NAMES), name="rat")
    skel = tmp_path / f"project{suffix}"
    if suffix == ".slp":  # a SLEAP project with its skeleton and no labels yet
        sio.save_slp(sio.Labels(skeletons=[skeleton]), str(skel))
    else:
        sio.save_skeleton(skeleton, str(skel))
    tracks = _two_rats()
    path = _points3d(tmp_path / "points3d.h5", tracks)
    kp = read_keypoints(path, skeleton=skel, individual="0", units="mm", fps=50)
    assert list(kp.names) == NAMES
    np.testing.assert_allclose(kp.positions, tracks[:, 0] / 1000)
    # keypoint_names wins over the skeleton.
    kp = read_keypoints(path, skeleton=skel, keypoint_names=list("abcd"), individual="0", units="mm", fps=50)
    assert kp.names == ("a", "b", "c", "d")
    # A skeleton with another number of nodes names both counts.
    other = sio.Skeleton(["a", "b", "c"], name="three")
    if suffix == ".slp":
        sio.save_slp(sio.Labels(skeletons=[other]), str(skel))
    else:
        sio.save_skeleton(other, str(skel))
    with pytest.raises(
        KeypointsError,
        match=rf"points3d\.h5': the skeleton in '.*project\{suffix}' gives 3 names but `tracks` "
        r"\(20, 2, 4, 3\) holds 4 nodes",
    ):
        read_keypoints(path, skeleton=skel, individual="0", units="mm", fps=50)


def test_sleap_anipose_points3d_errors(tmp_path):
    path = _points3d(tmp_path / "points3d.h5", _two_rats())
    with pytest.raises(
        KeypointsError,
        match=r"points3d\.h5' is a sleap-anipose points3d\.h5, which holds no node names; pass "
        r"keypoint_names=\[\.\.\.\] with its 4 node names.*--keypoint_names \[a,b,c\].*--skeleton project\.slp",
    ):
        read_keypoints(path, units="mm", fps=50, individual="0")
    with pytest.raises(
        KeypointsError,
        match=r"points3d\.h5': keypoint_names \(--keypoint_names\) gives 3 names but `tracks` "
        r"\(20, 2, 4, 3\) holds 4 nodes",
    ):
        read_keypoints(path, "sleap", keypoint_names=NAMES[:3], units="mm", fps=50, individual="0")
    with pytest.raises(
        KeypointsError, match=r"several tracks \(sleap-anipose track indices\) \['0', '1'\].*--individual"
    ):
        read_keypoints(path, keypoint_names=NAMES, units="mm", fps=50)
    with pytest.raises(KeypointsError, match=r"individual='2' is not in the file; it has \['0', '1'\]"):
        read_keypoints(path, keypoint_names=NAMES, units="mm", fps=50, individual="2")
    with pytest.raises(KeypointsError, match=r"skeleton '.*rat4\.mat' is a \.mat \(a DANNCE skeleton\)"):
        read_keypoints(path, skeleton=tmp_path / "rat4.mat", units="mm", fps=50, individual="0")
    with pytest.raises(KeypointsError, match=r"skeleton '.*absent\.slp' does not exist"):
        read_keypoints(path, skeleton=tmp_path / "absent.slp", units="mm", fps=50, individual="0")
    junk = tmp_path / "junk.slp"
    junk.write_bytes(b"not hdf5")
    with pytest.raises(KeypointsError, match=r"skeleton '.*junk\.slp' cannot be read by sleap-io"):
        read_keypoints(path, skeleton=junk, units="mm", fps=50, individual="0")
    with pytest.raises(
        KeypointsError,
        match=r"points3d\.h5': sleap-anipose points3d\.h5 files do not state their length units; pass units=",
    ):
        read_keypoints(path, keypoint_names=NAMES, fps=50, individual="0")
    # sleap-anipose's reprojections.h5 has the same layout with x, y only.
    flat = _points3d(tmp_path / "reprojections.h5", _two_rats()[..., :2])
    with pytest.raises(KeypointsError, match=r"reprojections\.h5': `tracks` \(20, 2, 4, 2\) holds 2-D.*triangulate"):
        read_keypoints(flat, keypoint_names=NAMES, units="mm", fps=50)
    # A `tracks` of another rank is no format at all, and no KeyError.
    odd = tmp_path / "odd.h5"
    with h5py.File(odd, "w") as f:
        f["tracks"] = np.zeros((5, 4))
    with pytest.raises(KeypointsError, match=r"odd\.h5' is an HDF5 file with neither.*shape \(5, 4\)"):
        read_keypoints(odd, units="mm", fps=50)
    with pytest.raises(KeypointsError, match=r"odd\.h5' has a `tracks` dataset of shape \(5, 4\) but no `node_names`"):
        read_keypoints(odd, "sleap", keypoint_names=NAMES, units="mm", fps=50)


# ----------------------------------------------------------------------------- anipose


def test_anipose_csv_low_confidence_masked(tmp_path):
    xyz = _walk()
    score = np.full(xyz.shape[:2], 0.9)
    score[20:23, 3] = 0.05  # short low-confidence gap in "tail"
    cols, rows = [], []
    for n in NAMES:
        cols += [f"{n}_{s}" for s in ("x", "y", "z", "error", "score", "ncams")]
    cols += ["M_00", "center_0", "fnum"]
    for t in range(len(xyz)):
        row = []
        for k in range(len(NAMES)):
            row += [*xyz[t, k], 1.5, score[t, k], 3]
        rows.append(row + [1.0, 0.0, t])
    path = tmp_path / "pose-3d.csv"
    path.write_text(",".join(cols) + "\n" + "\n".join(",".join(f"{v:.6f}" for v in r) for r in rows) + "\n")
    assert infer_format(path) == "anipose"
    kp = read_keypoints(path, units="mm", fps=100, confidence_threshold=0.5, max_gap_frames=2)
    assert kp.valid[:20].all()
    assert not kp.valid[20:23, 3].any() and np.isnan(kp.positions[20:23, 3]).all()
    kp = read_keypoints(path, units="mm", fps=100, confidence_threshold=0.5, max_gap_frames=3)
    assert kp.valid.all() and kp.interpolated[20:23, 3].all() and kp.interpolated.sum() == 3
    np.testing.assert_allclose(kp.confidence[0], 0.9)


# ----------------------------------------------------------------------------- C3D


@pytest.mark.filterwarnings("ignore:No analog data:UserWarning")
def test_c3d_units_rate_labels(tmp_path):
    c3d = pytest.importorskip("c3d")
    xyz = _walk()
    writer = c3d.Writer(point_rate=120.0, analog_rate=0.0, point_units="mm  ")
    writer.set_point_labels(NAMES)
    for t in range(len(xyz)):
        points = np.zeros((4, 5), np.float32)
        points[:, :3] = xyz[t]
        if t == 7:
            points[2, 3] = -1.0  # residual < 0: missing
        writer.add_frames([(points, np.zeros((0, 0), np.float32))])
    path = tmp_path / "trial.c3d"
    with open(path, "wb") as fh:
        writer.write(fh)
    kp = read_keypoints(path, body_size=0.2, max_gap_frames=0)
    assert list(kp.names) == NAMES and kp.fps == 120.0
    assert kp.units_from == "file: C3D parameter POINT:UNITS = 'mm'"
    assert not kp.valid[7, 2] and kp.valid.sum() == kp.valid.size - 1
    np.testing.assert_allclose(kp.positions[0], xyz[0] / 1000, atol=1e-6)
    # Override: the numbers were really centimetres.
    kp_cm = read_keypoints(path, units="cm")
    np.testing.assert_allclose(kp_cm.positions[0], xyz[0] / 100, atol=1e-5)


# ----------------------------------------------------------------------------- plain CSV and NPZ


def _plain_csv(path: Path, xyz: np.ndarray, dims: str = "xyz", frames=None) -> None:
    frames = np.arange(len(xyz)) if frames is None else frames
    header = ["frame"] + [f"{n}_{a}" for n in NAMES for a in dims]
    lines = [",".join(header)]
    for t, f in enumerate(frames):
        vals = [("" if np.isnan(v) else f"{v:.6f}") for k in range(len(NAMES)) for v in xyz[t, k, : len(dims)]]
        lines.append(",".join([str(f)] + vals))
    path.write_text("\n".join(lines) + "\n")


def test_csv_gaps_interpolated_and_split(tmp_path):
    xyz = _walk(60)
    xyz[10:13, 0] = np.nan  # short gap (3 frames) in snout: interpolated
    xyz[30:40, 2] = np.nan  # long gap (10 frames) in hip: kept, splits the clip
    path = tmp_path / "kp.csv"
    _plain_csv(path, xyz)
    assert infer_format(path) == "csv"
    with pytest.raises(KeypointsError, match=r"kp\.csv.*pass fps="):
        read_keypoints(path, units="mm")
    with pytest.raises(KeypointsError, match=r"kp\.csv.*pass units="):
        read_keypoints(path, fps=30)
    kp = read_keypoints(path, units="mm", fps=30, max_gap_frames=5)
    assert kp.interpolated[10:13, 0].all() and kp.interpolated.sum() == 3
    line = np.linspace(xyz[9, 0], xyz[13, 0], 5)[1:-1] / 1000
    np.testing.assert_allclose(kp.positions[10:13, 0], line, atol=1e-8)  # CSV keeps 6 decimals
    assert not kp.valid[30:40, 2].any() and np.isnan(kp.positions[30:40, 2]).all()
    assert [tuple(g) for g in kp.gaps()] == [("hip", 30, 40)]
    assert kp.segments() == [(0, 30), (40, 60)]
    assert kp.segments(["snout", "tail"]) == [(0, 60)]
    assert kp.segments(min_valid_fraction=0.75) == [(0, 60)]
    pieces = kp.split_on_gaps()
    assert [p.num_frames for p in pieces] == [30, 20] and pieces[1].frame_offset == 40
    assert all(p.valid.all() for p in pieces)

    # Missing frame numbers become missing frames.
    sparse = tmp_path / "sparse.csv"
    _plain_csv(sparse, _walk(5), frames=[0, 1, 2, 10, 11])
    kp = read_keypoints(sparse, units="mm", fps=30, max_gap_frames=0)
    assert kp.num_frames == 12 and kp.segments() == [(0, 3), (10, 12)]


def test_csv_2d_refused(tmp_path):
    path = tmp_path / "flat.csv"
    _plain_csv(path, _walk(), dims="xy")
    with pytest.raises(KeypointsError, match=r"flat\.csv.*2-D.*triangulate"):
        read_keypoints(path, units="mm", fps=30)


def test_npz_and_pickle_refused(tmp_path):
    xyz = _walk()
    valid = np.ones(xyz.shape[:2], bool)
    valid[5:8, 1] = False
    path = tmp_path / "kp.npz"
    np.savez(path, positions=xyz / 10, names=np.array(NAMES), fps=np.float64(25.0), valid=valid)
    kp = read_keypoints(path, units="cm", max_gap_frames=0)
    assert kp.fps == 25.0 and list(kp.names) == NAMES
    np.testing.assert_allclose(kp.positions[0], xyz[0] / 1000)
    assert not kp.valid[5:8, 1].any()

    evil = tmp_path / "evil.npz"
    np.savez(evil, positions=xyz, names=np.array(NAMES, dtype=object))
    with pytest.raises(KeypointsError, match=r"evil\.npz.*pickled object arrays"):
        read_keypoints(evil, units="mm", fps=30)


# ----------------------------------------------------------------------------- rules


def test_implausible_scale_suggests_factor(tmp_path):
    path = tmp_path / "kp.npz"
    np.savez(path, positions=_walk(), names=np.array(NAMES), fps=np.float64(25.0))
    with pytest.raises(
        KeypointsError,
        match=r"Scaling by about 0\.00\d+ would fit: looks like mm read as m: pass units='mm'",
    ):
        read_keypoints(path, units="m", body_size=0.2)
    with pytest.raises(
        KeypointsError,
        match=r"Scaling by about 0\.0\d+ would fit: looks like mm read as cm: pass units='mm'",
    ):
        read_keypoints(path, units="cm", body_size=0.2)
    with pytest.raises(
        KeypointsError,
        match=r"Scaling by about (29|30)\.?\d* would fit; check units= and body_size=",
    ):
        read_keypoints(path, units="mm", body_size=6.0)
    assert read_keypoints(path, units="mm", body_size=0.2).size() == pytest.approx(0.2, rel=0.1)
    with pytest.raises(KeypointsError, match=r"'furlongs'.*units= one of"):
        read_keypoints(path, units="furlongs")


def test_select_unknown_names_lists_available(tmp_path):
    path = tmp_path / "kp.npz"
    np.savez(path, positions=_walk(), names=np.array(NAMES), fps=np.float64(25.0))
    kp = read_keypoints(path, units="mm")
    sub = kp.select(["tail", "snout"])
    assert sub.names == ("tail", "snout")
    np.testing.assert_allclose(sub.positions[:, 0], kp.positions[:, 3])
    with pytest.raises(
        KeypointsError,
        match=r"\['Snout'\] not found; the file has \['snout', 'neck', 'hip', 'tail'\]",
    ):
        kp.select(["Snout", "hip"])


def test_wrong_options_and_unknown_format(tmp_path):
    path = tmp_path / "kp.npz"
    np.savez(path, positions=_walk(), names=np.array(NAMES), fps=np.float64(25.0))
    with pytest.raises(KeypointsError, match=r"skeleton= names the keypoints of DANNCE .* only"):
        read_keypoints(path, units="mm", skeleton="x.mat")
    with pytest.raises(KeypointsError, match=r"keypoint_names has 2 names but the file holds 4"):
        read_keypoints(path, units="mm", keypoint_names=["a", "b"])
    (tmp_path / "kp.txt").write_text("")
    with pytest.raises(KeypointsError, match=r"extension '\.txt'.*format="):
        read_keypoints(tmp_path / "kp.txt")
    with pytest.raises(KeypointsError, match=r"absent\.csv' does not exist"):
        read_keypoints(tmp_path / "absent.csv")
    assert isinstance(read_keypoints(path, "npz", units="mm"), Keypoints)


def test_registry_names_types_and_help():
    from typing import get_args

    from neuromimic.keypoints import FORMATS, KEYPOINT_FORMATS_HELP, UNITS, UP_AXES
    from neuromimic.keypoints.formats import REGISTRY, FormatName
    from neuromimic.keypoints.rules import LengthUnit, UpAxis

    assert get_args(FormatName) == FORMATS == tuple(REGISTRY)
    assert get_args(UpAxis) == tuple(UP_AXES) and get_args(LengthUnit) == tuple(UNITS)
    suffixes = [suffix for fmt in REGISTRY.values() for suffix in fmt.suffixes]
    assert len(suffixes) == len(set(suffixes))  # an extension of its own belongs to one format
    # The table keeps each format's row whole (the columns wrap, never a phrase across rows).
    text = " ".join(KEYPOINT_FORMATS_HELP.split())
    for fmt in FORMATS:
        assert f" {fmt} " in text[text.index("format file needs") :]
    assert "dannce .mat with pred [T, 3, K]" in text and "--skeleton <skeleton>.mat" in text
    assert "sleap-anipose points3d.h5" in text and "--keypoint_names or --skeleton <project>.slp" in text
    assert max(len(line) for line in KEYPOINT_FORMATS_HELP.splitlines()) <= 100
