"""Figures of recorded data: tracking error, muscle heatmaps, PCA trajectories, alignment and EMG.

Plotting functions only draw. What they show is either read from a `Recording` or passed in
already computed; the few transformations needed between the two live in separate functions
here, each usable (and tested) on its own:

- `joint_errors_deg`: per-joint absolute tracking error in degrees, from a `Recording`.
- `pca_trajectories`: projections of unit activity onto its principal components.
- `masked`: a copy with the padded frames (``valid`` False) set to NaN, so they are not drawn.
- `unit_range`: each column scaled to [0, 1], as the nRMSE of `compare_emg` does.

Every plotting function builds a `matplotlib.figure.Figure` on the Agg canvas (no pyplot, no
global state, so it works headless and from threads), returns it, and saves it when given a
``path`` (format from the suffix: ``.png``, ``.pdf`` or ``.svg``). Needs ``matplotlib``::

    from neuromimic.analysis import record
    from neuromimic.analysis.plots import pca_trajectories, plot_pca_trajectories, plot_tracking_error

    rec = record(controller, env_config)
    plot_tracking_error(rec, env=0, path="tracking.png")
    projections, explained = pca_trajectories(rec["core/activity/layer_0"], rec["valid"])
    plot_pca_trajectories(projections, rec["valid"], explained, labels=rec.attrs["clip_names"])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from neuromimic.analysis.emg import EmgComparison
from neuromimic.analysis.record import Recording

SAVE_FORMATS = (".png", ".pdf", ".svg")
"""Suffixes a figure can be saved with."""

_DPI = 150


# Transformations from recorded data to what is drawn


def joint_errors_deg(recording: Recording) -> np.ndarray:
    """Absolute joint-angle tracking error, per joint, in degrees.

    ``|joint/qpos - reference/qpos|`` converted from rad to degrees, at every recorded step
    (padded steps included; see `masked`). Angles are not wrapped: the forelimb's joints are
    limited hinges, so their differences stay well inside ±180°.

    Args:
        recording: a `Recording` with ``"joint/qpos"`` and ``"reference/qpos"`` [B, T, nq] in rad.

    Returns:
        [B, T, nq] error in degrees, >= 0.
    """
    qpos = _get(recording, "joint/qpos")
    reference = _get(recording, "reference/qpos")
    if qpos.shape != reference.shape:
        raise ValueError(f"joint/qpos {qpos.shape} and reference/qpos {reference.shape} must have the same shape")
    return np.degrees(np.abs(qpos.astype(np.float64) - reference.astype(np.float64)))


def pca_trajectories(activity, valid, n_components: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Project unit activity onto its first principal components.

    PCA (sklearn, centred, not scaled) is fitted on the valid frames of all envs pooled
    together, so every env's trajectory lies in one shared subspace; every frame is then
    projected, and the padded frames (``valid`` False) are set to NaN.

    Args:
        activity: [B, T, n] unit activity (e.g. ``recording["core/activity/layer_0"]``), any unit.
        valid: [B, T] bool, True for the frames inside each clip (``recording["valid"]``).
        n_components: principal components to keep, k <= min(n, number of valid frames).

    Returns:
        projections [B, T, k] (activity's unit; NaN at padded frames) and explained_variance_ratio
        [k], the fraction of the valid frames' total variance along each component, decreasing.
    """
    from sklearn.decomposition import PCA

    x = _array(activity, "activity", ndim=3)
    mask = _valid_mask(valid, x.shape[:2], "activity")
    frames = x[mask]
    if not np.all(np.isfinite(frames)):
        raise ValueError("activity contains NaN or inf values on valid frames; drop those envs or frames first")
    limit = min(x.shape[2], len(frames))
    if not 1 <= n_components <= limit:
        raise ValueError(
            f"n_components must be in [1, min(units, valid frames)] = [1, {limit}], got {n_components} "
            f"({x.shape[2]} units, {len(frames)} valid frames)"
        )
    if not np.any(frames - frames.mean(axis=0)):
        raise ValueError("activity is constant over the valid frames, so it has no principal components")
    pca = PCA(n_components=n_components).fit(frames)
    projections = np.full(x.shape[:2] + (n_components,), np.nan)
    projections[mask] = pca.transform(frames)
    return projections, pca.explained_variance_ratio_.copy()


def masked(values, valid) -> np.ndarray:
    """A float copy of ``values`` [B, T, ...] with the frames where ``valid`` [B, T] is False set to
    NaN (matplotlib leaves gaps at NaN)."""
    x = np.array(values, dtype=np.float64)
    mask = _valid_mask(valid, x.shape[:2], "values")
    x[~mask] = np.nan
    return x


def unit_range(x) -> np.ndarray:
    """Each column of ``x`` [T] or [T, C] scaled linearly to [0, 1] by its own minimum and maximum,
    as `neuromimic.analysis.compare_emg` does before its nRMSE. A constant column is an error."""
    array = np.asarray(x, dtype=np.float64)
    if array.ndim not in (1, 2):
        raise ValueError(f"x must be [T] or [T, C], got shape {array.shape}")
    span = np.ptp(array, axis=0)
    if np.any(span == 0):
        constant = np.flatnonzero(np.atleast_1d(span == 0)).tolist()
        raise ValueError(f"columns {constant} of x are constant and cannot be scaled to [0, 1]")
    return (array - array.min(axis=0)) / span


# Figures


def plot_tracking_error(recording: Recording, env: int = 0, path: str | Path | None = None) -> Figure:
    """Absolute tracking error of each joint over time for one env, and of the tracked sites.

    Top panel: one line per joint, ``joint_errors_deg`` in degrees. Bottom panel (only if the
    recording has ``"metrics/site_pos_error_mm"`` [B, T]): the tracked-site position error in mm.
    Padded steps (``valid`` False) are left out.

    Args:
        recording: a `Recording` with ``"joint/qpos"``, ``"reference/qpos"`` and ``"valid"``.
        env: index of the env (clip) to show, in [0, B).
        path: optional file to save to (``.png``, ``.pdf`` or ``.svg``).

    Returns:
        The figure: 1 or 2 axes sharing the time axis (s).
    """
    errors = joint_errors_deg(recording)
    _check_env(env, errors.shape[0])
    valid = _get(recording, "valid")
    errors = masked(errors, valid)[env]
    site_key = "metrics/site_pos_error_mm"
    site = masked(recording.data[site_key], valid)[env] if site_key in recording.data else None
    time = recording.time
    names = _names(recording.attrs.get("joint_names"), errors.shape[-1], "joint")

    fig = _figure(figsize=(7, 5.5 if site is not None else 3.5))
    axes = fig.subplots(2 if site is not None else 1, 1, sharex=True, squeeze=False)[:, 0]
    for j, name in enumerate(names):
        axes[0].plot(time, errors[:, j], label=name)
    axes[0].set_ylabel("|joint angle error| (deg)")
    axes[0].legend(title="joint", fontsize="small", ncols=min(len(names), 4))
    axes[0].set_title(f"Tracking error, {_env_label(recording, env)}")
    if site is not None:
        site = site.reshape(len(time), -1)
        site_names = _names(recording.attrs.get("site_names"), site.shape[1], "site")
        for s, name in enumerate(site_names):
            axes[1].plot(time, site[:, s], label=name, color="black" if site.shape[1] == 1 else None)
        axes[1].set_ylabel(f"site position error ({recording.units.get(site_key, 'mm')})")
        axes[1].legend(title="site", fontsize="small")
    for ax in axes:
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("time (s)")
    return _finish(fig, path)


def plot_activation_heatmap(
    recording: Recording,
    env: int = 0,
    key: str = "muscle/activation",
    path: str | Path | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
) -> Figure:
    """Heatmap of a recorded [B, T, n] array for one env: one row per muscle (or unit), time across.

    Rows are named by ``attrs["muscle_names"]`` when ``key`` is a muscle array (``"muscle/..."`` or
    ``"action"``) with one column per muscle, and numbered otherwise. Padded steps are blank.

    Args:
        recording: a `Recording`.
        env: index of the env (clip) to show, in [0, B).
        key: the array to show, e.g. ``"muscle/activation"``, ``"muscle/force"``,
            ``"core/activity/layer_0"``.
        path: optional file to save to (``.png``, ``.pdf`` or ``.svg``).
        vmin, vmax: colour range; default [0, 1] for arrays whose unit is ``"0..1"``, otherwise
            the data range.

    Returns:
        The figure: the heatmap's axes and its colour bar (labelled with the unit).
    """
    values = _get(recording, key)
    if values.ndim != 3:
        raise ValueError(f"{key!r} must be [B, T, n] to draw as a heatmap, got shape {values.shape}")
    _check_env(env, values.shape[0])
    values = masked(values, _get(recording, "valid"))[env]
    unit = recording.units.get(key, "")
    if unit == "0..1":
        vmin = 0.0 if vmin is None else vmin
        vmax = 1.0 if vmax is None else vmax
    muscle_names = recording.attrs.get("muscle_names")
    is_muscle = (key.startswith("muscle/") or key == "action") and muscle_names is not None
    rows = values.shape[1]
    names = list(muscle_names) if is_muscle and len(muscle_names) == rows else None

    time, dt = recording.time, recording.attrs["control_dt"]
    fig = _figure(figsize=(8, max(2.5, 0.3 * rows + 1.5) if names else 4))
    ax = fig.add_subplot()
    image = ax.imshow(
        np.ma.masked_invalid(values.T),
        aspect="auto",
        interpolation="nearest",
        origin="upper",
        extent=(time[0] - dt, time[-1], rows - 0.5, -0.5),
        vmin=vmin,
        vmax=vmax,
        cmap="viridis",
    )
    if names is not None:
        ax.set_yticks(np.arange(rows), names)
        ax.set_ylabel("muscle")
    else:
        ax.set_ylabel("unit (index)")
    ax.set_xlabel("time (s)")
    ax.set_title(f"{key}, {_env_label(recording, env)}")
    colorbar = fig.colorbar(image, ax=ax)
    colorbar.set_label(f"{key.rsplit('/', 1)[-1]} ({unit})" if unit else key.rsplit("/", 1)[-1])
    return _finish(fig, path)


def plot_pca_trajectories(
    projections,
    valid,
    explained,
    labels: Sequence[str] | None = None,
    path: str | Path | None = None,
) -> Figure:
    """Trajectories of each env in principal-component space (see `pca_trajectories`).

    Left panel: PC2 against PC1; right panel (when k >= 3): PC3 against PC1. One line per env,
    a circle at its first valid frame and a square at its last. Padded frames are left out.

    Args:
        projections: [B, T, k] projections, k >= 2.
        valid: [B, T] bool, True for the frames inside each clip.
        explained: [k] fraction of variance along each component (shown in the axis labels).
        labels: optional [B] names for the legend (e.g. ``recording.attrs["clip_names"]``).
        path: optional file to save to (``.png``, ``.pdf`` or ``.svg``).

    Returns:
        The figure: 1 axes (k = 2) or 2 axes (k >= 3), each with one line per env.
    """
    x = _array(projections, "projections", ndim=3)
    k = x.shape[2]
    if k < 2:
        raise ValueError(f"projections need at least 2 components to draw, got {k}")
    explained = np.asarray(explained, dtype=np.float64).ravel()
    if len(explained) != k:
        raise ValueError(f"explained must have one value per component ({k}), got {len(explained)}")
    x = masked(x, valid)
    num_envs = x.shape[0]
    if labels is not None and len(labels) != num_envs:
        raise ValueError(f"labels must name each of the {num_envs} envs, got {len(labels)}")
    colours = _colours(num_envs)

    pairs = [(0, 1)] + ([(0, 2)] if k >= 3 else [])
    fig = _figure(figsize=(5.5 * len(pairs), 5))
    axes = fig.subplots(1, len(pairs), squeeze=False)[0]
    for ax, (a, b) in zip(axes, pairs, strict=True):
        for e in range(num_envs):
            label = labels[e] if labels is not None else f"env {e}"
            ax.plot(x[e, :, a], x[e, :, b], color=colours[e], lw=1.2, label=label)
            finite = np.flatnonzero(np.isfinite(x[e, :, a]) & np.isfinite(x[e, :, b]))
            if len(finite):
                first, last = finite[0], finite[-1]
                ax.scatter(x[e, first, a], x[e, first, b], color=colours[e], marker="o", s=25, zorder=3)
                ax.scatter(x[e, last, a], x[e, last, b], color=colours[e], marker="s", s=25, zorder=3)
        ax.set_xlabel(f"PC{a + 1} ({100 * explained[a]:.1f}% of variance)")
        ax.set_ylabel(f"PC{b + 1} ({100 * explained[b]:.1f}% of variance)")
        ax.grid(alpha=0.3)
    axes[0].set_title("PCA trajectories (o start, \u25a0 end)")
    if num_envs <= 16:
        axes[-1].legend(fontsize="small", loc="best")
    return _finish(fig, path)


def plot_alignment_summary(
    r2,
    path: str | Path | None = None,
    title: str = "Cross-validated R\u00b2 per neuron",
    xmin: float = -1.0,
    bins: int = 30,
) -> Figure:
    """Distribution of per-target cross-validated R² (e.g. ``ridge_r2(units, neurons).r2``).

    Left: histogram; right: empirical cumulative distribution; the median of each set is marked
    by a dashed vertical line. Cross-validated R² is unbounded below, so values under ``xmin``
    are drawn at ``xmin`` (the histogram's first bin) and counted in the legend; the median uses
    the values as given.

    Args:
        r2: [n_targets] R² values, or a mapping name -> [n_targets] to overlay several sets
            (e.g. one per layer).
        path: optional file to save to (``.png``, ``.pdf`` or ``.svg``).
        title: figure title.
        xmin: lowest R² drawn; must be < 1.
        bins: histogram bins over [xmin, 1].

    Returns:
        The figure: 2 axes (histogram and ECDF).
    """
    sets = dict(r2) if isinstance(r2, Mapping) else {"": r2}
    if not sets:
        raise ValueError("r2 is an empty mapping; give at least one set of R² values")
    if not xmin < 1:
        raise ValueError(f"xmin must be < 1 (R² is at most 1), got {xmin}")
    values = {}
    for name, v in sets.items():
        array = np.asarray(v, dtype=np.float64).ravel()
        label = f"r2[{name!r}]" if name else "r2"
        if array.size == 0:
            raise ValueError(f"{label} is empty")
        if not np.all(np.isfinite(array)):
            raise ValueError(f"{label} contains NaN or inf values")
        values[name] = array
    colours = _colours(len(values))
    edges = np.linspace(xmin, 1.0, bins + 1)

    fig = _figure(figsize=(10, 4))
    hist_ax, ecdf_ax = fig.subplots(1, 2)
    for (name, array), colour in zip(values.items(), colours, strict=True):
        median = float(np.median(array))
        below = int(np.sum(array < xmin))
        shown = np.clip(array, xmin, 1.0)
        label = f"{name + ': ' if name else ''}median {median:.2f}, n={len(array)}"
        if below:
            label += f", {below} below {xmin:g} drawn at {xmin:g}"
        counts, _ = np.histogram(shown, bins=edges)
        single = len(values) == 1
        hist_ax.stairs(counts, edges, fill=single, alpha=0.6 if single else 1.0, color=colour, lw=1.5, label=label)
        ecdf_ax.ecdf(shown, color=colour, lw=1.5)
        for ax in (hist_ax, ecdf_ax):
            ax.axvline(median, color=colour, ls="--", lw=1.2)
    hist_ax.set_xlabel("cross-validated R\u00b2")
    hist_ax.set_ylabel("count")
    hist_ax.legend(fontsize="small", loc="upper left")
    ecdf_ax.set_xlabel("cross-validated R\u00b2")
    ecdf_ax.set_ylabel("fraction \u2264 R\u00b2")
    ecdf_ax.set_ylim(0, 1)
    for ax in (hist_ax, ecdf_ax):
        ax.set_xlim(xmin, 1.0)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    return _finish(fig, path)


def plot_emg_overlay(
    time,
    simulated,
    recorded,
    comparisons: Mapping[str, EmgComparison],
    muscles: Sequence[str],
    channels: Sequence[str],
    path: str | Path | None = None,
) -> Figure:
    """Simulated muscle activation against recorded EMG, one panel per compared channel.

    Each signal is scaled to [0, 1] by its own range (`unit_range`), as `compare_emg` does
    before its nRMSE; the panel's title gives the comparison's r, nRMSE and best lag.

    Args:
        time: [T] sample times in s.
        simulated: [T, M] simulated activations, columns named by ``muscles``.
        recorded: [T, C] EMG envelopes on the same timeline, columns named by ``channels``.
        comparisons: channel -> `EmgComparison` from ``compare_emg(simulated, recorded, ...)``;
            one panel per entry, in ``channels`` order.
        muscles: [M] simulated muscle names.
        channels: [C] recorded channel names.
        path: optional file to save to (``.png``, ``.pdf`` or ``.svg``).

    Returns:
        The figure: one axes per compared channel, each with a simulated and a recorded line.
    """
    time = np.asarray(time, dtype=np.float64)
    if time.ndim != 1:
        raise ValueError(f"time must be [T], got shape {time.shape}")
    sim = _array(simulated, "simulated", ndim=2)
    rec = _array(recorded, "recorded", ndim=2)
    checks = (("simulated", sim, muscles, "muscles"), ("recorded", rec, channels, "channels"))
    for name, array, names, names_arg in checks:
        if array.shape != (len(time), len(names)):
            raise ValueError(
                f"{name} must be [len(time), len({names_arg})] = [{len(time)}, {len(names)}], got {array.shape}"
            )
    if not comparisons:
        raise ValueError("comparisons is empty; nothing to draw")
    unknown = [c for c in comparisons if c not in channels]
    if unknown:
        raise ValueError(f"comparisons name channels that are not in channels: {unknown}; channels: {list(channels)}")
    missing_muscles = {c: cmp.muscle for c, cmp in comparisons.items() if cmp.muscle not in muscles}
    if missing_muscles:
        raise ValueError(
            f"comparisons point to muscles that are not in muscles: {missing_muscles}; muscles: {list(muscles)}"
        )
    shown = [c for c in channels if c in comparisons]

    fig = _figure(figsize=(8, 1.9 * len(shown) + 0.8))
    axes = fig.subplots(len(shown), 1, sharex=True, squeeze=False)[:, 0]
    for ax, channel in zip(axes, shown, strict=True):
        result = comparisons[channel]
        m, c = list(muscles).index(result.muscle), list(channels).index(channel)
        ax.plot(time, unit_range(sim[:, m]), color="tab:blue", lw=1.3, label=f"simulated {result.muscle}")
        ax.plot(time, unit_range(rec[:, c]), color="black", lw=1.0, alpha=0.8, label=f"EMG {channel}")
        ax.set_title(
            f"{channel} vs {result.muscle}: r = {result.r:.2f}, nRMSE = {result.nrmse:.2f}, "
            f"lag = {1000 * result.lag_s:+.0f} ms (r = {result.r_at_lag:.2f})",
            fontsize="medium",
        )
        ax.set_ylabel("scaled (0..1)")
        ax.set_ylim(-0.05, 1.05)
        ax.legend(fontsize="small", loc="best")
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("time (s)")
    return _finish(fig, path)


# Helpers


def _figure(figsize: tuple[float, float]) -> Figure:
    """A figure on its own Agg canvas (no pyplot state)."""
    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _finish(fig: Figure, path: str | Path | None) -> Figure:
    """Save ``fig`` to ``path`` (if given) in the format its suffix names; return it."""
    if path is not None:
        path = Path(path)
        if path.suffix.lower() not in SAVE_FORMATS:
            raise ValueError(f"cannot save a figure as {path.name!r}: the suffix must be one of {SAVE_FORMATS}")
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=_DPI)
    return fig


def _get(recording: Recording, key: str) -> np.ndarray:
    """``recording.data[key]``; a missing key is a KeyError listing the recorded ones."""
    if key not in recording.data:
        raise KeyError(f"the recording has no {key!r} array; recorded arrays: {sorted(recording.data)}")
    return np.asarray(recording.data[key])


def _array(x, name: str, ndim: int) -> np.ndarray:
    """``x`` (array-like or torch tensor) as a float64 array with ``ndim`` dimensions."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    array = np.asarray(x, dtype=np.float64)
    if array.ndim != ndim:
        shape = {2: "[T, n]", 3: "[B, T, n]"}[ndim]
        raise ValueError(f"{name} must be {shape}, got shape {array.shape}")
    return array


def _valid_mask(valid, shape: tuple[int, int], name: str) -> np.ndarray:
    """``valid`` as a [B, T] bool array matching the first two dimensions of ``name``."""
    if hasattr(valid, "detach"):
        valid = valid.detach().cpu().numpy()
    mask = np.asarray(valid)
    if mask.shape != tuple(shape):
        raise ValueError(f"valid must be [B, T] = {list(shape)} like {name}, got shape {mask.shape}")
    return mask.astype(bool)


def _check_env(env: int, num_envs: int) -> None:
    if not isinstance(env, (int, np.integer)) or isinstance(env, bool) or not 0 <= env < num_envs:
        raise ValueError(f"env must be an index in [0, {num_envs}): the recording has {num_envs} envs, got {env!r}")


def _env_label(recording: Recording, env: int) -> str:
    clips = recording.attrs.get("clip_names")
    return f"env {env} ({clips[env]})" if clips is not None and env < len(clips) else f"env {env}"


def _names(names: Sequence[str] | None, count: int, prefix: str) -> list[str]:
    """``names`` if there is one per column, else ``prefix 0``, ``prefix 1``, ..."""
    if names is not None and len(names) == count:
        return [str(n) for n in names]
    return [f"{prefix} {i}" for i in range(count)]


def _colours(count: int) -> list:
    """Distinct colours: tab10 up to 10, evenly spaced viridis beyond."""
    from matplotlib import colormaps

    if count <= 10:
        return [colormaps["tab10"](i) for i in range(count)]
    return list(colormaps["viridis"](np.linspace(0, 0.95, count)))
