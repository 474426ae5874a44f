"""Proprioception as the nervous system sees it: muscle spindles (Ia, II) with fusimotor
drive, Golgi tendon organs (Ib), conduction delays and noise, batched in torch."""

from neuromimic.proprioception.afferents import (
    AFFERENT_CLASSES,
    AfferentConfig,
    Afferents,
)
from neuromimic.proprioception.spindle import MuscleSpindle
from neuromimic.proprioception.tendon_organ import TendonOrgan

__all__ = ["AFFERENT_CLASSES", "AfferentConfig", "Afferents", "MuscleSpindle", "TendonOrgan"]
