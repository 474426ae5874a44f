"""Lightning callbacks that tests pass to ``neuromimic fit`` by class path to look inside a run."""

import os
import signal
from pathlib import Path

import lightning as L
import torch


class DumpWeights(L.Callback):
    """On fit end, save ``rank<r>.pt``: initial and final weights and this rank's clip seed."""

    def __init__(self, directory: str) -> None:
        self.directory = Path(directory)
        self.initial: dict[str, torch.Tensor] = {}

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.initial = {k: v.detach().clone() for k, v in module.controller.state_dict().items()}

    def on_fit_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        torch.save(
            {
                "initial": self.initial,
                "weights": {k: v.detach().cpu() for k, v in module.controller.state_dict().items()},
                "clip_seed": module.train_env.clips.generator.initial_seed(),
                "world_size": trainer.world_size,
                "pid": os.getpid(),
            },
            self.directory / f"rank{trainer.global_rank}.pt",
        )


class RecordStartState(L.Callback):
    """At train start (after a checkpoint is restored, before the module resets its envs),
    save the states a resume must restore to ``<directory>/start_state.pt``."""

    def __init__(self, directory: str) -> None:
        self.directory = Path(directory)

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        optimizer_state = trainer.optimizers[0].state_dict()["state"]
        self.directory.mkdir(parents=True, exist_ok=True)
        torch.save(
            {
                "global_step": trainer.global_step,
                "obs_norm": {k: v.clone() for k, v in module.controller.obs_norm.state_dict().items()},
                "clip_rng": module.train_env.clips.generator.get_state().clone(),
                "shuffle_rng": module._shuffle.get_state().clone(),
                "torch_rng": torch.get_rng_state().clone(),
                "adam_exp_avg": optimizer_state[0]["exp_avg"].clone() if optimizer_state else None,
                "weights": {k: v.clone() for k, v in module.controller.state_dict().items()},
            },
            self.directory / "start_state.pt",
        )


class InjectNaN(L.Callback):
    """Before every optimiser step, corrupt body 0's simulator state with NaN."""

    def on_train_batch_start(self, trainer: L.Trainer, module: L.LightningModule, batch, batch_idx: int) -> None:
        backend = module.train_env.backend
        view = backend.view
        qpos = view.qpos.clone()
        qpos[0] = float("nan")
        mask = torch.zeros(backend.num_envs, dtype=torch.bool)
        mask[0] = True
        backend.reset(mask, qpos, view.qvel.clone(), view.act.clone())


class KillAt(L.Callback):
    """Kill this process with SIGKILL (no cleanup, no checkpoint) when an optimiser step
    is about to start at ``global_step == step``: a pre-empted node, a crash, ``kill -9``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer: L.Trainer, module: L.LightningModule, batch, batch_idx: int) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class SignalAt(L.Callback):
    """Send this process signal ``name`` (SIGTERM: a scheduler pre-empting a job; SIGUSR1:
    SLURM's warning before a time limit) when an optimiser step is about to start at
    ``global_step == step``."""

    def __init__(self, step: int, name: str = "SIGTERM") -> None:
        self.step = step
        self.signal = getattr(signal, name)

    def on_train_batch_start(self, trainer: L.Trainer, module: L.LightningModule, batch, batch_idx: int) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signal)


class PushBody(L.Callback):
    """From optimiser step ``step`` on, push training body 0 with ``force`` N along x at
    its root (an external force no body survives: its physics blows up)."""

    def __init__(self, step: int, force: float = 1e9) -> None:
        self.step = step
        self.force = force

    def on_train_batch_start(self, trainer: L.Trainer, module: L.LightningModule, batch, batch_idx: int) -> None:
        if trainer.global_step == self.step:
            module.train_env.backend.external_force[0, 1:, 0] = self.force
