"""Tier 3 (GPU): zero copy and no host synchronisation on CUDA. Skipped without a GPU."""

import contextlib
import time
from collections.abc import Callable

import pytest
import torch
from tensordict import TensorDict
from torchrl.envs.utils import ExplorationType, set_exploration_type

from neuromimic.bodies import get_body
from neuromimic.envs import EnvConfig, make_env
from neuromimic.physics import make_backend
from neuromimic.physics.bridge import buffer_pointer

pytestmark = [pytest.mark.gpu, pytest.mark.slow]

# The Python packages each GPU physics backend needs (skipped where one is missing).
BACKEND_PACKAGES = {"mjx": ("jax", "mujoco.mjx"), "warp": ("warp", "mujoco_warp")}


def test_mjx_views_alias_jax_buffers_on_cuda():
    backend = make_backend("mjx", get_body("mouse_forelimb"), num_envs=8, substeps=2, device="cuda")
    backend.step(torch.rand(8, 9, device="cuda"))
    view = backend.view
    assert view.qpos.device.type == "cuda"
    assert view.qpos.data_ptr() == buffer_pointer(backend.data.qpos)
    assert view.act.data_ptr() == buffer_pointer(backend.data.act)


def test_warp_views_alias_warp_arrays_on_cuda():
    pytest.importorskip("mujoco_warp")
    backend = make_backend("warp", get_body("mouse_forelimb"), num_envs=8, substeps=2, device="cuda")
    view = backend.view
    backend.step(torch.rand(8, 9, device="cuda"))
    assert backend.view is view and view.qpos.device.type == "cuda"
    for name in ("qpos", "qvel", "act", "ctrl", "time"):
        assert getattr(view, name).data_ptr() == getattr(backend.wp_data, name).ptr, name


@pytest.mark.parametrize("backend", ["mjx", "warp"])
def test_env_step_does_not_synchronise_with_the_host(backend):
    for package in BACKEND_PACKAGES[backend]:
        pytest.importorskip(package)
    env = make_env(EnvConfig(backend=backend, num_envs=8), device="cuda")
    td = env.reset()
    td["action"] = torch.rand(env.action_spec.shape, device="cuda")
    env._step(td)  # compile and warm up outside the check
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = env._step(td)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert out["observation"].device.type == "cuda"


# ----------------------------------------------------------------- the policy, per step
# What issue 18 item 4 asks: a training step of the policy (its distribution, sample and
# log-probability) and of the env never makes the host wait for the GPU. TorchRL's
# TanhNormal did, at every step (UnitIntervalTanhNormal replaces it; see
# tests/test_distributions.py for the CPU half of these checks).


@contextlib.contextmanager
def no_host_synchronisation():
    """Raise at any torch operation that synchronises the host with the GPU (a read of a
    device value, a blocking copy between host and device, a stream or device sync).

    Work that JAX or Warp make the host wait for is not seen here: `host_seconds_of` is.
    """
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode(0)


def _policy_steps(actor, env, td, steps: int):
    """``steps`` control steps of ``env`` acting with the stochastic ``actor``, as
    `PPOModule` collects them; returns the [B, steps] rollout and the next root."""
    collected = []
    with torch.no_grad(), set_exploration_type(ExplorationType.RANDOM):
        for _ in range(steps):
            td, next_td = env.step_and_maybe_reset(actor(td))
            collected.append(td)
            td = next_td
    return torch.stack(collected, dim=1), td


@pytest.fixture(scope="module", params=sorted(BACKEND_PACKAGES))
def policy_and_env(request):
    """A `PPOModule` (MLP controller) on the GPU and a training env of 8 bodies on the
    backend of the parameter, warmed up (physics compiled, first steps and resets run)."""
    for package in BACKEND_PACKAGES[request.param]:
        pytest.importorskip(package)
    from neuromimic.training import PPOConfig, PPOModule

    config = EnvConfig(backend=request.param, num_envs=8)
    module = PPOModule(config, ppo=PPOConfig(rollout_steps=4, epochs=1, minibatches=1)).to("cuda")
    env = make_env(config, split="train", device="cuda", seed=0)
    _, td = _policy_steps(module.actor, env, env.reset(), 4)
    torch.cuda.synchronize()
    return module, env, td


def test_the_policy_distribution_does_not_synchronise_on_cuda():
    from torchrl.modules import TanhNormal

    from neuromimic.training import PPOModule
    from neuromimic.training.distributions import UnitIntervalTanhNormal

    loc = 3.0 * torch.randn(8, 9, device="cuda")
    scale = 0.1 + torch.rand(8, 9, device="cuda")
    module = PPOModule(EnvConfig(num_envs=8)).to("cuda")  # the env config only sizes the controller
    td = TensorDict(
        {
            "observation": torch.randn(8, module.spec.observation_size, device="cuda"),
            "is_init": torch.zeros(8, 1, dtype=torch.bool, device="cuda"),
        },
        batch_size=[8],
        device="cuda",
    )
    module.actor(td.clone())  # first-call work (cuBLAS handles, allocations) outside the check
    with no_host_synchronisation():
        dist = UnitIntervalTanhNormal(loc, scale)
        action = dist.rsample()
        dist.sample((2,))
        dist.log_prob(action)
        dist.rsample_and_log_prob((1,))  # the PPO loss's entropy estimate
        dist.deterministic_sample  # noqa: B018
        for exploration in (ExplorationType.RANDOM, ExplorationType.DETERMINISTIC):
            with set_exploration_type(exploration):
                out = module.actor(td.clone())
    assert out["action"].device.type == "cuda" and out["action_log_prob"].shape == (8,)
    # The check sees what the old distribution did at every step.
    with pytest.raises(RuntimeError), no_host_synchronisation():
        TanhNormal(loc, scale, low=0.0, high=1.0)


def test_policy_steps_of_the_env_do_not_synchronise_on_cuda(policy_and_env):
    module, env, td = policy_and_env
    with no_host_synchronisation():
        rollout, _ = _policy_steps(module.actor, env, td, 8)
    assert rollout["action"].device.type == "cuda" and rollout.shape == (8, 8)


def test_a_ppo_update_does_not_synchronise_on_cuda(policy_and_env):
    """The arithmetic of `PPOModule.training_step` (log-probabilities, clipped PPO loss,
    backward pass, gradient clipping, Adam step) with the default ``desired_kl=None``.

    Once per PPO iteration, outside the check: TorchRL 0.14.1's GAE reads
    ``torch.isnan(next observation).any()`` on the host (``_sanitize_next_obs_nan``,
    torchrl/objectives/value/advantages.py:656), and `PPOModule` itself times the rollout
    (a synchronize), logs it and copies the minibatch order to the GPU. With
    ``desired_kl`` set, `PPOModule._set_learning_rate` reads the KL once per optimiser
    step (by design). None of these happens per env step.
    """
    module, env, td = policy_and_env
    optimizer = module.configure_optimizers()
    parameters = [p for p in module.parameters() if p.requires_grad]

    def update(rollout):
        units = rollout.reshape(-1)
        with torch.no_grad():
            log_prob = module.actor.get_dist(units).log_prob(units["action"])
            units.set(module.loss.tensor_keys.sample_log_prob, log_prob)
        losses = module.loss(units)
        auxiliary = module.controller.auxiliary_loss(units["observation"], 0)
        loss = losses["loss_objective"] + losses["loss_critic"] + losses["loss_entropy"] + auxiliary
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, module.ppo.max_grad_norm)
        optimizer.step()
        return loss.detach()

    for checked in (False, True):  # the first update creates Adam's state: outside the check
        rollout, td = _policy_steps(module.actor, env, td, module.ppo.rollout_steps)
        with torch.no_grad():
            module.gae(rollout)
        with no_host_synchronisation() if checked else contextlib.nullcontext():
            before = module.controller.readout.weight.detach().clone()
            loss = update(rollout)
            moved = (module.controller.readout.weight - before).abs().max()
    assert torch.isfinite(loss) and moved > 0


def host_seconds_of(burst: Callable[[], object], device: torch.device | str, sleep_s: float = 0.2) -> float:
    """Host seconds that ``burst()`` takes while ``sleep_s`` seconds of GPU sleep
    (``torch.cuda._sleep``) are queued ahead of it on the current stream of ``device``.

    Whatever the burst queues runs after the sleep; if the host waits for any of it (a
    read of a device value, a stream sync, JAX's ``block_until_ready``, Warp's
    ``synchronize``: torch's sync-debug mode sees only the first two), the burst takes at
    least the rest of the sleep on the host; if it never waits, only its launch overhead.
    Keep a burst to a few hundred kernel launches: a full launch queue also makes the host
    wait.

    Raises:
        AssertionError: if the queued sleep lasted less than half of ``sleep_s`` (the
            clock calibration went wrong and the measurement would mean nothing).
    """
    with torch.cuda.device(device):
        probe_cycles = 20_000_000
        for _ in range(2):  # the second calibration runs at the clock the first woke up
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            torch.cuda._sleep(probe_cycles)
            end.record()
            end.synchronize()
            cycles = int(probe_cycles * sleep_s * 1e3 / start.elapsed_time(end))
        torch.cuda.synchronize()
        start.record()
        torch.cuda._sleep(cycles)
        end.record()
        host_start = time.perf_counter()
        burst()
        host_seconds = time.perf_counter() - host_start
        torch.cuda.synchronize()
        queued_seconds = start.elapsed_time(end) / 1e3
    assert queued_seconds > 0.5 * sleep_s, f"queued {queued_seconds:.3f} s of GPU sleep, asked for {sleep_s} s"
    return host_seconds


def test_the_host_never_waits_for_the_gpu_during_policy_steps(policy_and_env):
    module, env, td = policy_and_env
    state = {"td": td}

    def burst() -> None:
        _, state["td"] = _policy_steps(module.actor, env, state["td"], 2)

    burst()  # the burst's own first-call work
    torch.cuda.synchronize()
    start = time.perf_counter()
    burst()
    unobstructed = time.perf_counter() - start  # launch overhead (plus the steps' GPU time if it waits)
    torch.cuda.synchronize()
    # A sleep far longer than the burst's host overhead, so the two cases cannot be confused.
    sleep_s = max(0.2, 4 * unobstructed)
    seconds = host_seconds_of(burst, "cuda", sleep_s=sleep_s)
    assert seconds < 0.5 * sleep_s, (
        f"2 policy steps of the {type(env.backend).__name__} env took {seconds:.3f} s on the host behind "
        f"{sleep_s:.3f} s of queued GPU work ({unobstructed:.3f} s without it): the host waited for the GPU"
    )
