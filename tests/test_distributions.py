"""Tier 1: `UnitIntervalTanhNormal` is TorchRL's ``TanhNormal(low=0, high=1)`` without a host read.

TorchRL's ``TanhNormal`` is the reference: the policy's distribution was that class before,
and trained checkpoints, learning curves and bitwise resumes were made with it.
"""

import contextlib
import math
from unittest import mock

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import ProbabilisticTensorDictModule
from torchrl.envs.utils import ExplorationType, set_exploration_type
from torchrl.modules import TanhNormal

from neuromimic.training.distributions import UnitIntervalTanhNormal

BOUNDARY_ACTIONS = [0.0, 1e-9, 1e-7, 5e-7, 1e-5, 1e-3, 0.5, 1 - 1e-3, 1 - 1e-5, 1 - 5e-7, 1 - 1e-7, 1.0]


def _params(batch: int = 64, nu: int = 9, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Pre-squash means [batch, nu] from mid-range to saturated (|loc| up to ~12) and
    standard deviations in [0.05, 2]."""
    generator = torch.Generator().manual_seed(seed)
    loc = 4.0 * torch.randn(batch, nu, generator=generator)
    loc[0, :4] = torch.tensor([9.0, -9.0, 20.0, -20.0])  # beyond tanh's float32 clamp
    scale = 0.05 + 1.95 * torch.rand(batch, nu, generator=generator)
    return loc, scale


def _reference(loc: torch.Tensor, scale: torch.Tensor) -> TanhNormal:
    return TanhNormal(loc, scale, low=0.0, high=1.0)


def test_shapes_equal_torchrl_tanh_normal():
    for shape in [(9,), (5, 9), (3, 5, 9), ()]:
        loc, scale = torch.zeros(shape), torch.ones(shape)
        ours, theirs = UnitIntervalTanhNormal(loc, scale), _reference(loc, scale)
        assert (ours.batch_shape, ours.event_shape) == (theirs.batch_shape, theirs.event_shape), shape
        sample = ours.sample((2,))
        assert sample.shape == (2, *shape)
        assert ours.log_prob(sample).shape == theirs.log_prob(sample).shape == (2, *shape[:-1])


def test_log_prob_and_its_gradients_equal_torchrl_tanh_normal_up_to_the_bounds():
    loc, scale = _params()
    random_actions = torch.rand(loc.shape, generator=torch.Generator().manual_seed(1))
    edge_actions = torch.tensor(BOUNDARY_ACTIONS).repeat(math.ceil(loc.shape[-1] / len(BOUNDARY_ACTIONS)) + 1)
    edge_actions = edge_actions[: loc.shape[-1]].expand_as(loc)
    samples = _reference(loc, scale).sample()
    for actions in (random_actions, edge_actions, samples):
        results = []
        for build in (UnitIntervalTanhNormal, _reference):
            loc_, scale_ = loc.clone().requires_grad_(), scale.clone().requires_grad_()
            log_prob = build(loc_, scale_).log_prob(actions)
            log_prob.sum().backward()
            results.append((log_prob.detach(), loc_.grad, scale_.grad))
        (ours, ours_dloc, ours_dscale), (theirs, theirs_dloc, theirs_dscale) = results
        assert torch.isfinite(ours).all()
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=0)
        torch.testing.assert_close(ours_dloc, theirs_dloc, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(ours_dscale, theirs_dscale, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", ["sample", "rsample"])
def test_a_seeded_draw_equals_torchrl_tanh_normals_bit_for_bit(method):
    """Same generator draws, same rounding: training runs are bitwise those made with
    TanhNormal, and so is the log-probability the collector stores."""
    loc, scale = _params()
    draws = []
    for build in (UnitIntervalTanhNormal, _reference):
        with torch.random.fork_rng():
            torch.manual_seed(123)
            draws.append(getattr(build(loc, scale), method)((3,)))
    ours, theirs = draws
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
    assert torch.equal(ours, theirs)
    assert torch.equal(UnitIntervalTanhNormal(loc, scale).log_prob(ours), _reference(loc, scale).log_prob(theirs))
    assert (ours > 0).all() and (ours < 1).all()  # the clamp keeps samples inside (0, 1)


@pytest.mark.parametrize("method", ["rsample_and_log_prob", "sample_and_log_prob"])
def test_sample_and_score_equals_torchrl_tanh_normal_gradients_included(method):
    """TorchRL's PPO loss estimates the entropy with ``rsample_and_log_prob`` (neither class
    has a closed form), so the entropy bonus and its gradient are unchanged."""
    loc, scale = _params()
    results = []
    for build in (UnitIntervalTanhNormal, _reference):
        loc_, scale_ = loc.clone().requires_grad_(), scale.clone().requires_grad_()
        with torch.random.fork_rng():
            torch.manual_seed(7)
            action, log_prob = getattr(build(loc_, scale_), method)((2,))
        (-log_prob.mean(0)).sum().backward()
        results.append((action.detach(), log_prob.detach(), loc_.grad, scale_.grad))
    for ours, theirs in zip(*results):
        assert torch.equal(ours, theirs)
    with pytest.raises(NotImplementedError):
        UnitIntervalTanhNormal(loc, scale).entropy()
    with pytest.raises(NotImplementedError):
        _reference(loc, scale).entropy()


def test_samples_have_torchrl_tanh_normals_mean_and_spread():
    """Independent draws (different seeds) of both classes agree in mean and variance
    within 6 standard errors; for variables in [0, 1] the standard error of a mean is at
    most 0.5 / sqrt(n) and that of a (biased) variance at most 0.5 / sqrt(n), so the bound
    holds for any distribution on (0, 1): a false failure has probability < 1e-7 per
    statistic and, the seeds being fixed, the test is deterministic anyway."""
    n = 100_000
    loc = torch.tensor([-3.0, -1.0, -0.2, 0.0, 0.3, 1.0, 2.5, 6.0])
    scale = torch.tensor([0.1, 1.0, 0.5, 2.0, 0.05, 0.7, 1.5, 1.0])
    stats = []
    for build, seed in ((UnitIntervalTanhNormal, 1), (_reference, 2)):
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            x = build(loc, scale).sample((n,))  # [n, 8]
        stats.append((x.double().mean(0), x.double().var(0, unbiased=False)))
    (mean, var), (ref_mean, ref_var) = stats
    margin = 6.0 * math.sqrt(2.0) * 0.5 / math.sqrt(n)  # difference of two independent estimates
    assert (mean - ref_mean).abs().max() < margin
    assert (var - ref_var).abs().max() < margin
    # The draws are not degenerate: a wide distribution spreads over the interval.
    assert var[3] > 0.1


def test_the_deterministic_sample_is_the_squashed_mean():
    loc, scale = _params()
    mid = loc.clamp(-5, 5)  # tanh stays inside float32's clamp of 1 - 1e-6
    deterministic = UnitIntervalTanhNormal(mid, scale).deterministic_sample
    torch.testing.assert_close(deterministic, (torch.tanh(mid) + 1) / 2, rtol=0, atol=0)
    saturated = UnitIntervalTanhNormal(loc, scale).deterministic_sample
    # float32: the clamp keeps actions 1 - 0.99999899 ~ 5.1e-7 inside the bounds.
    torch.testing.assert_close(saturated, (torch.tanh(loc) + 1) / 2, rtol=0, atol=6e-7)
    assert torch.equal(saturated, _reference(loc, scale).deterministic_sample)
    assert (saturated > 0).all() and (saturated < 1).all()
    # What a ProbabilisticActor acts with under ExplorationType.DETERMINISTIC.
    module = ProbabilisticTensorDictModule(
        in_keys=["loc", "scale"],
        out_keys=["action"],
        distribution_class=UnitIntervalTanhNormal,
        return_log_prob=True,
    )
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        td = module(TensorDict({"loc": mid, "scale": scale}, batch_size=[mid.shape[0]]))
    assert torch.equal(td["action"], deterministic)
    with pytest.raises(RuntimeError, match="DETERMINISTIC"):
        UnitIntervalTanhNormal(loc, scale).mode  # noqa: B018  (as TanhNormal: no closed-form mode)


def _refuse(what: str):
    def refuse(*args, **kwargs):
        raise AssertionError(f"{what} reads a tensor on the host (a device synchronisation on CUDA)")

    return refuse


@contextlib.contextmanager
def _no_host_reads():
    """Make every way of reading a tensor's value on the host, and of building a tensor
    from host data, raise: what is sync-free here is sync-free on CUDA."""
    refused = {
        "__bool__": torch.Tensor,
        "__float__": torch.Tensor,
        "__int__": torch.Tensor,
        "item": torch.Tensor,
        "tolist": torch.Tensor,
        "numpy": torch.Tensor,
        "tensor": torch,
        "as_tensor": torch,
    }
    with contextlib.ExitStack() as stack:
        for name, owner in refused.items():
            stack.enter_context(mock.patch.object(owner, name, _refuse(name)))
        yield


def test_the_probe_catches_a_host_read():
    with _no_host_reads(), pytest.raises(AssertionError, match="host"):
        bool((torch.ones(3) > 0).any())
    with _no_host_reads(), pytest.raises(AssertionError, match="host"):
        _reference(torch.zeros(2, 3), torch.ones(2, 3))  # TorchRL's TanhNormal reads its bounds


def test_building_sampling_and_scoring_never_read_the_device():
    loc, scale = _params()
    loc.requires_grad_()
    with _no_host_reads():
        dist = UnitIntervalTanhNormal(loc, scale)
        action = dist.rsample()
        dist.sample((2,))
        log_prob = dist.log_prob(action.detach())
        dist.rsample_and_log_prob((1,))
        dist.sample_and_log_prob()
        dist.deterministic_sample  # noqa: B018
        log_prob.sum().backward()
        # And through TensorDict's sampling path, as the policy runs it at every step.
        module = ProbabilisticTensorDictModule(
            in_keys=["loc", "scale"],
            out_keys=["action"],
            distribution_class=UnitIntervalTanhNormal,
            return_log_prob=True,
        )
        for exploration in (ExplorationType.RANDOM, ExplorationType.DETERMINISTIC):
            with set_exploration_type(exploration):
                module(TensorDict({"loc": loc.detach(), "scale": scale}, batch_size=[loc.shape[0]]))
    assert loc.grad is not None


def test_a_step_of_the_training_policy_never_reads_the_device():
    """`PPOModule`'s actor (controller, distribution, sample, log-probability) as the
    collector runs it at every control step."""
    from neuromimic.envs import EnvConfig
    from neuromimic.training import PPOModule

    module = PPOModule(EnvConfig(num_envs=4))
    size = module.spec.observation_size
    td = TensorDict(
        {"observation": torch.randn(4, size), "is_init": torch.zeros(4, 1, dtype=torch.bool)}, batch_size=[4]
    )
    with _no_host_reads(), set_exploration_type(ExplorationType.RANDOM):
        td = module.actor(td)
    assert td["action"].shape == (4, module.spec.action_size)
    assert td["action_log_prob"].shape == (4,)
