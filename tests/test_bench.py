"""`neuromimic bench env|train|peer` print one JSON object each: our speed against the bare simulator's and the peer's."""

import json
from pathlib import Path

import numpy as np
import pytest

from neuromimic.cli import main
from neuromimic.envs import EnvConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_bench_env_prints_one_json_object(capsys):
    main(["bench", "env", "--model.env.num_envs", "4", "--steps", "20"])
    result = json.loads(capsys.readouterr().out)
    assert result["benchmark"] == "env" and result["backend"] == "mujoco"
    assert result["steps_per_s"] > 0 and result["raw_steps_per_s"] > 0
    assert result["raw_per_control_step_steps_per_s"] > 0
    assert result["ratio"] == result["steps_per_s"] / result["raw_steps_per_s"]
    assert result["env_build_s"] > 0


def test_bench_env_with_afferents(capsys):
    main(
        [
            "bench",
            "env",
            *("--model.env.num_envs", "4", "--steps", "10"),
            *("--model.env.proprioception", "afferents", "--model.env.afferents.dt_ms", "2.5"),
        ]
    )
    result = json.loads(capsys.readouterr().out)
    assert result["proprioception"] == "afferents" and result["afferent_dt_ms"] == 2.5
    assert result["steps_per_s"] > 0


def test_bench_env_times_what_a_fit_config_trains(capsys):
    """A fit config, by file or bundled name, sets the env; flags after it override it."""
    main(["bench", "env", "--config", str(CONFIGS / "mouse_forelimb_reach_afferent.yaml"), "--steps", "4"])
    result = json.loads(capsys.readouterr().out)
    assert (result["proprioception"], result["num_envs"]) == ("afferents", 64)
    with pytest.raises(SystemExit):
        main(["bench", "env", "--config", "rodent_imitation_mlp", "--model.env.num_envs", "256", "--print_config"])
    printed = capsys.readouterr().out
    assert "body: rodent" in printed and "num_envs: 256" in printed and "steps: 500" in printed


def test_every_command_takes_config_and_print_config(capsys):
    from neuromimic.commands import COMMANDS

    for name, (_, target) in COMMANDS.items():
        for subcommand in [[]] if callable(target) else [[key] for key in target]:
            with pytest.raises(SystemExit):
                main([name, *subcommand, "--help"])
            usage = capsys.readouterr().out
            assert "--config CONFIG" in usage and "--print_config" in usage, (name, subcommand)


def neuromimic_version() -> str:
    from importlib.metadata import version

    return version("neuromimic")


def test_bodies_list(capsys):
    main(["bodies", "list"])
    rows = json.loads(capsys.readouterr().out)
    mouse = next(row for row in rows if row["key"] == "mouse_forelimb")
    assert mouse == {
        "key": "mouse_forelimb",
        "dof": 4,
        "actuators": 9,
        "muscles": 9,
        "source": f"neuromimic {neuromimic_version()}",
        "backends": ["mujoco", "mjx", "warp"],
    }


def test_bench_train_prints_one_json_object(capsys):
    main(["bench", "train", "--model.env.num_envs", "8", "--iterations", "2"])
    out = capsys.readouterr().out
    result = json.loads(out[out.index("{\n") :])
    assert result["benchmark"] == "train" and result["iterations_timed"] == 1
    assert result["train_env_steps_per_s"] > 0 and result["optimiser_steps_per_s"] > 0
    assert "phases" not in result


def test_bench_train_profile_times_each_phase_of_an_iteration(capsys):
    """`--profile true`: each phase called as often as an iteration calls it; the nested
    phases inside their parents; the phases not covering more than the iterations took."""
    from neuromimic.training.phases import PHASES

    rollout_steps, epochs, minibatches = 8, 2, 3
    main(
        ["bench", "train", "--model.env.num_envs", "8", "--iterations", "3", "--profile", "true"]
        + ["--model.ppo.rollout_steps", str(rollout_steps), "--model.ppo.epochs", str(epochs)]
        + ["--model.ppo.minibatches", str(minibatches), "--evaluation", "false"]
    )
    out = capsys.readouterr().out
    phases = json.loads(out[out.index("{\n") :])["phases"]
    assert list(phases) == [*PHASES, "other"]
    calls = {name: phase["calls_per_iteration"] for name, phase in phases.items()}
    updates = epochs * minibatches
    assert calls["prepare"] == calls["collect"] == calls["advantages"] == calls["log_rollout"] == 1
    assert calls["collect.policy"] == calls["collect.env"] == calls["collect.env.physics"] == rollout_steps
    assert calls["collect.env.outputs"] == rollout_steps  # restarts read their outputs from the reset table
    assert calls["update"] == calls["update.loss"] == calls["update.backward"] == calls["update.optimizer"] == updates
    ms = {name: phase["ms_per_iteration"] for name, phase in phases.items()}
    assert ms["collect.env.physics"] < ms["collect.env"] < ms["collect"] < ms["prepare"]
    assert ms["update.loss"] + ms["update.backward"] + ms["update.optimizer"] < ms["update"]
    assert ms["other"] >= 0 and sum(phases[name]["share"] for name in ("prepare", "update", "other")) == pytest.approx(
        1
    )


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["mjx", "warp"])
def test_bench_env_accelerated_backends_have_a_bare_baseline(backend):
    from neuromimic.bench import bench_env

    result = bench_env(EnvConfig(backend=backend, num_envs=4), steps=4)
    assert result["raw_steps_per_s"] > 0 and result["ratio"] == result["steps_per_s"] / result["raw_steps_per_s"]
    assert result["raw_per_control_step_steps_per_s"] > 0 and result["backend"] == backend


def test_env_step_budget_tool_prints_the_budget(capsys, monkeypatch):
    import runpy
    import sys
    from pathlib import Path

    tool = Path(__file__).resolve().parents[1] / "tools" / "env_step_budget.py"
    monkeypatch.setattr(sys, "argv", [str(tool), "--num-envs", "4", "--steps", "20"])
    runpy.run_path(str(tool), run_name="__main__")
    result = json.loads(capsys.readouterr().out)
    assert result["target_ms"] == pytest.approx(result["raw_ms"] / 0.7)
    assert 0 < result["torchrl_ms"] < result["env_ms"]
    left = result["target_ms"] - result["backend_ms"] - result["torchrl_ms"]
    assert result["left_for_env_work_ms"] == pytest.approx(left)
    assert 0 < result["evaluate_ms"] < result["env_ms"] and 0 < result["restart_ms"] < result["env_ms"]


def test_bench_peer_compares_with_the_plain_gymnasium_and_torchrl_path(capsys):
    """`neuromimic bench peer`: our env and PPO and the peer's, interleaved; ratios of medians."""
    pytest.importorskip("gymnasium")
    main(["bench", "peer", "--model.env.num_envs", "4", "--rounds", "2", "--steps", "5", "--iterations", "1"])
    out = capsys.readouterr().out
    result = json.loads(out[out.index("{\n") :])
    env, train = result["env_steps_per_s"], result["train_env_steps_per_s"]
    for side in (env["ours"], env["peer"], train["ours"], train["peer"]):
        assert len(side["runs"]) == 2 and 0 < side["min"] <= side["median"] <= side["max"]
    assert result["env_ratio"] == env["ours"]["median"] / env["peer"]["median"]
    assert result["env_ratio_per_thread"] == result["env_ratio"] / result["threads"]["ours_physics"]
    assert result["train_ratio"] == train["ours"]["median"] / train["peer"]["median"]


def test_plain_body_env_follows_the_gymnasium_api():
    """The peer's env steps the body's own model and ends each episode at its clip's end."""
    pytest.importorskip("gymnasium")
    from gymnasium.utils.env_checker import check_env

    from neuromimic.bodies import get_body
    from neuromimic.peer import PlainBodyEnv

    model = get_body("mouse_forelimb").load_model()
    clip = np.linspace(model.qpos0, model.qpos0 + 0.1, 3)
    env = PlainBodyEnv(model, [clip], substeps=2, seed=0)
    check_env(env, skip_render_check=True)
    observation, _ = env.reset(seed=1)
    assert observation.shape == env.observation_space.shape == (model.nq + model.nv + model.na + model.nq,)
    lengths = set()
    for _ in range(4):
        env.reset()
        steps, truncated = 0, False
        while not truncated:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            steps += 1
            assert not terminated and reward <= 0
        lengths.add(steps)
    assert lengths == {1, 2}  # starts on frame 0 or 1 of the 3-frame clip
