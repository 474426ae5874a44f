"""Compare a controller's units with recorded neurons: encoding/decoding models and similarity metrics.

Every function takes numpy arrays (torch tensors are converted, from any device) shaped
[n_samples, n_features]: rows are time points (or conditions, for `rdm` and `rsa`) shared by both
arguments, columns are model units, neurons or channels. Put recordings on the model's timeline
first with `align_to_timestamps`.

PCA is sklearn's, used as is::

    from sklearn.decomposition import PCA

    pca = PCA(n_components=10).fit(units)  # units [T, n_units]
    pca.components_                        # [10, n_units] principal axes
    pca.explained_variance_ratio_          # [10] fraction of the variance along each axis
    trajectories = pca.transform(units)    # [T, 10] trajectories in the principal subspace
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.interpolate import make_interp_spline
from scipy.linalg import subspace_angles
from scipy.spatial import procrustes
from scipy.spatial.distance import pdist, squareform
from scipy.stats import pearsonr, spearmanr
from sklearn.linear_model import RidgeCV
from sklearn.metrics import r2_score
from sklearn.model_selection import GroupKFold, KFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

DEFAULT_ALPHAS = (1e-2, 1e-1, 1.0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6)
"""Ridge penalties searched by `ridge_r2`, for standardised features."""

_TIME_TOLERANCE_S = 1e-9
"""Targets this close outside the recorded range (float rounding) count as inside it."""


def _to_numpy(x, name: str) -> np.ndarray:
    """`x` as a float64 numpy array; a torch tensor is detached and moved to the CPU first.

    Args:
        x: array-like or torch tensor.
        name: the argument's name, for error messages.
    """
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    array = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or inf values; drop or interpolate them first")
    return array


def _as_matrix(x, name: str) -> np.ndarray:
    """[n_samples, n_features] float64 array; a 1-D input becomes one column."""
    array = _to_numpy(x, name)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        raise ValueError(f"{name} must be [n_samples, n_features], got shape {array.shape}")
    if len(array) < 2:
        raise ValueError(f"{name} needs at least 2 samples (rows), got {len(array)}")
    return array


def _as_pair(X, Y) -> tuple[np.ndarray, np.ndarray]:
    """X and Y as matrices with the same number of rows (samples)."""
    x, y = _as_matrix(X, "X"), _as_matrix(Y, "Y")
    if len(x) != len(y):
        raise ValueError(
            f"X and Y must have the same number of samples (rows), got {len(x)} and {len(y)}; "
            "align them in time first (align_to_timestamps)"
        )
    return x, y


def _centred(x: np.ndarray, name: str) -> np.ndarray:
    """Columns of `x` minus their means; an all-constant `x` is an error."""
    centred = x - x.mean(axis=0)
    if not np.any(centred):
        raise ValueError(f"{name} is constant over samples, so the comparison is undefined")
    return centred


def blocked_folds(n_samples: int, n_folds: int = 5, groups=None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Cross-validation folds that keep neighbouring samples together, never random frames.

    Without `groups`, each test set is one contiguous block of time (sklearn ``KFold`` without
    shuffling). With `groups`, each trial (group) lies wholly in either the training or the test
    set (sklearn ``GroupKFold``), so a test set may hold several non-adjacent trials.

    Args:
        n_samples: number of samples (time points).
        n_folds: number of folds, >= 2.
        groups: [n_samples] trial (or session) label of each sample, or None for time blocks.

    Returns:
        `n_folds` pairs (train_idx, test_idx) of sample indices; the test sets partition the samples.
    """
    if n_folds < 2:
        raise ValueError(f"n_folds must be >= 2, got {n_folds}")
    samples = np.arange(n_samples)
    if groups is None:
        if n_folds > n_samples:
            raise ValueError(f"n_folds={n_folds} exceeds n_samples={n_samples}; use fewer folds")
        return list(KFold(n_splits=n_folds).split(samples))
    groups = np.asarray(groups)
    if groups.shape != (n_samples,):
        raise ValueError(f"groups must have shape [n_samples] = [{n_samples}], got {groups.shape}")
    n_groups = len(np.unique(groups))
    if n_folds > n_groups:
        raise ValueError(f"n_folds={n_folds} exceeds the {n_groups} distinct groups; use n_folds <= {n_groups}")
    return list(GroupKFold(n_splits=n_folds).split(samples, groups=groups))


@dataclass(frozen=True)
class RidgeResult:
    """Cross-validated ridge regression from `X` to `Y` (see `ridge_r2`).

    Attributes:
        r2: [n_targets] cross-validated R² of each column of Y (1 is perfect, 0 is no better than
            the mean, negative is worse).
        alphas: [n_folds] ridge penalty chosen in each outer fold by the inner cross-validation.
        prediction: [n_samples, n_targets] out-of-fold prediction of Y, in Y's units.
    """

    r2: np.ndarray
    alphas: np.ndarray
    prediction: np.ndarray

    @property
    def median(self) -> float:
        """Median R² over targets."""
        return float(np.median(self.r2))

    @property
    def quartiles(self) -> tuple[float, float]:
        """25th and 75th percentiles of R² over targets."""
        q25, q75 = np.percentile(self.r2, [25, 75])
        return float(q25), float(q75)


def ridge_r2(X, Y, groups=None, n_folds: int = 5, alphas: Sequence[float] = DEFAULT_ALPHAS) -> RidgeResult:
    """Cross-validated R² of a linear (ridge) map from X to each column of Y.

    Encoding: ``ridge_r2(units, neurons)`` asks how well the model's units predict each recorded
    neuron. Decoding: ``ridge_r2(neurons, units)`` asks how well the recording predicts each unit.

    Outer folds come from `blocked_folds` (time blocks, or whole trials when `groups` is given).
    In each outer fold the features are standardised with the training fold's mean and standard
    deviation, and one ridge penalty (shared by all targets) is chosen from `alphas` by an inner
    blocked cross-validation inside the training fold; the test fold is used only for prediction.
    R² is computed once per target from the out-of-fold predictions of all folds together.

    Args:
        X: [n_samples, n_features] predictors (e.g. unit activity).
        Y: [n_samples, n_targets] targets (e.g. firing rates); no column may be constant.
        groups: [n_samples] trial label of each sample, or None to fold by contiguous time blocks.
        n_folds: number of outer folds (and at most that many inner folds).
        alphas: ridge penalties to choose from.

    Returns:
        `RidgeResult` with R² per target, the chosen penalties and the out-of-fold predictions.
    """
    x, y = _as_pair(X, Y)
    constant = np.flatnonzero(np.ptp(y, axis=0) == 0)
    if constant.size:
        raise ValueError(f"Y columns {constant.tolist()} are constant, so their R² is undefined; drop them")
    groups = None if groups is None else np.asarray(groups)
    prediction = np.empty_like(y)
    chosen = []
    for train, test in blocked_folds(len(x), n_folds, groups):
        model = _fit_ridge(x[train], y[train], None if groups is None else groups[train], n_folds, alphas)
        prediction[test] = model.predict(x[test])
        chosen.append(model[-1].alpha_)
    r2 = r2_score(y, prediction, multioutput="raw_values")
    return RidgeResult(r2=r2, alphas=np.array(chosen), prediction=prediction)


def _fit_ridge(x: np.ndarray, y: np.ndarray, groups, n_folds: int, alphas: Sequence[float]) -> Pipeline:
    """Standardise x, choose alpha by blocked cross-validation within (x, y), refit on all of it."""
    n_inner = n_folds if groups is None else min(n_folds, len(np.unique(groups)))
    if n_inner < 2:
        raise ValueError(
            "ridge_r2 needs at least 2 groups in every training fold to choose alpha; "
            "pass more trials in groups or use fewer folds"
        )
    inner = blocked_folds(len(x), n_inner, groups)
    return make_pipeline(StandardScaler(), RidgeCV(alphas=alphas, cv=inner)).fit(x, y)


def cca(X, Y, n_components: int | None = None) -> np.ndarray:
    """Canonical correlations between X and Y, largest first.

    They are the cosines of the principal angles between the column spaces of the centred X and Y
    (`scipy.linalg.subspace_angles`), which equals the singular values of the whitened
    cross-covariance, without iterative fitting. CCA is unregularised: with many features per
    sample the correlations approach 1 whatever the data, so reduce both sides (e.g. with PCA to
    a few components) when n_features is not much smaller than n_samples. Slow, autocorrelated
    signals have few independent samples, so even unrelated ones reach high correlations: compare
    with a baseline such as a circularly shifted Y.

    Args:
        X: [n_samples, p] first representation.
        Y: [n_samples, q] second representation.
        n_components: how many correlations to return; None for all min(rank X, rank Y).

    Returns:
        [n_components] canonical correlations in [0, 1], descending.
    """
    x, y = _as_pair(X, Y)
    if x.shape[1] + y.shape[1] > len(x) - 1:
        raise ValueError(
            f"X and Y have {x.shape[1]} + {y.shape[1]} features for {len(x)} samples, so their spans "
            "intersect and every correlation is 1; reduce the features (e.g. PCA) or add samples"
        )
    correlations = np.cos(subspace_angles(_centred(x, "X"), _centred(y, "Y")))[::-1]
    if n_components is None:
        return correlations
    if not 1 <= n_components <= len(correlations):
        raise ValueError(f"n_components must be in [1, {len(correlations)}] (min rank of X, Y), got {n_components}")
    return correlations[:n_components]


def procrustes_distance(X, Y) -> float:
    """Procrustes disparity: the residual after the best rotation, scaling and translation of Y onto X.

    Both are centred and scaled to unit Frobenius norm, Y is rotated (reflections allowed) and
    scaled onto X, and the sum of squared differences remains (`scipy.spatial.procrustes`). It is
    symmetric, 0 for identical shapes and at most 1. With different feature counts, the smaller
    side is padded with zero columns, i.e. embedded in the larger space.

    Args:
        X: [n_samples, p] first representation.
        Y: [n_samples, q] second representation.

    Returns:
        Disparity in [0, 1].
    """
    x, y = _as_pair(X, Y)
    width = max(x.shape[1], y.shape[1])
    x = np.pad(x, ((0, 0), (0, width - x.shape[1])))
    y = np.pad(y, ((0, 0), (0, width - y.shape[1])))
    _, _, disparity = procrustes(_centred(x, "X"), _centred(y, "Y"))
    return float(disparity)


def angular_procrustes_distance(X, Y) -> float:
    """Angular Procrustes shape distance (Williams et al. 2021), a metric on representations.

    The angle arccos(||X̃ᵀỸ||_*) between the centred, unit-norm X̃ and Ỹ after the best rotation;
    equal to arcsin(√disparity) of `procrustes_distance`. Unlike the disparity it obeys the
    triangle inequality, so distances between many models can be compared or embedded.

    Args:
        X: [n_samples, p] first representation.
        Y: [n_samples, q] second representation.

    Returns:
        Angle in radians in [0, π/2]; 0 for identical shapes.
    """
    return float(np.arcsin(np.sqrt(procrustes_distance(X, Y))))


def rdm(X, metric: str = "correlation") -> np.ndarray:
    """Representational dissimilarity matrix between the rows (conditions) of X.

    Args:
        X: [n_conditions, n_features] response pattern per condition (e.g. trial-averaged rates).
        metric: any `scipy.spatial.distance.pdist` metric; "correlation" is 1 - Pearson r.

    Returns:
        [n_conditions, n_conditions] symmetric dissimilarities with a zero diagonal.
    """
    return squareform(_condensed_rdm(X, metric, "X"))


def _condensed_rdm(X, metric: str, name: str) -> np.ndarray:
    """Upper triangle of the RDM of X's rows, as `pdist` returns it."""
    x = _as_matrix(X, name)
    distances = pdist(x, metric=metric)
    if not np.all(np.isfinite(distances)):
        raise ValueError(
            f"{name} gives undefined '{metric}' dissimilarities (e.g. a row with zero variance under "
            "'correlation'); drop those rows or use metric='euclidean'"
        )
    return distances


def rsa(X, Y, metric: str = "correlation", method: str = "spearman") -> float:
    """Representational similarity: correlation of the upper triangles of the RDMs of X and Y.

    Args:
        X: [n_conditions, p] response pattern per condition, e.g. model units.
        Y: [n_conditions, q] response pattern per condition, e.g. neurons (rows in X's order).
        metric: dissimilarity metric for both RDMs (see `rdm`).
        method: "spearman" (rank correlation, robust to monotonic distortions) or "pearson".

    Returns:
        Correlation in [-1, 1].
    """
    correlate = {"spearman": spearmanr, "pearson": pearsonr}
    if method not in correlate:
        raise ValueError(f"method must be one of {sorted(correlate)}, got {method!r}")
    x, y = _as_pair(X, Y)
    if len(x) < 3:
        raise ValueError(f"rsa needs at least 3 conditions (rows), got {len(x)}")
    return float(correlate[method](_condensed_rdm(x, metric, "X"), _condensed_rdm(y, metric, "Y"))[0])


def linear_cka(X, Y) -> float:
    """Linear centred kernel alignment (Kornblith et al. 2019).

    ||ỸᵀX̃||²_F / (||X̃ᵀX̃||_F ||ỸᵀỸ||_F) with column-centred X̃, Ỹ: invariant to rotations and
    isotropic scaling of either side, but not to arbitrary invertible linear maps.

    Args:
        X: [n_samples, p] first representation.
        Y: [n_samples, q] second representation.

    Returns:
        Similarity in [0, 1]; 1 for representations equal up to rotation and scale.
    """
    x, y = _as_pair(X, Y)
    x, y = _centred(x, "X"), _centred(y, "Y")
    cross = np.linalg.norm(y.T @ x) ** 2
    return float(cross / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)))


def align_to_timestamps(
    values, timestamps, target_timestamps, method: str = "linear", offset: float = 0.0
) -> np.ndarray:
    """Resample a signal at other times, e.g. a recording onto the model's control steps.

    Interpolation does not low-pass: when the targets are sparser than the samples, smooth or bin
    the signal to the target rate first, or fast components alias.

    Args:
        values: [T] or [T, C] samples.
        timestamps: [T] strictly increasing sample times in s, on the recording's clock.
        target_timestamps: [T'] times in s at which to evaluate the signal, on the target clock.
        method: "linear", "cubic" (spline, needs T >= 4) or "nearest" (for labels such as trial ids;
            keeps the dtype of `values`).
        offset: s added to `timestamps` to express them on the target clock (e.g. the recording
            started `offset` s after the target's time 0).

    Returns:
        [T'] or [T', C] values at `target_timestamps`.
    """
    samples = np.asarray(values) if method == "nearest" else _to_numpy(values, "values")
    times = _to_numpy(timestamps, "timestamps") + offset
    targets = _to_numpy(target_timestamps, "target_timestamps")
    if times.ndim != 1 or len(times) != len(samples) or len(times) < 2:
        raise ValueError(
            f"timestamps must be 1-D with one time per row of values ({len(samples)}), got shape {times.shape}"
        )
    if not np.all(np.diff(times) > 0):
        raise ValueError("timestamps must be strictly increasing; sort them and drop duplicates")
    if targets.ndim != 1:
        raise ValueError(f"target_timestamps must be 1-D, got shape {targets.shape}")
    start, end = times[0], times[-1]
    outside = (targets < start - _TIME_TOLERANCE_S) | (targets > end + _TIME_TOLERANCE_S)
    if np.any(outside):
        raise ValueError(
            f"target_timestamps span [{targets.min():.6g}, {targets.max():.6g}] s but the recording "
            f"covers [{start:.6g}, {end:.6g}] s (offset {offset:g} s included); "
            "restrict the targets to the recorded range"
        )
    targets = np.clip(targets, start, end)
    if method == "nearest":
        right = np.clip(np.searchsorted(times, targets), 1, len(times) - 1)
        nearest = np.where(targets - times[right - 1] <= times[right] - targets, right - 1, right)
        return samples[nearest]
    degree = {"linear": 1, "cubic": 3}
    if method not in degree:
        raise ValueError(f"method must be 'linear', 'cubic' or 'nearest', got {method!r}")
    if len(times) <= degree[method]:
        raise ValueError(f"method={method!r} needs at least {degree[method] + 1} samples, got {len(times)}")
    return make_interp_spline(times, samples, k=degree[method], axis=0)(targets)
