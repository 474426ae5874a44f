"""``neuromimic bench ...``, ``bodies ...``, ``export ...`` and ``analyze ...``: the subcommands beside LightningCLI."""

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

    analyze = commands.add_parser("analyze", help="record and analyse a trained controller")
    analyze_kinds = analyze.add_subparsers(dest="kind", required=True)
    record = analyze_kinds.add_parser(
        "record", help="run a controller on every clip of a split and save everything it and its body did"
    )
    record.add_argument("--ckpt", required=True, help="a checkpoint of neuromimic fit, or an export directory")
    record.add_argument("--output", required=True, help="rollout.h5 (HDF5) or rollout.nwb (NWB)")
    record.add_argument("--split", default="val", help="clips to play: val, train or all")
    record.add_argument("--steps", type=int, default=None, help="control steps (default: the longest clip)")

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
    elif args.command == "analyze":
        result = _record(args.ckpt, args.output, None if args.split == "all" else args.split, args.steps)
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
    from neuromimic.models.export import controller_metadata

    controller = load_controller(ckpt)
    metadata = {"source_checkpoint": str(ckpt), **controller_metadata(ckpt)}
    directory = export_controller(controller, output, metadata)
    return {"output": str(directory), "controller": controller.config(), "metadata": metadata}


def _record(source: str, output: str, split: str | None, steps: int | None) -> dict:
    from pathlib import Path

    from neuromimic.analysis.record import record
    from neuromimic.envs import EnvConfig
    from neuromimic.models import load_controller
    from neuromimic.models.export import controller_metadata

    controller = load_controller(source)
    env = controller_metadata(source).get("env")
    if env is None:
        raise SystemExit(f"{source} does not say which env it was trained in (no 'env' metadata); re-export it")
    recording = record(controller, EnvConfig.from_dict(env), split=split, steps=steps)
    path = Path(output)
    written = recording.save_nwb(path) if path.suffix == ".nwb" else recording.save_h5(path)
    return {"output": str(written), "arrays": {k: list(v.shape) for k, v in recording.data.items()}}
