"""The numbers behind `neuromimic.data.gait`'s frame rate and conventions, as one JSON object.

    python tools/check_gait_cycle.py --input sample_gait_cycle.csv

- ``fps_from_stance``: in mid-stance a foot is still, so its forward velocity relative to
  the pelvis is minus the pelvis velocity; the least-squares fit of the file's forward foot
  displacement per frame against ``pelvis_vel_X`` gives the seconds per frame (left
  stance: frames 25-110, right: 150-235 of MyoSuite's 247).
- ``stance_slip_m_per_s``: the clip replayed on MyoLegs at each candidate frame rate; the
  median horizontal speed of the lowest foot point (heel or toe of the stance foot), which
  is least at the right rate.
- ``toe_correlation``: at the chosen rate, the correlation of MyoLegs' toe positions
  relative to the pelvis (forward, vertical) with the file's foot columns; it checks the
  angle and frame conventions (the reference points differ by a constant offset).
"""

from __future__ import annotations

import argparse
import csv
import json

import mujoco
import numpy as np

from neuromimic.bodies import get_body
from neuromimic.data.gait import GAIT_CSV_FPS, gait_qpos, read_gait_cycle

CANDIDATE_FPS = (150.0, 175.0, 200.0, 225.0, 240.0, 260.0)
STANCE = {"l": (25, 110), "r": (150, 235)}


def fps_from_stance(columns: dict[str, np.ndarray]) -> dict[str, float]:
    """Frame rate (Hz) fitted from each foot's mid-stance (see the module docstring)."""
    rates = {}
    for side, (a, b) in STANCE.items():
        step = np.diff(columns[f"{side}_foot_relative_X"])[a:b]
        velocity = 0.5 * (columns["pelvis_vel_X"][a:b] + columns["pelvis_vel_X"][a + 1 : b + 1])
        seconds_per_frame = -(step @ velocity) / (velocity @ velocity)
        rates[side] = round(1.0 / seconds_per_frame, 1)
    return rates


def foot_paths(qpos: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """World positions [T, 4, 3] of both calcanei and toes, and each toe [T, 3] relative to
    the pelvis in the heading frame (forward = MyoLegs' -y, left = +x, up = +z)."""
    model = get_body("myolegs").load_model()
    data = mujoco.MjData(model)
    names = ("calcn_l", "calcn_r", "toes_l", "toes_r")
    world, toes = [], {"l": [], "r": []}
    for q in qpos:
        data.qpos[:] = q
        mujoco.mj_kinematics(model, data)
        world.append([data.body(n).xpos.copy() for n in names])
        for side in "lr":
            offset = data.body(f"toes_{side}").xpos - data.body("pelvis").xpos
            toes[side].append([-offset[1], offset[0], offset[2]])
    return np.array(world), {side: np.array(path) for side, path in toes.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True, help="the gait cycle CSV")
    args = parser.parse_args()
    with open(args.input, newline="") as handle:
        rows = list(csv.reader(handle))
    columns = {name: np.array([float(r[i]) for r in rows[1:]]) for i, name in enumerate(rows[0])}

    slip = {}
    for fps in CANDIDATE_FPS:
        cycle = read_gait_cycle(args.input, fps=fps)
        world, _ = foot_paths(gait_qpos(cycle, fps=200.0, duration=cycle.period))
        speed = np.linalg.norm(np.diff(world[:, :, :2], axis=0), axis=-1) * 200.0
        lowest = np.argmin(world[:-1, :, 2], axis=1)
        slip[f"{fps:g}"] = round(float(np.median(speed[np.arange(len(speed)), lowest])), 3)

    cycle = read_gait_cycle(args.input, fps=GAIT_CSV_FPS)
    _, toes = foot_paths(gait_qpos(cycle, fps=GAIT_CSV_FPS, duration=(cycle.num_frames - 1) / GAIT_CSV_FPS))
    correlation = {
        f"{side}_{axis}": round(float(np.corrcoef(toes[side][:, k], columns[f"{side}_foot_relative_{axis}"])[0, 1]), 3)
        for side in "lr"
        for k, axis in ((0, "X"), (2, "Z"))
    }
    print(
        json.dumps(
            {
                "input": args.input,
                "frames": cycle.num_frames,
                "fps_from_stance": fps_from_stance(columns),
                "stance_slip_m_per_s": slip,
                "toe_correlation": correlation,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
