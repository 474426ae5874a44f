"""Body models and their registry: ``get_body("mouse_forelimb")``."""

from neuromimic.bodies import mouse_forelimb as _mouse_forelimb  # noqa: F401  (registers)
from neuromimic.bodies.base import Body, UnknownBodyError, get_body, known_bodies, register_body

__all__ = ["Body", "UnknownBodyError", "get_body", "known_bodies", "register_body"]
