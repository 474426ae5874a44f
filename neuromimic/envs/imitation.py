"""`ImitationEnv`: a TorchRL environment in which B bodies imitate reference clips.

Per control step the action [B, A] in 0..1 becomes controls (the env's action term), the
physics backend runs its substeps and exposes its state as torch views, and the env's
declared terms (`neuromimic.envs.terms.TermSet`) turn that state and the reference into
the observation, the reward and the termination flags. Nothing here synchronises with
the host or branches on tensor values, so the same code runs on CPU and GPU backends.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.data import Bounded, Categorical, Composite, Unbounded
from torchrl.envs import EnvBase

from neuromimic.data.clip_bank import ClipBank
from neuromimic.envs.disturbances import DisturbanceConfig, Disturbances
from neuromimic.envs.reset_table import ResetTable
from neuromimic.envs.terms import TermSet
from neuromimic.models.base import ControllerSpec, layout_slices
from neuromimic.physics.base import Backend, PhysicsView, reset_to_rest_pose
from neuromimic.proprioception import AfferentConfig
from neuromimic.proprioception.sensor import AfferentSensor
from neuromimic.tasks.actions import ActionMap, holding_activation
from neuromimic.tasks.base import ReferenceFrame, StepState


class ImitationEnv(EnvBase):
    """B bodies imitating reference clips, as one batched TorchRL environment.

    Output keys per step: ``"observation"`` [B, D] float32 (blocks in
    `observation_layout`), ``"is_init"`` [B, 1] (True on an episode's first observation,
    as TorchRL's ``InitTracker`` writes it; recurrent controllers reset their state
    there), ``"reward"`` [B, 1], ``"done"``, ``"terminated"`` (a termination term held, or
    the physics went unstable), ``"truncated"`` (the clip ended), and ``("metrics", name)``
    [B] for every reward term, ``site_pos_error_mm``, ``joint_pos_error_deg`` and
    ``unstable``. Build it with `neuromimic.envs.make_env`.

    Args:
        backend: the physics of the B bodies.
        clips: reference clips on the backend's device.
        terms: the observation, reward and termination terms, bound to the body.
        action_map: actions [B, nu] in 0..1 -> controls (the action term).
        action_layout: ``(name, size, units)`` of the action's blocks.
        action_term: ``{"name": ..., **params}`` of the action term (kept in checkpoints).
        sequential_clips: env ``i`` always plays clip ``i % num_clips`` from frame 0
            (evaluation); otherwise clips and start frames are sampled at every reset.
        fusimotor_action: the action ends with gamma-static and gamma-dynamic drive.
        afferents: the afferents' settings, or None for a body observed without them.
        reset_table_mb: the most memory (MiB) the table of episode starts may take
            (`ResetTable`); beyond it, starts are evaluated at each reset.
        disturbances: observation noise and pushes while training (`Disturbances`), or None.
    """

    def __init__(
        self,
        backend: Backend,
        clips: ClipBank,
        terms: TermSet,
        action_map: ActionMap,
        action_layout: list[tuple[str, int, str]],
        action_term: dict,
        sequential_clips: bool = False,
        fusimotor_action: bool = False,
        afferents: AfferentConfig | None = None,
        reset_table_mb: float = 256.0,
        disturbances: DisturbanceConfig | None = None,
    ) -> None:
        super().__init__(device=backend.device, batch_size=torch.Size([backend.num_envs]))
        clips.check_fits(backend.body, backend.model, backend.substeps)
        self.backend, self.clips, self.terms, self.body = backend, clips, terms, terms.body
        self.action_map, self.action_layout, self.action_term = action_map, action_layout, dict(action_term)
        self.future_frames = terms.future_frames
        self.sequential_clips = sequential_clips
        self.observation_layout = terms.layout
        model, num_envs, device = backend.model, backend.num_envs, self.device
        self.sensor = (
            AfferentSensor(afferents, model, num_envs, fusimotor_action, device, backend.view.qpos.dtype)
            if afferents
            else None
        )
        hold = holding_activation(model)
        #: Its `hold` gives the activations [B, na] that hold poses [B, nq] (filtered servos); None: zero.
        self._holding = None if hold is None else hold.to(device=device, dtype=backend.view.qpos.dtype)
        self._control_dt = backend.substeps * model.opt.timestep
        self._frame_offsets = torch.tensor((0, *self.future_frames), device=device)
        self._last_padded_frame = clips.frames.shape[1] - 1
        self._weights = terms.weights(device, backend.view.qpos.dtype)
        self._to_mm = 1e3 * self.body.length_unit_m

        self.clip_index = torch.zeros(num_envs, dtype=torch.long, device=device)
        self.frame = torch.zeros(num_envs, dtype=torch.long, device=device)
        self._clip_last_frame = torch.zeros(num_envs, dtype=torch.long, device=device)
        #: Device-side count of control steps that ended unstable (NaN/Inf, runaway).
        self.unstable_count = torch.zeros((), dtype=torch.long, device=device)
        #: Called with the env before every physics step (stimuli and perturbations, such as
        #: `neuromimic.analysis.perturb.force_pulse`, set the backend's inputs here).
        self.before_step: list[Callable[[ImitationEnv], None]] = []
        #: Called with the env after every physics step, before the step is evaluated and
        #: before any body is reset: the backend's view holds the step's final state and
        #: its `unstable` flags (`neuromimic.training.callbacks.UnstableBodyDump` reads them).
        self.after_step: list[Callable[[ImitationEnv], None]] = []
        #: The training disturbances (observation noise, pushes), or None.
        self.disturbances = None
        if disturbances is not None and disturbances.active:
            self.disturbances = Disturbances(
                disturbances, backend, self.body, terms.layout, terms.layout_terms, self._control_dt, clips.generator
            )
            if self.disturbances.pushes:
                self.before_step.append(self.disturbances.push)

        self.metric_names = (*terms.reward_names, "site_pos_error_mm", "joint_pos_error_deg", "unstable")
        self._make_specs(num_envs)
        obs_dim = self._obs_dim = self.observation_spec["observation"].shape[-1]
        #: Each env's outputs at its current state, as its last step or reset returned them.
        self._last_packed = torch.zeros(num_envs, obs_dim + 1 + len(self.metric_names), device=device)
        self._starts = ResetTable(
            clips.num_clips, clips.frames.shape[1], self._last_packed.shape[-1], reset_table_mb * 2**20, device
        )
        self._build_reset_table()

    def _make_specs(self, num_envs: int) -> None:
        batch, device = (num_envs,), self.device
        obs_dim = sum(size for _, size, _ in self.observation_layout)
        self.observation_spec = Composite(
            observation=Unbounded((*batch, obs_dim), dtype=torch.float32, device=device),
            metrics=Composite(
                {n: Unbounded(batch, dtype=torch.float32, device=device) for n in self.metric_names},
                shape=batch,
                device=device,
            ),
            is_init=Categorical(2, shape=(*batch, 1), dtype=torch.bool, device=device),
            shape=batch,
            device=device,
        )
        action_size = sum(size for _, size, _ in self.action_layout)
        self.action_spec = Bounded(low=0.0, high=1.0, shape=(*batch, action_size), dtype=torch.float32, device=device)
        self.reward_spec = Unbounded((*batch, 1), dtype=torch.float32, device=device)
        flag = Categorical(2, shape=(*batch, 1), dtype=torch.bool, device=device)
        self.done_spec = Composite(
            done=flag, terminated=flag.clone(), truncated=flag.clone(), shape=batch, device=device
        )

    # ----------------------------------------------------------------------------- layout
    @property
    def controller_spec(self) -> ControllerSpec:
        """What a controller of this env must fit (its layouts, action term and control step)."""
        return ControllerSpec.of(self.observation_layout, self.action_layout, self.action_term, self._control_dt)

    def observation_slices(self) -> dict[str, slice]:
        """Name -> slice of each block of ``"observation"`` (units in `observation_layout`)."""
        return layout_slices(self.observation_layout)

    @property
    def afferent_rates(self) -> torch.Tensor | None:
        """[B, 3, nu] afferent rates in pps arriving now (Ia, II, Ib), or None."""
        return None if self.sensor is None else self.sensor.rates

    @contextlib.contextmanager
    def stepping(self):
        """Step this env (and run its policy) inside this block: on the CPU, torch runs on
        one intra-op thread in it, restored on exit.

        CPU backends step the bodies on their own thread pool, sized to the cores. PyTorch's
        OpenMP workers spin for a while after every parallel op (the policy's matrix
        products, for one) and take those cores from the pool: on the 2-core reference
        machine the env steps 34% faster with torch on one thread. Run the gradient
        updates outside the block.
        """
        if self.device.type != "cpu":
            yield
            return
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(threads)

    # -------------------------------------------------------------------------- outputs
    def _reference(self, clip_index: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
        """The reference at ``frame`` [B] of clips ``clip_index`` [B] and at the future
        frames, packed: [B, 1 + F, nq + nv + 3S]."""
        frames = (frame[:, None] + self._frame_offsets).clamp(max=self._last_padded_frame)
        return self.clips.gather(clip_index, frames)

    def reference(self) -> ReferenceFrame:
        """The reference at each env's current frame."""
        return self.clips.unpack(self._reference(self.clip_index, self.frame)[:, 0])

    def _evaluate(
        self, sim: PhysicsView, clip_index: torch.Tensor, frame: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The outputs of state ``sim`` against frame ``frame`` [B] of clips ``clip_index`` [B].

        Returns:
            ``(packed, terminated)``: ``packed`` [B, D + 1 + M] float32 holds the
            observation, the reward and the M metrics (`_split` takes it apart), zeroed where
            the body is unstable (its state holds NaN/Inf: nothing of it may reach the
            learner) but for the ``unstable`` flag itself; ``terminated`` [B] is a
            termination term's verdict or the unstable flag.
        """
        reference = self.clips.unpack(self._reference(clip_index, frame))
        current = ReferenceFrame(reference.qpos[:, 0], reference.qvel[:, 0], reference.site_pos_w[:, 0])
        future = ReferenceFrame(reference.qpos[:, 1:], reference.qvel[:, 1:], reference.site_pos_w[:, 1:])
        state = StepState(sim, current, future, self.body, self.afferent_rates)
        values = self.terms.reward_terms(state)
        packed = torch.cat(
            [
                self.terms.observe(state),
                (values @ self._weights)[:, None],
                values,
                state.site_pos_error[:, None] * self._to_mm,
                torch.rad2deg(state.joint_pos_error)[:, None],
                sim.unstable[:, None],
            ],
            dim=-1,
        ).to(torch.float32)
        packed[:, :-1].masked_fill_(sim.unstable[:, None], 0.0)
        return packed, self.terms.terminated(state) | sim.unstable

    def _split(self, packed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, TensorDict]:
        """Observation [B, D], reward [B, 1] and metrics of packed outputs (views of them)."""
        obs_dim = packed.shape[-1] - 1 - len(self.metric_names)
        metrics = dict(zip(self.metric_names, packed[:, obs_dim + 1 :].unbind(-1), strict=True))
        return packed[:, :obs_dim], packed[:, obs_dim : obs_dim + 1], self._tensordict(metrics)

    def _tensordict(self, entries: dict) -> TensorDict:
        """A TensorDict of B envs on `device` holding ``entries`` as they are.

        Skips the checks of every entry's shape and device that ``TensorDict(...)`` makes
        (they showed in a cProfile of the env at 64 bodies), as TorchRL's Brax and MuJoCo
        Playground wrappers do: the env builds every entry with the right batch size on
        its device. ``_new_unsafe`` is tensordict's, pinned to 0.14.x.
        """
        return TensorDict._new_unsafe(entries, batch_size=self.batch_size, device=self.device)

    # --------------------------------------------------------------------------- resets
    def _place(self, mask: torch.Tensor, before_next_step: bool = False) -> None:
        """Put the bodies where ``mask`` [B] is True on their reference at their current
        clip and frame, moving as it does, muscles off and servos holding that pose
        (`holding_activation`); settle their afferents there.

        Args:
            mask: [B] bool.
            before_next_step: the caller reads nothing of the backend's state before the
                next step, so the backend may fold the reset into that step
                (`Backend.schedule_reset`: one call per control step, resets or not, on MJX).
                Not with afferents, whose reset reads the new state.
        """
        ref = self.reference()
        if self._holding is None:
            act = torch.zeros(mask.shape[0], self.backend.model.na, dtype=self._weights.dtype, device=self.device)
        else:
            act = self._holding.hold(ref.qpos)
        if before_next_step and self.sensor is None:
            self.backend.schedule_reset(mask, ref.qpos, ref.qvel, act)
        else:
            self.backend.reset(mask, ref.qpos, ref.qvel, act)
        if self.sensor is not None:
            self.sensor.reset(mask, self.backend.view)

    def _build_reset_table(self) -> None:
        """Tabulate the outputs of a body placed on each frame of each clip (`ResetTable`);
        leave every body in its rest pose afterwards."""
        if not self._starts.enabled:
            return
        num_envs, lengths = self.batch_size[0], self.clips.length.tolist()
        clip_ids = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths)).to(self.device)
        frames = torch.cat([torch.arange(length) for length in lengths]).to(self.device)
        everyone = torch.ones(num_envs, dtype=torch.bool, device=self.device)

        def evaluate(clip: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
            count = clip.shape[0]  # the last chunk is padded with its own last frame
            self.clip_index = torch.cat([clip, clip[-1:].expand(num_envs - count)])
            self.frame = torch.cat([frame, frame[-1:].expand(num_envs - count)])
            self._place(everyone)
            return self._evaluate(self.backend.view, self.clip_index, self.frame)[0][:count]

        chunks = list(zip(clip_ids.split(num_envs), frames.split(num_envs), strict=True))
        self._starts.build(chunks, evaluate, self.backend.model_version)
        self.clip_index.zero_()
        self.frame.zero_()
        reset_to_rest_pose(self.backend, self.backend.view.qpos.dtype)
        if self.sensor is not None:
            self.sensor.forget()

    def _restart(self, mask: torch.Tensor) -> TensorDict:
        """Start new episodes in the envs where ``mask`` [B] is True; the outputs of all envs.

        The others keep their state, frame and outputs (those their last step returned).
        """
        if self.sequential_clips:
            clip = torch.arange(mask.shape[0], device=self.device) % self.clips.num_clips
            start = torch.zeros_like(clip)
        else:
            clip, start = self.clips.sample(mask.shape[0], random_start=True)
        self.clip_index = torch.where(mask, clip, self.clip_index)
        self.frame = torch.where(mask, start, self.frame)
        self._clip_last_frame = self.clips.length[self.clip_index] - 1
        tabulated = self._starts.current(self.backend.model_version)
        self._place(mask, before_next_step=tabulated)  # the table gives the outputs: no state is read
        if tabulated:
            started = self._starts.gather(self.clip_index, self.frame)
        else:
            started = self._evaluate(self.backend.view, self.clip_index, self.frame)[0]
        if self.disturbances is not None:
            self.disturbances.add_noise(started[:, : self._obs_dim], mask)
        self._last_packed = torch.where(mask[:, None], started, self._last_packed)
        observation, _, metrics = self._split(self._last_packed)
        done = torch.zeros((mask.shape[0], 1), dtype=torch.bool, device=self.device)
        return self._tensordict(
            {
                "observation": observation,
                "metrics": metrics,
                "is_init": mask[:, None].clone(),
                "done": done,
                "terminated": done.clone(),
                "truncated": done.clone(),
            }
        )

    # ---------------------------------------------------------------------- snapshots
    def snapshot(self) -> dict:
        """Everything a continuation of this env bitwise equal to an uninterrupted one
        needs, copied to the host: the simulator state of every body, each env's clip,
        frame and last outputs, the afferents' state and the env's random generators.

        Plain nested dicts of tensors, as a ``weights_only`` checkpoint stores them;
        `restore` loads one back.
        """
        return {
            "backend": self.backend.snapshot(),
            "model_version": torch.tensor(self.backend.model_version),
            "clip_index": self.clip_index.cpu().clone(),
            "frame": self.frame.cpu().clone(),
            "clip_last_frame": self._clip_last_frame.cpu().clone(),
            "last_packed": self._last_packed.cpu().clone(),
            "unstable_count": self.unstable_count.cpu().clone(),
            "clip_sampler": self.clips.generator.get_state(),
            "sensor": None if self.sensor is None else self.sensor.snapshot(),
            "disturbances": None if self.disturbances is None else self.disturbances.snapshot(),
        }

    def restore(self, snapshot: dict) -> None:
        """Continue from a `snapshot` of an env built from the same config and size.

        Raises:
            ValueError: if the snapshot is of another number of bodies, of an env whose
                body model had been changed (`Backend.model_changed`), of another
                observation layout or of another version of neuromimic.
        """
        if "sensor" not in snapshot or snapshot["last_packed"].shape != self._last_packed.shape:
            raise ValueError(
                f"the snapshot holds {tuple(snapshot['last_packed'].shape)} env outputs in the "
                f"{'current' if 'sensor' in snapshot else 'older'} format; this env makes "
                f"{tuple(self._last_packed.shape)} (another num_envs, observation layout or neuromimic version)"
            )
        if int(snapshot["model_version"]) != self.backend.model_version:
            raise ValueError("the snapshot was taken after its body model was changed; rebuild that model first")
        self.backend.restore(snapshot["backend"])
        self.clip_index = snapshot["clip_index"].to(self.device).clone()
        self.frame.copy_(snapshot["frame"])
        self._clip_last_frame = snapshot["clip_last_frame"].to(self.device).clone()
        self._last_packed = snapshot["last_packed"].to(self.device).clone()
        self.unstable_count.copy_(snapshot["unstable_count"])
        self.clips.generator.set_state(snapshot["clip_sampler"])
        if self.sensor is not None:
            self.sensor.restore(snapshot["sensor"])
        if self.disturbances is not None and snapshot.get("disturbances") is not None:
            self.disturbances.restore(snapshot["disturbances"])

    # -------------------------------------------------------------------------- EnvBase API
    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs) -> TensorDictBase:
        num_envs = self.batch_size[0]
        if tensordict is not None and "_reset" in tensordict:
            mask = tensordict.get("_reset").reshape(num_envs)
        else:
            mask = torch.ones(num_envs, dtype=torch.bool, device=self.device)
            if self._starts.enabled and not self._starts.current(self.backend.model_version):
                self._build_reset_table()  # every body restarts: nothing to keep
        return self._restart(mask)

    def maybe_reset(self, tensordict: TensorDictBase) -> TensorDictBase:
        """`EnvBase.maybe_reset` in one masked pass: reset the envs whose episode ended.

        TorchRL's default goes through `EnvBase.reset`, which merges the reset envs into
        ``tensordict`` key by key; here the envs that go on keep the outputs their step
        returned (see `_restart`), so the whole output replaces the old one. On GPU backends the
        masked reset always runs, so no host synchronisation is needed; where the table of
        episode starts is current (and there are no afferents), the backend folds it into
        the next step (`Backend.schedule_reset`), so no simulator call is made for it.

        Args:
            tensordict: the root of the next step, as `torchrl.envs.utils.step_mdp` makes it.
        """
        done = tensordict.get("done").reshape(self.batch_size)
        if self.device.type == "cpu" and not done.any():
            return tensordict
        return tensordict.update(self._restart(done))

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        action = tensordict.get("action")
        if action.shape != self.action_spec.shape or action.dtype != torch.float32:
            raise ValueError(
                f"action must be a float32 tensor of shape {tuple(self.action_spec.shape)} (B envs x "
                f"{' + '.join(name for name, _, _ in self.action_layout)}, values in 0..1); got {action.dtype} of shape {tuple(action.shape)}"
            )
        for hook in self.before_step:
            hook(self)
        nu = self.body.nu
        reference = None
        if self.action_map.uses_reference:  # the pose of the frame this step ends on
            reference = self.clips.qpos[self.clip_index, (self.frame + 1).clamp(max=self._last_padded_frame)]
        self.backend.step(self.action_map(action[:, :nu].to(self._weights.dtype), reference))
        if self.sensor is not None:
            self.sensor.advance(self.backend.view, action, self._control_dt)
        for hook in self.after_step:
            hook(self)
        self.frame.add_(1)
        sim = self.backend.view
        self.unstable_count.add_(sim.unstable.sum())
        self._last_packed, terminated = self._evaluate(sim, self.clip_index, self.frame)
        if self.disturbances is not None:
            self.disturbances.add_noise(self._last_packed[:, : self._obs_dim], ~sim.unstable)
        observation, reward, metrics = self._split(self._last_packed)
        terminated = terminated[:, None]
        truncated = (self.frame >= self._clip_last_frame)[:, None] & ~terminated
        return self._tensordict(
            {
                "observation": observation,
                "metrics": metrics,
                "is_init": torch.zeros_like(terminated),
                "reward": reward,
                "done": terminated | truncated,
                "terminated": terminated,
                "truncated": truncated,
            }
        )

    def _close(self) -> None:
        self.backend.close()

    def _set_seed(self, seed: int | None) -> None:
        if seed is not None:
            self.clips.generator.manual_seed(seed)
            if self.sensor is not None:
                self.sensor.generator.manual_seed(seed)
