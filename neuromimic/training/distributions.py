"""Action distributions whose construction, sampling and scoring never wait on the device.

TorchRL's ``TanhNormal(low=0, high=1)`` copies its bounds to the device and evaluates
``(high != 1).any()`` and ``(low != -1).any()`` in Python whenever it is built, that is
at every control step: a host synchronisation per step on CUDA. `UnitIntervalTanhNormal`
is the same distribution, built from the policy's tensors and Python floats only.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch.distributions import Distribution, Normal, constraints
from torch.nn.functional import softplus

_LOG_HALF = math.log(0.5)  # log |d(action)/d(tanh)| of the affine map (t + 1) / 2
_LOG_TWO = math.log(2.0)


class UnitIntervalTanhNormal(Distribution):
    """A Gaussian over pre-squash actions, squashed into (0, 1) by ``a = (tanh(x) + 1) / 2``.

    Actions are muscle excitations or servo targets, dimensionless, in 0..1. The
    distribution equals TorchRL's ``TanhNormal(loc, scale, low=0.0, high=1.0)`` (0.14):
    the last dimension is the event (``log_prob`` sums over the actions of one env), the
    squash is clamped ``torch.finfo(dtype).resolution`` inside the open interval of tanh
    (so ``log_prob`` of a sample is finite), samples consume the random generator exactly
    as ``Normal(loc, scale).rsample`` / ``.sample`` do and round identically, and it has
    no closed-form ``entropy``, ``mean`` or ``mode`` (TorchRL's PPO loss then estimates
    the entropy from a sample, as before). Built from tensors and Python floats only: no
    host read of a tensor and no host-to-device copy, so a CUDA policy step never waits.

    Argument validation is off (``validate_args=False``), as TorchRL sets it globally:
    checking ``scale > 0`` would read the device. Not a ``TransformedDistribution`` with
    torch's ``TanhTransform``: that one does not clamp, so a saturated sample rounds to
    exactly 0 or 1 and its ``log_prob`` is infinite. Where the clamp acts (|x| > ~7.3 in
    float32) ``rsample``'s pathwise gradient is 0 (TanhNormal's is ~2e-6); the PPO loss
    never differentiates through the squash.

    Args:
        loc: [..., nu] mean of the pre-squash Gaussian (unitless, tanh's argument).
        scale: [..., nu] (or broadcastable to ``loc``) its standard deviation, > 0.

    Shapes: ``batch_shape`` is ``loc.shape[:-1]`` and ``event_shape`` ``loc.shape[-1:]``
    (for a 0-d ``loc`` both are empty and nothing is summed), as for ``TanhNormal``.
    """

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {
        "loc": constraints.real,
        "scale": constraints.positive,
    }
    support = constraints.interval(0.0, 1.0)
    has_rsample = True

    def __init__(self, loc: torch.Tensor, scale: torch.Tensor) -> None:
        self.base = Normal(loc, scale, validate_args=False)
        self.loc, self.scale = self.base.loc, self.base.scale
        self._event_dims = min(1, self.loc.dim())
        shape = self.loc.shape
        cut = len(shape) - self._event_dims
        # Tanh's clamp (TorchRL's SafeTanhTransform): a Python float, never a device tensor.
        self._tanh_limit = 1.0 - torch.finfo(self.loc.dtype).resolution
        super().__init__(shape[:cut], shape[cut:], validate_args=False)

    # ------------------------------------------------------------------------- squash
    def _squash(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-squash values [..., nu] -> actions in [eps/2, 1 - eps/2]."""
        return 0.5 + 0.5 * x.tanh().clamp(-self._tanh_limit, self._tanh_limit)

    def _unsquash(self, action: torch.Tensor) -> torch.Tensor:
        """Actions [..., nu] in 0..1 -> pre-squash values; the bounds map to finite values."""
        return ((action - 0.5) / 0.5).clamp(-self._tanh_limit, self._tanh_limit).atanh()

    def _sum_event(self, value: torch.Tensor) -> torch.Tensor:
        return value.sum(-1) if self._event_dims else value

    def _log_prob_of_preimage(self, x: torch.Tensor) -> torch.Tensor:
        """log density [..., batch] of the action ``squash(x)``, from its pre-image ``x``."""
        # Gaussian term first, then the Jacobian: TanhNormal's order, so that autograd
        # sums the gradients in the same order and they are bitwise equal too.
        log_prob = self._sum_event(self.base.log_prob(x))
        # log |d tanh(x)/dx| = log(1 - tanh(x)^2), in the form that is exact for large |x|.
        log_det = 2.0 * (_LOG_TWO - x - softplus(-2.0 * x)) + _LOG_HALF
        return log_prob - self._sum_event(log_det)

    # ----------------------------------------------------------------------- sampling
    def rsample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> torch.Tensor:
        """Reparameterised actions [*sample_shape, ..., nu] in (0, 1)."""
        return self._squash(self.base.rsample(sample_shape))

    def sample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> torch.Tensor:
        """Actions [*sample_shape, ..., nu] in (0, 1), without gradient."""
        with torch.no_grad():
            return self._squash(self.base.sample(sample_shape))

    def rsample_and_log_prob(
        self, sample_shape: torch.Size | tuple[int, ...] = ()
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised actions and their log density, scored from the drawn pre-image
        (exact where the squash saturates; TorchRL's PPO loss uses it for its entropy)."""
        x = self.base.rsample(sample_shape)
        return self._squash(x), self._log_prob_of_preimage(x)

    def sample_and_log_prob(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> tuple[torch.Tensor, torch.Tensor]:
        """As `rsample_and_log_prob`, with the actions detached (the score keeps its
        gradient with respect to ``loc`` and ``scale``)."""
        x = self.base.sample(sample_shape)
        with torch.no_grad():
            action = self._squash(x)
        return action, self._log_prob_of_preimage(x)

    @property
    def deterministic_sample(self) -> torch.Tensor:
        """The squashed mean ``(tanh(loc) + 1) / 2`` [..., nu] (clamped as the samples are):
        what TorchRL's ``ExplorationType.DETERMINISTIC`` acts with."""
        return self._squash(self.loc)

    # ------------------------------------------------------------------------ scoring
    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """Log density [..., batch] of actions ``value`` [..., nu] in 0..1 (per unit
        excitation, summed over the event dimension); actions at or beyond the bounds
        are scored as if ``eps/2`` inside them, so the result is finite."""
        return self._log_prob_of_preimage(self._unsquash(value))

    @property
    def mode(self) -> torch.Tensor:
        raise RuntimeError(
            f"{type(self).__name__} has no closed-form mode (a wide one is bimodal at the "
            "bounds); use ExplorationType.DETERMINISTIC for the squashed mean"
        )
