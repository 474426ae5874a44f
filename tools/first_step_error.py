"""Tracked-site error of the first control steps after an episode start, with the servos
starting at rest or holding the start pose.

Builds the env of a config in evaluation mode on the held-out clips (one body per clip,
from its first frame), drives every body with action 0.5 (under ``reference_relative``
actions: follow the reference) and prints, as one JSON object, the tracked-site error
(mm, mean over the clips) of each of the first ``--steps`` control steps, once with the
servos' activations as the env sets them (holding the start pose, `holding_activation`)
and once with them at zero, as episodes started before.

    python tools/first_step_error.py --config configs/rodent_imitation_mlp.yaml --clips rat23_clips
"""

from __future__ import annotations

import argparse
import json

import torch
import yaml

from neuromimic.envs import EnvConfig, make_env


def _errors(config: EnvConfig, steps: int, hold: bool) -> list[float]:
    env = make_env(config, evaluation=True, split="val")
    if not hold:
        env._holding = None  # as before servos held their start pose
    td = env.reset()
    errors = []
    for _ in range(steps):
        td["action"] = torch.full(env.action_spec.shape, 0.5, dtype=env.action_spec.dtype)
        td = env.step(td)["next"]
        errors.append(round(float(td["metrics", "site_pos_error_mm"].mean()), 2))
    return errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="a neuromimic fit config (its model.env is used)")
    parser.add_argument("--clips", help="the clips directory, overriding the config's model.env.clips")
    parser.add_argument("--steps", type=int, default=5, help="control steps to report")
    args = parser.parse_args()
    with open(args.config) as handle:
        env = dict(yaml.safe_load(handle)["model"]["env"])
    if args.clips:
        env["clips"] = args.clips
    config = EnvConfig.from_dict(env)
    result = {"config": args.config, "clips": config.clips, "action": config.action}
    result["site_pos_error_mm_holding"] = _errors(config, args.steps, hold=True)
    result["site_pos_error_mm_at_rest"] = _errors(config, args.steps, hold=False)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
