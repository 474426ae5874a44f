"""Biological constraints on weights, as `torch.nn.utils.parametrize` parametrisations.

A parametrised weight is recomputed from an unconstrained raw tensor at every use, so
the constraint holds by construction after any optimiser step (no projection step to
forget). Constraints:

- Dale's law: every presynaptic unit is excitatory or inhibitory, so column ``j`` of a
  recurrent weight matrix (the outputs of unit ``j``) has the sign ``sign[j]``:
  ``W = |W_raw| * sign``.
- Connectivity mask: ``W = W_raw * mask`` with a fixed 0/1 matrix (sparse random, or an
  adjacency loaded from a file such as a connectome).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn


class SignedMaskedWeight(nn.Module):
    """``W = |W_raw| * sign[None, :] * mask`` (Dale) or ``W = W_raw * mask`` (no signs).

    Args:
        sign: [n_in] +1 (excitatory) or -1 (inhibitory) per presynaptic unit, or ``None``.
        mask: [n_out, n_in] 0/1 connectivity, or ``None`` for all-to-all.
    """

    def __init__(self, sign: torch.Tensor | None, mask: torch.Tensor | None) -> None:
        super().__init__()
        self.register_buffer("sign", sign)
        self.register_buffer("mask", mask)

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        weight = raw if self.sign is None else raw.abs() * self.sign
        return weight if self.mask is None else weight * self.mask


def dale_signs(size: int, excitatory_fraction: float) -> torch.Tensor:
    """[size] signs: the first ``round(excitatory_fraction * size)`` units +1, the rest -1."""
    if not 0.0 < excitatory_fraction < 1.0:
        raise ValueError(f"excitatory_fraction must be in (0, 1); got {excitatory_fraction}")
    excitatory = round(excitatory_fraction * size)
    if excitatory in (0, size):
        raise ValueError(
            f"excitatory_fraction {excitatory_fraction} of {size} units leaves no "
            f"{'excitatory' if excitatory == 0 else 'inhibitory'} unit; use more units or another fraction"
        )
    sign = torch.ones(size)
    sign[excitatory:] = -1.0
    return sign


def connectivity_mask(spec: str, size: int, seed: int = 0) -> torch.Tensor:
    """A [size, size] 0/1 mask (row: postsynaptic, column: presynaptic unit).

    Args:
        spec: ``"random:<density>"`` (each connection present with that probability, no
            self-connections, drawn with ``seed``), or the path of a ``.npy``, ``.npz``
            (array ``mask`` or ``adjacency``, else the only array) or ``.csv`` file whose
            nonzero entries are connections.
        size: number of units.
        seed: seed of a random mask.

    Raises:
        ValueError: a malformed spec, a file that cannot be read, or a wrong shape.
    """
    if spec.startswith("random:"):
        try:
            density = float(spec.removeprefix("random:"))
        except ValueError:
            raise ValueError(f"connectivity {spec!r}: write random:<density>, e.g. random:0.2") from None
        if not 0.0 < density <= 1.0:
            raise ValueError(f"connectivity {spec!r}: the density must be in (0, 1]")
        generator = torch.Generator().manual_seed(seed)
        mask = (torch.rand(size, size, generator=generator) < density).float()
        mask.fill_diagonal_(0.0)
        return mask
    path = Path(spec)
    if not path.is_file():
        raise ValueError(
            f"connectivity file {spec!r} does not exist; give a .npy, .npz or .csv adjacency "
            "matrix, or random:<density>"
        )
    try:
        if path.suffix == ".npy":
            array = np.load(path, allow_pickle=False)
        elif path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                named = [n for n in ("mask", "adjacency") if n in archive.files]
                if not named and len(archive.files) != 1:
                    raise ValueError(f"holds arrays {archive.files}; name the matrix 'mask' or 'adjacency'")
                array = archive[(named or archive.files)[0]]
        elif path.suffix == ".csv":
            array = np.loadtxt(path, delimiter=",")
        else:
            raise ValueError("unknown file type; use .npy, .npz or .csv")
    except (OSError, ValueError) as error:
        raise ValueError(f"connectivity file {spec!r}: {error}") from None
    if array.shape != (size, size):
        raise ValueError(
            f"connectivity file {spec!r} holds a {array.shape} matrix but the core has {size} "
            f"units; it must be {size} x {size} (row: postsynaptic, column: presynaptic)"
        )
    if not np.isfinite(array).all():
        raise ValueError(f"connectivity file {spec!r} contains NaN or Inf")
    return torch.as_tensor(array != 0, dtype=torch.float32)
