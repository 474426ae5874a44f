"""Regenerate the bundled synthetic center-out reaching clips of the mouse forelimb.

The procedure is documented in `neuromimic.data.reach`; it is deterministic, so running
this again reproduces the same clips. Usage::

    python tools/make_reach_clips.py [--output DIR]
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from neuromimic.data.clips import BUNDLED_DIR, save_clips
from neuromimic.data.reach import make_reach_clips

DEFAULT_OUTPUT = BUNDLED_DIR / "mouse_forelimb_reach"


def main(argv: list[str] | None = None) -> None:
    """Make the 40 reaching clips, write them to ``--output`` and print a summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        help=f"directory of the .h5 clips (default: {DEFAULT_OUTPUT})",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    clips = make_reach_clips()
    names = {f"{clip.name}.h5" for clip in clips}
    stale = sorted(p.name for p in args.output.glob("*.h5") if p.name not in names)
    if stale:
        print(f"note: {args.output} also holds other clips, left untouched: {stale}")
    total = sum(path.stat().st_size for path in save_clips(clips, args.output))
    splits = {s: sum(c.split == s for c in clips) for s in ("train", "val")}
    residual = max(float(c.meta["ik_max_residual_m"]) for c in clips)
    print(
        f"wrote {len(clips)} clips ({splits['train']} train, {splits['val']} val) to "
        f"{args.output}: {total / 1024:.0f} KiB, {clips[0].num_frames} frames at "
        f"{clips[0].fps:g} Hz each, max IK residual {residual:.2e} m"
    )


if __name__ == "__main__":
    main()
