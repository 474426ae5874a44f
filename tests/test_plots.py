"""Figures of recorded data (neuromimic.analysis.plots): known answers for the helpers, and the
structure and saving of every figure, on small synthetic recordings."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from matplotlib.figure import Figure
from scipy.stats import ortho_group

from neuromimic.analysis import Recording, compare_emg
from neuromimic.analysis.plots import (
    joint_errors_deg,
    masked,
    pca_trajectories,
    plot_activation_heatmap,
    plot_alignment_summary,
    plot_emg_overlay,
    plot_pca_trajectories,
    plot_tracking_error,
    unit_range,
)

B, T, NQ, M, N_UNITS = 3, 30, 4, 3, 6
PADDED = 10  # env 2's last PADDED steps are outside its clip
JOINTS = ["sh_elv", "sh_extension", "sh_rotation", "elbow"]
MUSCLES = ["Pec_C", "Lat", "Biceps_Long"]
JOINT_ERRORS_DEG = np.array([1.0, 2.0, 3.0, 4.0])  # constant error of each joint in the fixture


def make_recording(with_site: bool = True) -> Recording:
    rng = np.random.default_rng(0)
    reference = rng.uniform(-1, 1, (B, T, NQ)).astype(np.float32)
    signs = np.where(rng.random((B, T, NQ)) < 0.5, -1.0, 1.0)  # errors of both signs
    qpos = (reference + signs * np.radians(JOINT_ERRORS_DEG)).astype(np.float32)
    valid = np.ones((B, T), dtype=bool)
    valid[2, T - PADDED :] = False
    data = {
        "valid": valid,
        "joint/qpos": qpos,
        "reference/qpos": reference,
        "muscle/activation": rng.uniform(0, 1, (B, T, M)).astype(np.float32),
        "core/activity/layer_0": rng.standard_normal((B, T, N_UNITS)).astype(np.float32),
    }
    units = {
        "valid": "bool",
        "joint/qpos": "rad",
        "reference/qpos": "rad",
        "muscle/activation": "0..1",
        "core/activity/layer_0": "a.u. (network units)",
    }
    if with_site:
        data["metrics/site_pos_error_mm"] = rng.uniform(0, 5, (B, T)).astype(np.float32)
        units["metrics/site_pos_error_mm"] = "mm"
    attrs = {
        "control_dt": 0.01,
        "joint_names": JOINTS,
        "muscle_names": MUSCLES,
        "clip_names": [f"clip{b}" for b in range(B)],
        "site_names": ["wrist"],
    }
    return Recording(data, units, attrs)


@pytest.fixture
def recording() -> Recording:
    return make_recording()


def assert_png(path) -> None:
    content = path.read_bytes()
    assert len(content) > 1000
    assert content.startswith(b"\x89PNG")


# Helpers: known answers


def test_joint_error_is_zero_when_qpos_equals_reference(recording):
    recording.data["joint/qpos"] = recording["reference/qpos"].copy()
    errors = joint_errors_deg(recording)
    assert errors.shape == (B, T, NQ)
    np.testing.assert_array_equal(errors, 0.0)


def test_joint_error_is_absolute_and_in_degrees(recording):
    errors = joint_errors_deg(recording)
    np.testing.assert_allclose(errors, np.broadcast_to(JOINT_ERRORS_DEG, (B, T, NQ)), atol=1e-4)


def test_joint_error_without_reference_lists_the_recorded_arrays(recording):
    del recording.data["reference/qpos"]
    with pytest.raises(KeyError, match="reference/qpos.*joint/qpos"):
        joint_errors_deg(recording)


def plane_activity(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Activity [B, T, 8] on a 2-D plane (latent std 3 and 1, rotated into 8 dims, offset), the
    latent [B, T, 2], and `valid` with huge off-plane values on env 2's padded frames."""
    latent = rng.standard_normal((B, T, 2)) * np.array([3.0, 1.0])
    basis = ortho_group.rvs(8, random_state=2)[:2]  # [2, 8] orthonormal rows
    activity = latent @ basis + rng.standard_normal(8)
    valid = np.ones((B, T), dtype=bool)
    valid[2, T - PADDED :] = False
    activity[~valid] = 1e3 * rng.standard_normal((PADDED, 8))  # must not enter the fit
    return activity, latent, valid


def test_pca_of_activity_on_a_plane_explains_it_with_two_components():
    activity, latent, valid = plane_activity(np.random.default_rng(1))
    projections, explained = pca_trajectories(activity, valid, n_components=3)
    assert projections.shape == (B, T, 3)
    assert explained.shape == (3,)
    z = latent[valid]
    eigenvalues = np.sort(np.linalg.eigvalsh(np.cov(z.T)))[::-1]
    np.testing.assert_allclose(explained[:2], eigenvalues / eigenvalues.sum(), rtol=1e-6)
    assert explained[2] < 1e-10
    assert explained[0] > 0.8
    # A rotation of the centred plane: distances between frames are kept.
    p = projections[valid][:, :2]
    np.testing.assert_allclose(
        np.linalg.norm(p[:, None] - p[None], axis=-1), np.linalg.norm(z[:, None] - z[None], axis=-1), atol=1e-8
    )


def test_pca_leaves_padded_frames_out():
    activity, _, valid = plane_activity(np.random.default_rng(1))
    projections, _ = pca_trajectories(activity, valid, n_components=2)
    assert np.all(np.isnan(projections[~valid]))
    assert np.all(np.isfinite(projections[valid]))


def test_pca_rejects_too_many_components_and_mismatched_valid():
    activity, _, valid = plane_activity(np.random.default_rng(1))
    with pytest.raises(ValueError, match=r"n_components must be in \[1, min\(units, valid frames\)\] = \[1, 8\]"):
        pca_trajectories(activity, valid, n_components=9)
    with pytest.raises(ValueError, match="valid must be"):
        pca_trajectories(activity, valid[:, :-1])


def test_unit_range_and_masked():
    np.testing.assert_allclose(unit_range([2.0, 4.0, 6.0]), [0.0, 0.5, 1.0])
    np.testing.assert_allclose(unit_range([[0.0, -1.0], [10.0, 1.0]]), [[0.0, 0.0], [1.0, 1.0]])
    with pytest.raises(ValueError, match="constant"):
        unit_range([[1.0, 0.0], [1.0, 2.0]])
    values = np.arange(6.0).reshape(1, 3, 2)
    out = masked(values, np.array([[True, False, True]]))
    np.testing.assert_array_equal(out[0, [0, 2]], values[0, [0, 2]])
    assert np.all(np.isnan(out[0, 1]))
    assert not np.any(np.isnan(values))  # the input is not modified


# Figures


def test_tracking_error_draws_each_joint_and_the_site_error(recording, tmp_path):
    fig = plot_tracking_error(recording, env=2, path=tmp_path / "tracking.png")
    assert isinstance(fig, Figure)
    joints_ax, site_ax = fig.axes
    assert [line.get_label() for line in joints_ax.get_lines()] == JOINTS
    assert "deg" in joints_ax.get_ylabel() and "mm" in site_ax.get_ylabel()
    assert site_ax.get_xlabel() == "time (s)"
    np.testing.assert_allclose(joints_ax.get_lines()[0].get_xdata(), recording.time)
    for line, expected in zip(joints_ax.get_lines(), JOINT_ERRORS_DEG, strict=True):
        y = np.asarray(line.get_ydata())
        np.testing.assert_allclose(y[: T - PADDED], expected, atol=1e-4)
        assert np.all(np.isnan(y[T - PADDED :]))  # padded steps are not drawn
    (site_line,) = site_ax.get_lines()
    site_error = recording["metrics/site_pos_error_mm"][2, : T - PADDED]
    np.testing.assert_allclose(site_line.get_ydata()[: T - PADDED], site_error)
    assert_png(tmp_path / "tracking.png")


def test_tracking_error_without_site_error_has_one_panel():
    fig = plot_tracking_error(make_recording(with_site=False))
    assert len(fig.axes) == 1
    assert len(fig.axes[0].get_lines()) == NQ


@pytest.mark.parametrize("env", [B, -1, 1.0])
def test_bad_env_index_names_the_number_of_envs(recording, env):
    with pytest.raises(ValueError, match=f"the recording has {B} envs"):
        plot_tracking_error(recording, env=env)
    with pytest.raises(ValueError, match=f"the recording has {B} envs"):
        plot_activation_heatmap(recording, env=env)


def test_activation_heatmap_has_muscle_rows_time_columns_and_a_unit_colour_bar(recording, tmp_path):
    fig = plot_activation_heatmap(recording, env=2, path=tmp_path / "heatmap.png")
    ax, colorbar_ax = fig.axes
    (image,) = ax.get_images()
    shown = image.get_array()
    assert shown.shape == (M, T)
    np.testing.assert_allclose(shown[:, : T - PADDED], recording["muscle/activation"][2, : T - PADDED].T, rtol=1e-6)
    assert np.all(np.ma.getmaskarray(shown)[:, T - PADDED :])  # padded steps are blank
    assert [label.get_text() for label in ax.get_yticklabels()] == MUSCLES
    assert image.get_clim() == (0.0, 1.0)
    assert "0..1" in colorbar_ax.get_ylabel()
    assert_png(tmp_path / "heatmap.png")


def test_activation_heatmap_of_units_numbers_the_rows(recording):
    fig = plot_activation_heatmap(recording, key="core/activity/layer_0")
    (image,) = fig.axes[0].get_images()
    assert image.get_array().shape == (N_UNITS, T)
    assert "unit" in fig.axes[0].get_ylabel()


def test_activation_heatmap_errors_name_the_problem(recording):
    with pytest.raises(KeyError, match="no 'muscle/force' array.*muscle/activation"):
        plot_activation_heatmap(recording, key="muscle/force")
    with pytest.raises(ValueError, match=r"must be \[B, T, n\]"):
        plot_activation_heatmap(recording, key="valid")


def test_pca_trajectories_figure_has_one_line_per_env_and_labelled_axes(tmp_path):
    activity, _, valid = plane_activity(np.random.default_rng(1))
    projections, explained = pca_trajectories(activity, valid, n_components=3)
    labels = ["a", "b", "c"]
    fig = plot_pca_trajectories(projections, valid, explained, labels=labels, path=tmp_path / "pca.png")
    assert len(fig.axes) == 2
    for ax in fig.axes:
        assert len(ax.get_lines()) == B
        assert f"{100 * explained[0]:.1f}%" in ax.get_xlabel()
    assert f"{100 * explained[2]:.1f}%" in fig.axes[1].get_ylabel()
    assert [t.get_text() for t in fig.axes[1].get_legend().get_texts()] == labels
    assert_png(tmp_path / "pca.png")
    fig = plot_pca_trajectories(projections[..., :2], valid, explained[:2])
    assert len(fig.axes) == 1
    with pytest.raises(ValueError, match="one value per component"):
        plot_pca_trajectories(projections, valid, explained[:2])
    with pytest.raises(ValueError, match=f"each of the {B} envs"):
        plot_pca_trajectories(projections, valid, explained, labels=["a"])


def test_alignment_summary_marks_the_median_and_counts_values_below_the_axis(tmp_path):
    r2 = np.array([-5.0, -3.0, 0.1, 0.2, 0.4, 0.5, 0.9])
    fig = plot_alignment_summary(r2, path=tmp_path / "alignment.png", title="layer 0")
    hist_ax, ecdf_ax = fig.axes
    assert fig.get_suptitle() == "layer 0"
    median_lines = [line for line in hist_ax.get_lines() if line.get_linestyle() == "--"]
    assert len(median_lines) == 1
    np.testing.assert_allclose(median_lines[0].get_xdata(), [0.2, 0.2])
    assert len(ecdf_ax.get_lines()) == 2  # the ECDF and its median
    legend = hist_ax.get_legend().get_texts()[0].get_text()
    assert "median 0.20" in legend and "n=7" in legend and "2 below -1" in legend
    (bars,) = hist_ax.patches
    counts, edges = bars.get_data().values, bars.get_data().edges
    assert counts.sum() == len(r2) and counts[0] == 2  # values below xmin are in the first bin
    np.testing.assert_allclose(edges[[0, -1]], [-1.0, 1.0])
    assert_png(tmp_path / "alignment.png")


def test_alignment_summary_overlays_several_sets_and_rejects_nan():
    fig = plot_alignment_summary({"layer 0": [0.1, 0.2, 0.3], "layer 1": [0.5, 0.6, 0.7]})
    assert len(fig.axes[1].get_lines()) == 4
    assert [t.get_text().split(":")[0] for t in fig.axes[0].get_legend().get_texts()] == ["layer 0", "layer 1"]
    with pytest.raises(ValueError, match="NaN"):
        plot_alignment_summary([0.1, np.nan])


def emg_example():
    fs, n = 100.0, 300
    time = np.arange(n) / fs
    sim = np.stack([np.sin(2 * np.pi * f * time) + 2 for f in (1.0, 1.5, 2.0)], axis=1)
    recorded = 3.0 * sim[:, [0, 2]] + 1.0  # other gain and offset, same shape
    recorded[5:, 1] = recorded[:-5, 1]  # channel "bic" lags its muscle by 50 ms
    channels = ["pec", "bic"]
    comparisons = compare_emg(
        sim, recorded, fs=fs, muscles=MUSCLES, channels=channels, mapping={"pec": "Pec_C", "bic": "Biceps_Long"}
    )
    return time, sim, recorded, comparisons, channels


def test_emg_overlay_has_one_scaled_panel_per_channel_with_the_metrics_in_its_title(tmp_path):
    time, sim, recorded, comparisons, channels = emg_example()
    fig = plot_emg_overlay(time, sim, recorded, comparisons, MUSCLES, channels, path=tmp_path / "emg.png")
    assert len(fig.axes) == 2
    for ax, channel in zip(fig.axes, channels, strict=True):
        result = comparisons[channel]
        simulated_line, recorded_line = ax.get_lines()
        for line in (simulated_line, recorded_line):
            y = np.asarray(line.get_ydata())
            assert y.min() == pytest.approx(0.0) and y.max() == pytest.approx(1.0)
        assert f"r = {result.r:.2f}" in ax.get_title() and f"nRMSE = {result.nrmse:.2f}" in ax.get_title()
        assert f"lag = {1000 * result.lag_s:+.0f} ms" in ax.get_title()
    assert comparisons["pec"].nrmse == pytest.approx(0.0, abs=1e-12)  # gain and offset removed
    np.testing.assert_allclose(fig.axes[0].get_lines()[0].get_ydata(), fig.axes[0].get_lines()[1].get_ydata())
    assert "+50 ms" in fig.axes[1].get_title()
    assert_png(tmp_path / "emg.png")


def test_emg_overlay_rejects_mismatched_inputs():
    time, sim, recorded, comparisons, channels = emg_example()
    with pytest.raises(ValueError, match="not in channels"):
        plot_emg_overlay(time, sim, recorded, comparisons, MUSCLES, ["pec", "other"])
    with pytest.raises(ValueError, match=r"simulated must be \[len\(time\), len\(muscles\)\]"):
        plot_emg_overlay(time[:-1], sim, recorded, comparisons, MUSCLES, channels)


# Saving


@pytest.mark.parametrize(("suffix", "magic"), [(".png", b"\x89PNG"), (".pdf", b"%PDF"), (".svg", b"<?xml")])
def test_figures_save_in_the_format_of_the_suffix(recording, tmp_path, suffix, magic):
    path = tmp_path / "sub" / f"heatmap{suffix}"
    plot_activation_heatmap(recording, path=path)
    assert path.read_bytes().startswith(magic)


def test_unknown_suffix_is_an_error(recording, tmp_path):
    with pytest.raises(ValueError, match=r"\.png"):
        plot_activation_heatmap(recording, path=tmp_path / "heatmap.jpg")


def test_figures_can_be_drawn_from_threads(recording, tmp_path):
    paths = [tmp_path / f"tracking{env}.png" for env in range(B)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(lambda env: plot_tracking_error(recording, env=env, path=paths[env]), range(B)))
    for path in paths:
        assert_png(path)
