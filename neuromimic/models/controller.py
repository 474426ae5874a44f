"""Controllers: observation -> muscle excitations, as plain `torch.nn.Module`s.

``action, state = controller(observation, state)`` is all a lab needs: observations
[B, D] as the env lays them out (`ControllerSpec.observation_layout`), excitations
[B, nu] in 0..1, and the state as a dict of tensors (``None`` at an episode start).
Training (`neuromimic.training.PPOModule`) uses `Controller.step`, which also returns the
parameters of the action distribution and the recorded activity.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from neuromimic.models.base import ControllerSpec, Core, CoreFactory, Tensors
from neuromimic.models.cores import MLPCore, mlp


class RunningNorm(nn.Module):
    """Normalises observations by running mean and variance (Chan et al. parallel update).

    The statistics are buffers, so they are saved with the controller and restored on
    resume; `update` is called by the trainer on rollout data, never inside `forward`.

    Args:
        size: D, observation size.
        clip: normalised values are clamped to [-clip, clip].
    """

    def __init__(self, size: int, clip: float = 10.0, eps: float = 1e-8) -> None:
        super().__init__()
        self.clip = clip
        self.eps = eps
        #: When True, `update` leaves the statistics as they are (a transferred, frozen decoder).
        self.frozen = False
        self.register_buffer("mean", torch.zeros(size))
        self.register_buffer("var", torch.ones(size))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))

    @torch.no_grad()
    def update(self, mean: torch.Tensor, var: torch.Tensor, count: torch.Tensor) -> None:
        """Fold the moments of a batch into the running statistics.

        Args:
            mean: [D] batch mean.
            var: [D] batch variance (biased).
            count: scalar number of samples in the batch.
        """
        if self.frozen:
            return
        count = count.to(self.count.dtype)
        total = self.count + count
        delta = mean.to(self.mean.dtype) - self.mean
        m2 = self.var * self.count + var.to(self.var.dtype) * count + delta.square() * (self.count * count / total)
        self.mean += delta * (count / total).to(self.mean.dtype)
        self.var.copy_((m2 / total).to(self.var.dtype))
        self.count.copy_(total)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised ``x`` [..., D]."""
        return ((x - self.mean) / torch.sqrt(self.var + self.eps)).clamp(-self.clip, self.clip)


def squash(loc: torch.Tensor) -> torch.Tensor:
    """Pre-squash action means [..., nu] -> excitations in 0..1: the squashed Gaussian mean,
    which is also the deterministic sample of the training distribution
    (`neuromimic.training.distributions.UnitIntervalTanhNormal`, which keeps it ~5e-7 inside
    the bounds)."""
    return 0.5 * (torch.tanh(loc) + 1.0)


class Controller(nn.Module):
    """Observation normaliser -> core -> linear readout of muscle excitations.

    The readout gives the mean of a Gaussian over pre-squash actions; a learned,
    state-independent log standard deviation gives its spread. Actions are squashed into
    the muscles' 0..1 range (by `neuromimic.training.distributions.UnitIntervalTanhNormal`
    in training, by `squash` in `forward`).

    Args:
        spec: what the controller is built for (sizes, control step, observation layout).
        core: factory ``(input_size, control_dt) -> Core`` (a ``class_path`` in YAML);
            default: `MLPCore` with two hidden layers of 256.
        init_log_std: initial log standard deviation of the pre-squash action noise.
    """

    def __init__(self, spec: ControllerSpec, core: CoreFactory | None = None, init_log_std: float = -0.5) -> None:
        super().__init__()
        self.spec = spec
        self.observation_size = spec.observation_size
        self.action_size = spec.action_size
        self.init_log_std = float(init_log_std)
        self.obs_norm = RunningNorm(spec.observation_size)
        self.core = self._build_core(core)
        self.readout = nn.Linear(self.core.output_size, spec.action_size)
        self.log_std = nn.Parameter(torch.full((spec.action_size,), self.init_log_std))
        # A small readout: the initial policy sits at mid-range excitation.
        nn.init.orthogonal_(self.readout.weight, gain=0.01)
        nn.init.zeros_(self.readout.bias)

    def _build_core(self, factory: CoreFactory | None) -> Core:
        return (factory or MLPCore)(self.spec.observation_size, self.spec.control_dt)

    # ------------------------------------------------------------------------ structure
    @property
    def is_recurrent(self) -> bool:
        """Whether actions depend on earlier steps (the controller carries a state)."""
        return bool(self.state_shapes())

    def state_shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-env shape of each state tensor."""
        return self.core.state_shapes()

    def noise_shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-env shape of each standard-normal noise input."""
        return self.core.noise_shapes()

    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> Tensors:
        """The state of ``batch_size`` envs at an episode start (all zeros)."""
        return self.core.initial_state(batch_size, device)

    def sample_noise(self, batch_size: int, device: torch.device | str | None = None) -> Tensors:
        """Standard-normal noise inputs for one step of ``batch_size`` envs."""
        return {name: torch.randn(batch_size, *shape, device=device) for name, shape in self.noise_shapes().items()}

    def config(self) -> dict:
        """``{"class", **constructor arguments}`` that rebuild this controller (JSON-serialisable)."""
        return {"class": "Controller", "core": self.core.config(), "init_log_std": self.init_log_std}

    # -------------------------------------------------------------------------- stepping
    def step(
        self,
        observation: torch.Tensor,
        state: Tensors | None = None,
        is_init: torch.Tensor | None = None,
        noise: Tensors | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, Tensors, Tensors]:
        """One control step of B envs.

        Args:
            observation: [B, D] raw observations (normalised inside).
            state: the state entering the step (``None``: episode start for all).
            is_init: [B] or [B, 1] bool, True where an episode starts: the state of those
                envs is reset to zero before the step.
            noise: standard-normal noise inputs (`noise_shapes`), or ``None`` for none.

        Returns:
            ``(loc [B, nu], scale [B, nu], new_state, activity)``: mean and standard
            deviation of the pre-squash action Gaussian, the state after the step, and the
            recorded activity of the core.
        """
        state = self._start(observation, state, is_init)
        features, new_state, activity = self._features(observation, state, noise)
        loc = self.readout(features)
        return loc, self.log_std.exp().expand_as(loc), new_state, activity

    def _features(
        self, observation: torch.Tensor, state: Tensors, noise: Tensors | None
    ) -> tuple[torch.Tensor, Tensors, Tensors]:
        """The core's output, new state and activity for raw observations [B, D]."""
        return self.core(self.obs_norm(observation), state, noise)

    def _start(self, observation: torch.Tensor, state: Tensors | None, is_init: torch.Tensor | None) -> Tensors:
        """The state entering a step: zeros where ``is_init`` (or everywhere if ``state`` is None)."""
        if state is None:
            return self.initial_state(observation.shape[0], observation.device)
        if is_init is None:
            return state
        reset = is_init.reshape(-1)
        return {
            name: torch.where(reset.view(-1, *([1] * (value.ndim - 1))), torch.zeros_like(value), value)
            for name, value in state.items()
        }

    def forward(
        self, observation: torch.Tensor, state: Tensors | None = None, is_init: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, Tensors]:
        """Deterministic excitations for one step: ``action, state = controller(obs, state)``.

        Args:
            observation: [B, D] observations laid out as `ControllerSpec.observation_layout`.
            state: the state returned by the previous call, or ``None`` at an episode start.
            is_init: optional [B] bool, True for envs whose episode starts at this step.

        Returns:
            ``(action [B, nu] in 0..1, state)`` (the state is ``{}`` for feed-forward cores).
        """
        loc, _, new_state, _ = self.step(observation, state, is_init)
        return squash(loc), new_state

    def auxiliary_loss(self, observation: torch.Tensor, step: int) -> torch.Tensor:
        """Extra training loss on observations [..., D] at optimiser step ``step`` (0 here)."""
        return observation.new_zeros(())


class IntentionController(Controller):
    """MIMIC-MJX style intention network: reference -> Gaussian latent -> decoder -> muscles.

    The encoder (an MLP) sees only the reference blocks of the observation (names starting
    with ``ref_``: the upcoming reference frames relative to the current body) and outputs the mean and log standard deviation of a latent intention
    ``z``; the decoder (any core) sees ``[z, proprioception]`` (every other block). While
    collecting, ``z = mean + std * eps`` with ``eps`` the ``"latent"`` noise input (replayed
    in the update); deterministic use takes ``z = mean``. `auxiliary_loss` is the KL
    divergence to a standard normal, weighted by ``kl_weight`` ramped up linearly over
    ``kl_warmup_steps`` optimiser steps.

    Args:
        spec: what the controller is built for; its layout must name ``ref_*`` blocks.
        decoder: factory of the decoder core ``(input_size, control_dt) -> Core``;
            default: `MLPCore` (256, 256).
        latent_size: size of ``z``.
        encoder_hidden_sizes: hidden widths of the encoder MLP.
        kl_weight: final weight of the KL term.
        kl_warmup_steps: optimiser steps over which the weight ramps from 0.
        freeze_decoder: keep the decoder, readout and action noise fixed (transfer to a
            new task); with ``decoder_from`` the observation normaliser stays fixed too, so
            the decoder keeps seeing its inputs scaled as in its training.
        decoder_from: a checkpoint or export of an `IntentionController` whose decoder,
            readout, action noise and observation normaliser are loaded (same decoder
            architecture required).
        init_log_std: initial log standard deviation of the pre-squash action noise.
    """

    def __init__(
        self,
        spec: ControllerSpec,
        decoder: CoreFactory | None = None,
        latent_size: int = 16,
        encoder_hidden_sizes: Sequence[int] = (256,),
        kl_weight: float = 1e-3,
        kl_warmup_steps: int = 1000,
        freeze_decoder: bool = False,
        decoder_from: str | None = None,
        init_log_std: float = -0.5,
    ) -> None:
        slices = spec.observation_slices()
        reference = [s for name, s in slices.items() if name.startswith("ref_")]
        proprioception = [s for name, s in slices.items() if not name.startswith("ref_")]
        if not reference or not proprioception:
            raise ValueError(
                "IntentionController needs an observation layout with reference blocks (ref_*) "
                f"and proprioceptive blocks; got {list(slices)}"
            )
        self.latent_size = int(latent_size)
        self.encoder_hidden_sizes = tuple(int(h) for h in encoder_hidden_sizes)
        self.kl_weight = float(kl_weight)
        self.kl_warmup_steps = int(kl_warmup_steps)
        self.freeze_decoder = freeze_decoder
        self._decoder_factory = decoder
        super().__init__(spec, core=None, init_log_std=init_log_std)
        index = lambda blocks: torch.cat([torch.arange(s.start, s.stop) for s in blocks])
        self.register_buffer("reference_index", index(reference), persistent=False)
        self.register_buffer("proprioception_index", index(proprioception), persistent=False)
        self.encoder = mlp([len(self.reference_index), *self.encoder_hidden_sizes, 2 * self.latent_size])
        if decoder_from is not None:
            self._load_decoder(decoder_from)
        if freeze_decoder:
            for module in (self.core, self.readout):
                module.requires_grad_(False)
            self.log_std.requires_grad_(False)
            self.obs_norm.frozen = decoder_from is not None

    def _build_core(self, factory: CoreFactory | None) -> Core:
        proprioception = sum(size for name, size, _ in self.spec.observation_layout if not name.startswith("ref_"))
        return (self._decoder_factory or MLPCore)(self.latent_size + proprioception, self.spec.control_dt)

    def _load_decoder(self, path: str) -> None:
        from neuromimic.models.export import load_controller  # export imports this module

        source = load_controller(path)
        shapes = lambda module: {k: v.shape for k, v in module.state_dict().items()}
        if (
            not isinstance(source, IntentionController)
            or type(source.core) is not type(self.core)
            or shapes(source.core) != shapes(self.core)
        ):
            raise ValueError(
                f"decoder_from {path!r} is not an IntentionController with a decoder like "
                f"{self.core.config()}; train one with the same decoder architecture first"
            )
        self.core.load_state_dict(source.core.state_dict())
        self.readout.load_state_dict(source.readout.state_dict())
        self.obs_norm.load_state_dict(source.obs_norm.state_dict())
        with torch.no_grad():
            self.log_std.copy_(source.log_std)

    def noise_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"latent": (self.latent_size,), **self.core.noise_shapes()}

    def config(self) -> dict:
        return {
            "class": "IntentionController",
            "decoder": self.core.config(),
            "latent_size": self.latent_size,
            "encoder_hidden_sizes": list(self.encoder_hidden_sizes),
            "kl_weight": self.kl_weight,
            "kl_warmup_steps": self.kl_warmup_steps,
            "freeze_decoder": self.freeze_decoder,
            "init_log_std": self.init_log_std,
        }

    def encode(self, observation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Latent mean and log standard deviation [..., Z] of raw observations [..., D]."""
        reference = self.obs_norm(observation).index_select(-1, self.reference_index)
        mean, log_std = self.encoder(reference).chunk(2, dim=-1)
        return mean, log_std.clamp(-10.0, 2.0)

    def _features(
        self, observation: torch.Tensor, state: Tensors, noise: Tensors | None
    ) -> tuple[torch.Tensor, Tensors, Tensors]:
        mean, log_std = self.encode(observation)
        latent = mean if noise is None else mean + log_std.exp() * noise["latent"]
        proprioception = self.obs_norm(observation).index_select(-1, self.proprioception_index)
        core_noise = None if noise is None else {k: v for k, v in noise.items() if k != "latent"}
        features, new_state, activity = self.core(torch.cat([latent, proprioception], dim=-1), state, core_noise)
        return features, new_state, {"latent": latent, **activity}

    def auxiliary_loss(self, observation: torch.Tensor, step: int) -> torch.Tensor:
        """``kl_weight * min(1, step / kl_warmup_steps) * KL(q(z | reference) || N(0, I))``,
        averaged over observations [..., D]."""
        mean, log_std = self.encode(observation)
        kl = 0.5 * (mean.square() + (2 * log_std).exp() - 2 * log_std - 1.0).sum(-1).mean()
        ramp = min(1.0, step / self.kl_warmup_steps) if self.kl_warmup_steps > 0 else 1.0
        return self.kl_weight * ramp * kl
