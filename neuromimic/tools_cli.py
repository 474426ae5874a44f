"""``neuromimic bench ...``, ``bodies ...`` and ``export ...``: the subcommands beside LightningCLI."""

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

    export = commands.add_parser(
        "export", help="write a checkpoint's controller as safetensors weights + JSON config (no pickle)"
    )
    export.add_argument("--ckpt", required=True, help="a checkpoint written by neuromimic fit")
    export.add_argument("--output", required=True, help="directory for controller.safetensors and controller.json")

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
    elif args.command == "export":
        result = _export(args.ckpt, args.output)
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


def _export(ckpt: str, output: str) -> dict:
    from neuromimic.models import export_controller, load_controller
    from neuromimic.training.checkpoint_io import load_checkpoint_file

    controller = load_controller(ckpt)
    description = load_checkpoint_file(ckpt).get("neuromimic", {}).get("controller", {})
    metadata = {"source_checkpoint": str(ckpt), **description.get("metadata", {})}
    directory = export_controller(controller, output, metadata)
    return {"output": str(directory), "controller": controller.config(), "metadata": metadata}
