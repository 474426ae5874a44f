"""`EnvConfig` (one YAML group), `make_env` and `controller_spec`: envs built from declared terms."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import torch

from neuromimic.bodies import get_body
from neuromimic.data.clip_bank import ClipBank
from neuromimic.data.clips import check_quaternions, load_clips
from neuromimic.data.contacts import START_PENETRATION_TOLERANCE_M, valid_starts
from neuromimic.envs.disturbances import DisturbanceConfig
from neuromimic.envs.terms import TermSet
from neuromimic.errors import ConfigError, check_config, did_you_mean
from neuromimic.models.base import ControllerSpec
from neuromimic.physics import BACKENDS, make_backend
from neuromimic.proprioception import AfferentConfig
from neuromimic.tasks.actions import ActionTerm, action_term
from neuromimic.tasks.base import BodyInfo
from neuromimic.tasks.observations import FRAMES, PROPRIOCEPTION, default_observations
from neuromimic.tasks.rewards import default_rewards
from neuromimic.tasks.terminations import default_terminations


@dataclass
class EnvConfig:
    """Everything needed to build an `ImitationEnv`; one YAML group (``model.env``).

    Args:
        body: body registry key (``neuromimic bodies list`` shows them).
        backend: physics backend, ``"mujoco"`` (native, CPU) or ``"mjx"`` (JAX).
        clips: reference clips: a ``.h5`` file, a directory of them, or
            ``"bundled:<name>"`` for clips shipped with the package.
        num_envs: B, bodies simulated in parallel (per training process).
        substeps: physics steps per control step; ``substeps * timestep`` must equal the
            clip frame period ``1 / fps``.
        future_frames: offsets (in frames) of the reference frames shown to the controller.
        observations: the observation terms, in layout order
            (`neuromimic.tasks.observations.OBSERVATIONS`); None: `default_observations`
            for the body, ``proprioception`` and ``frame``.
        proprioception: what the default observation shows of the body's own state:
            ``"joints"`` (joint angles and velocities, muscle length, velocity and force),
            ``"afferents"`` (spindle Ia and II and tendon organ Ib rates instead; the
            reference is then shown as it is, not relative to the body) or ``"both"``.
            Muscle activation (an efference copy) is always shown.
        frame: how a free-root body sees itself and the reference in the default
            observation: ``"egocentric"`` (its heading frame) or ``"world"``.
        rewards: ``{term: {weight: w, ...params}}`` (`neuromimic.tasks.rewards.REWARDS`);
            costs take negative weights. None: `neuromimic.tasks.rewards.default_rewards`,
            less the terms the body cannot compute.
        terminations: ``{term: {...params}}`` ending an episode as a failure
            (`neuromimic.tasks.terminations.TERMINATIONS`); the physics going unstable
            always does. The held-out evaluation ignores them.
        action: ``{name: ..., ...params}`` (`neuromimic.tasks.actions.ACTIONS`):
            ``absolute`` (each action spans its actuator's control range) or, for servo
            bodies, ``reference_relative`` (``scale``: offsets about the reference's pose).
        backend_kwargs: extra keyword arguments of the backend (``nthread``, ``impl``...).
        fusimotor_action: the controller sets gamma-static and gamma-dynamic drive of each
            muscle's spindle next to its alpha drive: the action is ``[alpha | gamma_static
            | gamma_dynamic]`` [B, 3 nu], all in 0..1 (gamma scaled by
            ``afferents.gamma_max_pps``). Needs afferent observations.
        afferents: delays, noise and fusimotor settings of the afferents.
        disturbances: observation noise and random pushes of the training env
            (`neuromimic.envs.disturbances.DisturbanceConfig`); evaluation envs have none.
    """

    body: str = "mouse_forelimb"
    backend: str = "mujoco"
    clips: str = "bundled:mouse_forelimb_reach"
    num_envs: int = 64
    substeps: int = 2
    future_frames: tuple[int, ...] = (1, 2, 4, 8)
    observations: list[str] | None = None
    proprioception: str = "joints"
    frame: str = "egocentric"
    rewards: dict[str, dict[str, float]] | None = None
    terminations: dict[str, dict[str, float]] = field(default_factory=default_terminations)
    action: dict[str, str | float] = field(default_factory=lambda: {"name": "absolute"})
    backend_kwargs: dict = field(default_factory=dict)
    fusimotor_action: bool = False
    afferents: AfferentConfig = field(default_factory=AfferentConfig)
    disturbances: DisturbanceConfig = field(default_factory=DisturbanceConfig)

    def __post_init__(self) -> None:
        """Check every field on its own (what needs the body or the clips is checked when
        the env is built); raise `ConfigError` naming the field."""
        check_config(
            self.backend in BACKENDS,
            "model.env.backend",
            self.backend,
            f"one of {list(BACKENDS)}{did_you_mean(str(self.backend), BACKENDS)}",
        )
        check_config(
            isinstance(self.num_envs, int) and self.num_envs >= 1,
            "model.env.num_envs",
            self.num_envs,
            "an integer >= 1 (bodies simulated in parallel per training process)",
        )
        check_config(
            isinstance(self.substeps, int) and self.substeps >= 1,
            "model.env.substeps",
            self.substeps,
            "an integer >= 1 (physics steps per control step; substeps x the body's timestep "
            "must equal the clips' frame period)",
        )
        frames = tuple(self.future_frames)
        check_config(
            bool(frames) and all(isinstance(k, int) and k >= 1 for k in frames),
            "model.env.future_frames",
            list(frames),
            "a non-empty list of positive frame offsets (1 is the next frame)",
        )
        check_config(
            self.proprioception in PROPRIOCEPTION,
            "model.env.proprioception",
            self.proprioception,
            f"one of {list(PROPRIOCEPTION)}",
        )
        check_config(self.frame in FRAMES, "model.env.frame", self.frame, f"one of {list(FRAMES)}")
        if self.fusimotor_action and self.proprioception == "joints" and not self.observations:
            raise ConfigError(
                "model.env.fusimotor_action sets the spindles' gamma drive, which only matters "
                "when the controller senses afferents: set model.env.proprioception to "
                "'afferents' or 'both', or fusimotor_action to false"
            )
        if isinstance(self.afferents, dict):
            self.afferents = AfferentConfig(**self.afferents)
        if isinstance(self.disturbances, dict):
            self.disturbances = DisturbanceConfig(**self.disturbances)
        action_term(self.action)  # the name and parameters exist

    def to_dict(self) -> dict:
        """Plain data (checkpoints and exports store it; `from_dict` inverts it)."""
        data = dataclasses.asdict(self)
        data["future_frames"] = list(self.future_frames)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> EnvConfig:
        """The config `to_dict` wrote, also from checkpoints and exports of neuromimic's
        first versions (a ``task`` of weights and kernel widths, world-frame observations)."""
        data = dict(data)
        if "task" in data:
            data.update(_legacy_task(data.pop("task")))
            data.setdefault("frame", "world")
        data["future_frames"] = tuple(data.get("future_frames", (1, 2, 4, 8)))
        return cls(**data)


#: The old ``task`` group's kernel width of each reward term.
_LEGACY_SIGMAS = {
    "joint_pos_error_exp": "joint_pos_sigma",
    "joint_vel_error_exp": "joint_vel_sigma",
    "site_pos_error_exp": "site_pos_sigma",
    "root_pos_error_exp": "root_pos_sigma",
    "root_rot_error_exp": "root_rot_sigma",
}


def _legacy_task(task: dict) -> dict:
    """``rewards`` and ``terminations`` of the ``task`` group written before declared terms."""
    defaults = {
        "joint_pos_sigma": 0.1,
        "joint_vel_sigma": 2.0,
        "site_pos_sigma": 0.001,
        "root_pos_sigma": 0.02,
        "root_rot_sigma": 0.3,
    }
    rewards = {}
    for name, weight in task.get("weights", {}).items():
        sigma = _LEGACY_SIGMAS.get(name)
        rewards[name] = {"weight": weight} | ({"sigma": task.get(sigma, defaults[sigma])} if sigma else {})
    distance = task.get("termination_distance", 0.003)
    return {
        "rewards": rewards,
        "terminations": {"site_pos_error": {"distance": distance}} if math.isfinite(distance) else {},
    }


def body_info(config: EnvConfig, model, device="cpu", dtype=torch.float64) -> BodyInfo:
    """The `BodyInfo` of ``config``'s body compiled as ``model``."""
    body = get_body(config.body)
    afferents = config.proprioception != "joints" or any(
        name in ("spindle_Ia", "spindle_II", "tendon_organ_Ib") for name in config.observations or ()
    )
    return BodyInfo.of(model, body.key, len(body.end_effector_sites), body.length_unit_m, afferents, device, dtype)


def term_set(config: EnvConfig, info: BodyInfo, evaluation: bool = False) -> TermSet:
    """The `TermSet` of ``config`` for its body; ``evaluation`` drops the terminations."""
    if config.proprioception != "joints" and not info.muscles:
        raise ConfigError(
            f"model.env.proprioception {config.proprioception!r} needs muscles (spindles and tendon "
            f"organs) but body {info.key!r} has none; use proprioception: joints"
        )
    observations = config.observations or default_observations(info, config.proprioception, config.frame)
    rewards = default_rewards(info) if config.rewards is None else config.rewards
    terminations = {} if evaluation else config.terminations
    return TermSet(info, list(observations), rewards, terminations, config.future_frames)


def action_layout(info: BodyInfo, term: ActionTerm, fusimotor_action: bool) -> list[tuple[str, int, str]]:
    """The blocks of the action, in order: ``(name, size, units)``."""
    missing = [need for need in term.needs if not info.has(need)]
    if missing:
        raise ConfigError(
            f"model.env.action {term.name!r} needs {' and '.join(missing)}; body {info.key!r} has none: use action: {{name: absolute}}"
        )
    if not info.muscles:
        if fusimotor_action:
            raise ConfigError(f"model.env.fusimotor_action needs muscles; body {info.key!r} has none")
        return [(term.block, info.nu, term.units)]
    layout = [("alpha", info.nu, "muscle excitation 0..1")]
    if fusimotor_action:
        if not info.afferents:
            raise ConfigError(
                "model.env.fusimotor_action needs afferent observations (spindle_Ia, spindle_II or tendon_organ_Ib)"
            )
        layout += [
            ("gamma_static", info.nu, "0..1 of afferents.gamma_max_pps"),
            ("gamma_dynamic", info.nu, "0..1 of afferents.gamma_max_pps"),
        ]
    return layout


def controller_spec(config: EnvConfig) -> ControllerSpec:
    """What a controller for envs built from ``config`` must fit (observation layout,
    action layout and term, control step), without building a simulator."""
    model = get_body(config.body).load_model()
    info = body_info(config, model)
    term, params = action_term(config.action)
    return ControllerSpec.of(
        term_set(config, info).layout,
        action_layout(info, term, config.fusimotor_action),
        {"name": term.name, **params},
        config.substeps * model.opt.timestep,
    )


def make_env(
    config: EnvConfig,
    *,
    split: str | None = "train",
    device: torch.device | str | None = None,
    seed: int = 0,
    num_envs: int | None = None,
    evaluation: bool = False,
):
    """Build an `ImitationEnv` from a config; used by training, the CLI and analysis alike.

    Args:
        config: the env config.
        split: clip split to load (``"train"``, ``"val"``) or ``None`` for all clips.
        device: torch device of the backend (CPU backends ignore anything but ``"cpu"``).
        seed: seed of the clip sampler.
        num_envs: overrides ``config.num_envs``.
        evaluation: env ``i`` plays clip ``i`` from its first frame (one env per clip
            unless ``num_envs`` says otherwise), and no termination term applies, so each
            clip is tracked to its end. Otherwise episodes start on random frames that
            put the body into neither the floor nor itself
            (`neuromimic.data.contacts.valid_starts`) and the config's disturbances apply.
    """
    from neuromimic.envs.imitation import ImitationEnv

    body = get_body(config.body)
    clips = load_clips(config.clips, body=body.key, split=split)
    if num_envs is None:
        num_envs = len(clips) if evaluation else config.num_envs
    backend = make_backend(
        config.backend, body, num_envs=num_envs, substeps=config.substeps, device=device, **config.backend_kwargs
    )
    rest_qpos = body.rest_qpos(backend.model)
    for clip in clips:
        check_quaternions(clip.qpos, backend.model, rest_qpos, f"clip {clip.name!r} of {config.clips!r}")
    tolerance = START_PENETRATION_TOLERANCE_M / body.length_unit_m
    starts = None if evaluation else [valid_starts(backend.model, clip.qpos, tolerance, rest_qpos) for clip in clips]
    dtype = backend.view.qpos.dtype
    info = body_info(config, backend.model, backend.device, dtype)
    term, params = action_term(config.action)
    actions = action_layout(info, term, config.fusimotor_action)
    return ImitationEnv(
        backend,
        ClipBank(clips, device=backend.device, seed=seed, dtype=dtype, valid_starts=starts),
        term_set(config, info, evaluation),
        action_map=term.make(backend.model, **params).to(device=backend.device, dtype=dtype),
        action_layout=actions,
        action_term={"name": term.name, **params},
        sequential_clips=evaluation,
        fusimotor_action=config.fusimotor_action,
        afferents=config.afferents if info.afferents else None,
        disturbances=None if evaluation else config.disturbances,
    )
