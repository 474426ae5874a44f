"""Controllers: plain `torch.nn.Module`s mapping observations to muscle excitations."""

from neuromimic.models.mlp import MLPController, RunningNorm

__all__ = ["MLPController", "RunningNorm"]
