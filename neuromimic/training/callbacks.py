"""Lightning callbacks of the training runs."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from neuromimic.errors import ConfigError

log = logging.getLogger(__name__)


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


class UnstableBodyDump(L.Callback):
    """Debug mode for physics that blows up: dump each training body that turns unstable.

    Keeps the last ``history`` control steps of every training body (start state, controls,
    external forces); when a step leaves a body unstable (NaN or Inf, a runaway joint
    speed, MuJoCo's reset after a bad acceleration), writes that body's steps since its
    episode began and the model as simulated (`neuromimic.physics.replay.save_dump`) and
    logs the command that replays them::

        neuromimic fit --config configs/x.yaml --trainer.callbacks+=neuromimic.training.callbacks.UnstableBodyDump
        python -m neuromimic.physics.replay lightning_logs/version_0/unstable_bodies/step120_envstep1930_body3.npz

    It costs a copy of every body's state per control step and reads the unstable flags on
    the host after each step (a GPU synchronisation): leave it out of runs that need speed.

    Args:
        directory: where the dumps go; default ``<the run's log dir>/unstable_bodies``.
        history: control steps kept per body.
        max_dumps: dumps written in all (later unstable bodies are counted, not written;
            the count is logged when training ends).
    """

    def __init__(self, directory: str | None = None, history: int = 16, max_dumps: int = 10) -> None:
        if history < 1 or max_dumps < 1:
            raise ConfigError(f"UnstableBodyDump history and max_dumps must be >= 1; got {history}, {max_dumps}")
        self.directory = directory
        self.history = history
        self.max_dumps = max_dumps
        self.dumps: list[Path] = []
        self.not_dumped = 0
        self._env_steps = 0
        self._trainer: L.Trainer | None = None
        self._steps: list[dict[str, torch.Tensor]] = []
        self._start: dict[str, torch.Tensor] = {}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._trainer = trainer
        env = pl_module.train_env
        env.before_step.append(self._keep_start)
        env.after_step.append(self._check_step)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        env = pl_module.train_env
        env.before_step.remove(self._keep_start)
        env.after_step.remove(self._check_step)
        if self.not_dumped:
            log.warning(
                "UnstableBodyDump: %d more unstable bodies were not dumped (max_dumps=%d)",
                self.not_dumped,
                self.max_dumps,
            )

    def _keep_start(self, env) -> None:
        view = env.backend.view
        self._start = {
            "qpos": view.qpos.clone(),
            "qvel": view.qvel.clone(),
            "act": view.act.clone(),
            "time": view.time.clone(),
            "frame": env.frame.clone(),
        }

    def _check_step(self, env) -> None:
        view = env.backend.view
        self._steps.append(
            {**self._start, "ctrl": view.ctrl.clone(), "external_force": env.backend.external_force.clone()}
        )
        del self._steps[: -self.history]
        self._env_steps += 1
        bodies = torch.nonzero(view.unstable).flatten().tolist()  # a host read: debug mode only
        for body in bodies:
            if len(self.dumps) < self.max_dumps:
                self._dump(env, view, body)
            else:
                self.not_dumped += 1

    def _dump(self, env, view, body: int) -> None:
        from neuromimic.physics.replay import save_dump

        steps = self._steps
        first = len(steps) - 1  # the steps of this body's current episode: consecutive frames
        while first > 0 and int(steps[first - 1]["frame"][body]) == int(steps[first]["frame"][body]) - 1:
            first -= 1
        kept = steps[first:]

        def stacked(name: str):
            return torch.stack([step[name][body] for step in kept]).cpu().numpy()

        arrays = {name: stacked(name) for name in ("qpos", "qvel", "act", "time", "ctrl", "external_force")}
        arrays |= {f"final_{name}": getattr(view, name)[body].cpu().numpy() for name in ("qpos", "qvel", "act")}
        trainer = self._trainer
        directory = Path(self.directory or Path(trainer.log_dir or ".") / "unstable_bodies")
        stem = directory / f"step{trainer.global_step}_envstep{self._env_steps}_body{body}"
        notes = {
            "body": env.backend.body.key,
            "env_index": body,
            "global_step": trainer.global_step,
            "backend": type(env.backend).__name__,
        }
        path = save_dump(stem, env.backend.model, arrays, env.backend.substeps, notes)
        self.dumps.append(path)
        log.warning(
            "body %d went unstable at optimiser step %d; its last %d control steps are in %s. "
            "Replay them: python -m neuromimic.physics.replay %s",
            body,
            trainer.global_step,
            len(kept),
            path,
            path,
        )
