"""`TermSet`: the declared terms an env is built from, checked against its body and bound to
their parameters; the observation layout, the observation tensor, the reward and the
termination flags all come from it.
"""

from __future__ import annotations

import functools

import torch

from neuromimic.errors import ConfigError, did_you_mean
from neuromimic.tasks.base import BodyInfo, StepState, Term
from neuromimic.tasks.observations import OBSERVATIONS
from neuromimic.tasks.rewards import REWARDS
from neuromimic.tasks.terminations import TERMINATIONS


def _lookup(registry: dict[str, Term], name: str, field: str, body: BodyInfo) -> Term:
    if name not in registry:
        raise ConfigError(
            f"{field} names {name!r}; it must be one of {sorted(registry)}{did_you_mean(str(name), registry)}"
        )
    term = registry[name]
    missing = term.missing(body)
    if missing:
        raise ConfigError(
            f"{field} names {name!r}, which needs {' and '.join(missing)}; body {body.key!r} has "
            f"{'none' if len(missing) == 1 else 'not all of them'}: remove {name!r} from {field}"
        )
    return term


def _params(term: Term, given: dict, field: str, reserved: tuple[str, ...] = ()) -> dict:
    unknown = sorted(set(given) - set(term.params) - set(reserved))
    if unknown:
        raise ConfigError(
            f"{field}.{term.name} takes {sorted(term.params) or 'no parameters'}"
            f"{' and ' + ', '.join(reserved) if reserved else ''}, not {unknown}"
        )
    params = {**term.params, **{k: v for k, v in given.items() if k not in reserved}}
    for key, value in params.items():
        if not (isinstance(value, int | float) and value > 0):
            raise ConfigError(f"{field}.{term.name}.{key} is {value!r}; it must be a number > 0")
    return params


class TermSet:
    """Observation, reward and termination terms bound to one body.

    Args:
        body: the body.
        observations: observation term names, in layout order (`OBSERVATIONS`).
        rewards: ``{name: {"weight": w, **params}}`` (`REWARDS`).
        terminations: ``{name: {**params}}`` (`TERMINATIONS`).
        future_frames: offsets (frames) of the future reference frames, F of them.

    Raises:
        ConfigError: an unknown term or parameter, a term the body cannot compute, a
            reward without a weight; the message names the config field.
    """

    def __init__(
        self,
        body: BodyInfo,
        observations: list[str],
        rewards: dict[str, dict],
        terminations: dict[str, dict],
        future_frames: tuple[int, ...],
    ) -> None:
        self.body = body
        self.future_frames = tuple(future_frames)
        self.observations = [_lookup(OBSERVATIONS, n, "model.env.observations", body) for n in observations]
        if len(set(observations)) != len(observations):
            raise ConfigError(f"model.env.observations names a term twice: {observations}")
        if not rewards:
            raise ConfigError(f"model.env.rewards is empty; name at least one of {sorted(REWARDS)}")
        self.rewards: list[tuple[Term, float, dict]] = []
        for name, config in rewards.items():
            term = _lookup(REWARDS, name, "model.env.rewards", body)
            config = dict(config or {})
            if not isinstance(config.get("weight"), int | float):
                raise ConfigError(
                    f"model.env.rewards.{name} needs a numeric weight ({{weight: 1.0, ...}}); got {config}"
                )
            self.rewards.append(
                (term, float(config["weight"]), _params(term, config, "model.env.rewards", ("weight",)))
            )
        self.terminations = [
            (term, _params(term, dict(config or {}), "model.env.terminations"))
            for name, config in terminations.items()
            for term in [_lookup(TERMINATIONS, name, "model.env.terminations", body)]
        ]

    @functools.cached_property
    def layout(self) -> list[tuple[str, int, str]]:
        """The observation's blocks ``(name, size, units)``: the proprioceptive terms in
        order, then for each future frame ``k`` every reference term as ``<name>_t+<k>``;
        terms of size 0 (a body without activation states) leave no block."""
        return [block for block, _ in self._blocks]

    @functools.cached_property
    def layout_terms(self) -> list[str]:
        """The observation term each block of `layout` comes from."""
        return [term for _, term in self._blocks]

    @functools.cached_property
    def _blocks(self) -> list[tuple[tuple[str, int, str], str]]:
        now = [((t.name, t.size(self.body), t.units), t.name) for t in self.observations if not t.future]
        future = [
            ((f"{t.name}_t+{k}", t.size(self.body), t.units), t.name)
            for k in self.future_frames
            for t in self.observations
            if t.future
        ]
        return [(block, term) for block, term in now + future if block[1] > 0]

    def describe(self) -> dict:
        """The terms as a config names them: ``{"observations": [...], "rewards": {name:
        {weight, **params}}, "terminations": {name: {**params}}}`` (recordings store it)."""
        return {
            "observations": [t.name for t in self.observations],
            "rewards": {t.name: {"weight": w, **params} for t, w, params in self.rewards},
            "terminations": {t.name: dict(params) for t, params in self.terminations},
        }

    @property
    def reward_names(self) -> tuple[str, ...]:
        return tuple(term.name for term, _, _ in self.rewards)

    def weights(self, device, dtype) -> torch.Tensor:
        """The reward weights [R], in `reward_names` order."""
        return torch.tensor([weight for _, weight, _ in self.rewards], device=device, dtype=dtype)

    def observe(self, state: StepState) -> torch.Tensor:
        """The observation [B, D] (`layout`)."""
        now = [t.fn(state) for t in self.observations if not t.future]
        future = [t.fn(state) for t in self.observations if t.future]
        blocks = now
        if future:
            blocks.append(torch.cat(future, dim=-1).flatten(1))  # [B, F, sum of sizes]: frame-major
        return torch.cat(blocks, dim=-1)

    def reward_terms(self, state: StepState) -> torch.Tensor:
        """The unweighted value of every reward term [B, R]."""
        return torch.stack([term.fn(state, **params) for term, _, params in self.rewards], dim=-1)

    def terminated(self, state: StepState) -> torch.Tensor:
        """[B] bool: a termination term holds (False everywhere without terms)."""
        flags = [term.fn(state, **params) for term, params in self.terminations]
        if not flags:
            return torch.zeros(state.sim.qpos.shape[0], dtype=torch.bool, device=state.sim.qpos.device)
        return torch.stack(flags).any(0)

    def termination_param(self, name: str, param: str) -> float | None:
        """A configured termination term's parameter, or None without that term."""
        return next((params[param] for term, params in self.terminations if term.name == name), None)
