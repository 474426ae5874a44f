"""Compare simulated muscle activations with recorded EMG.

Typical use: ``compare_emg(activations, emg_envelope(raw_emg, fs), fs=fs, muscles=..., channels=...,
mapping=...)`` after putting both on one timeline (`neuromimic.analysis.align_to_timestamps`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.signal import butter, sosfiltfilt

from neuromimic.analysis.compare import _to_numpy


def emg_envelope(
    raw, fs: float, cutoff_hz: float = 10.0, order: int = 4, highpass_hz: float | None = None
) -> np.ndarray:
    """Linear envelope of raw EMG: remove the mean, (high-pass,) full-wave rectify, low-pass.

    Filters are Butterworth, applied forwards and backwards (``sosfiltfilt``), so they add no delay
    and the effective order doubles (the gain at `cutoff_hz` is -6 dB rather than -3 dB). The
    low-pass can undershoot zero just after sharp bursts; those values are clipped to 0, since
    an envelope is an amplitude.

    Args:
        raw: [T] or [T, C] raw EMG, any unit, sampled at `fs`.
        fs: sampling rate in Hz.
        cutoff_hz: low-pass cutoff in Hz for the envelope (typically 3-10 Hz).
        order: Butterworth order of each filter.
        highpass_hz: optional high-pass cutoff in Hz applied before rectification to remove
            movement artefacts (typically 10-30 Hz); None to skip.

    Returns:
        Envelope with the shape and unit of `raw`, non-negative.
    """
    x = _to_numpy(raw, "raw")
    if x.ndim not in (1, 2):
        raise ValueError(f"raw must be [T] or [T, C], got shape {x.shape}")
    for name, cutoff in (("cutoff_hz", cutoff_hz), ("highpass_hz", highpass_hz)):
        if cutoff is not None and not 0 < cutoff < fs / 2:
            raise ValueError(f"{name} must be in (0, fs/2) = (0, {fs / 2:g}) Hz, got {cutoff}")
    x = x - x.mean(axis=0)
    if highpass_hz is not None:
        x = _zero_phase(x, butter(order, highpass_hz, "highpass", fs=fs, output="sos"))
    return np.clip(_zero_phase(np.abs(x), butter(order, cutoff_hz, fs=fs, output="sos")), 0.0, None)


def _zero_phase(x: np.ndarray, sos: np.ndarray) -> np.ndarray:
    """`x` filtered forwards and backwards along time (axis 0)."""
    min_length = 3 * (2 * len(sos) + 1) + 1
    if len(x) < min_length:
        raise ValueError(f"raw has {len(x)} samples; filtering needs at least {min_length} (or a lower order)")
    return sosfiltfilt(sos, x, axis=0)


@dataclass(frozen=True)
class EmgComparison:
    """Agreement of one recorded EMG channel with its simulated muscle (see `compare_emg`).

    Attributes:
        channel: recorded channel name.
        muscle: simulated muscle name.
        r: Pearson correlation at zero lag.
        nrmse: RMS difference after scaling each signal linearly to [0, 1] by its own min and
            max, in [0, 1]; 0 when the shapes match (gain and offset are ignored).
        lag_s: lag in s, within ±max_lag_s, that maximises the correlation; positive when the
            recording lags the simulation (recorded(t) ≈ simulated(t - lag_s)).
        r_at_lag: Pearson correlation at `lag_s`, over the overlapping samples.
    """

    channel: str
    muscle: str
    r: float
    nrmse: float
    lag_s: float
    r_at_lag: float


def compare_emg(
    simulated,
    recorded,
    *,
    fs: float,
    muscles: Sequence[str],
    channels: Sequence[str],
    mapping: Mapping[str, str],
    max_lag_s: float = 0.1,
) -> dict[str, EmgComparison]:
    """Per-channel correlation, normalised error and best lag between simulated and recorded muscles.

    Every recorded channel must appear in `mapping`, every key of `mapping` must be a recorded
    channel, and every muscle it names must be simulated; anything unmatched is an error that lists
    it. Simulated muscles without a recording are ignored. Several channels may map to one muscle.

    EMG usually leads force-producing activation by tens of ms (electromechanical delay), so
    expect negative `lag_s` when the simulation tracks force well.

    Args:
        simulated: [T, M] simulated activations (or excitations), sampled at `fs`.
        recorded: [T, C] EMG envelopes (see `emg_envelope`) on the same timeline.
        fs: common sampling rate in Hz.
        muscles: [M] names of the simulated columns.
        channels: [C] names of the recorded columns.
        mapping: recorded channel name -> simulated muscle name.
        max_lag_s: largest lag in s searched in either direction.

    Returns:
        `EmgComparison` per recorded channel, keyed by channel name in `channels` order.
    """
    sim = _as_columns(simulated, "simulated", muscles, "muscles")
    rec = _as_columns(recorded, "recorded", channels, "channels")
    if len(sim) != len(rec):
        raise ValueError(
            f"simulated and recorded must have the same number of samples, got {len(sim)} and {len(rec)}; "
            "resample them onto one timeline (align_to_timestamps)"
        )
    _check_mapping(muscles, channels, mapping)
    max_lag = round(max_lag_s * fs)
    if not 0 <= max_lag < len(sim) // 2:
        raise ValueError(f"max_lag_s={max_lag_s} is {max_lag} samples; it must be in [0, T/2) = [0, {len(sim) // 2})")
    results = {}
    for c, channel in enumerate(channels):
        muscle = mapping[channel]
        a, b = sim[:, list(muscles).index(muscle)], rec[:, c]
        for name, signal in ((f"simulated muscle {muscle!r}", a), (f"recorded channel {channel!r}", b)):
            if np.ptp(signal) == 0:
                raise ValueError(f"{name} is constant, so its correlation is undefined")
        lags, r = _lagged_correlations(a, b, max_lag)
        best = int(np.nanargmax(r))
        results[channel] = EmgComparison(
            channel=channel,
            muscle=muscle,
            r=float(r[max_lag]),
            nrmse=float(np.sqrt(np.mean((_unit_range(a) - _unit_range(b)) ** 2))),
            lag_s=lags[best] / fs,
            r_at_lag=float(r[best]),
        )
    return results


def _as_columns(x, name: str, names: Sequence[str], names_arg: str) -> np.ndarray:
    """[T, len(names)] array whose columns `names` labels, with no duplicate names."""
    array = _to_numpy(x, name)
    if array.ndim != 2 or array.shape[1] != len(names):
        raise ValueError(f"{name} must be [T, len({names_arg})] = [T, {len(names)}], got shape {array.shape}")
    duplicates = sorted({n for n in names if list(names).count(n) > 1})
    if duplicates:
        raise ValueError(f"{names_arg} contains duplicate names {duplicates}; each column needs its own name")
    return array


def _check_mapping(muscles: Sequence[str], channels: Sequence[str], mapping: Mapping[str, str]) -> None:
    """Raise one ValueError listing every unmapped channel, unknown channel and unknown muscle."""
    problems = []
    unmapped = [c for c in channels if c not in mapping]
    if unmapped:
        problems.append(f"recorded channels without a muscle in mapping: {unmapped}")
    unknown_channels = sorted(set(mapping) - set(channels))
    if unknown_channels:
        problems.append(f"mapping names channels that are not in channels: {unknown_channels}")
    unknown_muscles = {c: m for c, m in mapping.items() if m not in set(muscles)}
    if unknown_muscles:
        problems.append(f"mapping points to muscles that are not simulated: {unknown_muscles}")
    if problems:
        raise ValueError(
            "EMG channels and muscles do not match: "
            + "; ".join(problems)
            + f". Simulated muscles: {list(muscles)}; fix mapping or the names."
        )


def _lagged_correlations(sim: np.ndarray, rec: np.ndarray, max_lag: int) -> tuple[np.ndarray, np.ndarray]:
    """Pearson correlation of sim[t] with rec[t + k] over their overlap, for k in [-max_lag, max_lag].

    Returns:
        lags [2 max_lag + 1] in samples and the correlation at each.
    """
    n = len(sim)
    lags = np.arange(-max_lag, max_lag + 1)
    r = np.array([np.corrcoef(sim[max(0, -k) : n - max(0, k)], rec[max(0, k) : n - max(0, -k)])[0, 1] for k in lags])
    return lags, r


def _unit_range(x: np.ndarray) -> np.ndarray:
    """`x` scaled linearly so that its minimum is 0 and its maximum is 1."""
    return (x - x.min()) / np.ptp(x)
