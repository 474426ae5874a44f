"""TorchRL environments: `ImitationEnv` and the `make_env` factory."""

from neuromimic.envs.imitation import EnvConfig, ImitationEnv, make_env

__all__ = ["EnvConfig", "ImitationEnv", "make_env"]
