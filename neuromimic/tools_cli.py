"""``neuromimic bench ...`` and ``neuromimic bodies ...``: the subcommands beside LightningCLI."""

from __future__ import annotations

import argparse
import json
import sys


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="neuromimic")
    commands = parser.add_subparsers(dest="command", required=True)

    bench = commands.add_parser("bench", help="benchmarks, printed as one JSON object")
    bench_kinds = bench.add_subparsers(dest="kind", required=True)
    env = bench_kinds.add_parser("env", help="env control steps/s against a bare mujoco.rollout")
    env.add_argument("--body", default="mouse_forelimb")
    env.add_argument("--backend", default="mujoco", choices=["mujoco", "mjx"])
    env.add_argument("--num-envs", type=int, default=64)
    env.add_argument("--steps", type=int, default=500)
    env.add_argument("--substeps", type=int, default=2)
    env.add_argument("--clips", default="bundled:mouse_forelimb_reach")
    env.add_argument("--seed", type=int, default=0)

    bodies = commands.add_parser("bodies", help="registered body models")
    bodies_kinds = bodies.add_subparsers(dest="kind", required=True)
    bodies_kinds.add_parser("list", help="key, DoF, actuators and muscles of every body")
    return parser


def main(argv: list[str]) -> None:
    """Run one tool subcommand and print its JSON result to stdout."""
    args = _parser().parse_args(argv)
    if args.command == "bench":
        from neuromimic.bench import bench_env

        result = bench_env(
            body=args.body,
            backend=args.backend,
            num_envs=args.num_envs,
            steps=args.steps,
            substeps=args.substeps,
            clips=args.clips,
            seed=args.seed,
        )
    else:
        result = _list_bodies()
    sys.stdout.write(json.dumps(result, indent=2) + "\n")


def _list_bodies() -> list[dict]:
    import mujoco

    from neuromimic.bodies import get_body, known_bodies

    rows = []
    for key in known_bodies():
        model = get_body(key).load_model()
        muscles = int((model.actuator_dyntype == mujoco.mjtDyn.mjDYN_MUSCLE).sum())
        rows.append({"key": key, "dof": model.nv, "actuators": model.nu, "muscles": muscles})
    return rows
