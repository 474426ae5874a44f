"""Tier 2: training disturbances on the mouse forelimb: observation noise on the named terms
only, with their standard deviation; none in evaluation envs; continuation from a
snapshot; config errors that name the field. (Pushes of a free root: test_rodent_env.py.)"""

import pytest
import torch

from neuromimic.envs import EnvConfig, make_env
from neuromimic.errors import ConfigError

NOISE = {"qvel": 0.5, "muscle_activation": 0.01}


def _noisy_env(num_envs=64):
    return make_env(EnvConfig(num_envs=num_envs, disturbances={"observation_noise": NOISE}), seed=0)


def _clean_observation(env):
    """The observation of every env's current state without noise."""
    return env._evaluate(env.backend.view, env.clip_index, env.frame)[0][:, : env._obs_dim]


def test_observation_noise_disturbs_only_its_terms_with_its_standard_deviation():
    env = _noisy_env()
    slices = env.observation_slices()
    td = env.reset()
    differences = [td["observation"] - _clean_observation(env)]
    for _ in range(4):
        td["action"] = torch.full(env.action_spec.shape, 0.2)
        td = env.step(td)["next"]
        differences.append(td["observation"] - _clean_observation(env))
    difference = torch.cat(differences)
    for name, block in slices.items():
        noise = difference[:, block]
        if name in NOISE:  # 5 x 64 x size samples: std and mean within 4 standard errors
            n = noise.numel()
            assert abs(noise.std().item() / NOISE[name] - 1) < 4 / (2 * n) ** 0.5, name
            assert abs(noise.mean().item()) < 4 * NOISE[name] / n**0.5, name
        else:
            assert torch.equal(noise, torch.zeros_like(noise)), name


def test_evaluation_envs_and_envs_without_disturbances_are_not_disturbed():
    config = EnvConfig(num_envs=2, disturbances={"observation_noise": NOISE})
    evaluation = make_env(config, split="val", evaluation=True)
    assert evaluation.disturbances is None and evaluation.before_step == []
    td = evaluation.reset()
    assert torch.equal(td["observation"], _clean_observation(evaluation))
    assert make_env(EnvConfig(num_envs=2, disturbances={"observation_noise": {"qvel": 0.0}})).disturbances is None


def test_a_restored_snapshot_continues_with_the_same_noise():
    env = _noisy_env(num_envs=4)
    td = env.reset()
    for _ in range(3):
        td["action"] = torch.full(env.action_spec.shape, 0.3)
        td = env.step_and_maybe_reset(td)[1]
    snapshot = env.snapshot()

    def continuation():
        out, state = [], td.clone()
        for _ in range(5):
            state["action"] = torch.full(env.action_spec.shape, 0.3)
            step, state = env.step_and_maybe_reset(state)
            out.append(step["next", "observation"])
        return torch.stack(out)

    first = continuation()
    env.restore(snapshot)
    assert torch.equal(continuation(), first)


def test_disturbance_config_errors_name_the_field_and_the_fix():
    with pytest.raises(ConfigError, match=r"observation_noise names \['joint_vel'\].*its terms are"):
        make_env(EnvConfig(num_envs=2, disturbances={"observation_noise": {"joint_vel": 0.1}}))
    with pytest.raises(ConfigError, match=r"model.env.disturbances.observation_noise.qvel.*>= 0"):
        EnvConfig(disturbances={"observation_noise": {"qvel": -1.0}})
    with pytest.raises(ConfigError, match=r"model.env.disturbances.push_velocity"):
        EnvConfig(disturbances={"push_rate_hz": 1.0, "push_velocity": float("nan")})
    with pytest.raises(ConfigError, match=r"push_duration_s.*> 0 s while push_rate_hz"):
        EnvConfig(disturbances={"push_rate_hz": 1.0, "push_duration_s": 0.0})
    with pytest.raises(ConfigError, match=r"pushes a free root.*fixed: set push_rate_hz to 0"):
        make_env(EnvConfig(num_envs=2, disturbances={"push_rate_hz": 1.0}))


def test_disturbances_travel_with_the_config():
    config = EnvConfig(disturbances={"observation_noise": NOISE, "push_rate_hz": 0.5})
    again = EnvConfig.from_dict(config.to_dict())
    assert again.disturbances == config.disturbances
    legacy = config.to_dict()
    del legacy["disturbances"]  # files written before disturbances existed
    assert not EnvConfig.from_dict(legacy).disturbances.active
