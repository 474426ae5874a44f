"""Lightning callbacks of the training runs."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint


class RunCheckpoint(ModelCheckpoint):
    """`ModelCheckpoint` for resumable runs: ``last.ckpt`` is always the run's newest state.

    Two changes to Lightning's class: ``last.ckpt`` is also written when training ends
    (Lightning writes it only together with a periodic checkpoint, so a run whose
    ``max_steps`` is not a multiple of ``every_n_train_steps`` would end with a stale one),
    and a resumed run overwrites ``last.ckpt`` instead of starting ``last-v1.ckpt``
    (``enable_version_counter`` defaults to False). Arguments are `ModelCheckpoint`'s.
    """

    def __init__(self, *args: Any, enable_version_counter: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, enable_version_counter=enable_version_counter, **kwargs)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.save_last and self._last_global_step_saved != trainer.global_step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
