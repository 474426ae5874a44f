"""Record everything a controller and its body do while tracking clips, like an animal on a rig.

`record` runs a controller deterministically on every clip of a split (one env per clip,
from its first frame, never terminated) and returns a `Recording`: per control step
[B, T, ...] arrays of the observation, the action, every layer's output (forward hooks,
named by module path), the core's states and activity, the muscles' activation, force,
length and velocity, joint angles and velocities, joint torques from the actuators and
from inverse dynamics, contact forces on each body, the reference and the tracking
errors, each with its units. Save it as HDF5 (`Recording.save_h5`) or NWB
(`Recording.save_nwb`).

Quantities the simulator does not keep between steps (body positions, joint torques,
contact forces) are recomputed afterwards from the recorded states with MuJoCo on the
CPU (``mj_forward`` at each recorded state; ``mj_inverse`` with the joint acceleration
from central differences of the recorded joint velocities), so recording costs the
backend nothing.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import h5py
import mujoco
import numpy as np
import torch
from torch import nn

from neuromimic.envs import EnvConfig, ImitationEnv, make_env
from neuromimic.files import replaced_atomically
from neuromimic.models import Controller, load_controller, squash
from neuromimic.models.export import ControllerLoadError, controller_metadata
from neuromimic.proprioception import AFFERENT_CLASSES

FORMAT = "neuromimic-recording"
VERSION = 1


@dataclass
class Recording:
    """Arrays [B, T, ...] of one recorded run, with units and run attributes.

    Timing: step ``t`` covers the control step from ``t * dt`` to ``(t + 1) * dt``. What the
    controller saw and did (``observation``, ``action``, ``layers/*``, ``core/*``) and the
    external forces it met belong to the start of the step; the body (``joint/*``,
    ``muscle/*``, ``site/*``, ``body/*``), the reference and the tracking errors to its end,
    which `time` gives.

    Attributes:
        data: name -> array; names are paths such as ``"muscle/force"`` or
            ``"layers/core.layers.1"``. ``"valid"`` [B, T] marks the steps inside each
            clip (clips shorter than the longest are padded at their end).
            ``joint/inverse_dynamics_torque`` is the net generalised force that produces
            the finite-difference acceleration of the recorded velocities: it matches
            ``joint/actuator_torque`` (plus passive and constraint torques) to a few percent
            away from joint limits, and is unreliable within a step of an active limit
            (whose soft constraint acts as fast as the control step).
        units: name -> unit string of every array.
        attrs: ``body``, ``control_dt`` (s), ``clip_names``, ``joint_names``,
            ``muscle_names``, ``body_names``, ``site_names``, ``controller`` (its config).
    """

    data: dict[str, np.ndarray]
    units: dict[str, str]
    attrs: dict = field(default_factory=dict)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.data[name]

    @property
    def time(self) -> np.ndarray:
        """[T] time of each recorded step in s (its end; see the class docstring)."""
        steps = next(iter(self.data.values())).shape[1]
        return (np.arange(steps) + 1) * self.attrs["control_dt"]

    def save_h5(self, path: str | Path) -> Path:
        """Write one HDF5 dataset per array (``units`` attribute on each) and the run
        attributes as JSON on the root; written to a temporary file renamed into place."""
        path = Path(path)
        with replaced_atomically(path) as temporary, h5py.File(temporary, "w") as h5:
            h5.attrs["format"] = FORMAT
            h5.attrs["version"] = VERSION
            h5.attrs["attrs"] = json.dumps(self.attrs)
            for name, value in self.data.items():
                dataset = h5.create_dataset(name, data=value, compression="gzip", compression_opts=4)
                dataset.attrs["units"] = self.units[name]
        return path

    @classmethod
    def load_h5(cls, path: str | Path) -> Recording:
        """Read a file written by `save_h5`."""
        data, units = {}, {}
        with h5py.File(path, "r") as h5:
            if h5.attrs.get("format") != FORMAT:
                raise ValueError(f"{path} is not a neuromimic recording (no format={FORMAT!r} attribute)")
            attrs = json.loads(h5.attrs["attrs"])

            def visit(name: str, node) -> None:
                if isinstance(node, h5py.Dataset):
                    data[name] = node[()]
                    units[name] = str(node.attrs["units"])

            h5.visititems(visit)
        return cls(data, units, attrs)

    def save_nwb(self, path: str | Path, session_description: str = "neuromimic recording") -> Path:
        """Write an NWB file: one ``TimeSeries`` per array and env in a ``neuromimic``
        processing module (data [T, ...] of env ``b`` under ``<name>__env<b>``; names with
        ``/`` become ``__``), with units and timestamps; the run attributes as JSON in the
        file's ``notes``.

        Needs ``pynwb`` (``pip install pynwb``).
        """
        from datetime import datetime, timezone

        from pynwb import NWBHDF5IO, NWBFile, TimeSeries

        nwb = NWBFile(
            session_description=session_description,
            identifier=f"neuromimic-{self.attrs.get('body', 'body')}-{uuid.uuid4()}",
            session_start_time=datetime.now(timezone.utc),
            notes=json.dumps(self.attrs),  # names, layout, control step, controller config
        )
        module = nwb.create_processing_module("neuromimic", "controller and body recorded by neuromimic")
        for name, value in self.data.items():
            for env in range(value.shape[0]):
                module.add(
                    TimeSeries(
                        name=f"{name.replace('/', '__')}__env{env}",
                        data=value[env],
                        unit=self.units[name],
                        timestamps=self.time,
                        description=f"{name} of env {env} ({self.attrs['clip_names'][env]})",
                    )
                )
        path = Path(path)
        with replaced_atomically(path) as temporary, NWBHDF5IO(str(temporary), "w") as io:
            io.write(nwb)
        return path


def _is_layer(name: str, module: nn.Module) -> bool:
    """A module with no submodules but weight parametrisations (whose outputs are weights,
    not activity)."""
    if ".parametrizations" in name:
        return False
    return all(child == "parametrizations" for child, _ in module.named_children())


class _LayerTap:
    """Forward hooks on every submodule of a controller, keeping the last tensor outputs."""

    def __init__(self, controller: nn.Module) -> None:
        self.outputs: dict[str, torch.Tensor] = {}
        self._handles = [
            module.register_forward_hook(self._hook(name))
            for name, module in controller.named_modules()
            if name and _is_layer(name, module)
        ]

    def _hook(self, name: str) -> Callable:
        def hook(module, inputs, output) -> None:
            if isinstance(output, torch.Tensor):
                self.outputs[name] = output.detach()

        return hook

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


@torch.no_grad()
def record(
    controller: Controller,
    env: EnvConfig | ImitationEnv,
    split: str | None = "val",
    num_envs: int | None = None,
    steps: int | None = None,
) -> Recording:
    """Run ``controller`` deterministically on every clip of ``split`` and record it.

    Args:
        controller: a trained controller (`neuromimic.load_controller`).
        env: the env config of the run (its body, clips and task), or an env built with
            ``make_env(..., evaluation=True)``.
        split: clips to play when ``env`` is a config (``"val"``, ``"train"`` or ``None``
            for all).
        num_envs: bodies to simulate when ``env`` is a config; default one per clip.
        steps: control steps to record; default the longest clip's length - 1.

    Returns:
        The `Recording` (units in `Recording.units`).
    """
    if isinstance(env, EnvConfig):
        env = make_env(env, split=split, num_envs=num_envs, evaluation=True)
    if not env.sequential_clips:
        raise ValueError(
            "record needs an env made with make_env(..., evaluation=True) (one clip per env, from frame 0)"
        )
    problem = controller.spec.mismatch(env.controller_spec, env.backend.body.key)
    if problem:
        raise ControllerLoadError(f"{problem}: load the controller trained for this body and env config")
    was_training = controller.training
    steps = int(env.clips.length.max()) - 1 if steps is None else steps
    if steps < 2:
        raise ValueError(f"record needs at least 2 steps (accelerations are differences in time); got {steps}")
    controller = controller.to(env.device).eval()
    tap = _LayerTap(controller)
    frames: dict[str, list[torch.Tensor]] = {}

    def keep(name: str, value: torch.Tensor) -> None:
        frames.setdefault(name, []).append(value.detach().float().cpu().clone())

    try:
        td, state = env.reset(), None
        with env.stepping():
            for _ in range(steps):
                observation = td["observation"]
                valid = env.frame < env.clips.length[env.clip_index] - 1
                loc, _, state, activity = controller.step(observation, state, td["is_init"])
                action = squash(loc)
                td["action"] = action
                td = env.step(td)["next"]
                external_force = env.backend.external_force.clone()  # what the step applied
                sim, ref = env.backend.view, env.reference()
                keep("valid", valid)
                keep("body/external_force", external_force)
                keep("observation", observation)
                keep("action", action)
                for name, value in tap.outputs.items():
                    keep(f"layers/{name}", value)
                for name, value in activity.items():
                    keep(f"core/activity/{name}", value)
                for name, value in state.items():
                    keep(f"core/state/{name}", value)
                for name in (
                    "qpos",
                    "qvel",
                    "act",
                    "ctrl",
                    "actuator_length",
                    "actuator_velocity",
                    "actuator_force",
                    "site_pos_w",
                ):
                    keep(f"sim/{name}", getattr(sim, name))
                if env.afferent_rates is not None:  # afferents as they arrive, after their delays
                    for k, name in enumerate(AFFERENT_CLASSES):
                        keep(f"afferent/{name}", env.afferent_rates[:, k])
                keep("reference/qpos", ref.qpos)
                keep("reference/site_pos_w", ref.site_pos_w)
                for name, value in td["metrics"].items():
                    keep(f"metrics/{name}", value)
    finally:
        tap.remove()
        controller.train(was_training)
    data = {name: torch.stack(values, dim=1).numpy() for name, values in frames.items()}
    data["valid"] = data["valid"].astype(bool)
    model = copy.copy(env.backend.model)  # as simulated: body perturbations included
    data.update(_dynamics(model, data, env.backend.substeps * model.opt.timestep))
    recording = Recording(_rename(data), {}, _attributes(env, controller, model))
    recording.units = {name: _units(name) for name in recording.data}
    return recording


def _dynamics(model: mujoco.MjModel, data: dict[str, np.ndarray], dt: float) -> dict[str, np.ndarray]:
    """Body positions, joint torques and contact forces at every recorded state, from MuJoCo
    on the CPU (``mj_forward`` at the state; ``mj_inverse`` with the joint acceleration from
    central differences of the recorded velocities, one-sided at both ends)."""
    qpos, qvel, act, ctrl = (data[f"sim/{k}"].astype(np.float64) for k in ("qpos", "qvel", "act", "ctrl"))
    external = data["body/external_force"].astype(np.float64)
    qacc = np.gradient(qvel, dt, axis=1)  # [B, T, nv]
    num_envs, steps = qpos.shape[:2]
    out = {
        "body/xpos": np.zeros((num_envs, steps, model.nbody, 3)),
        "joint/actuator_torque": np.zeros((num_envs, steps, model.nv)),
        "joint/constraint_torque": np.zeros((num_envs, steps, model.nv)),
        "joint/inverse_dynamics_torque": np.zeros((num_envs, steps, model.nv)),
        "body/contact_force": np.zeros((num_envs, steps, model.nbody, 3)),
    }
    mj, wrench = mujoco.MjData(model), np.zeros(6)
    for b in range(num_envs):
        for t in range(steps):
            mj.qpos[:], mj.qvel[:], mj.act[:], mj.ctrl[:] = qpos[b, t], qvel[b, t], act[b, t], ctrl[b, t]
            mj.xfrc_applied[:] = external[b, t]
            mujoco.mj_forward(model, mj)
            out["body/xpos"][b, t] = mj.xpos
            out["joint/actuator_torque"][b, t] = mj.qfrc_actuator
            out["joint/constraint_torque"][b, t] = mj.qfrc_constraint
            for i, contact in enumerate(mj.contact[: mj.ncon]):
                mujoco.mj_contactForce(model, mj, i, wrench)
                force = contact.frame.reshape(3, 3).T @ wrench[:3]  # contact frame -> world
                # MuJoCo's contact force acts on geom2's body, its reaction on geom1's.
                out["body/contact_force"][b, t, model.geom_bodyid[contact.geom2]] += force
                out["body/contact_force"][b, t, model.geom_bodyid[contact.geom1]] -= force
            mj.qacc[:] = qacc[b, t]
            mujoco.mj_inverse(model, mj)
            out["joint/inverse_dynamics_torque"][b, t] = mj.qfrc_inverse
    return {k: v.astype(np.float32) for k, v in out.items()}


_RENAMES = {
    "sim/qpos": "joint/qpos",
    "sim/qvel": "joint/qvel",
    "sim/act": "muscle/activation",
    "sim/ctrl": "muscle/excitation",
    "sim/actuator_length": "muscle/length",
    "sim/actuator_velocity": "muscle/velocity",
    "sim/actuator_force": "muscle/force",
    "sim/site_pos_w": "site/pos",
}


def _rename(data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {_RENAMES.get(name, name): value for name, value in data.items()}


_UNITS = {
    "valid": "bool",
    "observation": "see attrs observation_layout",
    "action": "0..1, blocks in attrs action_layout (alpha excitation, then any gamma drive)",
    "afferent/Ia": "pps (spindle primary, after its conduction delay)",
    "afferent/II": "pps (spindle secondary, after its conduction delay)",
    "afferent/Ib": "pps (tendon organ, after its conduction delay)",
    "joint/qpos": "rad",
    "joint/qvel": "rad/s",
    "muscle/activation": "0..1",
    "muscle/excitation": "0..1",
    "muscle/length": "m",
    "muscle/velocity": "m/s",
    "muscle/force": "N (negative: pulling)",
    "site/pos": "m",
    "body/xpos": "m",
    "joint/actuator_torque": "N m",
    "joint/inverse_dynamics_torque": "N m (net generalised force for the finite-difference acceleration)",
    "body/contact_force": "N (net contact force on the body, world frame)",
    "body/external_force": "N, N m (force then torque applied at the body's CoM, world frame)",
    "joint/constraint_torque": "N m (joint limits and other constraints)",
    "reference/qpos": "rad",
    "reference/site_pos_w": "m",
    "metrics/site_pos_error_mm": "mm",
    "metrics/joint_pos_error_deg": "deg",
    "metrics/unstable": "bool (1: the physics went unstable)",
}


def _units(name: str) -> str:
    if name in _UNITS:
        return _UNITS[name]
    if name.startswith(("layers/", "core/")):
        return "a.u. (network units)"
    if name.startswith("metrics/"):
        return "reward term (unitless)"
    raise KeyError(f"no unit for recorded array {name!r}")


def _attributes(env: ImitationEnv, controller: Controller, model: mujoco.MjModel) -> dict:
    names = lambda kind, n: [mujoco.mj_id2name(model, kind, i) for i in range(n)]
    clip_count = env.clips.num_clips
    return {
        "body": env.backend.body.key,
        "control_dt": env.backend.substeps * model.opt.timestep,
        "clip_names": [env.clips.names[int(i) % clip_count] for i in env.clip_index.cpu()],
        "joint_names": names(mujoco.mjtObj.mjOBJ_JOINT, model.njnt),
        "muscle_names": names(mujoco.mjtObj.mjOBJ_ACTUATOR, model.nu),
        "body_names": names(mujoco.mjtObj.mjOBJ_BODY, model.nbody),
        "site_names": list(env.clips.site_names),
        "observation_layout": [list(block) for block in env.observation_layout],
        "action_layout": [list(block) for block in env.action_layout],
        "controller": controller.config(),
        "terms": env.terms.describe(),
        "action_term": dict(env.action_term),
    }


def load_controller_and_env(source: str | Path) -> tuple[Controller, EnvConfig]:
    """The controller of a checkpoint of ``neuromimic fit`` or of an export directory, and the
    env config it was trained in.

    Raises:
        ControllerLoadError: the file says nothing of its env, or says it malformed.
    """
    controller = load_controller(source)
    env = controller_metadata(source).get("env")
    if env is None:
        raise ControllerLoadError(
            f"{source} does not say which env it was trained in (no 'env' metadata); re-export it"
        )
    try:
        return controller, EnvConfig.from_dict(env)
    except (TypeError, KeyError) as error:
        raise ControllerLoadError(f"{source}: malformed 'env' metadata ({error}); re-export it") from None


def record_checkpoint(
    ckpt: str, output: str, split: Literal["val", "train", "all"] = "val", steps: int | None = None
) -> dict:
    """Run a trained controller on every clip of a split and save everything it and its body did.

    Args:
        ckpt: a checkpoint of neuromimic fit, or an export directory.
        output: rollout.h5 (HDF5) or rollout.nwb (NWB).
        split: clips to play: val, train or all.
        steps: control steps (default: the longest clip).

    Returns:
        ``{"output": path written, "arrays": {name: shape}}``.
    """
    controller, env = load_controller_and_env(ckpt)
    recording = record(controller, env, split=None if split == "all" else split, steps=steps)
    path = Path(output)
    written = recording.save_nwb(path) if path.suffix == ".nwb" else recording.save_h5(path)
    return {"output": str(written), "arrays": {k: list(v.shape) for k, v in recording.data.items()}}
