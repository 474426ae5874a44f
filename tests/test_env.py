"""Tier 2: `ImitationEnv` on CPU physics: specs, seeding, masked reset, done flags, bad input."""

import pytest
import torch
from torchrl.envs.utils import check_env_specs

from neuromimic.bodies import UnknownBodyError
from neuromimic.envs import EnvConfig, make_env

BACKENDS = ["mujoco", pytest.param("mjx", marks=pytest.mark.slow), pytest.param("warp", marks=pytest.mark.slow)]


@pytest.fixture(scope="module", params=BACKENDS)
def env(request):
    return make_env(EnvConfig(backend=request.param, num_envs=4), seed=0)


def test_check_env_specs(env):
    check_env_specs(env, seed=1)


def test_observation_layout_covers_observation(env):
    slices = env.observation_slices()
    size = env.observation_spec["observation"].shape[-1]
    assert max(s.stop for s in slices.values()) == size
    assert list(slices)[:3] == ["qpos", "qvel", "muscle_activation"]


def _rollout(env, seed, steps=20):
    env.set_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    td = env.reset()
    out = []
    for _ in range(steps):
        td["action"] = torch.rand(env.action_spec.shape, generator=generator).to(env.device)
        td, next_td = env.step_and_maybe_reset(td)
        out.append(td)
        td = next_td
    return torch.stack(out, dim=1)


def test_same_seed_gives_identical_rollouts(env):
    first, second = _rollout(env, seed=3), _rollout(env, seed=3)
    assert torch.equal(first["next", "observation"], second["next", "observation"])
    assert torch.equal(first["next", "reward"], second["next", "reward"])
    other = _rollout(env, seed=4)
    assert not torch.equal(first["next", "observation"], other["next", "observation"])


def test_masked_reset_leaves_other_envs_bitwise_unchanged(env):
    td = env.reset()
    for _ in range(5):
        td["action"] = torch.full(env.action_spec.shape, 0.3, device=env.device)
        td = env.step(td)["next"]
    view = env.backend.view
    before = {name: getattr(view, name).clone() for name in ("qpos", "qvel", "act", "site_pos_w")}
    frame_before = env.frame.clone()
    mask = torch.tensor([True, False, False, False], device=env.device)
    out = env.reset(td.set("_reset", mask[:, None]))
    view = env.backend.view
    for name, value in before.items():
        assert torch.equal(getattr(view, name)[1:], value[1:]), name
    assert torch.equal(env.frame[1:], frame_before[1:])
    assert torch.equal(out["observation"][1:], td["observation"][1:])


def test_clip_end_is_truncated_and_stray_wrist_terminated():
    config = EnvConfig(num_envs=2, terminations={})
    env = make_env(config, split="val", evaluation=True)
    td = env.reset()
    length = int(env.clips.length[0])
    for step in range(length - 1):
        td["action"] = torch.full(env.action_spec.shape, 0.2)
        td = env.step(td)["next"]
        if step < length - 2:
            assert not td["done"].any()
    assert td["truncated"].all() and not td["terminated"].any()

    strict = make_env(EnvConfig(num_envs=2, terminations={"site_pos_error": {"distance": 1e-5}}), seed=0)
    td = strict.reset()
    terminated = torch.zeros(2, dtype=torch.bool)
    for _ in range(8):  # random starts leave at least 10 frames, so no clip ends here
        td["action"] = torch.ones(strict.action_spec.shape)  # full co-contraction: the wrist strays
        td = strict.step(td)["next"]
        assert not td["truncated"].any()
        assert torch.equal(td["done"], td["terminated"])
        terminated |= td["terminated"].squeeze(-1)
    assert terminated.all()


def test_nan_state_terminates_and_resets_only_that_env(env):
    td = env.reset()
    view = env.backend.view  # corrupt one body's simulator state (through the backend's reset)
    qpos = view.qpos.clone()
    qpos[2, 0] = float("nan")
    env.backend.reset(
        torch.tensor([False, False, True, False], device=env.device), qpos, view.qvel.clone(), view.act.clone()
    )
    count_before = int(env.unstable_count)
    td["action"] = torch.full(env.action_spec.shape, 0.1, device=env.device)
    td, next_td = env.step_and_maybe_reset(td)
    assert td["next", "terminated"].squeeze(-1).tolist() == [False, False, True, False]
    assert td["next", "metrics", "unstable"].tolist() == [0.0, 0.0, 1.0, 0.0]
    assert int(env.unstable_count) == count_before + 1
    for key in ("observation", "reward"):
        assert torch.isfinite(td["next", key]).all(), key
    assert torch.isfinite(next_td["observation"]).all()
    assert torch.isfinite(env.backend.view.qpos).all()  # env 2 was reset


def test_action_of_wrong_shape_or_dtype_is_a_clear_error(env):
    td = env.reset()
    td["action"] = torch.zeros(4, 3, device=env.device)
    with pytest.raises(ValueError, match=r"action must be a float32 tensor of shape \(4, 9\)"):
        env._step(td)
    td["action"] = torch.zeros(4, 9, dtype=torch.float64, device=env.device)
    with pytest.raises(ValueError, match="got torch.float64"):
        env._step(td)


def test_unknown_body_lists_known_ones():
    with pytest.raises(UnknownBodyError, match="known bodies: .*mouse_forelimb.*rodent"):
        make_env(EnvConfig(body="mouse_hindlimb"))


def test_substeps_must_match_clip_rate():
    with pytest.raises(ValueError, match="set env.substeps to 2"):
        make_env(EnvConfig(substeps=3, num_envs=2))


def test_clips_of_another_body_are_refused():
    import dataclasses

    from neuromimic.bodies import get_body
    from neuromimic.data import ClipBank, ClipError, load_clips
    from neuromimic.physics import make_backend

    clips = [dataclasses.replace(clip, body="rat") for clip in load_clips("bundled:mouse_forelimb_reach", split="val")]
    backend = make_backend("mujoco", get_body("mouse_forelimb"), num_envs=2, substeps=2)
    with pytest.raises(ClipError, match="recorded for body 'rat' but the env simulates 'mouse_forelimb'"):
        ClipBank(clips).check_fits(backend.body, backend.model, backend.substeps)


def test_reset_outputs_from_the_table_match_a_live_evaluation(env):
    assert env._starts.table is not None
    td = env.reset()
    observation, _, metrics = env._split(env._evaluate(env.backend.view, env.clip_index, env.frame)[0])
    torch.testing.assert_close(td["observation"], observation, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(td["metrics"].to_dict(), metrics.to_dict(), rtol=1e-6, atol=1e-6)


def test_rollouts_with_and_without_the_reset_table_agree():
    with_table = make_env(EnvConfig(num_envs=4), seed=0)
    live = make_env(EnvConfig(num_envs=4), seed=0)
    live._starts.table = None  # every reset evaluates its outputs
    first, second = _rollout(with_table, seed=5, steps=40), _rollout(live, seed=5, steps=40)
    assert first["next", "done"].any(), "no episode restarted: the test compares nothing"
    torch.testing.assert_close(first["next", "observation"], second["next", "observation"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(first["observation"], second["observation"], rtol=1e-5, atol=1e-5)


def test_resets_after_a_model_change_show_the_changed_body():
    from neuromimic.analysis.perturb import weaken_muscles

    env = make_env(EnvConfig(num_envs=4), seed=0)
    force = env.observation_slices()["muscle_force"]
    assert env._starts.table[:, force].abs().max() > 0, "no passive force at reset: the test shows nothing"
    td = env.reset()
    muscles = [env.backend.model.actuator(i).name for i in range(env.backend.model.nu)]
    with weaken_muscles(env, {name: 0.0 for name in muscles}):
        # A partial reset: the table is stale, so the new episode's outputs are evaluated.
        mask = torch.tensor([True, False, False, False])
        out = env.reset(td.set("_reset", mask[:, None]))
        assert torch.equal(out["observation"][0, force], torch.zeros(force.stop - force.start))
        # A full reset tabulates the changed body again.
        out = env.reset()
        assert env._starts.model_version == env.backend.model_version
        assert env._starts.table[:, force].abs().max() == 0
        assert torch.equal(out["observation"][:, force], torch.zeros(4, force.stop - force.start))
