"""TorchRL environments built from declared terms: `ImitationEnv`, `EnvConfig` and `make_env`."""

from neuromimic.envs.config import EnvConfig, controller_spec, make_env
from neuromimic.envs.disturbances import DisturbanceConfig
from neuromimic.envs.imitation import ImitationEnv

__all__ = ["DisturbanceConfig", "EnvConfig", "ImitationEnv", "controller_spec", "make_env"]
