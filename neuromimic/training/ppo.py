"""`PPOModule`: proximal policy optimisation of a controller, inside Lightning.

One Lightning *epoch* is one PPO iteration: collect ``rollout_steps`` control steps from
every simulated body, estimate advantages with GAE, then take ``epochs x minibatches``
optimiser steps (one per Lightning ``training_step``, so ``trainer.max_steps`` counts
optimiser steps and DDP all-reduces the gradients of every step). The minibatches wait in
a queue; when it is empty the next ``training_step`` collects a new rollout. Validation tracks the
held-out clips with the deterministic controller and logs the errors in mm and degrees.
"""

from __future__ import annotations

import json
import logging
import math
import platform
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import lightning as L
import mujoco
import numpy as np
import torch
from lightning.fabric.utilities.apply_func import apply_to_collection
from tensordict import TensorDict, TensorDictBase
from torch import nn
from torch.utils.data import DataLoader, IterableDataset
from torchrl.envs import EnvBase, TransformedEnv
from torchrl.envs.utils import ExplorationType, set_exploration_type
from torchrl.modules import (
    ProbabilisticActor,
    ValueOperator,
    set_recurrent_mode,
)
from torchrl.objectives import ClipPPOLoss
from torchrl.objectives.value import GAE

from neuromimic.checkpoint_files import CheckpointError
from neuromimic.envs import EnvConfig, ImitationEnv, controller_spec, make_env
from neuromimic.errors import ConfigError, check_config
from neuromimic.models import Controller, ControllerModule, ControllerSpec, squash
from neuromimic.models.cores import mlp
from neuromimic.physics import mujoco_warnings
from neuromimic.training.distributions import UnitIntervalTanhNormal

log = logging.getLogger(__name__)

ControllerFactory = Callable[[ControllerSpec], Controller]
"""Builds a controller for an env's `ControllerSpec` (a ``class_path`` in YAML)."""


@dataclass
class PPOConfig:
    """PPO hyper-parameters.

    Args:
        rollout_steps: T, control steps collected per body per iteration.
        epochs: passes over each rollout.
        minibatches: minibatches per pass.
        learning_rate: Adam learning rate.
        gamma: discount per control step.
        gae_lambda: GAE lambda.
        clip_epsilon: PPO ratio clip.
        entropy_coeff: weight of the entropy bonus.
        critic_coeff: weight of the value loss.
        max_grad_norm: gradient-norm clip.
        sequence_length: L, length of the sequences recurrent controllers are trained on
            (truncated backpropagation through time); must divide ``rollout_steps``.
        critic_hidden_sizes: hidden widths of the value network (an MLP on the
            normalised observation; not part of the exported controller).
        desired_kl: adapt the learning rate to keep each update's approximate KL
            divergence between the collecting and the updated policy near this value
            (after every optimiser step: divided by 1.5 above twice it, multiplied by 1.5
            below half of it, within ``learning_rate_range``), as rsl_rl and mjlab train
            whole bodies; None keeps ``learning_rate``. Bodies with many actuators need
            it: with 38 actions a fixed 3e-4 moved the rat's policy by a median KL of
            0.25-0.41 per PPO iteration (up to 0.9; ``loss/kl_approx`` of the README's
            205k-step rat runs before this option), where PPO's clip discards many samples.
        learning_rate_range: the bounds of the adapted learning rate.
        critic_learning_rate: a learning rate of its own for the value network, kept
            fixed (``desired_kl`` then adapts the controller's alone); None: the value
            network takes the controller's rate. With the KL rule at its lower bound
            (1e-5: the rat's runs, see the README), the critic learns too slowly to give
            useful advantages for most of a short run.
        learning_rate_decay_steps: ``[start, end]`` optimiser steps: the controller's
            learning rate holds until ``start``, falls linearly to
            ``learning_rate_final_fraction`` of itself at ``end`` and stays there; with
            ``desired_kl`` it is ``learning_rate_range`` that falls (the KL rule moves the
            rate within the shrinking range). None: no decay. The critic's own
            ``critic_learning_rate`` does not decay. On the rat it did not prevent the
            late held-out collapses of the faster settings (README, "PPO settings").
        learning_rate_final_fraction: where the decay ends, as a fraction of the start.
    """

    rollout_steps: int = 32
    epochs: int = 4
    minibatches: int = 4
    learning_rate: float = 3e-4
    gamma: float = 0.95
    gae_lambda: float = 0.95
    clip_epsilon: float = 0.2
    entropy_coeff: float = 1e-3
    critic_coeff: float = 0.5
    max_grad_norm: float = 1.0
    sequence_length: int = 16
    critic_hidden_sizes: tuple[int, ...] = (256, 256)
    desired_kl: float | None = None
    learning_rate_range: tuple[float, float] = (1e-5, 1e-2)
    critic_learning_rate: float | None = None
    learning_rate_decay_steps: tuple[int, int] | None = None
    learning_rate_final_fraction: float = 0.1

    def __post_init__(self) -> None:
        """Check every field on its own; raise `ConfigError` naming the field."""
        for name in ("rollout_steps", "epochs", "minibatches", "sequence_length"):
            value = getattr(self, name)
            check_config(isinstance(value, int) and value >= 1, f"model.ppo.{name}", value, "an integer >= 1")
        ranges = {
            "learning_rate": (self.learning_rate > 0, "> 0"),
            "gamma": (0 < self.gamma <= 1, "in (0, 1]"),
            "gae_lambda": (0 <= self.gae_lambda <= 1, "in [0, 1]"),
            "clip_epsilon": (self.clip_epsilon > 0, "> 0"),
            "entropy_coeff": (self.entropy_coeff >= 0, ">= 0"),
            "critic_coeff": (self.critic_coeff > 0, "> 0"),
            "max_grad_norm": (self.max_grad_norm > 0, "> 0"),
            "critic_learning_rate": (self.critic_learning_rate is None or self.critic_learning_rate > 0, "> 0 or null"),
            "learning_rate_decay_steps": (
                self.learning_rate_decay_steps is None or _is_step_interval(self.learning_rate_decay_steps),
                "[start, end] optimiser steps with 0 <= start < end, or null for no decay",
            ),
            "learning_rate_final_fraction": (0 < self.learning_rate_final_fraction <= 1, "in (0, 1]"),
        }
        for name, (ok, requirement) in ranges.items():
            check_config(ok, f"model.ppo.{name}", getattr(self, name), requirement)
        if self.desired_kl is not None:
            check_config(
                self.desired_kl > 0, "model.ppo.desired_kl", self.desired_kl, "> 0, or null to keep the learning rate"
            )
        low, high = self.learning_rate_range
        check_config(
            0 < low <= high,
            "model.ppo.learning_rate_range",
            list(self.learning_rate_range),
            "[low, high] with 0 < low <= high",
        )
        sizes = tuple(self.critic_hidden_sizes)
        check_config(
            all(isinstance(n, int) and n >= 1 for n in sizes),
            "model.ppo.critic_hidden_sizes",
            list(sizes),
            "a list of positive layer widths",
        )

    def learning_rate_scale(self, step: int) -> float:
        """The decay's factor on the controller's learning rate after ``step`` optimiser steps."""
        if self.learning_rate_decay_steps is None:
            return 1.0
        start, end = self.learning_rate_decay_steps
        progress = min(max((step - start) / (end - start), 0.0), 1.0)
        return 1.0 - (1.0 - self.learning_rate_final_fraction) * progress


def _is_step_interval(steps: object) -> bool:
    """Whether ``steps`` is ``[start, end]``, integers with ``0 <= start < end``."""
    return (
        isinstance(steps, (tuple, list))
        and len(steps) == 2
        and all(isinstance(n, int) for n in steps)
        and 0 <= steps[0] < steps[1]
    )


class _Updates(IterableDataset):
    """Yields the update index 0..n-1: one Lightning epoch is one PPO iteration."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.n))

    def __len__(self) -> int:
        return self.n


class PPOModule(L.LightningModule):
    """Trains a controller to imitate reference clips with TorchRL's clipped PPO loss.

    Args:
        env: the training environment (its ``val`` clips are used for validation).
        controller: factory ``ControllerSpec -> Controller`` (a ``class_path`` in YAML);
            the default is `Controller` with an `MLPCore`.
        ppo: PPO hyper-parameters.
        seed: base seed; rank r samples clips with ``seed + 1000 * r``.
    """

    def __init__(
        self,
        env: EnvConfig | None = None,
        controller: ControllerFactory | None = None,
        ppo: PPOConfig | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.env_config = env or EnvConfig()
        self.ppo = ppo or PPOConfig()
        self.seed = seed
        self.spec = controller_spec(self.env_config)
        self.controller = (controller or Controller)(self.spec)
        self._check_config()
        self.value_net = mlp([self.spec.observation_size, *self.ppo.critic_hidden_sizes, 1])

        self.controller_module = ControllerModule(self.controller)
        self.actor = ProbabilisticActor(
            self.controller_module,
            in_keys=["loc", "scale"],
            # TorchRL's TanhNormal(low=0, high=1), without its host read at every step.
            distribution_class=UnitIntervalTanhNormal,
            return_log_prob=True,
        )
        self.critic = ValueOperator(_Critic(self.controller.obs_norm, self.value_net), in_keys=["observation"])
        self.loss = ClipPPOLoss(
            self.actor,
            self.critic,
            clip_epsilon=self.ppo.clip_epsilon,
            entropy_coeff=self.ppo.entropy_coeff,
            critic_coeff=self.ppo.critic_coeff,
            normalize_advantage=True,
            loss_critic_type="l2",
            functional=False,  # the loss must train the controller's own parameters
        )
        self.gae = GAE(gamma=self.ppo.gamma, lmbda=self.ppo.gae_lambda, value_network=self.critic)
        # Held-out tracked-site error of the untrained controller, kept across resumes.
        self.register_buffer("initial_val_error_mm", torch.tensor(float("nan")))
        # Envs are nn.Modules to TorchRL: kept out of this module's tree (state_dict, DDP).
        self._envs = _Envs()
        self._carry: TensorDictBase | None = None
        self._minibatches: list[TensorDictBase] = []
        self._rollout_observations: torch.Tensor | None = None
        self._shuffle = torch.Generator()
        self._episode_return: torch.Tensor | None = None
        self._mujoco_warnings: dict[str, int] = {}
        self._mujoco_warnings_at_start = mujoco_warnings.counts()

    @property
    def train_env(self) -> ImitationEnv | None:
        """This rank's training env (after `setup`)."""
        return self._envs.train

    @property
    def val_env(self) -> ImitationEnv | None:
        """The held-out clips' env, one body per clip (after `setup`)."""
        return self._envs.val

    def _check_config(self) -> None:
        """Fail at construction, not at the first update or checkpoint."""
        ppo, recurrent = self.ppo, self.controller.is_recurrent
        if recurrent and ppo.rollout_steps % ppo.sequence_length:
            raise ConfigError(
                f"model.ppo.sequence_length ({ppo.sequence_length}) must divide "
                f"model.ppo.rollout_steps ({ppo.rollout_steps}) for a recurrent controller"
            )
        samples = self.env_config.num_envs * ppo.rollout_steps // (ppo.sequence_length if recurrent else 1)
        if samples < ppo.minibatches:
            raise ConfigError(
                f"a rollout holds {samples} {'sequences' if recurrent else 'steps'} per process, fewer than "
                f"model.ppo.minibatches ({ppo.minibatches}); use more envs (model.env.num_envs), longer "
                "rollouts (model.ppo.rollout_steps) or fewer minibatches"
            )
        try:
            json.dumps(self.controller.config())
        except (NotImplementedError, TypeError) as error:
            raise ValueError(
                f"{type(self.controller).__name__}.config() must return the JSON-serialisable "
                "constructor arguments (checkpoints store them; a custom core implements "
                "Core.config and is registered with neuromimic.models.export.register_core): "
                f"{type(error).__name__}: {error}"
            ) from error

    # ------------------------------------------------------------------ Lightning plumbing
    @property
    def updates_per_iteration(self) -> int:
        """Optimiser steps per PPO iteration (one Lightning epoch)."""
        return self.ppo.epochs * self.ppo.minibatches

    def setup(self, stage: str) -> None:
        """Build this rank's environments on the strategy's device."""
        device = self.trainer.strategy.root_device
        rank = self.trainer.global_rank
        if stage == "fit":
            self._envs.train = make_env(self.env_config, split="train", device=device, seed=self.seed + 1000 * rank)
            self._envs.rollout = self.train_env
            if self.controller.is_recurrent:
                # Registers the controller's state in the env's specs, so that TorchRL's
                # step_mdp carries it from "next" to the next step's root.
                primer = self.controller_module.make_tensordict_primer()
                self._envs.rollout = TransformedEnv(self.train_env, primer)
            self._shuffle.manual_seed(self.seed + 1000 * rank + 1)
        self._envs.val = make_env(self.env_config, split="val", device=device, evaluation=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        parameters = [p for p in self.parameters() if p.requires_grad]  # a frozen decoder stays out
        # One fused kernel per step instead of a loop over tensors: the mouse's Adam phase
        # went from 12 to 6-8 ms per iteration on the 2-core CPU (`neuromimic bench train
        # --profile true`, README).
        fused = self.device.type in ("cpu", "cuda")
        if self.ppo.critic_learning_rate is None:
            return torch.optim.Adam(parameters, lr=self.ppo.learning_rate, fused=fused)
        critic = {id(p) for p in self.value_net.parameters()}
        groups = [
            {"params": [p for p in parameters if id(p) not in critic], "lr": self.ppo.learning_rate},
            {"params": [p for p in parameters if id(p) in critic], "lr": self.ppo.critic_learning_rate, "fixed": True},
        ]
        return torch.optim.Adam(groups, fused=fused)

    # The loaders get their own generators: creating an iterator must not draw from the
    # global torch RNG, which a resumed run restores from the checkpoint.
    def train_dataloader(self) -> DataLoader:
        return DataLoader(_Updates(self.updates_per_iteration), batch_size=None, generator=torch.Generator())

    def val_dataloader(self) -> DataLoader:
        return DataLoader(_Updates(1), batch_size=None, generator=torch.Generator())

    def on_train_start(self) -> None:
        if self.global_step == 0:
            # Warm up the observation statistics before the first update sees them.
            self._carry = self._envs.rollout.reset()
            with torch.no_grad():
                self._update_obs_norm(self._collect()["observation"])
            self.initial_val_error_mm.fill_(self.evaluate()["site_pos_error_mm"])
            log.info("held-out tracked-site error of the untrained controller: %.3f mm", self.initial_val_error_mm)
            self._carry = None  # training starts from fresh episodes
        if self._carry is None:  # a fresh run, or a resume that could not carry its episodes over
            self._carry = self._envs.rollout.reset()
            self._episode_return = torch.zeros(self.train_env.batch_size, device=self.device)

    # ------------------------------------------------------------------------------- PPO
    def training_step(self, batch: int, batch_idx: int) -> None:
        # A queue rather than batch_idx: a checkpoint saves what is left of it, so a run
        # resumed mid-iteration finishes that iteration as the uninterrupted run would.
        if not self._minibatches:
            self._minibatches = self._prepare_iteration()
        minibatch = self._minibatches.pop(0)
        with set_recurrent_mode(True):  # [sequences, L] minibatches of recurrent controllers
            losses = self.loss(minibatch)
        auxiliary = self.controller.auxiliary_loss(minibatch["observation"], self.global_step)
        loss = losses["loss_objective"] + losses["loss_critic"] + losses["loss_entropy"] + auxiliary

        optimizer = self.optimizers()
        optimizer.zero_grad()
        self.manual_backward(loss)
        self.clip_gradients(optimizer, gradient_clip_val=self.ppo.max_grad_norm, gradient_clip_algorithm="norm")
        optimizer.step()
        self._set_learning_rate(optimizer, losses["kl_approx"].detach())

        if not self._minibatches:  # last update of this iteration
            # Only now may the normaliser change: every quantity of this iteration's
            # update (log-probs, values, advantages) was computed with the old one.
            self._update_obs_norm(self._rollout_observations)
            self._log_metrics(
                {f"loss/{k.removeprefix('loss_')}": v.detach() for k, v in losses.items() if k.startswith("loss_")}
                | {"loss/kl_approx": losses["kl_approx"].detach(), "loss/auxiliary": auxiliary.detach()}
                | {"loss/learning_rate": torch.tensor(optimizer.param_groups[0]["lr"])}
            )

    def _set_learning_rate(self, optimizer, kl: torch.Tensor) -> None:
        """The controller's rate for the next optimiser step: ``learning_rate`` times the
        decay, or, with ``desired_kl``, the rate moved towards that KL within the decayed
        ``learning_rate_range`` (see `PPOConfig`). The KL is averaged over DDP ranks first,
        so every rank takes the same rate; the critic's own fixed rate is left alone."""
        scale = self.ppo.learning_rate_scale(self.global_step)
        groups = [group for group in optimizer.param_groups if not group.get("fixed")]
        if self.ppo.desired_kl is None:
            for group in groups:
                group["lr"] = self.ppo.learning_rate * scale
            return
        if self.trainer.world_size > 1:
            kl = self.trainer.strategy.reduce(kl, reduce_op="mean")
        kl, desired = float(kl), self.ppo.desired_kl  # one host read per optimiser step, not per env step
        low, high = (bound * scale for bound in self.ppo.learning_rate_range)
        for group in groups:
            rate = group["lr"]
            if kl > 2.0 * desired:
                rate /= 1.5
            elif kl < 0.5 * desired:
                rate *= 1.5
            group["lr"] = min(max(rate, low), high)

    def _prepare_iteration(self) -> list[TensorDictBase]:
        """Collect a rollout, compute advantages, and cut it into shuffled minibatches."""
        with torch.no_grad():
            start = time.perf_counter()
            rollout = self._collect()  # [B, T]
            if rollout.device.type == "cuda":
                torch.cuda.synchronize(rollout.device)
            seconds = time.perf_counter() - start
            self.gae(rollout)
            self._log_rollout(rollout, seconds)
        self._rollout_observations = rollout["observation"]
        if self.controller.is_recurrent:
            # Sequences of L steps; each starts from the state stored while collecting and
            # resets it wherever an episode starts inside it (see ControllerModule).
            length = self.ppo.sequence_length
            units = rollout.reshape(-1, length)  # [B * T / L, L]: row-major keeps time within rows
        else:
            units = rollout.reshape(-1)
        with torch.no_grad(), set_recurrent_mode(True):
            # The log-probabilities the ratio divides by, recomputed from the actions exactly
            # as the loss will: the collector's came from the pre-squash draw, and for
            # saturated excitations the squash and its inverse round them apart.
            units.set(self.loss.tensor_keys.sample_log_prob, self.actor.get_dist(units).log_prob(units["action"]))
        minibatches = []
        for _ in range(self.ppo.epochs):
            order = torch.randperm(units.shape[0], generator=self._shuffle).to(units.device)
            minibatches.extend(units[order].tensor_split(self.ppo.minibatches))
        return minibatches

    @set_exploration_type(ExplorationType.RANDOM)
    def _collect(self) -> TensorDictBase:
        """Run the stochastic policy for ``rollout_steps`` control steps: a [B, T] TensorDict."""
        env, td = self._envs.rollout, self._carry
        steps = []
        with self.train_env.stepping():
            for _ in range(self.ppo.rollout_steps):
                td = self.actor(td)
                td, next_td = env.step_and_maybe_reset(td)
                steps.append(td)
                td = next_td
        self._carry = td
        return torch.stack(steps, dim=1)

    def _update_obs_norm(self, observation: torch.Tensor) -> None:
        """Fold a batch of observations into the normaliser, identically on every rank."""
        x = observation.reshape(-1, observation.shape[-1]).double()
        moments = torch.stack([x.sum(0), x.square().sum(0)])
        count = torch.tensor(float(x.shape[0]), dtype=torch.float64, device=x.device)
        if self.trainer.world_size > 1:
            moments = self.trainer.strategy.reduce(moments, reduce_op="sum")
            count = self.trainer.strategy.reduce(count, reduce_op="sum")
        mean = moments[0] / count
        var = (moments[1] / count - mean.square()).clamp_min(0.0)
        self.controller.obs_norm.update(mean, var, count)

    # ------------------------------------------------------------------------- logging
    def _log_rollout(self, rollout: TensorDictBase, seconds: float) -> None:
        """Log episode returns, every reward term, tracking errors and env steps per second."""
        reward = rollout["next", "reward"].squeeze(-1)  # [B, T]
        done = rollout["next", "done"].squeeze(-1)
        returns, finished = [], []
        episode_return = self._episode_return
        for t in range(reward.shape[1]):
            episode_return = episode_return + reward[:, t]
            returns.append(episode_return * done[:, t])
            finished.append(done[:, t])
            episode_return = torch.where(done[:, t], torch.zeros_like(episode_return), episode_return)
        self._episode_return = episode_return
        num_finished = torch.stack(finished).sum()
        metrics = {f"train/{name}": value.mean() for name, value in rollout["next", "metrics"].items()}
        metrics["train/reward"] = reward.mean()
        metrics["train/episode_return"] = torch.stack(returns).sum() / num_finished.clamp_min(1)
        metrics["train/episodes_finished"] = num_finished.float()
        metrics["train/terminated_fraction"] = rollout["next", "terminated"].float().mean()
        metrics["train/reset_fraction"] = done.float().mean()  # episodes started per body and step
        metrics["train/unstable_total"] = self.train_env.unstable_count.float()
        metrics |= self._mujoco_warning_metrics()
        metrics["perf/env_steps_per_s"] = torch.tensor(rollout.numel() * self.trainer.world_size / seconds)
        self._log_metrics(metrics)
        self.log("site_mm", metrics["train/site_pos_error_mm"], prog_bar=True, logger=False, batch_size=1)

    def _mujoco_warning_metrics(self) -> dict[str, torch.Tensor]:
        """``train/mujoco_warnings/<kind>``: MuJoCo's simulation warnings in this process
        since training started (`neuromimic.physics.mujoco_warnings`); a rise since the last
        iteration is also logged as a warning."""
        counts = {
            kind: count - self._mujoco_warnings_at_start.get(kind, 0)
            for kind, count in mujoco_warnings.counts().items()
        }
        for kind, count in counts.items():
            new = count - self._mujoco_warnings.get(kind, 0)
            if new > 0:
                log.warning(
                    "MuJoCo warned %d time(s) of %s during the last rollout (%d since training "
                    "started); after a bad acceleration, velocity or position MuJoCo resets the "
                    "body and the env restarts its episode. Many mean too large a timestep or too "
                    "stiff a model (UnstableBodyDump records such bodies for a replay)",
                    new,
                    kind,
                    count,
                )
        self._mujoco_warnings = counts
        return {f"train/mujoco_warnings/{kind}": torch.tensor(float(count)) for kind, count in counts.items() if count}

    def _log_metrics(self, metrics: dict[str, torch.Tensor]) -> None:
        """Write once-per-iteration scalars straight to the logger (rank 0) at this step.

        ``self.log`` would re-log them at every optimiser step of the iteration.
        """
        if self.logger is not None:
            self.logger.log_metrics({k: float(v) for k, v in metrics.items()}, step=self.global_step)

    # ------------------------------------------------------------------------ validation
    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Track every held-out clip once with the deterministic controller, to its end
        (no termination).

        Returns:
            ``site_pos_error_mm`` and ``joint_pos_error_deg``: means over every frame of
            every held-out clip (tracked sites: the mouse wrist, the rat's paws and snout);
            ``tracked_fraction``: the fraction of the held-out frames that come before the
            first frame of their clip whose tracked-site error exceeds the training
            config's ``site_pos_error`` termination distance (1 without that term).
        """
        env = self.val_env
        td = env.reset()
        steps = int(env.clips.length.max().item()) - 1
        site_error, joint_error, valid = [], [], []
        state = None
        with env.stepping():
            for _ in range(steps):
                loc, _, state, _ = self.controller.step(td["observation"], state, td["is_init"])
                td["action"] = squash(loc)
                alive = env.frame < env.clips.length[env.clip_index] - 1
                td = env.step(td)["next"]
                site_error.append(td["metrics", "site_pos_error_mm"])
                joint_error.append(td["metrics", "joint_pos_error_deg"])
                valid.append(alive)
        valid = torch.stack(valid).float()  # [T, B]
        site_error = torch.stack(site_error)
        distance = (self.env_config.terminations.get("site_pos_error") or {}).get("distance")
        if distance is None:
            tracked = valid
        else:
            lost = (site_error > distance * 1e3 * env.body.length_unit_m) & (valid > 0)
            tracked = valid * (lost.cumsum(0) == 0)
        return {
            "site_pos_error_mm": float((site_error * valid).sum() / valid.sum()),
            "joint_pos_error_deg": float((torch.stack(joint_error) * valid).sum() / valid.sum()),
            "tracked_fraction": float(tracked.sum() / valid.sum()),
        }

    def validation_step(self, batch: int, batch_idx: int) -> None:
        """Log the held-out tracking errors (``neuromimic fit`` and ``neuromimic validate``)."""
        errors = self.evaluate()
        self.log("val/site_pos_error_mm", errors["site_pos_error_mm"], prog_bar=True, batch_size=1)
        self.log("val/joint_pos_error_deg", errors["joint_pos_error_deg"], batch_size=1)
        self.log("val/tracked_fraction", errors["tracked_fraction"], batch_size=1)
        if not math.isnan(self.initial_val_error_mm.item()):
            self.log("val/site_pos_error_mm_untrained", self.initial_val_error_mm.item(), batch_size=1)

    def test_step(self, batch: int, batch_idx: int) -> None:
        """``neuromimic test``: the held-out tracking errors, as in validation."""
        errors = self.evaluate()
        self.log("test/site_pos_error_mm", errors["site_pos_error_mm"], batch_size=1)
        self.log("test/joint_pos_error_deg", errors["joint_pos_error_deg"], batch_size=1)
        self.log("test/tracked_fraction", errors["tracked_fraction"], batch_size=1)

    def predict_step(self, batch: int, batch_idx: int) -> dict[str, float]:
        """``neuromimic predict``: the held-out tracking errors, returned instead of logged."""
        return self.evaluate()

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()

    def predict_dataloader(self) -> DataLoader:
        return self.val_dataloader()

    def on_train_end(self) -> None:
        errors = self.evaluate()
        log.info(
            "held-out tracked-site error: untrained %.3f mm -> trained %.3f mm (%.1f%% of held-out frames tracked)",
            self.initial_val_error_mm.item(),
            errors["site_pos_error_mm"],
            100 * errors["tracked_fraction"],
        )

    # ------------------------------------------------------------------ checkpoint extras
    def _random_state(self) -> dict[str, torch.Tensor]:
        """This process's global generators and the minibatch shuffle, as tensors."""
        np_state = np.random.get_state()
        state = {
            "shuffle": self._shuffle.get_state(),
            "torch": torch.get_rng_state(),
            "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "numpy_pos": torch.tensor([np_state[2], np_state[3]], dtype=torch.int64),
            "numpy_gauss": torch.tensor([np_state[4]], dtype=torch.float64),
            "python": torch.tensor(random.getstate()[1], dtype=torch.int64),
        }
        if self.device.type == "cuda":
            state["cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def _set_random_state(self, state: dict[str, torch.Tensor]) -> None:
        self._shuffle.set_state(state["shuffle"])
        torch.set_rng_state(state["torch"])
        pos, has_gauss = (int(x) for x in state["numpy_pos"])
        keys = state["numpy_keys"].numpy().astype(np.uint32)
        np.random.set_state(("MT19937", keys, pos, has_gauss, float(state["numpy_gauss"][0])))
        random.setstate((3, tuple(int(x) for x in state["python"]), None))
        if "cuda" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda"], self.device)

    def _rollout_state(self) -> dict:
        """The training in flight on this rank: the env (every body's physics, clips and
        frames), the carried step, and the iteration's minibatches still to be used."""
        return {
            "env": self.train_env.snapshot(),
            "carry": None if self._carry is None else self._carry.to_dict(),
            "episode_return": self._episode_return,
            "minibatches": [
                {"batch_size": torch.tensor(mb.batch_size), "data": mb.to_dict()} for mb in self._minibatches
            ],
            "rollout_observations": self._rollout_observations,
        }

    def _set_rollout_state(self, state: dict) -> None:
        self.train_env.restore(state["env"])
        device = self.device

        def tensordict(data: dict, batch_size: torch.Size) -> TensorDictBase:
            return TensorDict(data, batch_size=batch_size, device=device)

        self._carry = None if state["carry"] is None else tensordict(state["carry"], self.train_env.batch_size)
        self._episode_return = None if state["episode_return"] is None else state["episode_return"].to(device)
        self._minibatches = [
            tensordict(mb["data"], torch.Size(mb["batch_size"].tolist())) for mb in state["minibatches"]
        ]
        observations = state["rollout_observations"]
        self._rollout_observations = None if observations is None else observations.to(device)

    def _run_description(self) -> dict:
        """What a bitwise-exact resume needs to be the same: the run's shape, the software
        and the machine."""
        return {
            "num_envs": self.env_config.num_envs,
            "world_size": self.trainer.world_size,
            "body": self.env_config.body,
            "backend": self.env_config.backend,
            "device": self.device.type,
            "torch": str(torch.__version__),
            "mujoco": mujoco.__version__,
            "machine": f"{platform.machine()} {platform.processor() or platform.platform()}",
        }

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Save what Lightning does not: the controller's description (plain data, for
        `neuromimic.load_controller`), every rank's random generators and the training in
        flight (`_rollout_state`), so that a resumed run continues bitwise equal to an
        uninterrupted one (on the same machine and software; see `on_load_checkpoint`).

        Called on every rank (only rank 0 writes the file), so the states are gathered:
        a resumed DDP run gives each rank its own streams and bodies back.
        """
        extras = {
            "controller": {
                "controller": self.controller.config(),
                "spec": self.spec.to_dict(),
                "metadata": {"body": self.env_config.body, "env": self.env_config.to_dict()},
            }
        }
        if self.train_env is not None:
            state = {"random": self._random_state(), "rollout": self._rollout_state()}
            if self.trainer.world_size > 1:
                gathered = self.all_gather(state)  # each tensor [world_size, ...]
                ranks = [
                    apply_to_collection(gathered, torch.Tensor, lambda t, r=r: t[r].cpu())
                    for r in range(self.trainer.world_size)
                ]
            else:
                ranks = [apply_to_collection(state, torch.Tensor, lambda t: t.cpu())]
            extras["ranks"] = ranks
            extras["run"] = self._run_description()
        checkpoint["neuromimic"] = extras

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Restore every rank's generators and, when the run has the same shape, the
        training in flight; warn when the continuation cannot be bitwise exact."""
        extras = checkpoint.get("neuromimic", {})
        self._check_controller_fits(checkpoint)
        if "ranks" not in extras or self.train_env is None:
            return
        ranks = extras["ranks"]
        rank = ranks[self.trainer.global_rank % len(ranks)]
        self._set_random_state(rank["random"])
        saved, current = extras.get("run", {}), self._run_description()
        shape = [k for k in ("num_envs", "world_size", "body", "backend") if saved.get(k) != current[k]]
        if shape:
            self._warn_inexact(
                ", ".join(f"{k} {saved.get(k)} -> {current[k]}" for k in shape), "the episodes in flight restart"
            )
            return
        try:
            self._set_rollout_state(rank["rollout"])
        except (KeyError, ValueError) as error:
            self._warn_inexact(str(error), "the episodes in flight restart")
            self._carry, self._minibatches = None, []
            return
        elsewhere = [k for k in ("device", "torch", "mujoco", "machine") if saved.get(k) != current[k]]
        if elsewhere:
            changes = ", ".join(f"{k} {saved.get(k)!r} -> {current[k]!r}" for k in elsewhere)
            self._warn_inexact(changes, "floating-point results may differ in the last bits")

    def _warn_inexact(self, why: str, consequence: str) -> None:
        log.warning(
            "resuming %s (%s): %s, so the run is not bitwise equal to an uninterrupted one",
            self.trainer.ckpt_path,
            why,
            consequence,
        )

    def _check_controller_fits(self, checkpoint: dict) -> None:
        """Refuse a checkpoint whose weights do not fit this run's controller and critic,
        naming the file, the first differing tensor and both shapes."""
        ours = self.state_dict()
        theirs = checkpoint.get("state_dict", {})
        missing = sorted(set(ours) - set(theirs))
        mismatched = [k for k in ours if k in theirs and tuple(theirs[k].shape) != tuple(ours[k].shape)]
        if not (missing or mismatched):
            return
        path = self.trainer.ckpt_path if self._trainer is not None else "the checkpoint"
        if mismatched:
            name = mismatched[0]
            detail = f"{name} is {list(theirs[name].shape)} in it but {list(ours[name].shape)} in this config"
        else:
            detail = f"it has no {missing[0]}"
        raise CheckpointError(
            f"{path} does not fit the configured controller ({detail}; {len(missing) + len(mismatched)} "
            "tensors differ): resume with the config the run was started with (its "
            "lightning_logs/version_N/config.yaml, e.g. --config that file)"
        )


@dataclass
class _Envs:
    train: ImitationEnv | None = None
    val: ImitationEnv | None = None
    rollout: EnvBase | None = None  # train, with the controller's state primer if recurrent


class _Critic(nn.Module):
    """State value [..., 1] of raw observations [..., D], through the controller's normaliser."""

    def __init__(self, obs_norm: nn.Module, value_net: nn.Module) -> None:
        super().__init__()
        self.obs_norm = obs_norm
        self.value_net = value_net

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        return self.value_net(self.obs_norm(observation))
