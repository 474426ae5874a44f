"""Worked example: does an energy cost change the muscle activity of the simulated mouse?

Trains the default MLP controller twice on the bundled reaching clips, with and without
the effort costs (``ctrl_l2`` and ``muscle_force_l2``), records both on the held-out
clips, and compares co-contraction of the elbow antagonists (Biceps_Long and Brachialis
against the triceps heads) and total muscle activation. Prints one JSON object and
writes a figure.

    python tools/effort_example.py --max-steps 4800 --output effort/   # about 6 minutes on 2 CPU cores

Co-contraction index per frame (Falconer and Winter 1985), with flexor activation ``f``
(mean of the two flexors) and extensor activation ``e`` (mean of the two triceps heads):
``CCI = 2 min(f, e) / (f + e)``, 1 when both groups are equally active, 0 when one is
silent; averaged over the held-out frames.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from neuromimic import load_controller
from neuromimic.analysis import record
from neuromimic.envs import EnvConfig
from neuromimic.models.export import controller_metadata

ROOT = Path(__file__).resolve().parents[1]
FLEXORS = ("Biceps_Long", "Brachialis")
EXTENSORS = ("Triceps_Lateral", "Triceps_Long")
RUNS = {
    "with_effort_cost": [],
    "without_effort_cost": [
        "--model.env.rewards",
        '{"joint_pos_error_exp": {"weight": 1.0, "sigma": 0.1}, "joint_vel_error_exp": {"weight": 0.1, "sigma": 2.0}, "site_pos_error_exp": {"weight": 1.0, "sigma": 0.001}}',
    ],
}


def train(name: str, extra: list[str], max_steps: int, output: Path) -> Path:
    """``neuromimic fit`` of the default config into ``output/name``; its last checkpoint."""
    directory = output / name
    directory.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "neuromimic.cli",
        "fit",
        "--config",
        str(ROOT / "configs" / "mouse_forelimb_reach_mlp.yaml"),
        "--trainer.max_steps",
        str(max_steps),
        "--trainer.enable_progress_bar",
        "false",
        *extra,
    ]
    result = subprocess.run(command, cwd=directory, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"training {name} failed:\n{result.stderr[-4000:]}")
    return directory / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"


def muscle_summary(checkpoint: Path) -> dict:
    """Co-contraction, activation and tracking error on the held-out clips."""
    controller = load_controller(checkpoint)
    rollout = record(controller, EnvConfig.from_dict(controller_metadata(checkpoint)["env"]))
    names = rollout.attrs["muscle_names"]
    valid = rollout["valid"]
    activation = rollout["muscle/activation"][valid]  # [frames, 9]
    flexor = activation[:, [names.index(m) for m in FLEXORS]].mean(axis=1)
    extensor = activation[:, [names.index(m) for m in EXTENSORS]].mean(axis=1)
    cci = 2 * np.minimum(flexor, extensor) / np.maximum(flexor + extensor, 1e-12)
    return {
        "co_contraction_index": float(cci.mean()),
        "total_activation": float(activation.sum(axis=1).mean()),
        "mean_activation_per_muscle": dict(zip(names, activation.mean(axis=0).round(4).tolist(), strict=True)),
        "wrist_error_mm": float(rollout["metrics/site_pos_error_mm"][valid].mean()),
        "flexor_activation": rollout["muscle/activation"][0][:, [names.index(m) for m in FLEXORS]]
        .mean(axis=1)
        .tolist(),
        "extensor_activation": rollout["muscle/activation"][0][:, [names.index(m) for m in EXTENSORS]]
        .mean(axis=1)
        .tolist(),
        "time_s": rollout.time.tolist(),
    }


def figure(results: dict, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.5), layout="constrained")
    bars, trace_with, trace_without = fig.subplots(1, 3)
    labels = list(results)
    bars.bar(labels, [results[k]["co_contraction_index"] for k in labels], color=["tab:red", "tab:grey"])
    bars.set_ylabel("co-contraction index (elbow)")
    bars.set_ylim(0, 1)
    for axis, name in ((trace_with, "with_effort_cost"), (trace_without, "without_effort_cost")):
        run = results[name]
        axis.plot(run["time_s"], run["flexor_activation"], label="flexors (biceps, brachialis)")
        axis.plot(run["time_s"], run["extensor_activation"], label="extensors (triceps heads)")
        axis.set_title(name.replace("_", " "))
        axis.set_xlabel("time (s)")
        axis.set_ylabel("activation (0..1)")
        axis.set_ylim(0, 1)
    trace_with.legend(fontsize=7)
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-steps", type=int, default=4800)
    parser.add_argument("--output", type=Path, default=Path("effort_example"))
    args = parser.parse_args()
    results = {name: muscle_summary(train(name, extra, args.max_steps, args.output)) for name, extra in RUNS.items()}
    figure(results, args.output / "effort_example.png")
    summary = {
        name: {k: v for k, v in run.items() if k not in ("flexor_activation", "extensor_activation", "time_s")}
        for name, run in results.items()
    }
    print(json.dumps({"example": "effort_cost", "max_steps": args.max_steps, "results": summary}, indent=2))


if __name__ == "__main__":
    main()
