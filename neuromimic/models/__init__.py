"""Controllers: plain `torch.nn.Module`s mapping observations to muscle excitations.

``controller = load_controller(path)``, then ``action, state = controller(obs, state)``.
"""

from neuromimic.models.base import ControllerSpec, Core, CoreFactory
from neuromimic.models.controller import Controller, IntentionController, RunningNorm, squash
from neuromimic.models.cores import GRUCore, LSTMCore, MLPCore
from neuromimic.models.export import ControllerLoadError, build_controller, export_controller, load_controller
from neuromimic.models.rate_rnn import RateRNNCore
from neuromimic.models.tensordict_module import ControllerModule

__all__ = [
    "Controller",
    "ControllerLoadError",
    "ControllerModule",
    "ControllerSpec",
    "Core",
    "CoreFactory",
    "GRUCore",
    "IntentionController",
    "LSTMCore",
    "MLPCore",
    "RateRNNCore",
    "RunningNorm",
    "build_controller",
    "export_controller",
    "load_controller",
    "squash",
]
