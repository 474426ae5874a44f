"""Controllers: cores, biological constraints, TorchRL recurrent API, export and load."""

from __future__ import annotations

import functools
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torchrl.envs import TransformedEnv
from torchrl.envs.utils import ExplorationType, check_env_specs, set_exploration_type
from torchrl.modules import set_recurrent_mode

from neuromimic import load_controller
from neuromimic.checkpoint_files import CheckpointError
from neuromimic.envs import EnvConfig, controller_spec, make_env
from neuromimic.models import (
    Controller,
    ControllerLoadError,
    ControllerModule,
    ControllerSpec,
    GRUCore,
    IntentionController,
    LSTMCore,
    RateRNNCore,
    export_controller,
    squash,
)

SPEC = controller_spec(EnvConfig())
CORES = {
    "mlp": None,
    "gru": functools.partial(GRUCore, hidden_size=16),
    "lstm": functools.partial(LSTMCore, hidden_size=16),
    "rate_rnn": functools.partial(
        RateRNNCore,
        hidden_size=20,
        excitatory_fraction=0.8,
        noise_std=0.1,
        input_delay_ms=20.0,
        output_delay_ms=10.0,
        connectivity="random:0.5",
    ),
}


def _controller(name: str) -> Controller:
    torch.manual_seed(0)
    if name == "intention":
        return IntentionController(SPEC, CORES["gru"], latent_size=4, encoder_hidden_sizes=(16,))
    return Controller(SPEC, CORES[name])


def _collect(env, module: ControllerModule, steps: int, exploration: ExplorationType):
    """[B, steps] rollout of ``module`` in ``env``, acting with the squashed mean."""
    td, out = env.reset(), []
    with set_exploration_type(exploration):
        for _ in range(steps):
            module(td)
            td["action"] = squash(td["loc"])
            td, next_td = env.step_and_maybe_reset(td)
            out.append(td)
            td = next_td
    return torch.stack(out, dim=1)


def test_dale_signs_and_mask_zeros_hold_after_optimiser_steps():
    core = RateRNNCore(6, 0.01, hidden_size=10, excitatory_fraction=0.8, connectivity="random:0.4")
    mask = core.recurrent.parametrizations.weight[0].mask.clone()
    optimiser = torch.optim.Adam(core.parameters(), lr=0.5)
    for _ in range(20):  # large steps that would flip signs of unconstrained weights
        state = core.initial_state(3)
        rate = None
        for _ in range(5):
            rate, state, _ = core(torch.randn(3, 6), state)
        loss = -(rate * torch.randn_like(rate)).sum()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    weight = core.recurrent_weight.detach()
    assert (weight[:, :8] >= 0).all() and (weight[:, 8:] <= 0).all()
    assert (weight[mask == 0] == 0).all() and (weight[mask == 1] != 0).any()
    assert (core.recurrent.parametrizations.weight.original.detach() < 0).any()  # raw weights are free


def test_dale_needs_non_negative_rates_and_masks_files_are_checked(tmp_path):
    with pytest.raises(ValueError, match="non-negative rates"):
        RateRNNCore(4, 0.01, hidden_size=8, activation="tanh", excitatory_fraction=0.8)
    wrong = tmp_path / "adjacency.npy"
    np.save(wrong, np.ones((5, 5)))
    with pytest.raises(ValueError, match=r"adjacency.npy.*\(5, 5\).*8 x 8"):
        RateRNNCore(4, 0.01, hidden_size=8, connectivity=str(wrong))
    right = tmp_path / "connectome.csv"
    adjacency = (np.random.default_rng(0).random((8, 8)) < 0.3).astype(float)
    np.savetxt(right, adjacency, delimiter=",")
    core = RateRNNCore(4, 0.01, hidden_size=8, connectivity=str(right))
    assert (core.recurrent_weight[torch.as_tensor(adjacency == 0)] == 0).all()
    with pytest.raises(ValueError, match="whole number of 10 ms"):
        RateRNNCore(4, 0.01, input_delay_ms=15.0)


@pytest.mark.parametrize("learn_tau", [False, True])
def test_impulse_response_decays_with_the_time_constant(learn_tau):
    taus = [0.02, 0.05, 0.1, 0.3]
    core = RateRNNCore(4, 0.01, hidden_size=4, tau=taus, learn_tau=learn_tau, activation="relu")
    with torch.no_grad():
        core.recurrent.weight.zero_()  # isolated units
        core.input.weight.copy_(torch.eye(4))
        core.input.bias.zero_()
    state, trace = core.initial_state(1), []
    for t in range(40):
        _, state, activity = core(torch.ones(1, 4) * (t == 0), state)
        trace.append(activity["h"][0])
    trace = torch.stack(trace).detach()  # [T, 4], decaying after the impulse
    steps = torch.arange(1, 15, dtype=torch.float64)
    for unit, tau in enumerate(taus):
        slope = np.polyfit(steps.numpy(), np.log(trace[1:15, unit].double().numpy()), 1)[0]
        assert -0.01 / slope == pytest.approx(tau, rel=0.05)


def test_hidden_state_resets_exactly_at_episode_starts():
    controller = _controller("rate_rnn")
    module = ControllerModule(controller)
    observation = torch.randn(2, 10, SPEC.observation_size)
    is_init = torch.zeros(2, 10, 1, dtype=torch.bool)
    is_init[:, 0] = True
    is_init[0, 6] = True  # env 0 starts a new episode at step 6
    from tensordict import TensorDict

    batch = TensorDict({"observation": observation, "is_init": is_init}, batch_size=[2, 10])
    with set_recurrent_mode(True):
        module(batch)
    fresh = TensorDict({"observation": observation[:1, 6:], "is_init": is_init[:1, 6:].clone().fill_(False)}, [1, 4])
    fresh["is_init"][:, 0] = True
    with set_recurrent_mode(True):
        module(fresh)
    # Batch composition changes float rounding (1e-9), not the state: compare to 1e-6.
    torch.testing.assert_close(batch["loc"][0, 6:], fresh["loc"][0], rtol=0, atol=1e-6)
    carried = fresh.clone().set("observation", observation[1:, 6:])
    with set_recurrent_mode(True):
        module(carried)  # env 1 from zero at step 6 differs from env 1 carrying its state
    assert (batch["loc"][1, 6] - carried["loc"][0, 0]).abs().max() > 1e-4
    # One step at a time: a state entering with is_init is ignored.
    stale = {k: torch.randn(2, *s) for k, s in controller.state_shapes().items()}
    reset = torch.ones(2, dtype=torch.bool)
    torch.testing.assert_close(
        controller.step(observation[:, 0], stale, reset)[0], controller.step(observation[:, 0])[0]
    )


@pytest.mark.parametrize("name", ["mlp", "gru", "lstm", "rate_rnn", "intention"])
def test_env_rollout_equals_manual_steps_of_the_exported_controller(name, tmp_path):
    controller = _controller(name)
    module = ControllerModule(controller)
    env = make_env(EnvConfig(num_envs=4), split=None, seed=0)
    if controller.is_recurrent:
        env = TransformedEnv(env, module.make_tensordict_primer())
        check_env_specs(env, seed=0)
    rollout = _collect(env, module, 40, ExplorationType.DETERMINISTIC)
    assert rollout["is_init"][:, 1:].any(), "the rollout should cross an episode start"

    loaded = load_controller(export_controller(controller, tmp_path / "export"))
    state = None
    for t in range(rollout.shape[1]):
        action, state = loaded(rollout["observation"][:, t], state, rollout["is_init"][:, t])
        torch.testing.assert_close(action, rollout["action"][:, t], rtol=0, atol=1e-6)
    if controller.is_recurrent:  # the sequence replay of training gives the same distribution
        replay = rollout.exclude("loc", "scale").clone()
        with set_recurrent_mode(True):
            module(replay)
        torch.testing.assert_close(replay["loc"], rollout["loc"], rtol=0, atol=1e-5)


def test_ppo_replay_of_stored_sequences_gives_the_collected_log_probs():
    """What recurrent PPO does: cut a stochastic rollout into sequences that start from the
    stored state mid-episode, replay them, and get back the collected log-probabilities."""
    from torchrl.modules import ProbabilisticActor, TanhNormal

    controller = _controller("rate_rnn")
    module = ControllerModule(controller)
    actor = ProbabilisticActor(
        module,
        in_keys=["loc", "scale"],
        distribution_class=TanhNormal,
        distribution_kwargs={"low": 0.0, "high": 1.0},
        return_log_prob=True,
    )
    env = TransformedEnv(make_env(EnvConfig(num_envs=3), split=None, seed=1), module.make_tensordict_primer())
    td, steps = env.reset(), []
    with set_exploration_type(ExplorationType.RANDOM):
        for _ in range(24):
            td, next_td = env.step_and_maybe_reset(actor(td))
            steps.append(td)
            td = next_td
    rollout = torch.stack(steps, dim=1)
    assert ("core", "noise", "process") in rollout.keys(True) and rollout["is_init"][:, 1:].any()
    sequences = rollout.reshape(-1, 4)  # most start mid-episode from a non-zero stored state
    assert (sequences["core", "state", "h"][:, 0].abs().sum(-1) > 0).sum() >= sequences.shape[0] // 2
    with torch.no_grad(), set_recurrent_mode(True):
        replay = actor.get_dist(sequences.exclude("loc", "scale").clone()).log_prob(sequences["action"])
        without_noise = module(sequences.exclude("loc", ("core", "noise")).clone())["loc"]
    torch.testing.assert_close(replay, sequences["action_log_prob"], rtol=0, atol=1e-3)
    assert (without_noise - sequences["loc"]).abs().max() > 1e-3  # the replayed noise matters


def test_a_recurrent_controller_without_the_primer_is_an_error():
    module = ControllerModule(_controller("gru"))
    env = make_env(EnvConfig(num_envs=2), split=None, seed=0)
    td = env.reset()
    module(td)
    td["action"] = squash(td["loc"])
    _, td = env.step_and_maybe_reset(td)
    with pytest.raises(KeyError, match="make_tensordict_primer"):
        module(td)


def test_rate_rnn_delays_and_process_noise():
    core = RateRNNCore(1, 0.01, hidden_size=1, tau=0.05, activation="relu", input_delay_ms=20.0, output_delay_ms=10.0)
    with torch.no_grad():
        core.recurrent.weight.zero_()
        core.input.weight.fill_(1.0)
        core.input.bias.zero_()
    state, outputs = core.initial_state(1), []
    for t in range(6):
        output, state, activity = core(torch.ones(1, 1) * (t == 0), state)
        outputs.append((output.item(), activity["h"].item()))
    # The impulse at t = 0 reaches h at t = 2 (20 ms sensory delay) and the output at t = 3.
    assert [h > 0 for _, h in outputs] == [False, False, True, True, True, True]
    assert [y > 0 for y, _ in outputs] == [False, False, False, True, True, True]
    noisy = RateRNNCore(1, 0.01, hidden_size=200, tau=[0.01] * 100 + [0.2] * 100, noise_std=0.3)
    with torch.no_grad():
        noisy.recurrent.weight.zero_()
        noisy.input.weight.zero_()
        noisy.input.bias.zero_()
    torch.manual_seed(0)
    state, samples = noisy.initial_state(64), []
    for t in range(400):
        _, state, activity = noisy(torch.zeros(64, 1), state, {"process": torch.randn(64, 200)})
        if t >= 200:
            samples.append(activity["h"])
    std = torch.stack(samples).std(dim=(0, 1))
    assert std[:100].mean().item() == pytest.approx(0.3, rel=0.05)  # the stationary std, fast units
    assert std[100:].mean().item() == pytest.approx(0.3, rel=0.1)  # and slow ones


def test_learned_time_constants_survive_export(tmp_path):
    controller = Controller(
        SPEC, functools.partial(RateRNNCore, hidden_size=6, tau=[0.02, 0.05, 0.1, 0.2, 0.3, 0.4], learn_tau=True)
    )
    optimiser = torch.optim.SGD([controller.core.log_tau], lr=1.0)
    controller.step(torch.randn(4, SPEC.observation_size))[0].square().sum().backward()
    optimiser.step()
    loaded = load_controller(export_controller(controller, tmp_path / "export"))
    assert torch.equal(loaded.core.tau, controller.core.tau)
    assert not torch.allclose(loaded.core.tau, torch.tensor([0.02, 0.05, 0.1, 0.2, 0.3, 0.4]))


@pytest.mark.slow
def test_export_then_load_in_a_fresh_process_gives_identical_outputs(tmp_path):
    controller = _controller("rate_rnn")
    directory = export_controller(controller, tmp_path / "export", {"note": "test"})
    document = json.loads((directory / "controller.json").read_text())
    assert document["controller"]["core"]["class"] == "RateRNNCore" and document["metadata"] == {"note": "test"}
    observation = torch.randn(5, 8, SPEC.observation_size)
    torch.save(observation, tmp_path / "obs.pt")
    expected, state = [], None
    with torch.no_grad():
        for t in range(8):
            action, state = controller(observation[:, t], state)
            expected.append(action)
    script = (
        "import sys, torch, neuromimic\n"
        "c = neuromimic.load_controller(sys.argv[1])\n"
        "obs = torch.load(sys.argv[2], weights_only=True)\n"
        "out, state = [], None\n"
        "with torch.no_grad():\n"
        "    for t in range(obs.shape[1]):\n"
        "        a, state = c(obs[:, t], state)\n"
        "        out.append(a)\n"
        "torch.save(torch.stack(out), sys.argv[3])\n"
    )
    subprocess.run(
        [sys.executable, "-c", script, str(directory), str(tmp_path / "obs.pt"), str(tmp_path / "out.pt")],
        check=True,
        timeout=300,
    )
    assert torch.equal(torch.load(tmp_path / "out.pt", weights_only=True), torch.stack(expected))


class _WritesAFile:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def test_malicious_files_are_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    checkpoint = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "neuromimic": {"controller": _WritesAFile(marker)}}, checkpoint)
    with pytest.raises(CheckpointError, match="evil.ckpt"):
        load_controller(checkpoint)
    assert not marker.exists()
    # An export cannot name code: only registered classes are accepted.
    directory = export_controller(_controller("gru"), tmp_path / "export")
    document = json.loads((directory / "controller.json").read_text())
    document["controller"]["core"]["class"] = "os.system"
    (directory / "controller.json").write_text(json.dumps(document))
    with pytest.raises(ControllerLoadError, match="unknown class 'os.system'"):
        load_controller(directory)
    with pytest.raises(ControllerLoadError, match="does not exist"):
        load_controller(tmp_path / "nowhere")


def test_intention_decoder_transfer_and_kl_warmup(tmp_path):
    source = _controller("intention")
    source.obs_norm.update(
        torch.ones(SPEC.observation_size), torch.full((SPEC.observation_size,), 4.0), torch.tensor(10.0)
    )
    with torch.no_grad():
        source.log_std.fill_(-1.3)
    directory = export_controller(source, tmp_path / "export")
    target = IntentionController(
        SPEC,
        CORES["gru"],
        latent_size=4,
        encoder_hidden_sizes=(16,),
        decoder_from=str(directory),
        freeze_decoder=True,
        kl_warmup_steps=100,
    )
    for part in ("core", "readout", "obs_norm"):
        for (name, a), b in zip(
            getattr(source, part).state_dict().items(), getattr(target, part).state_dict().values(), strict=True
        ):
            assert torch.equal(a, b), f"{part}.{name}"
    assert torch.equal(source.log_std, target.log_std)
    assert not any(p.requires_grad for p in [*target.core.parameters(), *target.readout.parameters(), target.log_std])
    assert all(p.requires_grad for p in target.encoder.parameters())
    before = target.obs_norm.mean.clone()
    target.obs_norm.update(torch.zeros(SPEC.observation_size), torch.ones(SPEC.observation_size), torch.tensor(5.0))
    assert torch.equal(target.obs_norm.mean, before)  # the decoder's input scaling stays put
    observation = torch.randn(6, SPEC.observation_size)
    kl = lambda step: target.auxiliary_loss(observation, step).item()
    assert kl(0) == 0 and kl(100) > 0
    assert kl(50) == pytest.approx(0.5 * kl(100)) and kl(1000) == pytest.approx(kl(100))
    learned = Controller(SPEC, functools.partial(RateRNNCore, hidden_size=8, learn_tau=True))
    rate_source = IntentionController(
        SPEC, functools.partial(RateRNNCore, hidden_size=8, learn_tau=True), latent_size=4
    )
    with torch.no_grad():
        rate_source.core.log_tau.add_(0.3)  # learned taus differ from the defaults: still transferable
    IntentionController(
        SPEC,
        functools.partial(RateRNNCore, hidden_size=8, learn_tau=True),
        latent_size=4,
        decoder_from=str(export_controller(rate_source, tmp_path / "rate")),
    )
    with pytest.raises(ValueError, match="decoder"):
        IntentionController(
            SPEC, CORES["gru"], latent_size=4, decoder_from=str(export_controller(learned, tmp_path / "o"))
        )


def test_ppo_refuses_configs_that_would_fail_later():
    from neuromimic.training import PPOConfig, PPOModule

    with pytest.raises(ValueError, match="fewer than model.ppo.minibatches"):
        PPOModule(
            EnvConfig(num_envs=2), CORES_FOR_PPO["gru"], PPOConfig(rollout_steps=16, sequence_length=16, minibatches=4)
        )
    with pytest.raises(ValueError, match="must divide"):
        PPOModule(EnvConfig(), CORES_FOR_PPO["gru"], PPOConfig(rollout_steps=32, sequence_length=12))

    class Unexportable(GRUCore):
        def config(self):
            raise NotImplementedError

    with pytest.raises(ValueError, match="register_core"):
        PPOModule(EnvConfig(), lambda spec: Controller(spec, Unexportable))


CORES_FOR_PPO = {"gru": lambda spec: Controller(spec, CORES["gru"])}


def test_spec_round_trip_and_layout():
    spec = ControllerSpec.from_dict(json.loads(json.dumps(SPEC.to_dict())))
    assert spec == SPEC
    slices = spec.observation_slices()
    assert slices["qpos"] == slice(0, 4) and max(s.stop for s in slices.values()) == SPEC.observation_size
    assert math.isclose(spec.control_dt, 0.01)


CONFIGS = ["mlp", "gru", "rate_rnn", "intention"]


@pytest.mark.slow
@pytest.mark.parametrize("name", CONFIGS)
def test_each_config_trains_and_exports(name, tmp_path, tiny_fit):
    """Each bundled config parses, trains a few updates, checkpoints, and exports."""
    from neuromimic.cli import main

    checkpoint = tiny_fit(name)
    main(["export", "--ckpt", str(checkpoint), "--output", str(tmp_path / "export")])
    from_checkpoint, from_export = load_controller(checkpoint), load_controller(tmp_path / "export")
    observation = torch.randn(3, SPEC.observation_size)
    with torch.no_grad():
        assert torch.equal(from_checkpoint(observation)[0], from_export(observation)[0])
    assert os.path.getsize(tmp_path / "export" / "controller.safetensors") > 0
