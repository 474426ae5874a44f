"""`VideoLogger`: a Lightning callback that logs videos of the controller in training."""

from __future__ import annotations

import logging
from typing import Any

import lightning as L

from neuromimic.analysis.record import record
from neuromimic.analysis.render import gif_bytes, recording_frames

log = logging.getLogger(__name__)


class VideoLogger(L.Callback):
    """Log a video of the current controller tracking a held-out clip to TensorBoard.

    Every ``every_n_steps`` optimiser steps (and at the end of training), rank 0 records
    the held-out clips (`neuromimic.analysis.record`), renders clip ``clip``
    (`neuromimic.analysis.render.recording_frames`: the body on a floor under a sky, followed
    by the camera, the reference as a ghost body, muscles coloured by activation, time and
    tracking error in the corner), and writes it as an animated image under ``video/val`` (the
    IMAGES tab plays it; GIF viewers slow frames shorter than 20 ms, so keep
    ``frame_step * control step >= 20 ms``). Needs a TensorBoard logger and headless OpenGL;
    if rendering fails the callback warns once and stops, and training goes on.

    Args:
        every_n_steps: optimiser steps between videos.
        clip: index of the held-out clip to show.
        width, height: frame size in pixels.
        frame_step: draw every n-th control step (only those are rendered); the video still
            plays in real time.
    """

    def __init__(
        self, every_n_steps: int = 1600, clip: int = 0, width: int = 320, height: int = 240, frame_step: int = 4
    ) -> None:
        self.every_n_steps = every_n_steps
        self.clip = clip
        self.width, self.height = width, height
        self.frame_step = frame_step
        self._disabled = False

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if trainer.global_step % self.every_n_steps == 0:
            self._log(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step % self.every_n_steps:
            self._log(trainer, pl_module)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        clips = pl_module.val_env.clips.num_clips
        if not 0 <= self.clip < clips:
            raise ValueError(f"VideoLogger clip={self.clip}, but there are {clips} held-out clips")

    def _log(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from lightning.pytorch.loggers import TensorBoardLogger

        tensorboard = next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)
        if self._disabled or trainer.global_rank != 0 or tensorboard is None:
            return
        from tensorboard.compat.proto.summary_pb2 import Summary

        try:
            recording = record(pl_module.controller, pl_module.val_env)
            frames = recording_frames(recording, self.clip, step=self.frame_step, width=self.width, height=self.height)
        except Exception as error:  # noqa: BLE001 (a video must never end a training run)
            log.warning("VideoLogger: no video from now on: %s: %s", type(error).__name__, error)
            self._disabled = True
            return
        fps = 1.0 / (recording.attrs["control_dt"] * self.frame_step)
        image = Summary.Image(
            height=self.height,
            width=self.width,
            colorspace=3,
            encoded_image_string=gif_bytes(frames, fps),
        )
        summary = Summary(value=[Summary.Value(tag="video/val", image=image)])
        tensorboard.experiment.file_writer.add_summary(summary, trainer.global_step)
