"""The Golgi tendon organ (Ib) of Lin and Crago (2002), in torch.

Lin C-CK, Crago PE (2002) Neural and mechanical contributions to the stretch reflex: a
model synthesis. Ann Biomed Eng 30:54-67. Also the tendon organ of the afferented muscle
models of Elias et al. (2014) and Jalaleddini et al. (2017).

The tendon force passes a logarithmic stage, ``x = G1 ln(F / G2 + 1)``, then the linear
dynamics ``H(s) = (1.7 s^2 + 2.58 s + 0.4) / (s^2 + 2.2 s + 0.4)`` (unit static gain, an
overshoot of 1.7 at fast force changes); the rate is rectified at 0.

Lin and Crago's ``G2`` is 4 N for one cat muscle. Here ``G2`` is a fraction of each
muscle's peak isometric force (default 0.1), so mouse and human muscles share the same
dynamic range: ``G1 ln(11)`` = 144 pps at peak force.
"""

from __future__ import annotations

import numpy as np
import scipy.signal
import torch
from torch import nn

Tensors = dict[str, torch.Tensor]

G1_PPS = 60.0
NUMERATOR = (1.7, 2.58, 0.4)
DENOMINATOR = (1.0, 2.2, 0.4)


class TendonOrgan(nn.Module):
    """Ib rates of M tendon organs, stepped every ``dt`` seconds.

    State: ``"filter"`` [B, M, 2], the transposed direct-form state of ``H`` discretised by
    the bilinear transform at ``dt``.

    Args:
        dt: step in s.
        force_scale: ``G2`` as a fraction of peak isometric force.
    """

    def __init__(self, dt: float, force_scale: float = 0.1) -> None:
        super().__init__()
        if not force_scale > 0:
            raise ValueError(f"force_scale must be a positive fraction of peak force; got {force_scale}")
        self.dt = float(dt)
        self.force_scale = float(force_scale)
        b, a, _ = scipy.signal.cont2discrete((NUMERATOR, DENOMINATOR), self.dt, method="bilinear")
        b = np.asarray(b, dtype=np.float64).ravel() / a[0]
        a = np.asarray(a, dtype=np.float64) / a[0]
        self.register_buffer("b", torch.as_tensor(b), persistent=False)
        self.register_buffer("a", torch.as_tensor(a), persistent=False)

    def drive(self, force: torch.Tensor) -> torch.Tensor:
        """The logarithmic stage [B, M] in pps for tendon ``force`` [B, M] in units of peak force."""
        return G1_PPS * torch.log1p(force.clamp(min=0.0) / self.force_scale)

    def initial_state(self, force: torch.Tensor) -> Tensors:
        """The state of tendon organs that have felt ``force`` [B, M] (peak forces) for long."""
        x = self.drive(force)
        b, a = self.b.to(x.dtype), self.a.to(x.dtype)
        z2 = (b[2] - a[2]) * x
        z1 = (b[1] - a[1]) * x + z2
        return {"filter": torch.stack([z1, z2], dim=-1)}

    def forward(self, state: Tensors, force: torch.Tensor) -> tuple[torch.Tensor, Tensors]:
        """Advance by ``dt``; ``force`` [B, M] is the tendon force in units of peak force.

        Returns:
            ``(Ib [B, M] in pps, new_state)``.
        """
        x = self.drive(force)
        b, a = self.b.to(x.dtype), self.a.to(x.dtype)
        z = state["filter"]
        y = b[0] * x + z[..., 0]
        z1 = b[1] * x - a[1] * y + z[..., 1]
        z2 = b[2] * x - a[2] * y
        return y.clamp(min=0.0), {"filter": torch.stack([z1, z2], dim=-1)}
