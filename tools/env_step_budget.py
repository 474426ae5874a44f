"""Where a control step of `ImitationEnv` goes on the CPU, against the 0.7-of-raw target, as JSON.

    python tools/env_step_budget.py --num-envs 64 --steps 500

Runs ``neuromimic bench env`` (env, backend alone, bare rollout) and, in the same process,
TorchRL's own cost of a step: ``step_and_maybe_reset`` on an env with the same specs whose
``_step`` returns ready-made outputs (no physics, no observations, no resets). All figures
are milliseconds per control step of all B bodies:

- ``raw_ms``: one bare ``mujoco.rollout`` over the open-loop sequence, per control step;
- ``target_ms``: ``raw_ms / 0.7``, the most a step may take to reach 0.7 of raw;
- ``backend_ms``: our backend alone (physics, then the final-state sensor pass);
- ``torchrl_ms``: TorchRL's step machinery on the do-nothing env;
- ``env_ms``: the whole env;
- ``left_for_env_work_ms``: ``target_ms - backend_ms - torchrl_ms``, what observations,
  rewards and resets could take at most (negative: the target is out of reach whatever
  the env does);
- ``evaluate_ms``: the env's observation, reward and metrics of all B bodies
  (``ImitationEnv._evaluate``), best of five timings;
- ``restart_ms``: starting new episodes in 7 % of the bodies (the rate random
  excitations cause; ``ImitationEnv._restart``: sampling, the backend's reset and its
  sensor pass, the reset table), best of five timings.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from tensordict import TensorDict
from torchrl.envs import EnvBase

from neuromimic.bench import bench_env
from neuromimic.envs import EnvConfig, make_env


class ReadyMadeEnv(EnvBase):
    """An env with ``template``'s specs whose steps return ``outputs`` (views, no work)."""

    def __init__(self, template: EnvBase, outputs: TensorDict) -> None:
        super().__init__(device=template.device, batch_size=template.batch_size)
        self.observation_spec = template.observation_spec.clone()
        self.action_spec = template.action_spec.clone()
        self.reward_spec = template.reward_spec.clone()
        self.done_spec = template.done_spec.clone()
        self._outputs = outputs

    def _step(self, tensordict):
        return self._outputs.copy()

    def _reset(self, tensordict=None, **kwargs):
        return self._outputs.exclude("reward")

    def maybe_reset(self, tensordict):
        return tensordict  # nothing ends: the floor of a step

    def _set_seed(self, seed):
        pass


def _best_ms(run, repeats: int) -> float:
    """Milliseconds per call of ``run()``: the best of five timings of ``repeats`` calls."""
    run()
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeats):
            run()
        best = min(best, (time.perf_counter() - start) / repeats)
    return 1e3 * best


def env_parts_ms(num_envs: int, steps: int) -> dict:
    """``torchrl_ms``, ``evaluate_ms`` and ``restart_ms`` (see the module docstring)."""
    env = make_env(EnvConfig(num_envs=num_envs), split=None)
    td = env.reset()
    td["action"] = torch.rand(env.action_spec.shape)
    outputs = env.step(td)["next"]
    floor = ReadyMadeEnv(env, outputs)
    td = floor.reset()
    action = torch.rand(floor.action_spec.shape)
    restarting = torch.arange(num_envs) % 14 == 0  # 7 %
    with env.stepping():

        def floor_step() -> None:
            nonlocal td
            td["action"] = action
            _, td = floor.step_and_maybe_reset(td)

        parts = {
            "torchrl_ms": _best_ms(floor_step, steps),
            "evaluate_ms": _best_ms(lambda: env._evaluate(env.backend.view, env.clip_index, env.frame), steps),
            "restart_ms": _best_ms(lambda: env._restart(restarting), steps),
        }
    env.close()
    return parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-envs", type=int, default=64)
    parser.add_argument("--steps", type=int, default=500)
    args = parser.parse_args()
    result = bench_env(EnvConfig(num_envs=args.num_envs), steps=args.steps)
    per_step = {
        name: 1e3 * args.num_envs / result[key]
        for name, key in (
            ("raw_ms", "raw_steps_per_s"),
            ("backend_ms", "backend_steps_per_s"),
            ("env_ms", "steps_per_s"),
        )
    }
    parts = env_parts_ms(args.num_envs, args.steps)
    target_ms = per_step["raw_ms"] / 0.7
    print(
        json.dumps(
            {
                "num_envs": args.num_envs,
                "raw_ms": per_step["raw_ms"],
                "target_ms": target_ms,
                "backend_ms": per_step["backend_ms"],
                "torchrl_ms": parts["torchrl_ms"],
                "env_ms": per_step["env_ms"],
                "left_for_env_work_ms": target_ms - per_step["backend_ms"] - parts["torchrl_ms"],
                "evaluate_ms": parts["evaluate_ms"],
                "restart_ms": parts["restart_ms"],
                "ratio": result["ratio"],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
