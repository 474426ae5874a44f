"""Known-answer tests for the comparison metrics in neuromimic.analysis."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter1d
from scipy.stats import ortho_group
from sklearn.linear_model import RidgeCV
from sklearn.metrics import r2_score
from sklearn.model_selection import KFold, cross_val_predict

from neuromimic.analysis import (
    align_to_timestamps,
    angular_procrustes_distance,
    blocked_folds,
    cca,
    compare_emg,
    emg_envelope,
    linear_cka,
    procrustes_distance,
    rdm,
    ridge_r2,
    rsa,
)


def smooth_noise(rng: np.random.Generator, n_samples: int, n_features: int, sigma: float = 20.0) -> np.ndarray:
    """[n_samples, n_features] Gaussian-smoothed white noise: autocorrelated like neural activity."""
    return gaussian_filter1d(rng.standard_normal((n_samples, n_features)), sigma, axis=0)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def units(rng) -> np.ndarray:
    return smooth_noise(rng, 2000, 20)


@pytest.fixture
def rotation() -> np.ndarray:
    return ortho_group.rvs(20, random_state=1)


# Folds


def test_time_folds_are_contiguous_blocks_that_partition_the_samples():
    folds = blocked_folds(103, n_folds=5)
    assert len(folds) == 5
    for train, test in folds:
        assert np.all(np.diff(test) == 1)
        assert np.intersect1d(train, test).size == 0
        assert len(train) + len(test) == 103
    np.testing.assert_array_equal(np.sort(np.concatenate([test for _, test in folds])), np.arange(103))


def test_group_folds_never_split_a_trial(rng):
    groups = np.repeat(rng.permutation(12), rng.integers(20, 60, size=12))
    folds = blocked_folds(len(groups), n_folds=4, groups=groups)
    assert len(folds) == 4
    for train, test in folds:
        assert np.intersect1d(groups[train], groups[test]).size == 0
        assert len(train) + len(test) == len(groups)


def test_folds_refuse_more_folds_than_trials():
    with pytest.raises(ValueError, match="3 distinct groups"):
        blocked_folds(30, n_folds=5, groups=np.repeat([0, 1, 2], 10))
    with pytest.raises(ValueError, match=r"shape \[n_samples\]"):
        blocked_folds(30, n_folds=2, groups=np.zeros(29))


# Ridge encoding / decoding


def linear_neurons(rng, units: np.ndarray, noise: float = 0.3) -> np.ndarray:
    """[T, 10] linear readouts of `units` plus noise at `noise` times each readout's std."""
    clean = units @ rng.standard_normal((units.shape[1], 10))
    return clean + noise * clean.std(axis=0) * rng.standard_normal(clean.shape)


def test_ridge_r2_is_high_for_a_linear_target(rng, units):
    result = ridge_r2(units, linear_neurons(rng, units))
    # Noise at 0.3 std caps R² at 1 / (1 + 0.3²) ≈ 0.917.
    assert result.r2.shape == (10,)
    assert 0.9 < result.median < 0.93
    assert result.quartiles[0] > 0.9
    assert result.alphas.shape == (5,)


def test_ridge_r2_is_near_zero_for_a_circularly_shifted_target(rng, units):
    shifted = np.roll(linear_neurons(rng, units), len(units) // 2, axis=0)
    result = ridge_r2(units, shifted)
    assert np.median(np.abs(result.r2)) < 0.1
    # The same data leak through random-frame folds, so the blocked folds are what keeps R² at 0.
    leaky = cross_val_predict(RidgeCV(), units, shifted, cv=KFold(5, shuffle=True, random_state=0))
    assert np.median(r2_score(shifted, leaky, multioutput="raw_values")) > 0.3


def test_ridge_r2_with_trials_and_standardised_features(rng, units):
    neurons = linear_neurons(rng, units)
    groups = np.repeat(np.arange(10), len(units) // 10)
    result = ridge_r2(units, neurons, groups=groups)
    assert result.median > 0.9
    # Standardisation makes the fit blind to the features' units.
    rescaled = ridge_r2(units * np.logspace(-3, 3, units.shape[1]), neurons, groups=groups)
    np.testing.assert_allclose(rescaled.r2, result.r2, atol=1e-8)


def test_ridge_r2_refuses_constant_targets(rng, units):
    neurons = linear_neurons(rng, units)
    neurons[:, 3] = 1.0
    with pytest.raises(ValueError, match=r"Y columns \[3\] are constant"):
        ridge_r2(units, neurons)


# CCA, Procrustes, CKA, RSA


def test_rotated_copy_has_canonical_correlations_of_one(units, rotation):
    correlations = cca(units, 3.0 * units @ rotation + 1.0)
    assert correlations.shape == (20,)
    np.testing.assert_allclose(correlations, 1.0, atol=1e-8)
    assert cca(units, units @ rotation, n_components=3).shape == (3,)


def test_independent_data_have_low_canonical_correlations(rng, units):
    assert cca(units, rng.standard_normal((len(units), 5)))[0] < 0.2
    with pytest.raises(ValueError, match="reduce the features"):
        cca(units[:30], units[:30] @ np.ones((20, 20)))


def test_procrustes_distance_is_zero_up_to_rotation_scale_and_translation(rng, units, rotation):
    transformed = 3.0 * units @ rotation + 1.0
    assert procrustes_distance(units, transformed) < 1e-12
    assert angular_procrustes_distance(units, transformed) < 1e-6
    assert procrustes_distance(units, rng.standard_normal(units.shape)) > 0.9


def test_procrustes_distance_pads_the_smaller_representation(units):
    embedding = ortho_group.rvs(30, random_state=2)[:20]  # [20, 30] orthonormal rows
    assert procrustes_distance(units, units @ embedding) < 1e-12
    assert procrustes_distance(units[:, :5], units) > 0.1


def test_angular_procrustes_distance_obeys_the_triangle_inequality(rng):
    a, b, c = (smooth_noise(rng, 300, 4) for _ in range(3))
    ab, bc, ac = (angular_procrustes_distance(*pair) for pair in ((a, b), (b, c), (a, c)))
    assert ac <= ab + bc
    assert 0.0 < ab <= np.pi / 2


def test_linear_cka_of_a_rotated_copy_is_one_and_of_noise_is_small(rng, units, rotation):
    assert linear_cka(units, 2.0 * units @ rotation) == pytest.approx(1.0, abs=1e-10)
    assert linear_cka(units, rng.standard_normal(units.shape)) < 0.05
    # Not invariant to anisotropic scaling, unlike CCA.
    assert linear_cka(units, units * np.logspace(-2, 2, 20)) < 0.9


def test_linear_cka_accepts_torch_tensors(units, rotation):
    torch = pytest.importorskip("torch")
    assert linear_cka(torch.from_numpy(units), torch.from_numpy(units @ rotation)) == pytest.approx(1.0)


def test_rsa_of_a_scaled_copy_is_one(rng):
    patterns = rng.standard_normal((20, 30))
    assert rsa(patterns, 2.0 * patterns + 1.0) == pytest.approx(1.0)
    assert rsa(patterns, 2.0 * patterns, metric="euclidean", method="pearson") == pytest.approx(1.0)
    assert abs(rsa(patterns, rng.standard_normal((20, 8)))) < 0.3


def test_rdm_is_symmetric_with_a_zero_diagonal(rng):
    matrix = rdm(rng.standard_normal((6, 10)))
    assert matrix.shape == (6, 6)
    np.testing.assert_allclose(matrix, matrix.T)
    np.testing.assert_allclose(np.diag(matrix), 0.0)
    assert np.all(matrix[~np.eye(6, dtype=bool)] > 0)


def test_rsa_refuses_undefined_dissimilarities(rng):
    patterns = rng.standard_normal((5, 10))
    patterns[2] = 1.0
    with pytest.raises(ValueError, match="zero variance"):
        rsa(patterns, rng.standard_normal((5, 10)))
    with pytest.raises(ValueError, match="method must be"):
        rsa(patterns, patterns, method="kendall")


# Alignment in time


def test_alignment_interpolates_a_line_exactly_across_rates_and_offsets():
    times = np.arange(0, 10, 0.01)  # 100 Hz recording clock
    values = np.stack([2.0 * times + 1.0, -times], axis=1)
    targets = np.arange(0.5, 10.0, 1 / 30)  # 30 Hz model clock; recording starts 0.5 s in
    aligned = align_to_timestamps(values, times, targets, offset=0.5)
    assert aligned.shape == (len(targets), 2)
    np.testing.assert_allclose(aligned[:, 0], 2.0 * (targets - 0.5) + 1.0, atol=1e-12)
    np.testing.assert_allclose(aligned[:, 1], -(targets - 0.5), atol=1e-12)
    cubic = align_to_timestamps(values[:, 0], times, targets, method="cubic", offset=0.5)
    np.testing.assert_allclose(cubic, 2.0 * (targets - 0.5) + 1.0, atol=1e-9)


def test_alignment_with_nearest_keeps_labels():
    times = np.array([0.0, 1.0, 2.0, 3.0])
    labels = np.array([7, 7, 8, 9])
    aligned = align_to_timestamps(labels, times, [0.2, 1.6, 2.4, 3.0], method="nearest")
    np.testing.assert_array_equal(aligned, [7, 8, 8, 9])
    assert aligned.dtype == labels.dtype


def test_alignment_refuses_targets_outside_the_recording():
    times = np.linspace(0.0, 1.0, 11)
    with pytest.raises(ValueError, match=r"covers \[0.5, 1.5\] s"):
        align_to_timestamps(times, times, [0.4, 1.0], offset=0.5)
    with pytest.raises(ValueError, match="strictly increasing"):
        align_to_timestamps(times, times[::-1], [0.5])


# EMG


def test_envelope_of_a_sine_burst_is_its_mean_rectified_amplitude():
    fs = 1000.0
    t = np.arange(0, 3, 1 / fs)
    burst = np.where((t >= 1.0) & (t < 2.0), 2.0 * np.sin(2 * np.pi * 100 * t), 0.0)
    raw = np.stack([burst + 5.0, 0.5 * burst], axis=1)  # a DC offset on the first channel
    envelope = emg_envelope(raw, fs, cutoff_hz=10.0)
    assert envelope.shape == raw.shape
    assert np.all(envelope >= 0)
    middle, quiet = (t > 1.3) & (t < 1.7), (t < 0.7) | (t > 2.3)
    # The mean of |A sin| is 2A/pi (over these samples, 10 per cycle: 3% less).
    expected = np.abs(burst[middle]).mean()
    assert expected == pytest.approx(4 / np.pi, rel=0.04)
    np.testing.assert_allclose(envelope[middle, 0], expected, rtol=0.01)
    np.testing.assert_allclose(envelope[middle, 1], expected / 2, rtol=0.01)
    assert np.all(envelope[quiet] < 0.05)
    # Smooth: no sample-to-sample jumps, unlike the rectified burst itself.
    assert np.abs(np.diff(envelope[:, 0])).max() < 0.1 < np.abs(np.diff(np.abs(burst))).max()


def test_envelope_refuses_a_cutoff_above_nyquist():
    with pytest.raises(ValueError, match=r"cutoff_hz must be in \(0, fs/2\)"):
        emg_envelope(np.ones((100, 2)), fs=100.0, cutoff_hz=60.0)


@pytest.mark.parametrize("delay", [23, -41])
def test_compare_emg_recovers_a_delay_within_one_sample(rng, delay):
    fs, n = 1000.0, 3000
    signal = smooth_noise(rng, n + 200, 1, sigma=15.0)[:, 0]
    simulated = np.stack([signal[100 : 100 + n], smooth_noise(rng, n, 1)[:, 0]], axis=1)
    recorded = 4.0 * signal[100 - delay : 100 - delay + n, None] + 2.0  # recorded(t) = simulated(t - delay)
    result = compare_emg(
        simulated, recorded, fs=fs, muscles=["biceps", "triceps"], channels=["ch1"], mapping={"ch1": "biceps"}
    )
    assert list(result) == ["ch1"]
    match = result["ch1"]
    assert match.muscle == "biceps"
    assert abs(match.lag_s * fs - delay) <= 1
    assert match.r_at_lag > 0.99 > match.r
    assert match.nrmse > 0.05


def test_compare_emg_of_a_rescaled_copy_is_perfect(rng):
    simulated = smooth_noise(rng, 1000, 2)
    recorded = simulated[:, ::-1] * [3.0, 0.5] + 1.0
    result = compare_emg(
        simulated,
        recorded,
        fs=500.0,
        muscles=["a", "b"],
        channels=["emg_b", "emg_a"],
        mapping={"emg_a": "a", "emg_b": "b"},
    )
    for channel in ("emg_a", "emg_b"):
        assert result[channel].r == pytest.approx(1.0)
        assert result[channel].lag_s == 0.0
        assert result[channel].nrmse == pytest.approx(0.0, abs=1e-12)


def test_compare_emg_lists_unmatched_channels_and_muscles(rng):
    simulated, recorded = smooth_noise(rng, 500, 2), smooth_noise(rng, 500, 3)
    with pytest.raises(ValueError) as error:
        compare_emg(
            simulated,
            recorded,
            fs=1000.0,
            muscles=["biceps", "triceps"],
            channels=["ch1", "ch2", "ch3"],
            mapping={"ch1": "biceps", "ch3": "deltoid", "ch9": "triceps"},
        )
    message = str(error.value)
    assert "without a muscle in mapping: ['ch2']" in message
    assert "not in channels: ['ch9']" in message
    assert "not simulated: {'ch3': 'deltoid'}" in message
