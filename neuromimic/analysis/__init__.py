"""Open a trained controller like an animal on a rig: record it (`record`), perturb it
(`perturb`), and compare its units with neural recordings and EMG (`compare`, `emg`)."""

from neuromimic.analysis.compare import (
    RidgeResult,
    align_to_timestamps,
    angular_procrustes_distance,
    blocked_folds,
    cca,
    linear_cka,
    procrustes_distance,
    rdm,
    ridge_r2,
    rsa,
)
from neuromimic.analysis.emg import EmgComparison, compare_emg, emg_envelope
from neuromimic.analysis.record import Recording, record

__all__ = [
    "EmgComparison",
    "Recording",
    "RidgeResult",
    "align_to_timestamps",
    "angular_procrustes_distance",
    "blocked_folds",
    "cca",
    "compare_emg",
    "emg_envelope",
    "linear_cka",
    "procrustes_distance",
    "rdm",
    "record",
    "ridge_r2",
    "rsa",
]
