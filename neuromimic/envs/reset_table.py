"""`ResetTable`: the outputs of a body placed on each clip frame, computed once.

A new episode starts on a clip frame, still, with its muscles off, so its first
observation and metrics depend on the clip and the frame alone. The table holds them for
every frame of every clip, so that a step that restarts episodes gathers rows instead of
evaluating the restarted bodies. It belongs to one body model: after
`Backend.model_changed` (a perturbation) it is stale until rebuilt, and the env evaluates
new episodes live meanwhile.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

log = logging.getLogger(__name__)


class ResetTable:
    """Outputs [C * Tmax, W] of every (clip, frame) start, and the model version they were made with.

    Args:
        num_clips, max_frames: C and Tmax of the clip bank.
        width: W, the width of the env's packed outputs.
        max_bytes: the most memory the table may take; beyond it there is no table.
        device: where it lives.
    """

    def __init__(self, num_clips: int, max_frames: int, width: int, max_bytes: float, device) -> None:
        self.max_frames = max_frames
        self.enabled = num_clips * max_frames * width * 4 <= max_bytes
        self.shape = (num_clips * max_frames, width)
        self.device = device
        self.table: torch.Tensor | None = None
        self.model_version = -1
        if not self.enabled:
            log.info(
                "reset outputs are computed at each reset: a table of %d x %d clip frames would take more than %g MiB",
                num_clips,
                max_frames,
                max_bytes / 2**20,
            )

    def row(self, clip_index: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
        """Row of frame ``frame`` of clip ``clip_index`` (same shape)."""
        return clip_index * self.max_frames + frame

    def current(self, model_version: int) -> bool:
        """Whether the table exists and was made with this version of the body model."""
        return self.table is not None and self.model_version == model_version

    def build(
        self,
        starts: list[tuple[torch.Tensor, torch.Tensor]],
        evaluate: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        model_version: int,
    ) -> None:
        """Fill the table.

        Args:
            starts: chunks ``(clip_index [n], frame [n])`` covering every clip frame.
            evaluate: the outputs [n, W] of bodies placed on those frames.
            model_version: the backend's `model_version` now.
        """
        table = torch.zeros(self.shape, device=self.device)
        for clip, frame in starts:
            table[self.row(clip, frame)] = evaluate(clip, frame)
        self.table, self.model_version = table, model_version

    def gather(self, clip_index: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
        """Rows [B, W] of the starts ``(clip_index, frame)`` [B]; frames past a clip's end
        read its padding (envs that go on past it without a reset leave the row unused)."""
        return self.table[self.row(clip_index, frame.clamp(max=self.max_frames - 1))]
