"""``neuromimic bench ...``, ``bodies ...``, ``clips ...``, ``configs ...``, ``export ...``, ``analyze ...`` and ``keypoints ...``: the subcommands beside LightningCLI."""

from __future__ import annotations

import argparse
import json
import sys


def _parser() -> argparse.ArgumentParser:
    from neuromimic.physics import BACKENDS

    parser = argparse.ArgumentParser(prog="neuromimic")
    commands = parser.add_subparsers(dest="command", required=True)

    bench = commands.add_parser("bench", help="benchmarks, printed as one JSON object")
    bench_kinds = bench.add_subparsers(dest="kind", required=True)
    env = bench_kinds.add_parser("env", help="env control steps/s against the backend's bare simulator")
    env.add_argument("--body", default="mouse_forelimb")
    env.add_argument("--backend", default="mujoco", choices=list(BACKENDS))
    env.add_argument("--num-envs", type=int, default=64)
    env.add_argument("--steps", type=int, default=500)
    env.add_argument("--substeps", type=int, default=2)
    env.add_argument("--clips", default="bundled:mouse_forelimb_reach")
    env.add_argument("--seed", type=int, default=0)
    env.add_argument(
        "--torch-threads",
        type=int,
        default=None,
        help="torch threads while stepping (default: as training collects, one thread on the CPU)",
    )
    env.add_argument(
        "--proprioception",
        default="joints",
        choices=["joints", "afferents", "both"],
        help="what the env observes (env.proprioception); afferents add the spindle and tendon organ models",
    )
    env.add_argument(
        "--afferent-dt-ms",
        type=float,
        default=1.0,
        help="sensor step of the afferents (ms); must divide their 5 ms delays",
    )

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

    perturb = analyze_kinds.add_parser(
        "perturb", help="tracking error and muscle activity with and without perturbations"
    )
    perturb.add_argument("--ckpt", required=True, help="a checkpoint of neuromimic fit, or an export directory")
    perturb.add_argument("--perturbation", required=True, help="YAML list of {name: arguments}")
    perturb.add_argument("--split", default="val", help="clips to play: val, train or all")

    train = bench_kinds.add_parser("train", help="end-to-end PPO training: env steps consumed per second")
    train.add_argument("--body", default="mouse_forelimb")
    train.add_argument("--backend", default="mujoco", choices=list(BACKENDS))
    train.add_argument("--num-envs", type=int, default=64)
    train.add_argument("--iterations", type=int, default=20, help="PPO iterations; the first is not timed")
    train.add_argument("--accelerator", default="auto")
    train.add_argument("--clips", default="bundled:mouse_forelimb_reach")

    keypoints = commands.add_parser("keypoints", help="3-D keypoint files")
    keypoints_kinds = keypoints.add_subparsers(dest="kind", required=True)
    kfit = keypoints_kinds.add_parser(
        "fit",
        help="fit a body's joint angles to a keypoint file (STAC-style) and write a reference clip",
        description="Fit a body's joint angles to a 3-D keypoint file (STAC-style) and write a reference clip.",
        epilog=_KEYPOINT_FORMATS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    kfit.add_argument("--body", default="rodent")
    kfit.add_argument(
        "--input", required=True, help="keypoint file (nwb, dannce, dlc, sleap, anipose, c3d, csv, npz; see below)"
    )
    kfit.add_argument("--output", required=True, help="reference clip to write (.h5)")
    kfit.add_argument("--format", default=None, help="file format (default: from the file name and layout)")
    kfit.add_argument(
        "--units", default=None, help="units of the file's numbers: m, cm or mm (where the file does not say)"
    )
    kfit.add_argument(
        "--fps", type=float, default=None, help="frame rate of the file in Hz (where the file does not say)"
    )
    kfit.add_argument(
        "--skeleton",
        default=None,
        help="file naming the keypoints where the keypoint file has no names: the DANNCE skeleton .mat "
        "(joint_names) of a DANNCE prediction, the SLEAP project .slp (or skeleton .json/.yaml) of a "
        "sleap-anipose points3d.h5",
    )
    kfit.add_argument(
        "--keypoint-names",
        type=_keypoint_names,
        default=None,
        metavar="A,B,C",
        help="comma-separated keypoint names in the file's order: name DANNCE and points3d.h5 keypoints, "
        "rename those of other formats",
    )
    kfit.add_argument(
        "--individual",
        default=None,
        help="animal of a multi-animal file: NWB PoseEstimation name, DeepLabCut individual, "
        "SLEAP identity, or sleap-anipose track index (0, 1, ...)",
    )
    kfit.add_argument(
        "--confidence-threshold",
        type=float,
        default=None,
        help="mask keypoint samples whose confidence is below this, in the file's own scale (default 0: mask none)",
    )
    kfit.add_argument(
        "--max-gap-frames",
        "--max-gap",
        dest="max_gap_frames",
        type=int,
        default=None,
        help="interpolate gaps of at most this many frames (default 5)",
    )
    kfit.add_argument("--fps-out", type=float, default=None, help="frame rate of the clip in Hz (default: the input's)")
    kfit.add_argument(
        "--mapping",
        default=None,
        help="YAML {keypoint: site | body | {body:, offset: [x, y, z]}} (default: the body's keypoint_sites)",
    )
    kfit.add_argument(
        "--scale",
        default=None,
        help="body scale factor, or 'fit' to search for one (noisy); default the body's keypoint_scale (0.9 for the rodent, stac-mjx's value; else 1)",
    )
    kfit.add_argument(
        "--iterations",
        type=int,
        default=1,
        help="closed-form offset / pose alternations after the joint pose+offset fit",
    )
    kfit.add_argument("--name", default=None, help="clip name (default: the input file's stem)")
    kfit.add_argument("--split", default="train", choices=["train", "val"], help="split of the clip (unsegmented)")
    kfit.add_argument(
        "--segment-seconds",
        type=float,
        default=None,
        help="cut the recording into clips of this many seconds; --output is then a directory",
    )
    kfit.add_argument(
        "--val-fraction",
        type=float,
        default=0.2,
        help="with --segment-seconds: the last fraction of segments is the held-out 'val' split",
    )
    kfit.add_argument(
        "--drop-missing-keypoints",
        action="store_true",
        help="fit without keypoints that have no valid frame (default: refuse the file and list them)",
    )
    kfit.add_argument(
        "--up-axis",
        default="z",
        choices=["z", "y", "-z", "-y", "x", "-x"],
        help="the file's axis that points up; the data is rotated so that it becomes z "
        "(default: z; write a negative axis as --up-axis=-z)",
    )

    clips = commands.add_parser("clips", help="make reference clips")
    clips_kinds = clips.add_subparsers(dest="kind", required=True)
    reach = clips_kinds.add_parser(
        "reach",
        help="synthetic joint-space reaches of a body (neuromimic.data.joint_reach): myoarm_reach, fruitfly_pose",
    )
    reach.add_argument("--set", required=True, help="reach set: myoarm_reach (MyoArm) or fruitfly_pose (the fly)")
    reach.add_argument("--output", required=True, help="directory for the .h5 clips")
    reach.add_argument("--fps", type=float, default=None, help="frame rate in Hz (default: the set's control rate)")
    gait = clips_kinds.add_parser(
        "gait", help="MyoLegs walking clips from one gait cycle (MyoSuite's sample_gait_cycle.csv columns)"
    )
    gait.add_argument(
        "--input", required=True, help="the gait cycle CSV (see neuromimic.data.gait for where to get it)"
    )
    gait.add_argument("--output", required=True, help="directory for the .h5 clips")
    gait.add_argument(
        "--fps",
        type=float,
        default=None,
        help="frame rate of the CSV in Hz (default: 200, estimated for MyoSuite's file)",
    )
    gait.add_argument(
        "--fps-out", type=float, default=50.0, help="frame rate of the clips in Hz: the env's control rate"
    )
    gait.add_argument("--seconds", type=float, default=4.0, help="length of each clip in s")

    bodies = commands.add_parser("bodies", help="registered body models")
    bodies_kinds = bodies.add_subparsers(dest="kind", required=True)
    bodies_kinds.add_parser(
        "list", help="key, DoF, actuators, muscles, source package and version, and backends of every body"
    )
    check = bodies_kinds.add_parser(
        "check", help="validate a body: counts, left-right symmetry, moment-arm continuity, stability, backend support"
    )
    check.add_argument("key", help="body key (neuromimic bodies list)")
    check.add_argument(
        "--backend",
        default="mujoco",
        choices=list(BACKENDS),
        help="backend whose support is checked (warp: MuJoCo Warp)",
    )
    check.add_argument("--seconds", type=float, default=2.0, help="simulated seconds of each stability run")

    configs = commands.add_parser(
        "configs", help="the bundled configs: neuromimic fit --config NAME takes them by name"
    )
    configs_kinds = configs.add_subparsers(dest="kind", required=True)
    configs_kinds.add_parser("list", help="name, description, use and installed file of every bundled config")
    copy = configs_kinds.add_parser("copy", help="copy a bundled config out to edit (then --config <file>)")
    copy.add_argument("name", help="bundled config name (neuromimic configs list)")
    copy.add_argument(
        "dest",
        nargs="?",
        default=None,
        help="file to write, or a folder (one that exists, or a path ending in /); default ./NAME.yaml",
    )
    copy.add_argument("--force", action="store_true", help="overwrite an existing file")
    return parser


def main(argv: list[str]) -> None:
    """Run one tool subcommand and print its JSON result to stdout."""
    args = _parser().parse_args(argv)
    if args.command == "bench" and args.kind == "train":
        from neuromimic.bench import bench_train

        result = bench_train(
            body=args.body,
            backend=args.backend,
            num_envs=args.num_envs,
            iterations=args.iterations,
            accelerator=args.accelerator,
            clips=args.clips,
        )
    elif args.command == "bench":
        from neuromimic.bench import bench_env

        result = bench_env(
            body=args.body,
            backend=args.backend,
            num_envs=args.num_envs,
            steps=args.steps,
            substeps=args.substeps,
            clips=args.clips,
            seed=args.seed,
            torch_threads=args.torch_threads,
            proprioception=args.proprioception,
            afferent_dt_ms=args.afferent_dt_ms,
        )
    elif args.command == "export":
        result = _export(args.ckpt, args.output)
    elif args.command == "keypoints":
        from neuromimic.keypoints.fit import fit_file

        result = fit_file(
            body=args.body,
            input=args.input,
            output=args.output,
            format=args.format,
            units=args.units,
            fps=args.fps,
            skeleton=args.skeleton,
            keypoint_names=args.keypoint_names,
            individual=args.individual,
            confidence_threshold=args.confidence_threshold,
            max_gap_frames=args.max_gap_frames,
            fps_out=args.fps_out,
            mapping=args.mapping,
            scale=_keypoint_scale(args.scale, args.body),
            iterations=args.iterations,
            name=args.name,
            split=args.split,
            segment_seconds=args.segment_seconds,
            val_fraction=args.val_fraction if args.segment_seconds else 0.0,
            drop_missing_keypoints=args.drop_missing_keypoints,
            up_axis=args.up_axis,
        )
    elif args.command == "clips" and args.kind == "reach":
        from neuromimic.data.joint_reach import JOINT_REACH_SETS, make_joint_reach_clips

        result = _write_clips(make_joint_reach_clips(args.set, args.fps), args.output)
        result["description"] = JOINT_REACH_SETS[args.set].description
    elif args.command == "clips":
        from neuromimic.data.gait import GAIT_CSV_FPS, make_gait_clips, read_gait_cycle

        cycle = read_gait_cycle(args.input, fps=args.fps or GAIT_CSV_FPS)
        result = _write_clips(make_gait_clips(cycle, fps=args.fps_out, duration=args.seconds), args.output)
        result |= {
            "source_fps": cycle.fps,
            "cycle_s": cycle.period,
            "mean_speed_m_per_s": float(cycle.pelvis_velocity[:, 0].mean()),
        }
    elif args.command == "analyze" and args.kind == "record":
        result = _record(args.ckpt, args.output, None if args.split == "all" else args.split, args.steps)
    elif args.command == "analyze":
        result = _perturb(args.ckpt, args.perturbation, None if args.split == "all" else args.split)
    elif args.command == "configs":
        from neuromimic.bundled import config_use, copy_config, list_configs

        if args.kind == "list":
            result = list_configs()
        else:
            written = copy_config(args.name, args.dest, force=args.force)
            result = {"name": args.name, "written": str(written), "use": config_use(args.name, written)}
    elif args.command == "bodies" and args.kind == "check":
        from neuromimic.bodies.validate import check_body

        result = check_body(args.key, args.backend, seconds=args.seconds)
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        if not result["passed"]:
            raise SystemExit(1)
        return
    else:
        result = _list_bodies()
    sys.stdout.write(json.dumps(result, indent=2) + "\n")


_KEYPOINT_FORMATS_HELP = """\
what each format needs besides --input and --output (--format overrides the inferred one):
  format   file                                     needs
  nwb      .nwb with an ndx-pose PoseEstimation     --units where the series' unit is not m, cm
                                                    or mm (e.g. "pixels"); --individual with
                                                    several PoseEstimation groups
  dannce   .mat with pred [T, 3, K] (p_max used     --skeleton <skeleton>.mat (its joint_names)
           as confidence)                           or --keypoint-names; --units; --fps
  sleap    sleap-anipose points3d.h5: tracks        --keypoint-names or --skeleton <project>.slp;
           [frames, tracks, nodes, 3] or            --units; --fps; --individual <track index>
           [frames, nodes, 3], no names             with several tracks
  sleap    .slp with triangulated 3-D instances     --units; --fps; --individual <identity> with
                                                    several animals
  dlc      DeepLabCut 3-D .h5 / .csv (x, y, z)      --units; --fps; --individual in multi-animal
                                                    files
  anipose  anipose pose-3d .csv                     --units; --fps
  c3d      .c3d                                     nothing: units, rate and labels are in it
  csv      plain .csv: frame, <name>_x/_y/_z        --units; --fps
  npz      .npz: positions, names (, fps)           --units; --fps where it has no fps

2-D files (a SLEAP analysis .h5, DeepLabCut 2-D output, sleap-anipose's reprojections.h5)
are refused: triangulate first. --keypoint-names also renames the keypoints of files that
name them. --confidence-threshold applies where the file has confidence (NWB confidence,
DANNCE p_max, DeepLabCut likelihood, SLEAP point scores, anipose score, csv/npz
confidence). --max-gap-frames: longer gaps stay missing (the fit skips those samples).

example, a DANNCE prediction:
  neuromimic keypoints fit --input save_data_AVG0.mat --skeleton rat23.mat --units mm \\
      --fps 50 --output rat.h5
"""


def _keypoint_names(value: str) -> list[str]:
    """``--keypoint-names a,b,c``: the names, refusing empty ones."""
    names = [name.strip() for name in value.split(",")]
    empty = [i for i, name in enumerate(names) if not name]
    if empty:
        raise argparse.ArgumentTypeError(
            f"{value!r} has an empty name at position {empty[0] + 1}; write the names "
            "separated by single commas, e.g. --keypoint-names Snout,EarL,EarR"
        )
    return names


def _keypoint_scale(scale: str | None, body: str) -> float | None:
    """``--scale``: a number, ``'fit'`` (None: the fitter searches), or the body's
    `Body.keypoint_scale`."""
    if scale is None:
        from neuromimic.bodies import get_body

        return get_body(body).keypoint_scale
    return None if scale == "fit" else float(scale)


def _list_bodies() -> list[dict]:
    import importlib.metadata

    from neuromimic.bodies import check_backend_compatibility, get_body, known_bodies
    from neuromimic.bodies.compat import BACKENDS
    from neuromimic.bodies.validate import muscle_count

    rows = []
    for key in known_bodies():
        body = get_body(key)
        model = body.load_model()
        rows.append(
            {
                "key": key,
                "dof": model.nv,
                "actuators": model.nu,
                "muscles": muscle_count(model),
                "source": f"{body.source} {importlib.metadata.version(body.source)}",
                "backends": [b for b in BACKENDS if not check_backend_compatibility(model, b)],
            }
        )
    return rows


def _write_clips(clips: list, output: str) -> dict:
    """Save ``clips`` as ``{output}/{name}.h5`` (`save_clips`) and summarise them."""
    from neuromimic.data import save_clips

    return {
        "clips": [str(path) for path in save_clips(clips, output)],
        "splits": {split: sum(clip.split == split for clip in clips) for split in ("train", "val")},
        "frames_per_clip": clips[0].num_frames,
        "fps": clips[0].fps,
    }


def _export(ckpt: str, output: str) -> dict:
    from neuromimic.models import export_controller, load_controller
    from neuromimic.models.export import controller_metadata

    controller = load_controller(ckpt)
    metadata = {"source_checkpoint": str(ckpt), **controller_metadata(ckpt)}
    directory = export_controller(controller, output, metadata)
    return {"output": str(directory), "controller": controller.config(), "metadata": metadata}


def _controller_and_env(source: str):
    from neuromimic.envs import EnvConfig
    from neuromimic.models import load_controller
    from neuromimic.models.export import ControllerLoadError, controller_metadata

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


def _record(source: str, output: str, split: str | None, steps: int | None) -> dict:
    from pathlib import Path

    from neuromimic.analysis.record import record

    controller, env = _controller_and_env(source)
    recording = record(controller, env, split=split, steps=steps)
    path = Path(output)
    written = recording.save_nwb(path) if path.suffix == ".nwb" else recording.save_h5(path)
    return {"output": str(written), "arrays": {k: list(v.shape) for k, v in recording.data.items()}}


def _perturb(source: str, perturbation: str, split: str | None) -> dict:
    from pathlib import Path

    import yaml

    from neuromimic.analysis import perturb
    from neuromimic.analysis.record import record
    from neuromimic.envs import make_env
    from neuromimic.errors import InputError

    controller, config = _controller_and_env(source)
    try:
        perturbations = yaml.safe_load(Path(perturbation).read_text())
    except (OSError, yaml.YAMLError) as error:
        raise InputError(f"cannot read the perturbation file {perturbation}: {error}") from None
    if not isinstance(perturbations, list):
        raise InputError(f"{perturbation} must hold a YAML list of {{name: arguments}} entries")
    env = make_env(config, split=split, evaluation=True)
    baseline = record(controller, env)
    with perturb.apply(perturbations, controller, env):
        perturbed = record(controller, env)
    return {
        "perturbations": perturbations,
        "baseline": _activity_summary(baseline),
        "perturbed": _activity_summary(perturbed),
    }


def _activity_summary(recording) -> dict:
    valid = recording["valid"]
    activation = recording["muscle/activation"][valid]
    return {
        "site_error_mm": float(recording["metrics/site_pos_error_mm"][valid].mean()),
        "joint_error_deg": float(recording["metrics/joint_pos_error_deg"][valid].mean()),
        "total_activation": float(activation.sum(axis=1).mean()),
        "mean_activation": dict(
            zip(recording.attrs["muscle_names"], activation.mean(axis=0).round(5).tolist(), strict=True)
        ),
    }
