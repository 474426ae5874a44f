"""`ImitationEnv`: a TorchRL environment in which B bodies imitate reference clips.

Per control step the action [B, nu] (muscle excitations in 0..1) goes to the physics
backend, which runs its substeps and exposes its state as torch views; the task turns
that state and the reference into named reward terms and a termination flag, and the
env packs observations into a TensorDict. Nothing here synchronises with the host or
branches on tensor values, so the same code runs on CPU and GPU backends.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass, field

import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.data import Bounded, Categorical, Composite, Unbounded
from torchrl.envs import EnvBase

from neuromimic.bodies import get_body
from neuromimic.data.clip_bank import ClipBank
from neuromimic.data.clips import ClipError, load_clips
from neuromimic.physics import make_backend
from neuromimic.physics.base import Backend, PhysicsView
from neuromimic.tasks import ImitationTask, ReferenceFrame
from neuromimic.tasks import terms as T

log = logging.getLogger(__name__)


@dataclass
class EnvConfig:
    """Everything needed to build an `ImitationEnv`; one YAML group in the configs.

    Args:
        body: body registry key (``neuromimic bodies list`` shows them).
        backend: physics backend, ``"mujoco"`` (native, CPU) or ``"mjx"`` (JAX).
        clips: reference clips: a ``.h5`` file, a directory of them, or
            ``"bundled:<name>"`` for clips shipped with the package.
        num_envs: B, bodies simulated in parallel (per training process).
        substeps: physics steps per control step; ``substeps * timestep`` must equal the
            clip frame period ``1 / fps``.
        future_frames: offsets (in frames) of the reference frames shown to the controller.
        task: reward weights, kernel widths and the termination distance.
        backend_kwargs: extra keyword arguments of the backend (``nthread``, ``impl``...).
    """

    body: str = "mouse_forelimb"
    backend: str = "mujoco"
    clips: str = "bundled:mouse_forelimb_reach"
    num_envs: int = 64
    substeps: int = 2
    future_frames: tuple[int, ...] = (1, 2, 4, 8)
    task: ImitationTask = field(default_factory=ImitationTask)
    backend_kwargs: dict = field(default_factory=dict)


def make_env(
    config: EnvConfig,
    *,
    split: str | None = "train",
    device: torch.device | str | None = None,
    seed: int = 0,
    num_envs: int | None = None,
    evaluation: bool = False,
) -> ImitationEnv:
    """Build an `ImitationEnv` from a config; used by training, the CLI and analysis alike.

    Args:
        config: the env config.
        split: clip split to load (``"train"``, ``"val"``) or ``None`` for all clips.
        device: torch device of the backend (CPU backends ignore anything but ``"cpu"``).
        seed: seed of the clip sampler.
        num_envs: overrides ``config.num_envs``.
        evaluation: env ``i`` plays clip ``i`` from its first frame (one env per clip
            unless ``num_envs`` says otherwise), and the task never terminates, so each
            clip is tracked to its end.
    """
    body = get_body(config.body)
    clips = load_clips(config.clips, body=body.key, split=split)
    if num_envs is None:
        num_envs = len(clips) if evaluation else config.num_envs
    backend = make_backend(
        config.backend,
        body,
        num_envs=num_envs,
        substeps=config.substeps,
        device=device,
        **config.backend_kwargs,
    )
    task = dataclasses.replace(config.task, termination_distance=math.inf) if evaluation else config.task
    bank = ClipBank(clips, device=backend.device, seed=seed, dtype=backend.view.qpos.dtype)
    return ImitationEnv(
        backend, bank, task, future_frames=config.future_frames, sequential_clips=evaluation
    )


def observation_layout(
    nq: int, nv: int, nu: int, num_sites: int, future_frames: tuple[int, ...]
) -> list[tuple[str, int, str]]:
    """The blocks of the flat observation, in order: ``(name, size, units)``."""
    layout = [
        ("qpos", nq, "rad"),
        ("qvel", nv, "rad/s"),
        ("muscle_activation", nu, "0..1"),
        ("muscle_length", nu, "fraction of the muscle's length range"),
        ("muscle_velocity", nu, "length ranges per s"),
        ("muscle_force", nu, "fraction of peak isometric force"),
    ]
    for k in future_frames:
        layout.append((f"ref_qpos_minus_qpos_t+{k}", nq, "rad"))
        layout.append((f"ref_site_minus_site_t+{k}", 3 * num_sites, "m"))
    return layout


def env_sizes(config: EnvConfig) -> tuple[int, int]:
    """(D, nu): observation and action sizes of envs built from ``config``, without
    building a simulator."""
    body = get_body(config.body)
    model = body.load_model()
    layout = observation_layout(
        model.nq, model.nv, model.nu, len(body.end_effector_sites), tuple(config.future_frames)
    )
    return sum(size for _, size, _ in layout), model.nu


class ImitationEnv(EnvBase):
    """B bodies imitating reference clips, as one batched TorchRL environment.

    Output keys per step: ``"observation"`` [B, D] float32 (layout in
    `observation_layout`), ``"reward"`` [B, 1], ``"done"``, ``"terminated"`` (the tracked
    sites strayed beyond the task's distance, or the physics went unstable),
    ``"truncated"`` (the clip ended; bootstrapped by GAE), and ``("metrics", name)`` [B]:
    every weighted reward term, ``site_pos_error_mm``, ``joint_pos_error_deg`` and
    ``unstable``.

    Args:
        backend: physics backend simulating B bodies.
        clips: reference clips on the backend's device.
        task: reward terms and termination rule.
        future_frames: offsets of the reference frames included in the observation.
        sequential_clips: env ``i`` always plays clip ``i % num_clips`` from frame 0
            (evaluation); otherwise clips and start frames are sampled at every reset.
    """

    def __init__(
        self,
        backend: Backend,
        clips: ClipBank,
        task: ImitationTask,
        future_frames: tuple[int, ...] = (1, 2, 4, 8),
        sequential_clips: bool = False,
    ) -> None:
        super().__init__(device=backend.device, batch_size=torch.Size([backend.num_envs]))
        model = backend.model
        body = backend.body
        if clips.body != body.key:
            raise ClipError(
                f"the clips were recorded for body {clips.body!r} but the env simulates "
                f"{body.key!r}; load clips made for {body.key!r}"
            )
        if not future_frames or min(future_frames) < 1:
            raise ValueError(f"future_frames must be positive frame offsets; got {tuple(future_frames)}")
        timestep = model.opt.timestep
        if abs(backend.substeps * timestep - 1.0 / clips.fps) > 1e-9:
            raise ClipError(
                f"clips are at {clips.fps:g} Hz but the control step is {backend.substeps} x "
                f"{timestep:g} s = {backend.substeps * timestep:g} s; set env.substeps to "
                f"{1.0 / (clips.fps * timestep):g} or resample the clips to "
                f"{1.0 / (backend.substeps * timestep):g} Hz"
            )
        if tuple(clips.site_names) != tuple(body.end_effector_sites):
            raise ClipError(
                f"clips track sites {list(clips.site_names)} but body {body.key!r} tracks "
                f"{list(body.end_effector_sites)}; regenerate the clips for this body"
            )
        if clips.qpos.shape[-1] != model.nq or clips.qvel.shape[-1] != model.nv:
            raise ClipError(
                f"clips have nq={clips.qpos.shape[-1]}, nv={clips.qvel.shape[-1]} but body "
                f"{body.key!r} has nq={model.nq}, nv={model.nv}; regenerate the clips"
            )
        self.backend = backend
        self.clips = clips
        self.task = task
        self.future_frames = tuple(int(k) for k in future_frames)
        self.sequential_clips = sequential_clips
        self._future = torch.tensor(self.future_frames, device=self.device)

        dtype = backend.view.qpos.dtype
        to = {"device": self.device, "dtype": dtype}
        self._max_force = torch.as_tensor(model.actuator_gainprm[:, 2], **to).abs()
        length_range = torch.as_tensor(model.actuator_lengthrange, **to)
        self._length_low = length_range[:, 0]
        self._length_span = length_range[:, 1] - length_range[:, 0]

        num_envs = backend.num_envs
        self.clip_index = torch.zeros(num_envs, dtype=torch.long, device=self.device)
        self.frame = torch.zeros(num_envs, dtype=torch.long, device=self.device)
        #: Device-side count of control steps that ended unstable (NaN/Inf, runaway).
        self.unstable_count = torch.zeros((), dtype=torch.long, device=self.device)

        self.observation_layout = observation_layout(
            model.nq, model.nv, model.nu, len(body.end_effector_sites), self.future_frames
        )
        obs_dim = sum(size for _, size, _ in self.observation_layout)
        self.metric_names = (*task.weights, "site_pos_error_mm", "joint_pos_error_deg", "unstable")
        batch = (num_envs,)
        self.observation_spec = Composite(
            observation=Unbounded((*batch, obs_dim), dtype=torch.float32, device=self.device),
            metrics=Composite(
                {name: Unbounded(batch, dtype=torch.float32, device=self.device) for name in self.metric_names},
                shape=batch,
                device=self.device,
            ),
            shape=batch,
            device=self.device,
        )
        self.action_spec = Bounded(
            low=0.0, high=1.0, shape=(*batch, model.nu), dtype=torch.float32, device=self.device
        )
        self.reward_spec = Unbounded((*batch, 1), dtype=torch.float32, device=self.device)
        flag = Categorical(2, shape=(*batch, 1), dtype=torch.bool, device=self.device)
        self.done_spec = Composite(
            done=flag, terminated=flag.clone(), truncated=flag.clone(), shape=batch, device=self.device
        )

    # ----------------------------------------------------------------------------- layout
    def observation_slices(self) -> dict[str, slice]:
        """Name -> slice of each block of ``"observation"`` (units in `observation_layout`)."""
        slices, start = {}, 0
        for name, size, _ in self.observation_layout:
            slices[name] = slice(start, start + size)
            start += size
        return slices

    # ---------------------------------------------------------------------------- helpers
    def reference(self) -> ReferenceFrame:
        """The reference at each env's current frame."""
        return ReferenceFrame(
            qpos=self.clips.qpos[self.clip_index, self.frame],
            qvel=self.clips.qvel[self.clip_index, self.frame],
            site_pos_w=self.clips.site_pos_w[self.clip_index, self.frame],
        )

    def _observe(self, sim: PhysicsView) -> torch.Tensor:
        parts = [
            sim.qpos,
            sim.qvel,
            sim.act,
            (sim.actuator_length - self._length_low) / self._length_span,
            sim.actuator_velocity / self._length_span,
            -sim.actuator_force / self._max_force,
        ]
        # All future reference frames in one gather: [B, F] frame indices.
        last_frame = self.clips.qpos.shape[1] - 1
        frames = (self.frame[:, None] + self._future).clamp(max=last_frame)
        clip = self.clip_index[:, None]
        ref_qpos = self.clips.qpos[clip, frames] - sim.qpos[:, None]  # [B, F, nq]
        ref_site = (self.clips.site_pos_w[clip, frames] - sim.site_pos_w[:, None]).flatten(2)  # [B, F, 3S]
        parts.append(torch.cat([ref_qpos, ref_site], dim=-1).flatten(1))
        return torch.cat(parts, dim=-1).to(torch.float32)

    def _metrics(
        self, sim: PhysicsView, ref: ReferenceFrame, values: dict[str, torch.Tensor], site_error: torch.Tensor
    ) -> TensorDict:
        """Per-env metrics [B] float32; zero (never NaN) for unstable bodies."""
        metrics = dict(values)
        metrics["site_pos_error_mm"] = site_error * 1e3
        metrics["joint_pos_error_deg"] = torch.rad2deg(T.joint_pos_error(sim, ref))
        metrics = {
            k: torch.where(sim.unstable, torch.zeros_like(v), v).to(torch.float32)
            for k, v in metrics.items()
        }
        metrics["unstable"] = sim.unstable.to(torch.float32)
        return TensorDict(metrics, batch_size=self.batch_size)

    # -------------------------------------------------------------------------- EnvBase API
    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs) -> TensorDictBase:
        num_envs = self.batch_size[0]
        if tensordict is not None and "_reset" in tensordict.keys():
            mask = tensordict.get("_reset").reshape(num_envs)
        else:
            mask = torch.ones(num_envs, dtype=torch.bool, device=self.device)
        if self.sequential_clips:
            clip = torch.arange(num_envs, device=self.device) % self.clips.num_clips
            start = torch.zeros_like(clip)
        else:
            clip, start = self.clips.sample(num_envs, random_start=True)
        self.clip_index = torch.where(mask, clip, self.clip_index)
        self.frame = torch.where(mask, start, self.frame)
        ref = self.reference()
        act = torch.zeros_like(self.backend.view.act)
        self.backend.reset(mask, ref.qpos, ref.qvel, act)
        sim = self.backend.view
        values = self.task.reward_terms(sim, ref, self._max_force)
        done = torch.zeros((num_envs, 1), dtype=torch.bool, device=self.device)
        return TensorDict(
            {
                "observation": self._observe(sim),
                "metrics": self._metrics(sim, ref, values, T.site_pos_error(sim, ref)),
                "done": done,
                "terminated": done.clone(),
                "truncated": done.clone(),
            },
            batch_size=self.batch_size,
        )

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        action = tensordict.get("action")
        expected = self.action_spec.shape
        if action.shape != expected or action.dtype != torch.float32:
            raise ValueError(
                f"action must be a float32 tensor of shape {tuple(expected)} (B envs x nu "
                f"muscles, values in 0..1); got {action.dtype} of shape {tuple(action.shape)}"
            )
        self.backend.step(action)
        self.frame = self.frame + 1
        sim = self.backend.view
        ref = self.reference()
        unstable = sim.unstable
        self.unstable_count += unstable.sum()

        values = self.task.reward_terms(sim, ref, self._max_force)
        reward = self.task.reward(values)
        # An unstable body's state holds NaN/Inf: nothing of it may reach the learner.
        reward = torch.where(unstable, torch.zeros_like(reward), reward)
        observation = self._observe(sim)
        observation = torch.where(unstable[:, None], torch.zeros_like(observation), observation)
        site_error = T.site_pos_error(sim, ref)
        metrics = self._metrics(sim, ref, values, site_error)

        terminated = unstable | self.task.terminated(site_error)
        truncated = self.frame >= self.clips.length[self.clip_index] - 1
        terminated = terminated[:, None]
        truncated = truncated[:, None] & ~terminated
        return TensorDict(
            {
                "observation": observation,
                "metrics": metrics,
                "reward": reward.to(torch.float32)[:, None],
                "done": terminated | truncated,
                "terminated": terminated,
                "truncated": truncated,
            },
            batch_size=self.batch_size,
        )

    def _close(self) -> None:
        close = getattr(self.backend, "close", None)
        if close is not None:
            close()

    def _set_seed(self, seed: int | None) -> None:
        if seed is not None:
            self.clips.generator.manual_seed(seed)
