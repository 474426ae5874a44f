"""`ClipBank`: reference clips as padded device tensors, and a seeded clip sampler.

The env reads the reference of every body each control step with one fancy index into
the packed ``frames`` tensor (`ClipBank.gather`) and samples new clips and start frames
at resets; both stay on the device, with no host synchronisation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from neuromimic.data.clips import ClipError, ReferenceClip
from neuromimic.tasks.base import ReferenceFrame

if TYPE_CHECKING:
    import mujoco

    from neuromimic.bodies import Body


class ClipBank:
    """Reference clips stacked into padded tensors on one device, with a seeded sampler.

    Clips shorter than the longest are padded past their end by repeating their last
    frame, so reading a frame beyond a clip's end returns its final pose.

    Args:
        clips: the C clips; all must share body, fps, site names and sizes.
        device: torch device of the tensors and of the sampler's generator.
        seed: seed of the sampler's generator.
        dtype: floating dtype of ``qpos``, ``qvel`` and ``site_pos_w``.

    Attributes:
        num_clips: C.
        fps: frame rate of the clips in Hz.
        body: registry key of the clips' body.
        site_names: names of the S tracked sites.
        names: clip names, in bank order.
        frames: every frame packed as ``[qpos | qvel | site_pos_w flattened]``,
            [C, Tmax, nq + nv + 3S]; the three fields below are views of it.
        qpos: joint positions [C, Tmax, nq] in rad.
        qvel: joint velocities [C, Tmax, nv] in rad/s.
        site_pos_w: tracked site positions [C, Tmax, S, 3] in m, world frame.
        length: number of frames of each clip [C], int64.
        generator: the sampler's `torch.Generator`, on ``device``.

    Raises:
        ClipError: no clips, or clips that disagree in body, fps, sites or sizes.
    """

    def __init__(
        self,
        clips: Sequence[ReferenceClip],
        device: torch.device | str = "cpu",
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
        valid_starts: Sequence[np.ndarray] | None = None,
        min_frames_left: int = 10,
    ) -> None:
        if not clips:
            raise ClipError("ClipBank needs at least one clip")
        first = clips[0]
        for clip in clips[1:]:
            for what, a, b in (
                ("body", clip.body, first.body),
                ("fps", clip.fps, first.fps),
                ("site_names", clip.site_names, first.site_names),
                ("nq", clip.qpos.shape[1], first.qpos.shape[1]),
                ("nv", clip.qvel.shape[1], first.qvel.shape[1]),
            ):
                if a != b:
                    raise ClipError(
                        f"clip {clip.name!r} has {what} {a!r} but clip {first.name!r} has "
                        f"{b!r}; one ClipBank needs clips of one body at one frame rate "
                        "(resample or regenerate the odd ones)"
                    )
        self.device = torch.device(device)
        self.num_clips = len(clips)
        self.fps = float(first.fps)
        self.body = first.body
        self.site_names = tuple(first.site_names)
        self.names = tuple(clip.name for clip in clips)
        lengths = [clip.num_frames for clip in clips]
        max_len = max(lengths)

        def stack(field: str) -> torch.Tensor:
            padded = []
            for clip in clips:
                value = getattr(clip, field)
                pad = np.repeat(value[-1:], max_len - value.shape[0], axis=0)
                padded.append(np.concatenate([value, pad], axis=0))
            return torch.as_tensor(np.stack(padded), dtype=dtype, device=self.device)

        nq, nv = first.qpos.shape[1], first.qvel.shape[1]
        num_sites = len(self.site_names)
        self.frames = torch.cat([stack("qpos"), stack("qvel"), stack("site_pos_w").flatten(2)], dim=-1)
        self.qpos = self.frames[..., :nq]
        self.qvel = self.frames[..., nq : nq + nv]
        self.site_pos_w = self.frames[..., nq + nv :].unflatten(-1, (num_sites, 3))
        self.length = torch.tensor(lengths, dtype=torch.long, device=self.device)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)
        self._set_start_frames(clips, valid_starts, min_frames_left)

    def _set_start_frames(
        self, clips: Sequence[ReferenceClip], valid_starts: Sequence[np.ndarray] | None, min_frames_left: int
    ) -> None:
        """The frames random starts draw from: valid ones leaving ``min_frames_left``."""
        frames = []
        for c, clip in enumerate(clips):
            last = max(clip.num_frames - min_frames_left, 0)
            allowed = (
                np.ones(clip.num_frames, dtype=bool)
                if valid_starts is None
                else np.asarray(valid_starts[c], dtype=bool)
            )
            frames.append(np.flatnonzero(allowed[: last + 1]))
        counts = [len(f) for f in frames]
        if max(counts) == 0:
            raise ClipError(
                f"no frame of the {len(clips)} clips ({', '.join(self.names[:3])}...) can start an episode: every "
                "one puts the body into the floor or into itself (see neuromimic.data.contacts). Regenerate the "
                "clips: neuromimic keypoints fit and the clip makers now clear the floor"
            )
        width = max(counts)
        padded = np.zeros((len(frames), width), dtype=np.int64)
        for c, f in enumerate(frames):
            padded[c, : len(f)] = f
        #: Start frames of each clip [C, K] (padded), their number [C] and the clips that have any.
        self.start_frames = torch.as_tensor(padded, device=self.device)
        self.start_count = torch.tensor(counts, dtype=torch.long, device=self.device)
        self.startable_clips = torch.as_tensor(np.flatnonzero(counts), dtype=torch.long, device=self.device)

    def check_fits(self, body: Body, model: mujoco.MjModel, substeps: int) -> None:
        """Refuse clips made for another body, frame rate, site list or model size.

        Args:
            body: the simulated body.
            model: its compiled model.
            substeps: physics steps per control step (one clip frame).

        Raises:
            ClipError: naming what differs and the fix.
        """
        if self.body != body.key:
            raise ClipError(
                f"the clips were recorded for body {self.body!r} but the env simulates {body.key!r}; load clips made for {body.key!r}"
            )
        timestep = model.opt.timestep
        if abs(substeps * timestep - 1.0 / self.fps) > 1e-9:
            raise ClipError(
                f"clips are at {self.fps:g} Hz but the control step is {substeps} x "
                f"{timestep:g} s = {substeps * timestep:g} s; set env.substeps to "
                f"{1.0 / (self.fps * timestep):g} or resample the clips to "
                f"{1.0 / (substeps * timestep):g} Hz"
            )
        if tuple(self.site_names) != tuple(body.end_effector_sites):
            raise ClipError(
                f"clips track sites {list(self.site_names)} but body {body.key!r} tracks {list(body.end_effector_sites)}; regenerate the clips for this body"
            )
        if self.qpos.shape[-1] != model.nq or self.qvel.shape[-1] != model.nv:
            raise ClipError(
                f"clips have nq={self.qpos.shape[-1]}, nv={self.qvel.shape[-1]} but body "
                f"{body.key!r} has nq={model.nq}, nv={model.nv}; regenerate the clips"
            )

    def gather(self, clip_index: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
        """Frames ``frame`` [B, F] of clips ``clip_index`` [B], packed like `frames`, in one index.

        Frames past a clip's end read its last frame (the padding); ``frame`` must be
        below ``Tmax``. `unpack` splits the result into a `ReferenceFrame`.

        Returns:
            [B, F, nq + nv + 3S].
        """
        return self.frames[clip_index[:, None], frame]

    def unpack(self, packed: torch.Tensor) -> ReferenceFrame:
        """Views of packed frames [..., nq + nv + 3S] as a `ReferenceFrame` ([..., nq] and so on)."""
        nq, nv = self.qpos.shape[-1], self.qvel.shape[-1]
        return ReferenceFrame(
            qpos=packed[..., :nq],
            qvel=packed[..., nq : nq + nv],
            site_pos_w=packed[..., nq + nv :].unflatten(-1, (len(self.site_names), 3)),
        )

    def sample(self, n: int, random_start: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw clips uniformly and start frames, on the device, without host sync.

        Args:
            n: number of draws.
            random_start: draw the start frame uniformly among the clip's valid starts
                (``valid_starts`` that leave ``min_frames_left``; only clips that have
                one are drawn); otherwise draw any clip and start at frame 0.

        Returns:
            ``(clip_index [n], start_frame [n])``, both int64 on the bank's device.
        """
        if not random_start:
            clip = torch.randint(self.num_clips, (n,), generator=self.generator, device=self.device)
            return clip, torch.zeros(n, dtype=torch.long, device=self.device)
        pick = torch.randint(self.startable_clips.shape[0], (n,), generator=self.generator, device=self.device)
        clip = self.startable_clips[pick]
        count = self.start_count[clip]
        u = torch.rand(n, generator=self.generator, device=self.device, dtype=torch.float32)
        # u < 1, but float rounding of u * count can reach count: clamp.
        k = torch.minimum((u * count).long(), count - 1)
        return clip, self.start_frames[clip, k]

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The sampler's state (its generator's), so sampling resumes exactly."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore a state from `state_dict`.

        Args:
            state: ``{"generator": ByteTensor}`` as returned by `state_dict`.
        """
        self.generator.set_state(state["generator"])
