"""Lab pose files to 3-D keypoints in metres, and a body's joint angles fitted to them.

`read_keypoints` reads NWB (ndx-pose), DANNCE, DeepLabCut, SLEAP, anipose, C3D, CSV and
NPZ files into one `Keypoints` object (positions [T, K, 3] in m, names, fps, validity
mask), applying the same rules to every format: explicit units and frame rate, masking
of missing and low-confidence keypoints, interpolation of short gaps, splitting on long
ones, a body-size plausibility check and the up axis. See `neuromimic.keypoints.rules`
for the rules and `neuromimic.keypoints.formats` for the formats.

Fitting (STAC-style): `neuromimic.keypoints.mapping` attaches keypoints to a model's
bodies, `neuromimic.keypoints.solver` holds the least-squares problem and its solvers,
and `neuromimic.keypoints.fitting.fit_keypoints` runs them; clips of the fits are made by
`neuromimic.data.keypoint_clips`.
"""

from neuromimic.keypoints.formats import FORMATS, KEYPOINT_FORMATS_HELP, infer_format
from neuromimic.keypoints.keypoints import Gap, Keypoints, KeypointsError
from neuromimic.keypoints.readers import (
    read_anipose,
    read_c3d,
    read_csv,
    read_dannce,
    read_dlc,
    read_keypoints,
    read_npz,
    read_nwb,
    read_sleap,
)
from neuromimic.keypoints.rules import (
    DEFAULT_CONFIDENCE_THRESHOLD,
    DEFAULT_MAX_GAP_FRAMES,
    UNITS,
    UP_AXES,
    check_plausible_size,
    check_up_axis,
    make_keypoints,
)

__all__ = [
    "DEFAULT_CONFIDENCE_THRESHOLD",
    "DEFAULT_MAX_GAP_FRAMES",
    "FORMATS",
    "KEYPOINT_FORMATS_HELP",
    "UNITS",
    "UP_AXES",
    "Gap",
    "Keypoints",
    "KeypointsError",
    "check_plausible_size",
    "check_up_axis",
    "infer_format",
    "make_keypoints",
    "read_anipose",
    "read_c3d",
    "read_csv",
    "read_dannce",
    "read_dlc",
    "read_keypoints",
    "read_npz",
    "read_nwb",
    "read_sleap",
]
