"""Body models and their registry: ``get_body("mouse_forelimb")``, ``get_body("rodent")``,
``get_body("fruitfly")``, ``get_body("myoarm")``, ``get_body("myolegs")``,
``get_body("myofullbody")``, ``get_body("myoarm_bimanual")``."""

from neuromimic.bodies import fruitfly as _fruitfly  # noqa: F401  (registers; loads dm-control lazily)
from neuromimic.bodies import mouse_forelimb as _mouse_forelimb  # noqa: F401  (registers)
from neuromimic.bodies import musclemimic as _musclemimic  # noqa: F401  (registers; loads musclemimic-models lazily)
from neuromimic.bodies import myo as _myo  # noqa: F401  (registers; loads myo-sim lazily)
from neuromimic.bodies import rodent as _rodent  # noqa: F401  (registers; loads dm-control lazily)
from neuromimic.bodies.base import (
    Body,
    UnknownBodyError,
    get_body,
    known_bodies,
    register_body,
)
from neuromimic.bodies.compat import (
    BackendCompatibilityError,
    Incompatibility,
    check_backend_compatibility,
    require_backend_compatibility,
)

__all__ = [
    "BackendCompatibilityError",
    "Body",
    "Incompatibility",
    "UnknownBodyError",
    "check_backend_compatibility",
    "get_body",
    "known_bodies",
    "register_body",
    "require_backend_compatibility",
]
