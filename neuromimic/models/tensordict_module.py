"""`ControllerModule`: a `Controller` as a TorchRL recurrent module on TensorDicts.

Keys (B envs, optionally a time dimension T after them):

- in: ``"observation"`` [B, D]; ``"is_init"`` [B, 1] (True at an episode's first step:
  the state is reset to zero before it); the state entering the step
  ``("core", "state", name)``; in recurrent mode, the noise used while collecting
  ``("core", "noise", name)``.
- out: ``"loc"``, ``"scale"`` [B, nu] (the pre-squash action Gaussian); the state after
  the step ``("next", "core", "state", name)``; ``("core", "noise", name)`` (the draws
  made while exploring); ``("core", "activity", name)`` (rates, hidden units, latents).

Hidden state handling. While collecting (sequential mode) the state rides in the
TensorDict: the env must be wrapped with `ControllerModule.make_tensordict_primer`
(``TransformedEnv(env, module.make_tensordict_primer())``), which registers the state in
the env's specs so that TorchRL's ``step_mdp`` moves ``("next", "core", "state", ...)`` to
the root for the next step and puts zeros there at resets; ``is_init`` zeroes the state
where an episode starts. A state missing on a step that is not every env's first raises
an error (the env was not wrapped). In recurrent mode
(`torchrl.modules.set_recurrent_mode`, which TorchRL's losses switch on) the module reads
a [B, T] batch, starts from the stored state at t = 0, steps through time, and resets
the state wherever ``is_init`` is True, so no state leaks across episodes within a
sequence. Noise: in sequential mode it is drawn when exploring
(``ExplorationType.RANDOM``) and stored; in recurrent mode it is read from the batch only
(replaying the collected draws, so log-probabilities are those of the collected actions),
and a batch without it runs noise-free.
"""

from __future__ import annotations

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torchrl.data import Composite, Unbounded
from torchrl.envs import TensorDictPrimer
from torchrl.envs.utils import ExplorationType, exploration_type
from torchrl.modules.tensordict_module.rnn import recurrent_mode

from neuromimic.models.controller import Controller

STATE = ("core", "state")
NOISE = ("core", "noise")
ACTIVITY = ("core", "activity")


class ControllerModule(TensorDictModuleBase):
    """TorchRL recurrent-module face of a `Controller` (keys in the module docstring).

    Args:
        controller: the controller (its parameters are shared, not copied).
        observation_key: key of the observation.
        default_recurrent_mode: mode used outside a ``set_recurrent_mode`` context.
    """

    def __init__(
        self, controller: Controller, observation_key: str = "observation", default_recurrent_mode: bool = False
    ) -> None:
        super().__init__()
        self.controller = controller
        self.observation_key = observation_key
        self._default_recurrent_mode = default_recurrent_mode
        self.state_names = tuple(controller.state_shapes())
        self.noise_names = tuple(controller.noise_shapes())
        with torch.no_grad():
            probe = torch.zeros(1, controller.observation_size, device=controller.log_std.device)
            self.activity_names = tuple(controller.step(probe)[3])
        states = [(*STATE, n) for n in self.state_names]
        noises = [(*NOISE, n) for n in self.noise_names]
        self.in_keys = [observation_key, "is_init", *states, *noises]
        self.out_keys = [
            "loc",
            "scale",
            *[("next", *key) for key in states],
            *noises,
            *[(*ACTIVITY, n) for n in self.activity_names],
        ]

    @property
    def recurrent_mode(self) -> bool:
        """Sequence processing over a trailing time dimension (see the module docstring)."""
        mode = recurrent_mode()
        return self._default_recurrent_mode if mode is None else bool(mode)

    def make_tensordict_primer(self) -> TensorDictPrimer:
        """The `TensorDictPrimer` a recurrent controller's env needs: it registers the
        state keys in the env's specs (so ``step_mdp`` carries them) and puts zero states in
        the reset output."""
        shapes = self.controller.state_shapes()
        spec = Composite(core=Composite(state=Composite({n: Unbounded(shape) for n, shape in shapes.items()})))
        return TensorDictPrimer(spec, expand_specs=True)

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        if self.recurrent_mode and self.controller.is_recurrent and tensordict.ndim >= 2:
            return self._sequence(tensordict)
        return self._steps(tensordict)

    def _states(
        self, tensordict: TensorDictBase, batch: int, is_init: torch.Tensor | None
    ) -> dict[str, torch.Tensor] | None:
        """The entering state flattened to [batch, ...]; ``None`` (zeros) at every env's
        episode start when the TensorDict holds none."""
        if not self.state_names:
            return None
        if tensordict.get((*STATE, self.state_names[0]), None) is None:  # no walk over all keys
            if is_init is not None and bool(is_init.all()):
                return None
            raise KeyError(
                f"no controller state {STATE + (self.state_names[0],)} in the TensorDict of a step "
                "that is not an episode start: wrap the env with "
                "TransformedEnv(env, module.make_tensordict_primer()) so that TorchRL carries it"
            )
        shapes = self.controller.state_shapes()
        return {name: tensordict.get((*STATE, name)).reshape(batch, *shapes[name]) for name in self.state_names}

    def _steps(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Every element of the batch is one step of one env (collection, or stateless
        controllers in any mode)."""
        batch_shape = tensordict.batch_size
        observation = tensordict.get(self.observation_key)
        n = observation[..., 0].numel()
        is_init = tensordict.get("is_init", None)
        if self.noise_names and self.recurrent_mode and tensordict.get((*NOISE, self.noise_names[0]), None) is not None:
            noise = {k: tensordict.get((*NOISE, k)).reshape(n, -1) for k in self.noise_names}
        elif self.noise_names and exploration_type() == ExplorationType.RANDOM:
            noise = self.controller.sample_noise(n, observation.device)
        else:
            noise = None
        is_init = None if is_init is None else is_init.reshape(n)
        loc, scale, state, activity = self.controller.step(
            observation.reshape(n, -1), self._states(tensordict, n, is_init), is_init, noise
        )
        unflat = lambda x: x.reshape(*batch_shape, *x.shape[1:])
        tensordict.set("loc", unflat(loc))
        tensordict.set("scale", unflat(scale))
        for name, value in state.items():
            tensordict.set(("next", *STATE, name), unflat(value))
        for name, value in (noise or {}).items():
            tensordict.set((*NOISE, name), unflat(value))
        for name, value in activity.items():
            tensordict.set((*ACTIVITY, name), unflat(value))
        return tensordict

    def _sequence(self, tensordict: TensorDictBase) -> TensorDictBase:
        """A [..., T] batch of sequences: step through time from the stored first state."""
        *lead, steps = tensordict.batch_size
        n = torch.Size(lead).numel()
        seq = tensordict.reshape(n, steps)
        observation = seq.get(self.observation_key)
        is_init = seq.get("is_init", None)
        state = self._states(seq[:, 0], n, None if is_init is None else is_init[:, 0].reshape(n))
        noise_present = bool(self.noise_names) and seq.get((*NOISE, self.noise_names[0]), None) is not None
        outputs: dict[str, list[torch.Tensor]] = {}
        for t in range(steps):
            noise = {k: seq.get((*NOISE, k))[:, t] for k in self.noise_names} if noise_present else None
            loc, scale, state, activity = self.controller.step(
                observation[:, t], state, None if is_init is None else is_init[:, t].reshape(n), noise
            )
            step_out = {"loc": loc, "scale": scale}
            step_out.update({("next", *STATE, k): v for k, v in state.items()})
            step_out.update({(*ACTIVITY, k): v for k, v in activity.items()})
            for key, value in step_out.items():
                outputs.setdefault(key, []).append(value)
        for key, values in outputs.items():
            stacked = torch.stack(values, dim=1)
            tensordict.set(key, stacked.reshape(*lead, steps, *stacked.shape[2:]))
        return tensordict
