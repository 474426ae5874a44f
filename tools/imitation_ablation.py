"""Train one config in several variants at the same budget and compare their held-out tracking.

Each variant is ``neuromimic fit`` of the config with a few flags (one process at a time,
in its own directory); the held-out numbers are those `PPOModule.evaluate` logs at the end
of the run: the tracked-site error over every frame of every held-out clip, and the
fraction of held-out frames tracked before the site error first exceeds the config's
termination distance. Prints one JSON line per variant, then a summary.

    python tools/imitation_ablation.py --config configs/rodent_imitation_mlp.yaml \\
        --clips rat23_clips --max-steps 1600 --output ablation

The variants (``--variants``): ``world-absolute``, ``egocentric-absolute``,
``world-relative``, ``egocentric-relative`` (observation frame x action term).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

VARIANTS = {
    "world-absolute": ["--model.env.frame", "world", "--model.env.action", '{"name": "absolute"}'],
    "egocentric-absolute": ["--model.env.frame", "egocentric", "--model.env.action", '{"name": "absolute"}'],
    "world-relative": ["--model.env.frame", "world", "--model.env.action", '{"name": "reference_relative"}'],
    "egocentric-relative": ["--model.env.frame", "egocentric", "--model.env.action", '{"name": "reference_relative"}'],
}


def run(
    config: str, clips: str | None, max_steps: int, name: str, flags: list[str], output: Path, extra: list[str]
) -> dict:
    directory = output / name
    directory.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "neuromimic.cli",
        "fit",
        "--config",
        str(Path(config).resolve()),
        "--trainer.max_steps",
        str(max_steps),
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.check_val_every_n_epoch",
        "1000000",
        *flags,
        *extra,
    ]
    if clips:
        command += ["--model.env.clips", str(Path(clips).resolve())]
    start = time.perf_counter()
    result = subprocess.run(command, cwd=directory, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        return {"variant": name, "failed": result.stderr[-3000:]}
    run_dir = max((directory / "lightning_logs").glob("version_*"))
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    speeds = [e.value for e in events.Scalars("perf/env_steps_per_s")]
    resets = [e.value for e in events.Scalars("train/reset_fraction")]
    final = next(line for line in result.stderr.splitlines()[::-1] if "held-out tracked-site error" in line)
    untrained = float(final.split("untrained ")[1].split(" mm")[0])
    trained = float(final.split("-> trained ")[1].split(" mm")[0])
    tracked = float(final.split("(")[-1].split("%")[0]) / 100
    return {
        "variant": name,
        "flags": flags + extra,
        "untrained_mm": untrained,
        "held_out_mm": trained,
        "held_out_tracked_fraction": tracked,
        "train_site_mm_last": round(events.Scalars("train/site_pos_error_mm")[-1].value, 3),
        "reset_fraction_first_10": round(statistics.mean(resets[:10]), 4),
        "reset_fraction_last_10": round(statistics.mean(resets[-10:]), 4),
        "median_env_steps_per_s": round(statistics.median(speeds)),
        "wall_s": round(seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--clips", default=None, help="overrides model.env.clips")
    parser.add_argument("--max-steps", type=int, required=True, help="optimiser steps per variant")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--output", default="ablation")
    parser.add_argument("extra", nargs=argparse.REMAINDER, help="more flags for every run, after --")
    args = parser.parse_args()
    extra = [a for a in args.extra if a != "--"]
    rows = []
    for name in args.variants.split(","):
        row = run(args.config, args.clips, args.max_steps, name, VARIANTS[name], Path(args.output), extra)
        print(json.dumps(row), flush=True)
        rows.append(row)
    print(
        json.dumps(
            {
                "summary": {
                    r["variant"]: {k: r.get(k) for k in ("held_out_mm", "held_out_tracked_fraction")} for r in rows
                }
            }
        )
    )


if __name__ == "__main__":
    main()
