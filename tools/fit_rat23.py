"""Benchmark the keypoint fitter on the real rat23 recording (1,000 frames, 30 Hz, mm).

Two protocols, printed as one JSON object:

- ``scored_frames`` (stac-mjx's protocol): the rodent scaled to 0.9, offsets fitted on the
  1,000 frames that are scored (one offset per keypoint, shared by all frames), poses
  fitted on every frame.
- ``held_out``: offsets (and poses) fitted on frames 0-499; then, with those offsets
  fixed, poses fitted and scored on frames 500-999.

Usage::

    python tools/fit_rat23.py [--nwb PATH] [--scale 0.9] [--clip out.h5]
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from neuromimic.bodies import get_body
from neuromimic.data.keypoint_clips import fit_to_clips
from neuromimic.keypoints import read_keypoints
from neuromimic.keypoints.fitting import FitOptions, fit_keypoints
from neuromimic.keypoints.mapping import load_mapping

_RAT23 = Path("data") / "rat23" / "rat23_1000_frames.nwb"
#: The repository's ``shared/`` checkout if it has one, else the workspace's ``/work/shared``.
DEFAULT_NWB = next(
    (
        p
        for p in (Path(__file__).resolve().parents[1] / "shared" / _RAT23, Path("/work/shared") / _RAT23)
        if p.is_file()
    ),
    Path("/work/shared") / _RAT23,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nwb", default=str(DEFAULT_NWB))
    parser.add_argument("--scale", type=float, default=0.9)
    parser.add_argument("--clip", default=None, help="also write the scored-frames fit as a clip")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    body = get_body("rodent")
    model = body.load_model()
    mapping = load_mapping(model, body.keypoint_sites)
    kp = read_keypoints(args.nwb, units="mm")
    options = FitOptions(scale=args.scale, trunk_keypoints=body.trunk_keypoints)

    start = time.perf_counter()
    scored = fit_keypoints(model, mapping, kp, options)
    scored_seconds = time.perf_counter() - start
    if args.clip:
        fit_to_clips(scored, "rodent", kp.fps, name="rat23", meta={"input": str(args.nwb)})[0].save(args.clip)

    start = time.perf_counter()
    train = fit_keypoints(model, mapping, kp, options, frames=range(500))
    test = fit_keypoints(
        model,
        mapping,
        kp,
        FitOptions(scale=args.scale, trunk_keypoints=body.trunk_keypoints, fit_offsets=False),
        frames=range(500, 1000),
        offsets=train.offsets,
    )
    held_seconds = time.perf_counter() - start

    result = {
        "input": str(args.nwb),
        "scale": args.scale,
        "scored_frames": {**scored.report(), "wall_seconds": round(scored_seconds, 1)},
        "held_out": {
            "offsets_fitted_on": "frames 0-499",
            "fit_frames_0_499": {k: v for k, v in train.report().items() if k != "per_keypoint_mm"},
            "scored_on_frames_500_999": test.report(),
            "wall_seconds": round(held_seconds, 1),
        },
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
