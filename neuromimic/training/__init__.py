"""Training: `PPOModule` (PPO inside Lightning) and its configs."""

from neuromimic.training.ppo import PPOConfig, PPOModule

__all__ = ["PPOConfig", "PPOModule"]
