"""The other side of ``neuromimic bench peer``: what a PyTorch lab writes without neuromimic.

A gymnasium env for the body's MJCF, wrapped by TorchRL, trained with TorchRL's PPO recipe
(``sota-implementations/ppo/ppo_mujoco.py``): the plain path this package must beat.

- `PlainBodyEnv`: one body of the same compiled model stepped ``substeps`` times per
  control step with ``mujoco.mj_step``; the observation is the joint angles, velocities
  and actuator activations and the next reference pose; the reward is one line (minus the
  squared joint-angle error to the next reference frame); an episode starts at a random
  frame of a random clip, at the reference pose, and ends at the clip's end.
- `make_peer_env`: ``B`` of them in gymnasium's ``SyncVectorEnv`` (one thread), in TorchRL's
  ``GymWrapper`` with the recipe's ``DoubleToFloat``, ``StepCounter`` and ``RewardSum``.
- `PeerPPO`: the recipe's loop: a ``Collector`` (formerly ``SyncDataCollector``) of ``B x rollout_steps`` frames,
  then per epoch GAE over the batch and minibatches drawn without replacement from a replay
  buffer, ``ClipPPOLoss`` with Adam and gradient-norm clipping. Networks: an MLP policy
  (``TanhNormal`` over the action range) and an MLP value function of the given sizes.

gymnasium is in the ``test`` extra (``pip install 'neuromimic[test]'``).
"""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium
import mujoco
import numpy as np
import torch
from tensordict.nn import NormalParamExtractor, TensorDictModule
from torch import nn
from torchrl.collectors import Collector
from torchrl.data import LazyTensorStorage, ReplayBuffer
from torchrl.data.replay_buffers.samplers import SamplerWithoutReplacement
from torchrl.envs import Compose, DoubleToFloat, GymWrapper, RewardSum, StepCounter, TransformedEnv
from torchrl.modules import MLP, ProbabilisticActor, TanhNormal, ValueOperator
from torchrl.objectives import ClipPPOLoss
from torchrl.objectives.value import GAE

from neuromimic.training.ppo import PPOConfig

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "softplus": nn.Softplus}


class PlainBodyEnv(gymnasium.Env):
    """One body imitating joint-angle clips, as a gymnasium env (see the module docstring).

    Args:
        model: the body's compiled model (shared, read-only; each env has its own data).
        clips: reference joint angles of each clip [T_i, nq] (model units), T_i >= 2.
        substeps: physics steps per control step.
        seed: seed of the start sampler.
    """

    def __init__(self, model: mujoco.MjModel, clips: Sequence[np.ndarray], substeps: int, seed: int = 0) -> None:
        self.model = model
        self.data = mujoco.MjData(model)
        self.clips = [np.asarray(clip, dtype=np.float64) for clip in clips]
        self.substeps = substeps
        size = model.nq + model.nv + model.na + model.nq
        self.observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (size,), np.float64)
        low, high = model.actuator_ctrlrange.T.astype(np.float32)
        self.action_space = gymnasium.spaces.Box(low, high, (model.nu,), np.float32)
        self.np_random, _ = gymnasium.utils.seeding.np_random(seed)
        self._clip = self.clips[0]
        self._frame = 0

    def _observation(self) -> np.ndarray:
        reference = self._clip[min(self._frame + 1, len(self._clip) - 1)]
        return np.concatenate([self.data.qpos, self.data.qvel, self.data.act, reference])

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._clip = self.clips[self.np_random.integers(len(self.clips))]
        self._frame = int(self.np_random.integers(len(self._clip) - 1))
        mujoco.mj_resetData(self.model, self.data)
        self.data.qpos[:] = self._clip[self._frame]
        mujoco.mj_forward(self.model, self.data)
        return self._observation(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.data.ctrl[:] = action
        for _ in range(self.substeps):
            mujoco.mj_step(self.model, self.data)
        self._frame += 1
        reward = -float(np.square(self.data.qpos - self._clip[self._frame]).sum())
        truncated = self._frame >= len(self._clip) - 1
        return self._observation(), reward, False, truncated, {}


def make_peer_env(
    model: mujoco.MjModel, clips: Sequence[np.ndarray], substeps: int, num_envs: int, seed: int = 0
) -> TransformedEnv:
    """``num_envs`` `PlainBodyEnv` in gymnasium's ``SyncVectorEnv``, in TorchRL's ``GymWrapper``
    with the recipe's transforms."""
    vector = gymnasium.vector.SyncVectorEnv(
        [lambda i=i: PlainBodyEnv(model, clips, substeps, seed + i) for i in range(num_envs)],
        autoreset_mode=gymnasium.vector.AutoresetMode.SAME_STEP,  # what GymWrapper accepts
    )
    env = TransformedEnv(GymWrapper(vector), Compose(DoubleToFloat(), StepCounter(), RewardSum()))
    env.set_seed(seed)
    return env


class PeerPPO:
    """TorchRL's PPO recipe on ``env`` with ``ppo``'s batch, epochs, minibatches and
    coefficients (see the module docstring).

    Args:
        env: a batched TorchRL env (`make_peer_env`) of B bodies.
        ppo: the PPO settings of the run it is compared with.
        hidden_sizes: the policy MLP's hidden widths.
        activation: its activation (``tanh``, ``relu``, ``elu``, ``softplus``).
    """

    def __init__(self, env: TransformedEnv, ppo: PPOConfig, hidden_sizes: Sequence[int], activation: str = "tanh"):
        self.ppo = ppo
        observation_size = env.observation_spec["observation"].shape[-1]
        action_spec = env.action_spec_unbatched
        act = ACTIVATIONS[activation]
        policy_net = nn.Sequential(
            MLP(
                in_features=observation_size,
                out_features=2 * action_spec.shape[-1],
                num_cells=list(hidden_sizes),
                activation_class=act,
            ),
            NormalParamExtractor(),
        )
        self.policy = ProbabilisticActor(
            TensorDictModule(policy_net, in_keys=["observation"], out_keys=["loc", "scale"]),
            in_keys=["loc", "scale"],
            spec=env.full_action_spec_unbatched,
            distribution_class=TanhNormal,
            distribution_kwargs={"low": action_spec.space.low, "high": action_spec.space.high},
            return_log_prob=True,
        )
        value_net = MLP(
            in_features=observation_size, out_features=1, num_cells=list(ppo.critic_hidden_sizes), activation_class=act
        )
        self.value = ValueOperator(value_net, in_keys=["observation"])
        self.frames_per_batch = env.batch_size.numel() * ppo.rollout_steps
        self.collector = Collector(
            env, self.policy, frames_per_batch=self.frames_per_batch, total_frames=-1, device="cpu"
        )
        self.buffer = ReplayBuffer(
            storage=LazyTensorStorage(self.frames_per_batch),
            sampler=SamplerWithoutReplacement(),
            batch_size=self.frames_per_batch // ppo.minibatches,
        )
        self.gae = GAE(gamma=ppo.gamma, lmbda=ppo.gae_lambda, value_network=self.value, average_gae=False)
        self.loss = ClipPPOLoss(
            self.policy,
            self.value,
            clip_epsilon=ppo.clip_epsilon,
            entropy_coeff=ppo.entropy_coeff,
            critic_coeff=ppo.critic_coeff,
            normalize_advantage=True,
            loss_critic_type="l2",
        )
        self.optimizer = torch.optim.Adam(self.loss.parameters(), lr=ppo.learning_rate)
        self._batches = iter(self.collector)

    def iteration(self) -> None:
        """Collect one batch and update on it (the recipe's loop body)."""
        data = next(self._batches)
        for _ in range(self.ppo.epochs):
            with torch.no_grad():
                data = self.gae(data)
            self.buffer.extend(data.reshape(-1))
            for _ in range(self.ppo.minibatches):
                losses = self.loss(self.buffer.sample())
                loss = losses["loss_objective"] + losses["loss_critic"] + losses["loss_entropy"]
                loss.backward()
                nn.utils.clip_grad_norm_(self.loss.parameters(), self.ppo.max_grad_norm)
                self.optimizer.step()
                self.optimizer.zero_grad()

    def close(self) -> None:
        self.collector.shutdown()
