"""Where a PPO iteration's time goes: wall-clock totals of its phases, for `bench train --profile`.

`PhaseClock.attach` wraps a few methods of a `PPOModule` (and of its env, backend and
optimiser) with timers; each phase is the total time of its calls, so phases nest
(``collect.env.physics`` is part of ``collect.env``, which is part of ``collect``, which
is part of ``prepare``). A wrapper costs about a microsecond per call, against
milliseconds for the calls it times. On a GPU, the timers synchronise the device before
reading the clock, so that asynchronous work is counted in the phase that launched it.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import torch

#: (phase, what it times), in the order they happen in an iteration.
PHASES = {
    "prepare": "collection, advantages, logging and the log-probabilities of the rollout (PPOModule._prepare_iteration)",
    "collect": "the rollout: rollout_steps control steps of every body (PPOModule._collect)",
    "collect.policy": "the stochastic controller's forward passes and action draws (the actor)",
    "collect.env": "env steps with their resets, TorchRL's step machinery included (step_and_maybe_reset)",
    "collect.env.physics": "the backend's physics step (Backend.step)",
    "collect.env.outputs": "observations, rewards, metrics and terminations (ImitationEnv._evaluate)",
    "collect.env.restarts": "starting new episodes (ImitationEnv._restart: sampling, placing, the reset table)",
    "advantages": "GAE over the rollout, the critic's forward pass included",
    "log_rollout": "per-iteration training metrics (PPOModule._log_rollout)",
    "update": "the optimiser steps: every training_step less the prepare phase",
    "update.loss": "forward passes of the PPO loss (ClipPPOLoss)",
    "update.backward": "backward passes",
    "update.clip": "gradient-norm clipping",
    "update.optimizer": "Adam steps",
}


class PhaseClock:
    """Accumulates the wall-clock time and the number of calls of each phase in `PHASES`.

    Args:
        device: the device the module trains on (a CUDA device is synchronised around
            every timed call).
    """

    def __init__(self, device: torch.device) -> None:
        self.synchronize = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def reset(self) -> None:
        """Forget what was timed so far (after a warm-up iteration)."""
        self.seconds.clear()
        self.calls.clear()

    def wrap(self, owner: Any, method: str, phase: str) -> None:
        """Time every call of ``owner.method`` as ``phase`` (an instance attribute shadows
        the class's method; `torch.nn.Module.__call__` finds it as ``forward``)."""
        original: Callable = getattr(owner, method)

        def timed(*args: Any, **kwargs: Any) -> Any:
            self.synchronize()
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.synchronize()
                self.seconds[phase] += time.perf_counter() - start
                self.calls[phase] += 1

        setattr(owner, method, timed)

    def attach(self, module: Any, optimizer: torch.optim.Optimizer) -> None:
        """Time the phases of a `PPOModule` after its setup (envs built) and its optimiser."""
        env = module.train_env
        self.wrap(module, "_prepare_iteration", "prepare")
        self.wrap(module, "_collect", "collect")
        self.wrap(module.actor, "forward", "collect.policy")
        self.wrap(module._envs.rollout, "step_and_maybe_reset", "collect.env")
        self.wrap(env.backend, "step", "collect.env.physics")
        self.wrap(env, "_evaluate", "collect.env.outputs")
        self.wrap(env, "_restart", "collect.env.restarts")
        self.wrap(module.gae, "forward", "advantages")
        self.wrap(module, "_log_rollout", "log_rollout")
        self.wrap(module, "training_step", "training_step")
        self.wrap(module.loss, "forward", "update.loss")
        self.wrap(module, "manual_backward", "update.backward")
        self.wrap(module, "clip_gradients", "update.clip")
        self.wrap(optimizer, "step", "update.optimizer")

    def report(self, iterations: int, seconds: float) -> dict[str, dict[str, float]]:
        """``{phase: {"ms_per_iteration", "share", "calls_per_iteration"}}`` over ``iterations``
        timed iterations that took ``seconds`` in all; ``share`` is of the iterations' wall
        time, and ``other`` is what no phase covers (Lightning's loop, callbacks)."""
        totals = dict(self.seconds)
        calls = dict(self.calls)
        totals["update"] = totals.pop("training_step", 0.0) - totals.get("prepare", 0.0)
        calls["update"] = calls.pop("training_step", 0)
        totals["other"] = seconds - totals.get("prepare", 0.0) - totals["update"]
        calls["other"] = iterations
        return {
            phase: {
                "ms_per_iteration": 1e3 * totals[phase] / iterations,
                "share": totals[phase] / seconds,
                "calls_per_iteration": calls[phase] / iterations,
            }
            for phase in [*PHASES, "other"]
            if phase in totals
        }
