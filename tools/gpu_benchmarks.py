"""The GPU benchmark matrix of the throughput work, written to a dated JSON file.

    python tools/gpu_benchmarks.py                  # on a machine with a CUDA GPU
    python tools/gpu_benchmarks.py --sizes 64 --allow-cpu   # the harness itself, on a CPU

For every backend and size: `neuromimic bench env` (our env against the bare simulator in
the same process) and `neuromimic bench train` (end-to-end PPO environment steps per
second), each as one JSON object, collected into
``tools/benchmarks/<date>-<device>.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import re
from pathlib import Path

import torch

from neuromimic.bench import bench_env, bench_train

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096, 16384])
    parser.add_argument("--backends", nargs="+", default=["mjx"])
    parser.add_argument("--env-steps", type=int, default=200)
    parser.add_argument("--train-iterations", type=int, default=10)
    parser.add_argument("--allow-cpu", action="store_true", help="run without a GPU (the harness only)")
    args = parser.parse_args()
    if not torch.cuda.is_available() and not args.allow_cpu:
        raise SystemExit("no CUDA GPU here: these numbers must come from a GPU (or pass --allow-cpu)")
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or "cpu"
    runs = []
    for backend in args.backends:
        for size in args.sizes:
            runs.append(bench_env(backend=backend, num_envs=size, steps=args.env_steps))
            runs.append(bench_train(backend=backend, num_envs=size, iterations=args.train_iterations))
            print(json.dumps(runs[-2:]), flush=True)
    stamp = datetime.date.today().isoformat()
    path = HERE / "benchmarks" / f"{stamp}-{re.sub(r'[^A-Za-z0-9]+', '-', device).strip('-')}.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps({"date": stamp, "device": device, "runs": runs}, indent=2))
    print(path)


if __name__ == "__main__":
    main()
