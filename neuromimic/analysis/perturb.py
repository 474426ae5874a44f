"""Perturbations of a controller and its body, as context managers that undo exactly.

Inside the block the experiment runs perturbed; on exit every touched value is put back
as it was, so the outputs afterwards are bitwise equal to those before (tested).

Controller side (any core; units are the core's units: rates of a `RateRNNCore`, hidden
units of a GRU/LSTM, the last hidden layer of an MLP):

- `silence_units` / `clamp_units`: hold chosen units' activity at 0 / a value;
- `inject_current`: add a current to chosen units' drive (`RateRNNCore`);
- `remove_sensory`: feedback elimination, named observation blocks held at their mean;
- `sensory_noise`: Gaussian noise on named observation blocks (normalised units);
- `sensory_delay`: named observation blocks arrive some milliseconds late;
- `scale_time_constants`: multiply the time constants of a `RateRNNCore`.

Body side (both backends):

- `weaken_muscles`: scale the peak isometric force of chosen muscles (by name, muscle
  group or name pattern: `select_muscles`);
- `scale_body_mass`: scale the mass and inertia of chosen bodies;
- `scale_segment_length`: lengthen or shorten chosen segments;
- `force_pulse`: push a named body with a force during a time window of each episode.

Units are chosen with `select_units`: indices, a fraction drawn with a seed, or the
``"excitatory"`` / ``"inhibitory"`` population of a Dale's-law core.
"""

from __future__ import annotations

import contextlib
import fnmatch
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

import mujoco
import torch
import yaml

from neuromimic.analysis.record import Recording, load_controller_and_env, record
from neuromimic.envs import ImitationEnv, make_env
from neuromimic.errors import InputError
from neuromimic.models import Controller
from neuromimic.models.base import UnitPerturbation
from neuromimic.models.rate_rnn import RateRNNCore, delay_steps
from neuromimic.physics import Backend

Units = Sequence[int] | float | str


class PerturbationError(InputError, TypeError):
    """A perturbation that cannot apply as given (unknown name, muscle, unit or argument, or
    a controller without what it acts on); the message names what is wrong."""


def select_units(controller: Controller, units: Units, seed: int = 0) -> torch.Tensor:
    """[n] bool mask of the core's units.

    Args:
        controller: the controller whose core's units are chosen.
        units: indices; a fraction in (0, 1) drawn uniformly with ``seed``; or
            ``"excitatory"`` / ``"inhibitory"`` (a `RateRNNCore` with Dale's law).
    """
    core = controller.core
    size = core.output_size
    mask = torch.zeros(size, dtype=torch.bool)
    if isinstance(units, str):
        sign = getattr(core, "recurrent", None) and getattr(core.recurrent, "parametrizations", None)
        if units not in ("excitatory", "inhibitory") or not sign:
            raise PerturbationError(
                f"units={units!r}: populations need a RateRNNCore with Dale's law; otherwise give indices or a fraction"
            )
        signs = core.recurrent.parametrizations.weight[0].sign
        if signs is None:
            raise PerturbationError("this RateRNNCore has no Dale's law (excitatory_fraction is None)")
        mask = (signs > 0) if units == "excitatory" else (signs < 0)
    elif isinstance(units, float):
        if not 0.0 < units < 1.0:
            raise PerturbationError(f"a fraction of units must be in (0, 1); got {units}")
        order = torch.randperm(size, generator=torch.Generator().manual_seed(seed))
        mask[order[: round(units * size)]] = True
    else:
        if isinstance(units, int) or any(isinstance(u, bool) for u in units):
            raise PerturbationError(f"units must be a list of indices, a fraction or a population; got {units!r}")
        index = torch.as_tensor(list(units), dtype=torch.long)
        if index.numel() and (index.min() < 0 or index.max() >= size):
            raise PerturbationError(f"unit indices must be in [0, {size}); got {list(units)}")
        mask[index] = True
    return mask.to(controller.log_std.device)


@contextlib.contextmanager
def _unit_perturbation(controller: Controller, perturbation: UnitPerturbation) -> Iterator[None]:
    core = controller.core
    if core.unit_perturbation is not None:
        raise RuntimeError(
            "the core's units are already held by another unit perturbation (silence, clamp or "
            "inject); one at a time: combine the units into one call instead"
        )
    core.unit_perturbation = perturbation
    try:
        yield
    finally:
        core.unit_perturbation = None


def clamp_units(controller: Controller, units: Units, value: float, seed: int = 0):
    """Hold the activity of chosen units at ``value`` (a context manager)."""
    mask = select_units(controller, units, seed)
    return _unit_perturbation(
        controller, UnitPerturbation(mask, torch.full(mask.shape, float(value), device=mask.device))
    )


def silence_units(controller: Controller, units: Units, seed: int = 0):
    """Silence chosen units: their activity is 0 for the core and the readout (a context manager)."""
    return clamp_units(controller, units, 0.0, seed)


def inject_current(controller: Controller, units: Units, current: float, seed: int = 0):
    """Add ``current`` to the drive ``W r + U x + b`` of chosen units of a `RateRNNCore`
    (a context manager)."""
    if not isinstance(controller.core, RateRNNCore):
        raise PerturbationError(
            f"inject_current needs a RateRNNCore; this controller's core is {type(controller.core).__name__}"
        )
    mask = select_units(controller, units, seed)
    none = torch.zeros(mask.shape, dtype=torch.bool, device=mask.device)
    return _unit_perturbation(
        controller, UnitPerturbation(none, torch.zeros(mask.shape, device=mask.device), mask.float() * float(current))
    )


def _observation_columns(controller: Controller, blocks: Sequence[str] | None) -> torch.Tensor:
    """[D] bool mask of the observation blocks whose names start with one of ``blocks``."""
    slices = controller.spec.observation_slices()
    names = list(slices) if blocks is None else [n for n in slices if n.startswith(tuple(blocks))]
    if not names:
        raise PerturbationError(f"no observation block starts with {list(blocks)}; blocks: {list(slices)}")
    mask = torch.zeros(controller.observation_size, dtype=torch.bool)
    for name in names:
        mask[slices[name]] = True
    return mask.to(controller.log_std.device)


@contextlib.contextmanager
def _observation_hook(controller: Controller, change) -> Iterator[None]:
    handle = controller.obs_norm.register_forward_hook(lambda module, inputs, output: change(output))
    try:
        yield
    finally:
        handle.remove()


def remove_sensory(controller: Controller, blocks: Sequence[str]):
    """Feedback elimination: the named observation blocks (name prefixes, e.g.
    ``["muscle_length", "muscle_velocity"]`` for spindle-like feedback) reach the
    controller at their running mean, i.e. carry no information (a context manager)."""
    mask = _observation_columns(controller, blocks)
    return _observation_hook(controller, lambda x: x.masked_fill(mask, 0.0))


def sensory_noise(controller: Controller, std: float, blocks: Sequence[str] | None = None, seed: int = 0):
    """Add Gaussian noise of ``std`` (in normalised observation units) to the named blocks
    (all when None), drawn from a generator seeded with ``seed`` (a context manager)."""
    mask = _observation_columns(controller, blocks)
    generator = torch.Generator(device=mask.device).manual_seed(seed)

    def noisy(x: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return x + std * noise * mask

    return _observation_hook(controller, noisy)


@contextlib.contextmanager
def sensory_delay(controller: Controller, delay_ms: float, blocks: Sequence[str] | None = None) -> Iterator[None]:
    """Delay the named observation blocks (all when None) by ``delay_ms`` (a multiple of the
    control step) on their way to the controller (a context manager).

    For step-by-step use only (`neuromimic.analysis.record`, your own closed loop; not for
    training, whose sequence replays would read the collection's delay line): the line
    lives in this context, one row per env; at an episode start (``is_init``) a row is
    filled with the first observation, so no information crosses episodes.
    """
    steps = delay_steps(delay_ms, controller.spec.control_dt, "delay_ms")
    mask = _observation_columns(controller, blocks)
    line: torch.Tensor | None = None  # [B, steps, D], oldest first
    shadowed = controller.__dict__.get("step")  # an enclosing sensory_delay, if any
    inner = controller.step

    def delayed_step(observation, state=None, is_init=None, noise=None):
        nonlocal line
        if steps == 0:
            return inner(observation, state, is_init, noise)
        if line is None or line.shape[0] != observation.shape[0]:
            line = observation[:, None].repeat(1, steps, 1)
        elif is_init is not None:
            start = is_init.reshape(-1, 1, 1)
            line = torch.where(start, observation[:, None].expand_as(line), line)
        delayed = torch.where(mask, line[:, 0], observation)
        line = torch.cat([line[:, 1:], observation[:, None]], dim=1)
        return inner(delayed, state, is_init, noise)

    controller.step = delayed_step  # the instance attribute shadows the method
    try:
        yield
    finally:
        if shadowed is None:
            del controller.step
        else:
            controller.step = shadowed


@contextlib.contextmanager
def scale_time_constants(
    controller: Controller, factor: float, units: Units | None = None, seed: int = 0
) -> Iterator[None]:
    """Multiply the time constants of a `RateRNNCore` (all units, or chosen ones) by ``factor``."""
    core = controller.core
    if not isinstance(core, RateRNNCore):
        raise PerturbationError(
            f"scale_time_constants needs a RateRNNCore; this controller's core is {type(core).__name__}"
        )
    if not factor > 0:
        raise PerturbationError(f"time constants must stay positive: factor must be > 0; got {factor}")
    mask = torch.ones(core.output_size, dtype=torch.bool) if units is None else select_units(controller, units, seed)
    saved = core.log_tau.detach().clone()
    with torch.no_grad():
        core.log_tau.add_(mask.to(saved.device) * math.log(factor))
    try:
        yield
    finally:
        with torch.no_grad():
            core.log_tau.copy_(saved)


def _body_backend(env: ImitationEnv | Backend) -> Backend:
    """The physics backend of an env (or the backend itself)."""
    if isinstance(env, ImitationEnv):
        return env.backend
    if isinstance(env, Backend):
        return env
    raise TypeError(f"body perturbations need an ImitationEnv or a physics Backend; got {type(env).__name__}")


def _ids(model: mujoco.MjModel, kind: mujoco.mjtObj, names: Sequence[str]) -> list[int]:
    """Model ids of named objects (muscles: ``mjOBJ_ACTUATOR``, bodies: ``mjOBJ_BODY``)."""
    ids = [mujoco.mj_name2id(model, kind, name) for name in names]
    unknown = [name for name, i in zip(names, ids, strict=True) if i < 0]
    if unknown:
        count = model.nu if kind == mujoco.mjtObj.mjOBJ_ACTUATOR else model.nbody
        known = [mujoco.mj_id2name(model, kind, i) for i in range(count)]
        what = "muscle" if kind == mujoco.mjtObj.mjOBJ_ACTUATOR else "body"
        raise PerturbationError(f"unknown {what} names {unknown}; known: {known}")
    return ids


@contextlib.contextmanager
def _scaled_model(backend, changes: list[tuple[str, tuple, float]]) -> Iterator[None]:
    """Multiply model entries ``(field, index, factor)``; restore the fields on exit."""
    model = backend.model
    saved = {name: getattr(model, name).copy() for name, *_ in changes}
    try:
        for name, index, factor in changes:
            if not factor >= 0:
                raise PerturbationError(f"scale factors must be >= 0; got {factor} for {name}")
            getattr(model, name)[index] *= factor
        backend.model_changed()
        yield
    finally:
        for name, value in saved.items():
            getattr(model, name)[:] = value
        backend.model_changed()


def select_muscles(
    model: mujoco.MjModel, selection: str | Sequence[str], groups: dict[str, Sequence[str]] | None = None
) -> list[int]:
    """Actuator ids [n] of the muscles a selection names, in model order.

    Args:
        model: the compiled model.
        selection: one entry or a list of them; each entry is a muscle (actuator) name, a
            muscle group of the body (`Body.muscle_groups`, e.g. ``"ankle_plantarflexors_r"``
            or ``"legs"``), or an `fnmatch` pattern over the muscles' names (``"*_r"``,
            ``"gas*"``; case-sensitive).
        groups: the body's muscle groups, group name -> actuator names.

    Raises:
        PerturbationError: an entry that names no muscle (unknown names, or patterns that
            match none), or an exact name of an actuator that is not a muscle; the message
            names each.
    """
    groups = groups or {}
    entries = [selection] if isinstance(selection, str) else list(selection)
    names = [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_ACTUATOR, i) or "" for i in range(model.nu)]
    muscle = model.actuator_gaintype == mujoco.mjtGain.mjGAIN_MUSCLE
    index = {name: i for i, name in enumerate(names) if name}
    chosen: set[int] = set()
    unknown, unmatched, not_muscles = [], [], []
    for entry in entries:
        if not isinstance(entry, str):
            raise PerturbationError(f"muscles are chosen by name, group or pattern (strings); got {entry!r}")
        if entry in index:
            if muscle[index[entry]]:
                chosen.add(index[entry])
            else:
                not_muscles.append(entry)
        elif entry in groups:
            members = [index.get(name, -1) for name in groups[entry]]
            missing = [name for name, i in zip(groups[entry], members, strict=True) if i < 0]
            if missing:
                raise PerturbationError(f"muscle group {entry!r} names actuators the model lacks: {missing}")
            not_muscles += [name for name, i in zip(groups[entry], members, strict=True) if not muscle[i]]
            chosen.update(i for i in members if muscle[i])
        elif any(character in entry for character in "*?["):
            matched = [i for i, name in enumerate(names) if muscle[i] and fnmatch.fnmatchcase(name, entry)]
            if not matched:
                unmatched.append(entry)
            chosen.update(matched)
        else:
            unknown.append(entry)
    problems = []
    if unknown:
        shown = [name for i, name in enumerate(names) if muscle[i]]
        listed = shown if len(shown) <= 80 else [*shown[:80], f"... ({len(shown)} muscles)"]
        problems.append(f"unknown muscle names {unknown}; known: {listed}; groups: {sorted(groups)}")
    if unmatched:
        problems.append(f"muscle name patterns {unmatched} match no muscle")
    if not_muscles:
        problems.append(f"weaken_muscles scales MuJoCo muscles; {not_muscles} are other actuators")
    if problems:
        raise PerturbationError("; ".join(problems))
    return sorted(chosen)


def weaken_muscles(
    env,
    scales: dict[str, float] | None = None,
    muscles: str | Sequence[str] | None = None,
    factor: float | None = None,
):
    """Scale the peak isometric force of chosen muscles, active and passive alike, as in
    impaired gait studies (a context manager).

    Muscles are chosen as `select_muscles` reads them: by name, by the body's muscle group
    or by an `fnmatch` pattern. Either ``scales`` gives a factor per entry, or ``muscles``
    (one entry or a list) share one ``factor``; one YAML line either way::

        - weaken_muscles: {scales: {ankle_plantarflexors_r: 0.3}}   # a group of the body
        - weaken_muscles: {muscles: "*_r", factor: 0.5}               # a pattern
        - weaken_muscles: {muscles: [gasmed_r, gaslat_r, soleus_r], factor: 0.3}

    Args:
        env: an `ImitationEnv` (or its backend).
        scales: muscle name, group or pattern -> factor on the maximum force
            (``{"Biceps_Long": 0.5}``).
        muscles: muscle names, groups or patterns scaled by ``factor``.
        factor: the factor of ``muscles`` (>= 0).

    Raises:
        PerturbationError: both or neither of ``scales`` and ``muscles``; an entry that
            names no muscle; a muscle chosen by two entries of ``scales``.
    """
    if (scales is None) == (muscles is None) or (muscles is not None and factor is None):
        raise PerturbationError(
            "weaken_muscles takes either scales {muscle, group or pattern: factor} or muscles [...] with a factor"
        )
    backend = _body_backend(env)
    model = backend.model
    groups = dict(backend.body.muscle_groups)
    if muscles is not None:
        scales = {"muscles": factor}
        selected = {"muscles": select_muscles(model, muscles, groups)}
    else:
        selected = {entry: select_muscles(model, entry, groups) for entry in scales}
    owner: dict[int, str] = {}
    for entry, ids in selected.items():
        for i in ids:
            if i in owner:
                raise PerturbationError(
                    f"muscle {model.actuator(i).name!r} is chosen by both {owner[i]!r} and {entry!r}; "
                    "give each muscle one factor"
                )
            owner[i] = entry
    # Muscle parameters: [range0, range1, force, scale, ...] for the active (gain) and passive
    # (bias) force alike. An explicit force F0 sits at index 2; a negative one means MuJoCo
    # derives F0 from `scale` (index 3), so that is what scales.
    changes = []
    for entry, ids in selected.items():
        for i in ids:
            column = 2 if model.actuator_gainprm[i, 2] > 0 else 3
            changes += [(field, (i, column), scales[entry]) for field in ("actuator_gainprm", "actuator_biasprm")]
    return _scaled_model(backend, changes)


def scale_body_mass(env, scales: dict[str, float]):
    """Scale the mass and rotational inertia of the named bodies (``{"ulna": 1.5}``; a
    context manager). Env and backend as in `weaken_muscles`. Quantities MuJoCo compiled
    from the masses (``body_subtreemass``, ``dof_invweight0``, ``actuator_acc0``) keep their
    values: they shape constraint softness and scale-derived muscle forces, not dynamics."""
    backend = _body_backend(env)
    ids = _ids(backend.model, mujoco.mjtObj.mjOBJ_BODY, list(scales))
    massless = [name for name, i in zip(scales, ids, strict=True) if backend.model.body_mass[i] == 0]
    if massless:
        raise PerturbationError(f"bodies {massless} have no mass to scale")
    changes = [
        (field, (i,), factor)
        for i, factor in zip(ids, scales.values(), strict=True)
        for field in ("body_mass", "body_inertia")
    ]
    return _scaled_model(backend, changes)


def scale_segment_length(env, scales: dict[str, float]):
    """Lengthen or shorten the named segments (``{"radius": 1.2}``; a context manager).

    Everything placed in a segment's frame moves with it: the positions of its child
    bodies, geoms, sites (muscle attachment and via points included) and its centre of
    mass are scaled, and so are the half-lengths of its capsule and cylinder geoms. Radii,
    mass and inertia stay, and so do quantities MuJoCo compiled from the geometry: the
    muscles' length ranges (their optimal fibre lengths: a longer bone stretches them),
    tendon rest lengths and collision bounding volumes. Env and backend as in
    `weaken_muscles`.
    """
    backend = _body_backend(env)
    model = backend.model
    changes = []
    for i, factor in zip(_ids(model, mujoco.mjtObj.mjOBJ_BODY, list(scales)), scales.values(), strict=True):
        if i == 0:
            raise PerturbationError("the world body is not a segment")
        changes.append(("body_ipos", (i,), factor))
        changes += [
            ("body_pos", (child,), factor)
            for child in range(model.nbody)
            if child != i and model.body_parentid[child] == i
        ]
        changes += [("geom_pos", (g,), factor) for g in range(model.ngeom) if model.geom_bodyid[g] == i]
        changes += [("site_pos", (k,), factor) for k in range(model.nsite) if model.site_bodyid[k] == i]
        elongated = (mujoco.mjtGeom.mjGEOM_CAPSULE, mujoco.mjtGeom.mjGEOM_CYLINDER)
        changes += [
            ("geom_size", (g, 1), factor)
            for g in range(model.ngeom)
            if model.geom_bodyid[g] == i and model.geom_type[g] in elongated
        ]
    return _scaled_model(backend, changes)


@contextlib.contextmanager
def force_pulse(
    env,
    body: str,
    force: Sequence[float],
    start_s: float,
    duration_s: float,
    torque: Sequence[float] = (0.0, 0.0, 0.0),
) -> Iterator[None]:
    """Push a named body with a constant force (and torque) during a window of each episode.

    The pulse acts on every control step that starts within ``[start_s, start_s +
    duration_s)`` of the clip's first frame (ends rounded to whole control steps), at the
    body's centre of mass, in the world frame (MuJoCo's ``xfrc_applied``); pulses on one
    body add up.

    Args:
        env: an `ImitationEnv`.
        body: body name (e.g. ``"radius"``).
        force: [3] force in N.
        start_s: pulse onset in s after the clip's first frame.
        duration_s: pulse length in s.
        torque: [3] torque in N m.
    """
    if len(force) != 3 or len(torque) != 3:
        raise PerturbationError(f"force and torque need 3 components each; got {list(force)} and {list(torque)}")
    if not isinstance(env, ImitationEnv):
        raise TypeError("force_pulse needs an ImitationEnv (it acts before each of the env's steps)")
    backend = _body_backend(env)
    (index,) = _ids(backend.model, mujoco.mjtObj.mjOBJ_BODY, [body])
    dt = backend.substeps * backend.model.opt.timestep
    # Whole control steps, so float rounding cannot move the window's ends.
    first = math.ceil(start_s / dt - 1e-9)
    end = math.ceil((start_s + duration_s) / dt - 1e-9)
    external = backend.external_force
    wrench = torch.tensor([*force, *torque], dtype=external.dtype, device=external.device)
    applied = torch.zeros_like(external[:, index])  # this pulse's share of the body's force

    def push(current) -> None:  # on the device, no host synchronisation
        nonlocal applied
        active = (current.frame >= first) & (current.frame < end)
        now = torch.where(active[:, None], wrench, torch.zeros_like(wrench))
        external[:, index] += now - applied  # other pulses on this body keep their share
        applied = now

    env.before_step.append(push)
    try:
        yield
    finally:
        env.before_step.remove(push)
        external[:, index] -= applied


#: Perturbations by name, for YAML files: ``{name: keyword arguments}``.
PERTURBATIONS = {
    "silence_units": (silence_units, "controller"),
    "clamp_units": (clamp_units, "controller"),
    "inject_current": (inject_current, "controller"),
    "remove_sensory": (remove_sensory, "controller"),
    "sensory_noise": (sensory_noise, "controller"),
    "sensory_delay": (sensory_delay, "controller"),
    "scale_time_constants": (scale_time_constants, "controller"),
    "weaken_muscles": (weaken_muscles, "env"),
    "scale_body_mass": (scale_body_mass, "env"),
    "scale_segment_length": (scale_segment_length, "env"),
    "force_pulse": (force_pulse, "env"),
}


def apply(perturbations: Sequence[dict], controller: Controller, env) -> contextlib.ExitStack:
    """Enter every perturbation of a list such as a YAML file gives, in order::

        - silence_units: {units: inhibitory}
        - weaken_muscles: {scales: {Biceps_Long: 0.5}}

    Returns:
        An `contextlib.ExitStack` to use in a ``with`` block (undone in reverse order).
    """
    stack = contextlib.ExitStack()
    try:
        for entry in perturbations:
            if not isinstance(entry, dict) or len(entry) != 1:
                raise PerturbationError(f"each perturbation is one {{name: arguments}} mapping; got {entry!r}")
            ((name, kwargs),) = entry.items()
            if name not in PERTURBATIONS:
                raise PerturbationError(f"unknown perturbation {name!r}; known: {sorted(PERTURBATIONS)}")
            function, target = PERTURBATIONS[name]
            stack.enter_context(function(controller if target == "controller" else env, **(kwargs or {})))
    except BaseException:
        stack.close()
        raise
    return stack


def perturbation_report(ckpt: str, perturbation: str, split: Literal["val", "train", "all"] = "val") -> dict:
    """Tracking error and muscle activity of a trained controller with and without perturbations.

    Args:
        ckpt: a checkpoint of neuromimic fit, or an export directory.
        perturbation: YAML file holding a list of {name: arguments} (`apply`).
        split: clips to play: val, train or all.

    Returns:
        ``{"perturbations", "baseline", "perturbed"}``, each recording summarised as its
        site error (mm), joint error (degrees), total and per-muscle mean activation.
    """
    controller, config = load_controller_and_env(ckpt)
    try:
        perturbations = yaml.safe_load(Path(perturbation).read_text())
    except (OSError, yaml.YAMLError) as error:
        raise InputError(f"cannot read the perturbation file {perturbation}: {error}") from None
    if not isinstance(perturbations, list):
        raise InputError(f"{perturbation} must hold a YAML list of {{name: arguments}} entries")
    env = make_env(config, split=None if split == "all" else split, evaluation=True)
    baseline = record(controller, env)
    with apply(perturbations, controller, env):
        perturbed = record(controller, env)
    return {
        "perturbations": perturbations,
        "baseline": _activity_summary(baseline),
        "perturbed": _activity_summary(perturbed),
    }


def _activity_summary(recording: Recording) -> dict:
    valid = recording["valid"]
    activation = recording["muscle/activation"][valid]
    return {
        "site_error_mm": float(recording["metrics/site_pos_error_mm"][valid].mean()),
        "joint_error_deg": float(recording["metrics/joint_pos_error_deg"][valid].mean()),
        "total_activation": float(activation.sum(axis=1).mean()),
        "mean_activation": dict(
            zip(recording.attrs["muscle_names"], activation.mean(axis=0).round(5).tolist(), strict=True)
        ),
    }
