"""Train every bundled controller config for the same number of environment steps and
print their held-out tracking errors side by side, as JSON (a benchmark, not a test).

    python tools/compare_controllers.py --max-steps 4800 [--configs mlp gru rate_rnn intention]

Each config runs ``neuromimic fit`` in its own temporary directory with the same
``trainer.max_steps`` (a multiple of 800, so that the last validation, every 50 PPO
iterations, falls at the end) (optimiser steps; every config collects 64 envs x 32 steps per
16 optimiser steps, so the same number of environment steps). The result per config:
held-out wrist error (mm) and joint error (deg) before and after training, environment
steps, wall-clock seconds and median collection speed.
"""

from __future__ import annotations

import argparse
import glob
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

ROOT = Path(__file__).resolve().parents[1]


def run(config: str, max_steps: int) -> dict:
    path = ROOT / "configs" / f"mouse_forelimb_reach_{config}.yaml"
    with tempfile.TemporaryDirectory() as directory:
        start = time.perf_counter()
        command = [
            sys.executable,
            "-m",
            "neuromimic.cli",
            "fit",
            "--config",
            str(path),
            "--trainer.max_steps",
            str(max_steps),
            "--trainer.enable_progress_bar",
            "false",
        ]
        result = subprocess.run(command, cwd=directory, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise SystemExit(f"neuromimic fit failed for {config}:\n{result.stderr[-4000:]}")
        seconds = time.perf_counter() - start
        events = EventAccumulator(glob.glob(f"{directory}/lightning_logs/version_0/events*")[0])
        events.Reload()
        last = lambda tag: events.Scalars(tag)[-1].value
        speed = [e.value for e in events.Scalars("perf/env_steps_per_s")]
        iterations = len(speed)
        return {
            "config": config,
            "optimiser_steps": max_steps,
            "env_steps": iterations * 64 * 32,
            "val_wrist_error_mm_untrained": last("val/site_pos_error_mm_untrained"),
            "val_wrist_error_mm": last("val/site_pos_error_mm"),
            "val_joint_error_deg": last("val/joint_pos_error_deg"),
            "wall_s": round(seconds, 1),
            "median_env_steps_per_s": round(statistics.median(speed)),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-steps", type=int, default=4800)
    parser.add_argument("--configs", nargs="+", default=["mlp", "gru", "rate_rnn", "intention"])
    args = parser.parse_args()
    if args.max_steps % 800:
        parser.error("--max-steps must be a multiple of 800 (validation every 50 iterations of 16 steps)")
    results = []
    for config in args.configs:
        results.append(run(config, args.max_steps))
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    print(json.dumps({"benchmark": "controllers", "results": results}, indent=2))


if __name__ == "__main__":
    main()
