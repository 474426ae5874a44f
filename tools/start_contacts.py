"""Contacts and solver work of the first control step after an episode start, against a later one.

For a body and its reference clips: how many frames put the body into the floor or into
itself (the tolerance is `neuromimic.data.contacts.START_PENETRATION_TOLERANCE_M`;
overlaps of the body's own rest pose count only by how much they grow), and,
from start frames drawn at random among all frames and among the valid ones
(`neuromimic.data.contacts.valid_starts`, what the env uses), the mean number of contacts
and of solver iterations per physics step in the first control step and in the fifth.
Servo bodies hold their servos on the reference (the ``reference_relative`` action at
0.5), muscle bodies keep their muscles off. Prints one JSON object.

    python tools/start_contacts.py --body rodent --clips rat23_clips
    python tools/start_contacts.py --body mouse_forelimb --clips bundled:mouse_forelimb_reach
"""

from __future__ import annotations

import argparse
import json

import mujoco
import numpy as np
import torch

from neuromimic.bodies import get_body
from neuromimic.data import load_clips
from neuromimic.data.contacts import (
    START_PENETRATION_TOLERANCE_M,
    penetrations,
    rest_overlaps,
    valid_starts,
)
from neuromimic.physics.model import compile_model
from neuromimic.tasks.actions import ACTIONS, position_servo_problems


def _step_cost(model, data, clip, start, steps, substeps, action_map) -> list[tuple[float, float]]:
    """Mean contacts and solver iterations per physics step of each of ``steps`` control steps."""
    mujoco.mj_resetData(model, data)
    data.qpos[:], data.qvel[:] = clip.qpos[start], clip.qvel[start]
    mujoco.mj_forward(model, data)
    out = []
    for k in range(steps):
        frame = min(start + k + 1, clip.num_frames - 1)
        if action_map is not None:
            reference = torch.as_tensor(clip.qpos[frame])[None]
            data.ctrl[:] = action_map(torch.full((1, model.nu), 0.5, dtype=torch.float64), reference)[0].numpy()
        contacts = iterations = 0.0
        for _ in range(substeps):
            mujoco.mj_step(model, data)
            contacts += data.ncon
            iterations += float(np.max(data.solver_niter))
        out.append((contacts / substeps, iterations / substeps))
    return out


def measure(body: str, clips: str, samples: int = 64, seed: int = 0) -> dict:
    spec = get_body(body)
    model = compile_model(spec)
    loaded = load_clips(clips, body=spec.key, split=None)
    substeps = round(1.0 / (loaded[0].fps * model.opt.timestep))
    tolerance = START_PENETRATION_TOLERANCE_M / spec.length_unit_m
    data = mujoco.MjData(model)
    rest = spec.rest_qpos(model)
    accepted = rest_overlaps(model, rest)
    floor, self_depth, valid = [], [], []
    for clip in loaded:
        for qpos in clip.qpos:
            f, s, _ = penetrations(model, data, qpos, accepted)
            floor.append(f)
            self_depth.append(s)
        valid.append(valid_starts(model, clip.qpos, tolerance, rest))
    floor, self_depth = np.array(floor), np.array(self_depth)
    servo = not position_servo_problems(model) and model.nu > 0
    action_map = ACTIONS["reference_relative"].make(model) if servo else None
    rng = np.random.default_rng(seed)
    to_mm = 1e3 * spec.length_unit_m

    def costs(only_valid: bool) -> dict:
        first, fifth = [], []
        for _ in range(samples):
            c = int(rng.integers(len(loaded)))
            frames = (
                np.flatnonzero(valid[c][: max(1, loaded[c].num_frames - 6)])
                if only_valid
                else np.arange(max(1, loaded[c].num_frames - 6))
            )
            if frames.size == 0:
                continue
            per_step = _step_cost(model, data, loaded[c], int(rng.choice(frames)), 5, substeps, action_map)
            first.append(per_step[0])
            fifth.append(per_step[4])
        if not first:
            return {"starts": 0}
        first, fifth = np.array(first), np.array(fifth)
        return {
            "starts": len(first),
            "first_step": {
                "contacts": round(float(first[:, 0].mean()), 2),
                "solver_iterations": round(float(first[:, 1].mean()), 2),
            },
            "fifth_step": {
                "contacts": round(float(fifth[:, 0].mean()), 2),
                "solver_iterations": round(float(fifth[:, 1].mean()), 2),
            },
        }

    all_valid = np.concatenate(valid)
    return {
        "body": spec.key,
        "clips": clips,
        "frames": int(floor.size),
        "tolerance_mm": START_PENETRATION_TOLERANCE_M * 1e3,
        "floor_penetrating_frames_pct": round(100 * float((floor > tolerance).mean()), 2),
        "floor_penetration_max_mm": round(float(floor.max() * to_mm), 3),
        "self_penetrating_frames_pct": round(100 * float((self_depth > tolerance).mean()), 2),
        "self_penetration_max_mm": round(float(self_depth.max() * to_mm), 3),
        "valid_start_frames_pct": round(100 * float(all_valid.mean()), 2),
        "clip_meta_floor_lift_max_mm": max((float(c.meta.get("floor_lift_max_mm", 0.0)) for c in loaded), default=0.0),
        "any_frame": costs(False),
        "valid_frames": costs(True),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--body", required=True)
    parser.add_argument("--clips", required=True, help="a clip file, a directory of them or bundled:<name>")
    parser.add_argument("--samples", type=int, default=64, help="start frames drawn for the step costs")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(json.dumps(measure(args.body, args.clips, args.samples, args.seed), indent=2))


if __name__ == "__main__":
    main()
