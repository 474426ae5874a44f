"""`ImitationEnv`: a TorchRL environment in which B bodies imitate reference clips.

Per control step the action [B, nu] (muscle excitations in 0..1) goes to the physics
backend, which runs its substeps and exposes its state as torch views; the task turns
that state and the reference into named reward terms and a termination flag, and the
env packs observations into a TensorDict. Nothing here synchronises with the host or
branches on tensor values, so the same code runs on CPU and GPU backends.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import mujoco
import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.data import Bounded, Categorical, Composite, Unbounded
from torchrl.envs import EnvBase

from neuromimic.bodies import get_body
from neuromimic.data.clip_bank import ClipBank
from neuromimic.data.clips import ClipError, check_quaternions, load_clips
from neuromimic.errors import ConfigError, check_config, did_you_mean
from neuromimic.models.base import ControllerSpec, layout_slices
from neuromimic.physics import BACKENDS, make_backend
from neuromimic.physics.base import Backend, PhysicsView, reset_to_rest_pose
from neuromimic.proprioception import AfferentConfig, Afferents
from neuromimic.tasks import ImitationTask, ReferenceFrame, tracking_errors

log = logging.getLogger(__name__)


#: The values of `EnvConfig.proprioception`.
PROPRIOCEPTION = ("joints", "afferents", "both")


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
        proprioception: what the controller senses of its own body (`PROPRIOCEPTION`):
            ``"joints"`` (joint angles and velocities, muscle length, velocity and force),
            ``"afferents"`` (spindle Ia and II and tendon organ Ib rates instead; the
            reference frames are then shown as they are, not relative to the body, so no
            joint angle reaches the controller) or ``"both"``. Muscle activation (an
            efference copy) is always shown.
        fusimotor_action: the controller sets gamma-static and gamma-dynamic drive of each
            muscle's spindle next to its alpha drive: the action is ``[alpha | gamma_static
            | gamma_dynamic]`` [B, 3 nu], all in 0..1 (gamma scaled by
            ``afferents.gamma_max_pps``). Needs afferents in ``proprioception``.
        afferents: delays, noise and fusimotor settings of the afferents.
    """

    body: str = "mouse_forelimb"
    backend: str = "mujoco"
    clips: str = "bundled:mouse_forelimb_reach"
    num_envs: int = 64
    substeps: int = 2
    future_frames: tuple[int, ...] = (1, 2, 4, 8)
    task: ImitationTask = field(default_factory=ImitationTask)
    backend_kwargs: dict = field(default_factory=dict)
    proprioception: str = "joints"
    fusimotor_action: bool = False
    afferents: AfferentConfig = field(default_factory=AfferentConfig)

    def __post_init__(self) -> None:
        """Check every field on its own (what needs the body or the clips is checked when
        the env is built); raise `ConfigError` naming the field."""
        check_config(
            self.backend in BACKENDS, "model.env.backend", self.backend,
            f"one of {list(BACKENDS)}{did_you_mean(str(self.backend), BACKENDS)}",
        )
        check_config(
            isinstance(self.num_envs, int) and self.num_envs >= 1, "model.env.num_envs", self.num_envs,
            "an integer >= 1 (bodies simulated in parallel per training process)",
        )
        check_config(
            isinstance(self.substeps, int) and self.substeps >= 1, "model.env.substeps", self.substeps,
            "an integer >= 1 (physics steps per control step; substeps x the body's timestep "
            "must equal the clips' frame period)",
        )
        frames = tuple(self.future_frames)
        check_config(
            bool(frames) and all(isinstance(k, int) and k >= 1 for k in frames), "model.env.future_frames",
            list(frames), "a non-empty list of positive frame offsets (1 is the next frame)",
        )
        check_config(
            self.proprioception in PROPRIOCEPTION, "model.env.proprioception", self.proprioception,
            f"one of {list(PROPRIOCEPTION)}",
        )
        if self.fusimotor_action and self.proprioception == "joints":
            raise ConfigError(
                "model.env.fusimotor_action sets the spindles' gamma drive, which only matters "
                "when the controller senses afferents: set model.env.proprioception to "
                "'afferents' or 'both', or fusimotor_action to false"
            )
        if isinstance(self.afferents, dict):
            self.afferents = AfferentConfig(**self.afferents)

    def to_dict(self) -> dict:
        """Plain data (checkpoints and exports store it; `from_dict` inverts it)."""
        data = dataclasses.asdict(self)
        data["future_frames"] = list(self.future_frames)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> EnvConfig:
        data = dict(data)
        data["task"] = ImitationTask(**data.get("task", {}))
        data["future_frames"] = tuple(data.get("future_frames", (1, 2, 4, 8)))
        return cls(**data)


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
    rest_qpos = body.rest_qpos(backend.model)
    for clip in clips:
        check_quaternions(clip.qpos, backend.model, rest_qpos, f"clip {clip.name!r} of {config.clips!r}")
    task = dataclasses.replace(config.task, termination_distance=math.inf) if evaluation else config.task
    bank = ClipBank(clips, device=backend.device, seed=seed, dtype=backend.view.qpos.dtype)
    return ImitationEnv(
        backend,
        bank,
        task,
        future_frames=config.future_frames,
        sequential_clips=evaluation,
        proprioception=config.proprioception,
        fusimotor_action=config.fusimotor_action,
        afferents=config.afferents,
    )


#: Names of the afferent observation blocks, in the order of
#: `neuromimic.proprioception.AFFERENT_CLASSES`.
AFFERENT_BLOCKS = ("spindle_Ia", "spindle_II", "tendon_organ_Ib")


@dataclass(frozen=True)
class Actuation:
    """How a body is driven, as far as the env's observations and actions are concerned.

    Either every actuator is a MuJoCo muscle (``muscles``: actions are excitations in 0..1,
    and the observation shows muscle length, velocity and force), or none is (position
    servos, motors: actions in 0..1 are mapped onto each actuator's ``ctrlrange``).

    Attributes:
        muscles: every actuator is a muscle.
        free_root: the first joint is a free joint (the body moves in the world).
        nu: number of actuators.
        na: number of actuator activation states (muscle activations, filters).
        ctrl_range: [nu, 2] control range of each actuator.
    """

    muscles: bool
    free_root: bool
    nu: int
    na: int
    ctrl_range: tuple[tuple[float, float], ...]

    @classmethod
    def of(cls, model, body: str) -> Actuation:
        """Read a compiled model; raise ValueError for what the env cannot drive, naming
        the actuators of body ``body`` at fault."""
        names = [model.actuator(i).name or f"#{i}" for i in range(model.nu)]
        is_muscle = model.actuator_gaintype == mujoco.mjtGain.mjGAIN_MUSCLE
        if is_muscle.any() and not is_muscle.all():
            others = [n for n, m in zip(names, is_muscle, strict=True) if not m]
            raise ValueError(
                f"body {body!r} mixes muscles with other actuators ({others[:5]}...); the "
                "imitation env drives bodies whose actuators are all muscles or all non-muscles"
            )
        unlimited = [n for n, limited in zip(names, model.actuator_ctrllimited, strict=True) if not limited]
        if unlimited:
            raise ValueError(
                f"body {body!r}: actuators {unlimited[:5]} have no ctrlrange; the env maps "
                "actions in 0..1 onto each actuator's ctrlrange, so give them ctrllimited "
                "and a ctrlrange in the body's model"
            )
        muscles = bool(model.nu) and bool(is_muscle.all())
        if muscles and model.na != model.nu:
            raise ValueError(f"body {body!r}: every muscle needs one activation state (na = nu)")
        free_root = model.njnt > 0 and model.jnt_type[0] == mujoco.mjtJoint.mjJNT_FREE
        return cls(
            muscles=muscles,
            free_root=bool(free_root),
            nu=int(model.nu),
            na=int(model.na),
            ctrl_range=tuple(tuple(map(float, r)) for r in model.actuator_ctrlrange),
        )

    @property
    def unit_range(self) -> bool:
        """Every control range is 0..1 (actions go to the simulator unchanged)."""
        return all(r == (0.0, 1.0) for r in self.ctrl_range)


def observation_layout(
    nq: int,
    nv: int,
    actuation: Actuation,
    num_sites: int,
    future_frames: tuple[int, ...],
    proprioception: str = "joints",
) -> list[tuple[str, int, str]]:
    """The blocks of the flat observation, in order: ``(name, size, units)``.

    ``proprioception`` is `EnvConfig.proprioception`. With joints the reference frames are
    shown relative to the body (``ref_qpos_minus_qpos_t+k``); with afferents only, as they
    are (``ref_qpos_t+k``, ``ref_site_t+k``). Bodies without muscles show their actuators'
    activation states (``actuator_activation``, for example a servo's filtered control)
    in place of the muscle blocks.
    """
    joints = proprioception in ("joints", "both")
    nu = actuation.nu
    layout = []
    if joints:
        layout += [("qpos", nq, "rad"), ("qvel", nv, "rad/s")]
    if not actuation.muscles:
        if actuation.na:
            layout.append(("actuator_activation", actuation.na, "actuator state (MuJoCo act)"))
    else:
        layout.append(("muscle_activation", nu, "0..1"))
        if joints:
            layout += [
                ("muscle_length", nu, "fraction of the muscle's length range"),
                ("muscle_velocity", nu, "length ranges per s"),
                ("muscle_force", nu, "fraction of peak isometric force"),
            ]
        if proprioception != "joints":
            layout += [(name, nu, "pps") for name in AFFERENT_BLOCKS]
    for k in future_frames:
        if joints:
            layout.append((f"ref_qpos_minus_qpos_t+{k}", nq, "rad"))
            layout.append((f"ref_site_minus_site_t+{k}", 3 * num_sites, "m"))
        else:
            layout.append((f"ref_qpos_t+{k}", nq, "rad"))
            layout.append((f"ref_site_t+{k}", 3 * num_sites, "m (world frame)"))
    return layout


def action_layout(actuation: Actuation, fusimotor_action: bool) -> list[tuple[str, int, str]]:
    """The blocks of the action, in order: ``(name, size, units)``."""
    nu = actuation.nu
    if not actuation.muscles:
        return [("ctrl", nu, "0..1 across each actuator's ctrlrange")]
    layout = [("alpha", nu, "muscle excitation 0..1")]
    if fusimotor_action:
        layout += [
            ("gamma_static", nu, "0..1 of afferents.gamma_max_pps"),
            ("gamma_dynamic", nu, "0..1 of afferents.gamma_max_pps"),
        ]
    return layout


def controller_spec(config: EnvConfig) -> ControllerSpec:
    """What a controller for envs built from ``config`` must fit (observation layout,
    action size, control step), without building a simulator."""
    body = get_body(config.body)
    model = body.load_model()
    actuation = Actuation.of(model, body.key)
    layout = observation_layout(
        model.nq,
        model.nv,
        actuation,
        len(body.end_effector_sites),
        tuple(config.future_frames),
        config.proprioception,
    )
    actions = action_layout(actuation, config.fusimotor_action)
    return ControllerSpec(
        observation_size=sum(size for _, size, _ in layout),
        action_size=sum(size for _, size, _ in actions),
        control_dt=config.substeps * model.opt.timestep,
        observation_layout=tuple(layout),
        action_layout=tuple(actions),
    )


class ImitationEnv(EnvBase):
    """B bodies imitating reference clips, as one batched TorchRL environment.

    Output keys per step: ``"observation"`` [B, D] float32 (layout in
    `observation_layout`), ``"is_init"`` [B, 1] (True on an episode's first observation,
    as TorchRL's ``InitTracker`` writes it; recurrent controllers reset their state
    there), ``"reward"`` [B, 1], ``"done"``, ``"terminated"`` (the tracked
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
        proprioception, fusimotor_action, afferents: as in `EnvConfig`. With afferents the
            spindles and tendon organs of every muscle run every ``afferents.dt_ms``
            between control steps, fed muscle length and force moving linearly from one
            control step to the next (the simulator is read once per control step).
        reset_table_mb: the most memory (MiB, on the backend's device) the table of reset
            outputs may take: a new episode starts on a clip frame with its muscles off, so
            its first observation and metrics depend on the clip and frame alone and are
            computed for every clip frame when the env is built (and again at a full reset
            after `Backend.model_changed`). With more clip frames than fit, or while the
            body model differs from the one the table was made with, they are computed at
            each reset instead (one more pass over observations and rewards per step that
            starts an episode).
    """

    def __init__(
        self,
        backend: Backend,
        clips: ClipBank,
        task: ImitationTask,
        future_frames: tuple[int, ...] = (1, 2, 4, 8),
        sequential_clips: bool = False,
        proprioception: str = "joints",
        fusimotor_action: bool = False,
        afferents: AfferentConfig | None = None,
        reset_table_mb: float = 256.0,
    ) -> None:
        super().__init__(device=backend.device, batch_size=torch.Size([backend.num_envs]))
        model = backend.model
        body = backend.body
        if clips.body != body.key:
            raise ClipError(
                f"the clips were recorded for body {clips.body!r} but the env simulates "
                f"{body.key!r}; load clips made for {body.key!r}"
            )
        check_config(
            bool(future_frames) and min(future_frames) >= 1, "model.env.future_frames",
            list(future_frames), "a non-empty list of positive frame offsets",
        )
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
        # Frame offsets read every step: the current frame, then the future ones.
        self._frame_offsets = torch.tensor((0, *self.future_frames), device=self.device)
        self._last_padded_frame = clips.frames.shape[1] - 1

        self.actuation = actuation = Actuation.of(model, body.key)
        if proprioception != "joints" and not actuation.muscles:
            raise ConfigError(
                f"model.env.proprioception {proprioception!r} needs muscles (spindles and tendon "
                f"organs) but body {body.key!r} has none; use proprioception: joints"
            )
        task.check_body(body.key, actuation.muscles, actuation.free_root)
        dtype = backend.view.qpos.dtype
        to = {"device": self.device, "dtype": dtype}
        #: Peak isometric force [nu] of each muscle in N (MuJoCo turns a muscle's ``scale``
        #: into this force when it compiles); None for a body without muscles.
        self._max_force = torch.as_tensor(model.actuator_gainprm[:, 2], **to).abs() if actuation.muscles else None
        ctrl_range = torch.as_tensor(actuation.ctrl_range, **to).reshape(-1, 2)
        #: Actions in 0..1 -> controls: ``low + action * span`` [nu] (None: unchanged).
        self._ctrl_affine = None if actuation.unit_range else (ctrl_range[:, 0], ctrl_range[:, 1] - ctrl_range[:, 0])
        self._term_weights = torch.tensor(list(task.weights.values()), **to)
        self._site_error_to_mm = 1e3 * body.length_unit_m

        num_envs = backend.num_envs
        self.clip_index = torch.zeros(num_envs, dtype=torch.long, device=self.device)
        self.frame = torch.zeros(num_envs, dtype=torch.long, device=self.device)
        self._clip_last_frame = torch.zeros(num_envs, dtype=torch.long, device=self.device)
        #: Device-side count of control steps that ended unstable (NaN/Inf, runaway).
        self.unstable_count = torch.zeros((), dtype=torch.long, device=self.device)
        #: Called with the env before every physics step (stimuli and perturbations, such as
        #: `neuromimic.analysis.perturb.force_pulse`, set the backend's inputs here).
        self.before_step: list[Callable[[ImitationEnv], None]] = []
        #: Called with the env after every physics step, before the step is evaluated and
        #: before any body is reset: the backend's view holds the step's final state and
        #: its `unstable` flags (`neuromimic.training.callbacks.UnstableBodyDump` reads them).
        self.after_step: list[Callable[[ImitationEnv], None]] = []

        self.proprioception = proprioception
        self.fusimotor_action = fusimotor_action
        self.observation_layout = observation_layout(
            model.nq, model.nv, actuation, len(body.end_effector_sites), self.future_frames, proprioception
        )
        self.action_layout = action_layout(actuation, fusimotor_action)
        self._setup_afferents(model, afferents or AfferentConfig(), **to)
        obs_dim = sum(size for _, size, _ in self.observation_layout)
        self._obs_shift, self._obs_scale = self._observation_affine(model, obs_dim, **to)
        # Columns of [qpos | qvel | sites] that the observation shows for future frames.
        nq, nv = model.nq, model.nv
        sites = 3 * len(body.end_effector_sites)
        self._future_columns = torch.cat(
            [torch.arange(nq), torch.arange(nq + nv, nq + nv + sites)]
        ).to(self.device)
        self.metric_names = (*task.weights, "site_pos_error_mm", "joint_pos_error_deg", "unstable")
        batch = (num_envs,)
        self.observation_spec = Composite(
            observation=Unbounded((*batch, obs_dim), dtype=torch.float32, device=self.device),
            metrics=Composite(
                {name: Unbounded(batch, dtype=torch.float32, device=self.device) for name in self.metric_names},
                shape=batch,
                device=self.device,
            ),
            is_init=Categorical(2, shape=(*batch, 1), dtype=torch.bool, device=self.device),
            shape=batch,
            device=self.device,
        )
        action_size = sum(size for _, size, _ in self.action_layout)
        self.action_spec = Bounded(
            low=0.0, high=1.0, shape=(*batch, action_size), dtype=torch.float32, device=self.device
        )
        self.reward_spec = Unbounded((*batch, 1), dtype=torch.float32, device=self.device)
        flag = Categorical(2, shape=(*batch, 1), dtype=torch.bool, device=self.device)
        self.done_spec = Composite(
            done=flag, terminated=flag.clone(), truncated=flag.clone(), shape=batch, device=self.device
        )
        #: The outputs of each env's current state (`_evaluate`), as its last step or reset
        #: returned them: [B, D + 1 + M] float32.
        self._last_packed = torch.zeros(num_envs, obs_dim + 1 + len(self.metric_names), device=self.device)
        self._reset_table_bytes = reset_table_mb * 2**20
        self._reset_table: torch.Tensor | None = None
        self._reset_table_version = -1
        self._build_reset_table()

    # ----------------------------------------------------------------------------- layout
    @property
    def controller_spec(self) -> ControllerSpec:
        """What a controller of this env must fit (its observation and action layouts and
        control step)."""
        return ControllerSpec(
            observation_size=sum(size for _, size, _ in self.observation_layout),
            action_size=sum(size for _, size, _ in self.action_layout),
            control_dt=self.backend.substeps * self.backend.model.opt.timestep,
            observation_layout=tuple(self.observation_layout),
            action_layout=tuple(self.action_layout),
        )

    def observation_slices(self) -> dict[str, slice]:
        """Name -> slice of each block of ``"observation"`` (units in `observation_layout`)."""
        return layout_slices(self.observation_layout)

    def _observation_affine(self, model, obs_dim: int, **to) -> tuple[torch.Tensor, torch.Tensor]:
        """``(shift, scale)`` [D] such that ``(raw - shift) * scale`` puts the muscle blocks in
        the units of `observation_layout` (identity elsewhere)."""
        shift = torch.zeros(obs_dim, **to)
        scale = torch.ones(obs_dim, **to)
        length_range = torch.as_tensor(model.actuator_lengthrange, **to)
        span = length_range[:, 1] - length_range[:, 0]
        slices = self.observation_slices()
        if "muscle_length" in slices:
            shift[slices["muscle_length"]] = length_range[:, 0]
            scale[slices["muscle_length"]] = 1.0 / span
            scale[slices["muscle_velocity"]] = 1.0 / span
            scale[slices["muscle_force"]] = -1.0 / self._max_force  # muscles pull: force < 0
        return shift, scale

    # ------------------------------------------------------------------------- afferents
    def _setup_afferents(self, model, config: AfferentConfig, **to) -> None:
        """The afferent model and the affine maps from MuJoCo's muscle-tendon length and
        velocity (m, m/s) to fascicle length and velocity in optimal lengths (MuJoCo's
        muscles have rigid tendons, so the fascicle takes every change of length)."""
        self.afferent_config = config
        self.afferents = Afferents(config).to(self.device) if self.proprioception != "joints" else None
        #: Afferent rates [B, 3, nu] in pps arriving now (Ia, II, Ib), or None.
        self.afferent_rates: torch.Tensor | None = None
        self._afferent_state: dict[str, torch.Tensor] | None = None
        #: Fascicle length and tendon force [B, nu] at the current state (`_muscle_afferent_inputs`),
        #: kept so that each step reads the muscles once, at its end.
        self._muscle_inputs: tuple[torch.Tensor, torch.Tensor] | None = None
        self._afferent_generator = torch.Generator(self.device)
        if self.afferents is None:
            return
        shape = (self.batch_size[0], model.nu)
        self._tonic_gamma = (
            torch.full(shape, config.gamma_static_pps, **to),
            torch.full(shape, config.gamma_dynamic_pps, **to),
        )
        length_range = torch.as_tensor(model.actuator_lengthrange, **to)
        fascicle_range = torch.as_tensor(model.actuator_gainprm[:, :2], **to)
        optimal_length = (length_range[:, 1] - length_range[:, 0]) / (fascicle_range[:, 1] - fascicle_range[:, 0])
        self._fascicle_scale = 1.0 / optimal_length
        self._fascicle_shift = fascicle_range[:, 0] - length_range[:, 0] / optimal_length

    def _muscle_afferent_inputs(self, sim: PhysicsView) -> tuple[torch.Tensor, torch.Tensor]:
        """Fascicle length [B, nu] in optimal lengths and tendon force [B, nu] in peak forces."""
        length = sim.actuator_length * self._fascicle_scale + self._fascicle_shift
        return length, -sim.actuator_force / self._max_force

    def _fusimotor_drive(self, action: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Gamma-static and gamma-dynamic drive [B, nu] in pps."""
        nu = self.backend.model.nu
        if self.fusimotor_action and action is not None:
            drive = action[:, nu:].to(self._fascicle_scale.dtype) * self.afferent_config.gamma_max_pps
            return drive[:, :nu], drive[:, nu:]
        return self._tonic_gamma

    def _reset_afferents(self, mask: torch.Tensor) -> None:
        """Afferents of the reset rows settle at the new pose (muscles inactive)."""
        length, force = self._muscle_inputs = self._muscle_afferent_inputs(self.backend.view)
        state = self.afferents.initial_state(length, force, *self._fusimotor_drive(None))
        rates = self.afferents.settled_rates(state, length, force)
        if self._afferent_state is None:
            self._afferent_state, self.afferent_rates = state, rates
            return
        self._afferent_state = Afferents.select(mask, state, self._afferent_state)
        self.afferent_rates = torch.where(mask[:, None, None], rates, self.afferent_rates)

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

    # ---------------------------------------------------------------------------- helpers
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
            ``(packed, site_error)``: ``packed`` [B, D + 1 + M] float32 holds the observation,
            the reward and the M metrics (`metric_names`; `_split` takes it apart), zeroed
            where the body is unstable (its state holds NaN/Inf: nothing of it may reach
            the learner) but for the ``unstable`` flag itself; ``site_error`` [B] is the
            mean tracked-site error in m, in the simulator's precision.
        """
        reference = self._reference(clip_index, frame)
        errors = tracking_errors(sim, self.clips.unpack(reference[:, 0]), self.actuation.free_root)
        values = self.task.reward_terms(sim, errors, self._max_force)
        terms = torch.stack(list(values.values()), dim=-1)  # [B, M - 3]
        reward = terms @ self._term_weights
        future = reference[:, 1:]
        if self.proprioception == "afferents":
            blocks = [sim.act, self.afferent_rates.flatten(1)]
        else:
            future = future - torch.cat([sim.qpos, sim.qvel, sim.site_pos_w.flatten(1)], dim=-1)[:, None]
            blocks = [sim.qpos, sim.qvel, sim.act]
            if self.actuation.muscles:
                blocks += [sim.actuator_length, sim.actuator_velocity, sim.actuator_force]
            if self.afferents is not None:
                blocks.append(self.afferent_rates.flatten(1))
        future = future.index_select(-1, self._future_columns)
        raw = torch.cat([*blocks, future.flatten(1)], dim=-1)
        packed = torch.cat(
            [
                (raw - self._obs_shift) * self._obs_scale,
                reward[:, None],
                terms,
                errors.site_pos[:, None] * self._site_error_to_mm,
                torch.rad2deg(errors.joint_pos)[:, None],
                sim.unstable[:, None],
            ],
            dim=-1,
        ).to(torch.float32)
        packed[:, :-1].masked_fill_(sim.unstable[:, None], 0.0)
        return packed, errors.site_pos

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

    def _place(self, mask: torch.Tensor) -> None:
        """Put the bodies where ``mask`` [B] is True on their reference at their current
        clip and frame, still and with muscles off; settle their afferents there."""
        ref = self.reference()
        self.backend.reset(mask, ref.qpos, ref.qvel, torch.zeros_like(self.backend.view.act))
        if self.afferents is not None:
            self._reset_afferents(mask)

    def _build_reset_table(self) -> None:
        """Tabulate the outputs (`_evaluate`) of a body placed on each frame of each clip
        (see ``reset_table_mb``); leave every body in its rest pose afterwards."""
        clips, num_envs = self.clips, self.batch_size[0]
        num_clips, max_frames = clips.frames.shape[:2]
        width = self._last_packed.shape[-1]
        self._reset_table = None
        if num_clips * max_frames * width * 4 > self._reset_table_bytes:
            log.info(
                "reset outputs are computed at each reset: a table of %d clip frames would "
                "take more than reset_table_mb=%g MiB", int(clips.length.sum()), self._reset_table_bytes / 2**20
            )
            return
        lengths = clips.length.tolist()
        clip_ids = torch.repeat_interleave(torch.arange(num_clips), torch.tensor(lengths)).to(self.device)
        frames = torch.cat([torch.arange(length) for length in lengths]).to(self.device)
        table = torch.zeros(num_clips * max_frames, width, device=self.device)
        everyone = torch.ones(num_envs, dtype=torch.bool, device=self.device)
        for start in range(0, clip_ids.shape[0], num_envs):
            clip, frame = clip_ids[start : start + num_envs], frames[start : start + num_envs]
            count = clip.shape[0]
            # The last chunk is padded with its own last frame.
            self.clip_index = torch.cat([clip, clip[-1:].expand(num_envs - count)])
            self.frame = torch.cat([frame, frame[-1:].expand(num_envs - count)])
            self._place(everyone)
            packed, _ = self._evaluate(self.backend.view, self.clip_index, self.frame)
            table[self._table_row(clip, frame)] = packed[:count]
        self._reset_table = table
        self._reset_table_version = self.backend.model_version
        self.clip_index.zero_()
        self.frame.zero_()
        reset_to_rest_pose(self.backend, self.backend.view.qpos.dtype)
        self._afferent_state = self.afferent_rates = self._muscle_inputs = None

    @property
    def _reset_table_current(self) -> bool:
        """The reset table exists and was made with the backend's current body model."""
        return self._reset_table is not None and self._reset_table_version == self.backend.model_version

    def _table_row(self, clip_index: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
        """Row of the reset table holding frame ``frame`` of clip ``clip_index`` (same shape)."""
        return clip_index * self.clips.frames.shape[1] + frame

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
        self._place(mask)
        if self._reset_table_current:
            # Envs that go on may be past their clip's end (stepped without a reset): their
            # row is read, clamped into the table, and left unused.
            started = self._reset_table[self._table_row(self.clip_index, self.frame.clamp(max=self._last_padded_frame))]
        else:
            started, _ = self._evaluate(self.backend.view, self.clip_index, self.frame)
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

        Plain nested dicts of tensors (``None`` where the env has no afferents), as a
        ``weights_only`` checkpoint stores them; `restore` loads one back.
        """
        afferents = None
        if self._afferent_state is not None:
            length, force = self._muscle_inputs
            afferents = {
                "state": {k: v.cpu().clone() for k, v in self._afferent_state.items()},
                "rates": self.afferent_rates.cpu().clone(),
                "muscle_length": length.cpu().clone(),
                "muscle_force": force.cpu().clone(),
            }
        return {
            "backend": self.backend.snapshot(),
            "model_version": torch.tensor(self.backend.model_version),
            "clip_index": self.clip_index.cpu().clone(),
            "frame": self.frame.cpu().clone(),
            "clip_last_frame": self._clip_last_frame.cpu().clone(),
            "last_packed": self._last_packed.cpu().clone(),
            "unstable_count": self.unstable_count.cpu().clone(),
            "clip_sampler": self.clips.generator.get_state(),
            "afferent_generator": self._afferent_generator.get_state(),
            "afferents": afferents,
        }

    def restore(self, snapshot: dict) -> None:
        """Continue from a `snapshot` of an env built from the same config and size.

        Raises:
            ValueError: if the snapshot is of another number of bodies, of an env whose
                body model had been changed (`Backend.model_changed`), or of another
                observation layout.
        """
        if snapshot["clip_index"].shape != self.clip_index.shape or snapshot["last_packed"].shape != self._last_packed.shape:
            raise ValueError(
                f"the snapshot holds {tuple(snapshot['last_packed'].shape)} env outputs; this env "
                f"makes {tuple(self._last_packed.shape)} (another num_envs or observation layout)"
            )
        if int(snapshot["model_version"]) != self.backend.model_version:
            raise ValueError("the snapshot was taken after its body model was changed; rebuild that model first")
        self.backend.restore(snapshot["backend"])
        to = {"device": self.device}
        self.clip_index = snapshot["clip_index"].to(**to).clone()
        self.frame.copy_(snapshot["frame"])
        self._clip_last_frame = snapshot["clip_last_frame"].to(**to).clone()
        self._last_packed = snapshot["last_packed"].to(**to).clone()
        self.unstable_count.copy_(snapshot["unstable_count"])
        self.clips.generator.set_state(snapshot["clip_sampler"])
        self._afferent_generator.set_state(snapshot["afferent_generator"])
        afferents = snapshot["afferents"]
        if afferents is None:
            self._afferent_state = self.afferent_rates = self._muscle_inputs = None
        else:
            self._afferent_state = {k: v.to(**to).clone() for k, v in afferents["state"].items()}
            self.afferent_rates = afferents["rates"].to(**to).clone()
            self._muscle_inputs = (afferents["muscle_length"].to(**to).clone(), afferents["muscle_force"].to(**to).clone())

    # -------------------------------------------------------------------------- EnvBase API
    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs) -> TensorDictBase:
        num_envs = self.batch_size[0]
        if tensordict is not None and "_reset" in tensordict.keys():
            mask = tensordict.get("_reset").reshape(num_envs)
        else:
            mask = torch.ones(num_envs, dtype=torch.bool, device=self.device)
            if self._reset_table is not None and not self._reset_table_current:
                self._build_reset_table()  # every body restarts: nothing to keep
        return self._restart(mask)

    def maybe_reset(self, tensordict: TensorDictBase) -> TensorDictBase:
        """`EnvBase.maybe_reset` in one masked pass: reset the envs whose episode ended.

        TorchRL's default goes through `EnvBase.reset`, which merges the reset envs into
        ``tensordict`` key by key; here the envs that go on keep the outputs their step
        returned (see `_restart`), so the whole output replaces the old one. On GPU backends the
        masked reset always runs, so no host synchronisation is needed.

        Args:
            tensordict: the root of the next step, as `torchrl.envs.utils.step_mdp` makes it.
        """
        done = tensordict.get("done").reshape(self.batch_size)
        if self.device.type == "cpu" and not done.any():
            return tensordict
        return tensordict.update(self._restart(done))

    def _controls(self, action: torch.Tensor) -> torch.Tensor:
        """Simulator controls [B, nu] of actions [B, nu] in 0..1 (see `Actuation`)."""
        if self._ctrl_affine is None:
            return action
        low, span = self._ctrl_affine
        return low + action * span

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        action = tensordict.get("action")
        expected = self.action_spec.shape
        if action.shape != expected or action.dtype != torch.float32:
            raise ValueError(
                f"action must be a float32 tensor of shape {tuple(expected)} (B envs x "
                f"{' + '.join(name for name, _, _ in self.action_layout)}, values in 0..1); got {action.dtype} of shape {tuple(action.shape)}"
            )
        for hook in self.before_step:
            hook(self)
        if self.afferents is None:
            self.backend.step(self._controls(action))
        else:
            start_length, start_force = self._muscle_inputs
            self.backend.step(self._controls(action[:, : self.backend.model.nu]))
            end_length, end_force = self._muscle_inputs = self._muscle_afferent_inputs(self.backend.view)
            self.afferent_rates, self._afferent_state = self.afferents.advance(
                self._afferent_state,
                start_length,
                end_length,
                start_force,
                end_force,
                self.backend.substeps * self.backend.model.opt.timestep,
                *self._fusimotor_drive(action),
                generator=self._afferent_generator,
            )
        for hook in self.after_step:
            hook(self)
        self.frame.add_(1)
        sim = self.backend.view
        unstable = sim.unstable
        self.unstable_count.add_(unstable.sum())
        self._last_packed, site_error = self._evaluate(sim, self.clip_index, self.frame)
        observation, reward, metrics = self._split(self._last_packed)
        terminated = (unstable | self.task.terminated(site_error))[:, None]
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
        close = getattr(self.backend, "close", None)
        if close is not None:
            close()

    def _set_seed(self, seed: int | None) -> None:
        if seed is not None:
            self.clips.generator.manual_seed(seed)
            self._afferent_generator.manual_seed(seed)
