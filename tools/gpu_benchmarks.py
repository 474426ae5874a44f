"""The GPU benchmark matrix of the throughput work, written to a dated JSON file.

    python tools/gpu_benchmarks.py                  # on a machine with a CUDA GPU
    python tools/gpu_benchmarks.py --sizes 64 --allow-cpu   # the harness itself, on a CPU

For every backend and size: `neuromimic bench env` (our env against the bare simulator in
the same process) and `neuromimic bench train` (end-to-end PPO environment steps per
second), each as one JSON object, collected into
``tools/benchmarks/<date>-<device>.json``.

    python tools/gpu_benchmarks.py --bodies myolegs fruitfly rodent myoarm --sizes 1024 4096

adds the body zoo: `neuromimic bench env` of each body at its config's control rate
(`ZOO_SUBSTEPS`), on a clip of its rest pose (the physics cost does not depend on the
clip; the mouse uses its bundled reaches and is also trained).
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import re
import tempfile
from pathlib import Path

import numpy as np
import torch

from neuromimic.bench import bench_env, bench_train
from neuromimic.bodies import get_body
from neuromimic.bodies.validate import coupled_pose
from neuromimic.data.clips import ReferenceClip

HERE = Path(__file__).resolve().parent
#: Physics steps per control step in each zoo body's config (configs/*.yaml).
ZOO_SUBSTEPS = {"rodent": 10, "myoarm": 10, "myolegs": 10, "fruitfly": 20}


def rest_clip(key: str, directory: Path) -> str:
    """A 200-frame clip of body ``key`` at rest, at its config's control rate; its path."""
    body = get_body(key)
    model = body.load_model()
    rest = coupled_pose(model, body.rest_qpos(model))[0]
    fps = 1.0 / (ZOO_SUBSTEPS[key] * model.opt.timestep)
    path = directory / f"{key}_rest.h5"
    ReferenceClip.from_qpos(key, np.tile(rest, (200, 1)), fps, name="rest", split="train").save(path)
    return str(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096, 16384])
    parser.add_argument("--backends", nargs="+", default=["mjx"])
    parser.add_argument("--env-steps", type=int, default=200)
    parser.add_argument("--train-iterations", type=int, default=10)
    parser.add_argument(
        "--bodies", nargs="+", default=["mouse_forelimb"], choices=["mouse_forelimb", *ZOO_SUBSTEPS],
        help="bodies to benchmark (zoo bodies: env only, on a rest-pose clip)",
    )
    parser.add_argument("--allow-cpu", action="store_true", help="run without a GPU (the harness only)")
    args = parser.parse_args()
    if not torch.cuda.is_available() and not args.allow_cpu:
        raise SystemExit("no CUDA GPU here: these numbers must come from a GPU (or pass --allow-cpu)")
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or "cpu"
    runs = []
    clips = Path(tempfile.mkdtemp(prefix="neuromimic-zoo-"))
    for key in args.bodies:
        for backend in args.backends:
            for size in args.sizes:
                done = len(runs)
                if key == "mouse_forelimb":
                    runs.append(bench_env(backend=backend, num_envs=size, steps=args.env_steps))
                    runs.append(bench_train(backend=backend, num_envs=size, iterations=args.train_iterations))
                else:
                    runs.append(bench_env(
                        body=key, backend=backend, num_envs=size, steps=args.env_steps,
                        substeps=ZOO_SUBSTEPS[key], clips=rest_clip(key, clips),
                    ))
                print(json.dumps(runs[done:]), flush=True)
    stamp = datetime.date.today().isoformat()
    path = HERE / "benchmarks" / f"{stamp}-{re.sub(r'[^A-Za-z0-9]+', '-', device).strip('-')}.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps({"date": stamp, "device": device, "runs": runs}, indent=2))
    print(path)


if __name__ == "__main__":
    main()
