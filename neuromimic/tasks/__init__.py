"""Tasks (observation-free reward and termination logic) and their reward terms."""

from neuromimic.tasks.imitation import ImitationTask
from neuromimic.tasks.terms import TERMS, ReferenceFrame, TrackingErrors, tracking_errors

__all__ = ["TERMS", "ImitationTask", "ReferenceFrame", "TrackingErrors", "tracking_errors"]
