"""Standard cores: feed-forward MLP, GRU and LSTM (see `neuromimic.models.base.Core`)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn

from neuromimic.models.base import Core, Tensors

ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "softplus": nn.Softplus}


def mlp(sizes: Sequence[int], activation: str = "tanh", last_activation: bool = False) -> nn.Sequential:
    """Linear layers of the given sizes with ``activation`` between them (and after the
    last one if ``last_activation``)."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose one of {sorted(ACTIVATIONS)}")
    layers: list[nn.Module] = []
    pairs = list(itertools.pairwise(sizes))
    for i, (n_in, n_out) in enumerate(pairs):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(pairs) - 1 or last_activation:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class MLPCore(Core):
    """Feed-forward layers; no state. Activity: each hidden layer's units, ``layer_i``.

    Args:
        input_size: D_in.
        control_dt: unused (the factory signature of every core).
        hidden_sizes: widths of the hidden layers; the output is the last one.
        activation: ``"tanh"``, ``"relu"``, ``"elu"`` or ``"softplus"``.
    """

    def __init__(
        self,
        input_size: int,
        control_dt: float = 0.01,
        hidden_sizes: Sequence[int] = (256, 256),
        activation: str = "tanh",
    ) -> None:
        super().__init__()
        if not hidden_sizes:
            raise ValueError("MLPCore needs at least one hidden layer")
        self.input_size = input_size
        self.output_size = hidden_sizes[-1]
        self.hidden_sizes = tuple(int(h) for h in hidden_sizes)
        self.activation = activation
        self.layers = mlp([input_size, *self.hidden_sizes], activation, last_activation=True)

    def forward(
        self, x: torch.Tensor, state: Tensors, noise: Tensors | None = None
    ) -> tuple[torch.Tensor, Tensors, Tensors]:
        activity = {}
        for layer in self.layers:
            x = layer(x)
            if not isinstance(layer, nn.Linear):
                activity[f"layer_{len(activity)}"] = x
        x = self._perturb_units(x)  # the last hidden layer: the core's units
        activity[f"layer_{len(activity) - 1}"] = x
        return x, {}, activity

    def config(self) -> dict:
        return {"class": "MLPCore", "hidden_sizes": list(self.hidden_sizes), "activation": self.activation}


class _CellCore(Core):
    """One recurrent cell layer (``cell`` an `nn.GRUCell` or `nn.LSTMCell`) of ``hidden_size``
    units, whose states are named by ``STATES``."""

    CELL: type[nn.Module]
    STATES: tuple[str, ...]

    def __init__(self, input_size: int, control_dt: float = 0.01, hidden_size: int = 128) -> None:
        super().__init__()
        self.input_size = input_size
        self.output_size = hidden_size
        self.cell = self.CELL(input_size, hidden_size)

    def state_shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: (self.output_size,) for name in self.STATES}

    def config(self) -> dict:
        return {"class": type(self).__name__, "hidden_size": self.output_size}


class GRUCore(_CellCore):
    """A gated recurrent unit layer. State and activity: ``h`` [B, hidden_size].

    Args:
        input_size: D_in.
        control_dt: unused (the factory signature of every core).
        hidden_size: number of units.
    """

    CELL, STATES = nn.GRUCell, ("h",)

    def forward(
        self, x: torch.Tensor, state: Tensors, noise: Tensors | None = None
    ) -> tuple[torch.Tensor, Tensors, Tensors]:
        h = self._perturb_units(self.cell(x, state["h"]))
        return h, {"h": h}, {"h": h}


class LSTMCore(_CellCore):
    """A long short-term memory layer. State: ``h`` and cell ``c``, each [B, hidden_size];
    activity: ``h`` and ``c``.

    Args:
        input_size: D_in.
        control_dt: unused (the factory signature of every core).
        hidden_size: number of units.
    """

    CELL, STATES = nn.LSTMCell, ("h", "c")

    def forward(
        self, x: torch.Tensor, state: Tensors, noise: Tensors | None = None
    ) -> tuple[torch.Tensor, Tensors, Tensors]:
        h, c = self.cell(x, (state["h"], state["c"]))
        h = self._perturb_units(h)
        return h, {"h": h, "c": c}, {"h": h, "c": c}
