"""Reference data: the `ReferenceClip` HDF5 schema, clip loading and the `ClipBank` sampler."""

from neuromimic.data.clip_bank import ClipBank
from neuromimic.data.clips import (
    SCHEMA_VERSION,
    ClipError,
    ReferenceClip,
    load_clips,
    save_clips,
)

__all__ = ["SCHEMA_VERSION", "ClipBank", "ClipError", "ReferenceClip", "load_clips", "save_clips"]
