"""Perturbations: each changes what it should, and undoes exactly (bitwise) on exit."""

from __future__ import annotations

import functools

import pytest
import torch

from neuromimic.analysis import perturb
from neuromimic.envs import EnvConfig, controller_spec, make_env
from neuromimic.models import Controller, GRUCore, MLPCore, RateRNNCore

SPEC = controller_spec(EnvConfig())
RATE = functools.partial(RateRNNCore, hidden_size=20, excitatory_fraction=0.8)


def _controller(core=RATE) -> Controller:
    torch.manual_seed(0)
    controller = Controller(SPEC, core)
    torch.nn.init.normal_(controller.readout.weight, std=0.5)  # make units matter to the action
    return controller


def _run(controller: Controller, observations: torch.Tensor):
    """Actions [T, B, nu] and activities of stepping through observations [T, B, D]."""
    state, actions, activities = None, [], []
    with torch.no_grad():
        for observation in observations:
            loc, _, state, activity = controller.step(observation, state)
            actions.append(loc)
            activities.append(activity)
    return torch.stack(actions), activities


OBSERVATIONS = torch.randn(12, 3, SPEC.observation_size, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize(
    "name, make",
    [
        ("silence indices", lambda c: perturb.silence_units(c, [0, 3, 5])),
        ("silence fraction", lambda c: perturb.silence_units(c, 0.25, seed=2)),
        ("silence inhibitory", lambda c: perturb.silence_units(c, "inhibitory")),
        ("clamp", lambda c: perturb.clamp_units(c, [1, 2], 2.0)),
        ("inject", lambda c: perturb.inject_current(c, "excitatory", 1.5)),
        ("remove feedback", lambda c: perturb.remove_sensory(c, ["muscle_length", "muscle_velocity"])),
        ("sensory noise", lambda c: perturb.sensory_noise(c, 0.5, ["qpos"], seed=3)),
        ("time constants", lambda c: perturb.scale_time_constants(c, 3.0)),
        ("sensory delay", lambda c: perturb.sensory_delay(c, 30.0, ["qpos", "qvel"])),
    ],
)
def test_controller_perturbations_change_outputs_and_undo_exactly(name, make):
    controller = _controller()
    before, _ = _run(controller, OBSERVATIONS)
    with make(controller):
        inside, _ = _run(controller, OBSERVATIONS)
    after, _ = _run(controller, OBSERVATIONS)
    assert (inside - before).abs().max() > 1e-4, name
    assert torch.equal(after, before), name


def test_silenced_units_are_silent_and_clamped_units_hold():
    controller = _controller()
    with perturb.silence_units(controller, "inhibitory"):
        _, activities = _run(controller, OBSERVATIONS)
    rates = torch.stack([a["rate"] for a in activities])
    assert (rates[..., 16:] == 0).all() and (rates[..., :16] > 0).all()
    gru = _controller(functools.partial(GRUCore, hidden_size=8))
    with perturb.clamp_units(gru, [2], 0.7):
        _, activities = _run(gru, OBSERVATIONS)
    assert all(torch.equal(a["h"][:, 2], torch.full((3,), 0.7)) for a in activities)
    mlp = _controller(functools.partial(MLPCore, hidden_sizes=(32, 16)))
    with perturb.silence_units(mlp, [0, 1]):
        _, activities = _run(mlp, OBSERVATIONS)
    assert all((a["layer_1"][:, :2] == 0).all() for a in activities)


def test_removed_feedback_carries_no_information():
    controller = _controller()
    other = OBSERVATIONS.clone()
    columns = controller.spec.observation_slices()["muscle_length"]
    other[..., columns] += 5.0
    with perturb.remove_sensory(controller, ["muscle_length"]):
        a, _ = _run(controller, OBSERVATIONS)
        b, _ = _run(controller, other)
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="no observation block starts with"):
        perturb.remove_sensory(controller, ["spindle"])


def test_unit_selection_errors():
    controller = _controller(functools.partial(GRUCore, hidden_size=8))
    with pytest.raises(ValueError, match="Dale"):
        perturb.select_units(controller, "excitatory")
    with pytest.raises(ValueError, match=r"\[0, 8\)"):
        perturb.select_units(controller, [9])
    with pytest.raises(TypeError, match="RateRNNCore"):
        perturb.inject_current(controller, [0], 1.0)
    assert perturb.select_units(controller, 0.5, seed=4).sum() == 4


def _physics(env, steps=15):
    """Muscle forces and joint angles [T, B, ...] under a fixed excitation pattern."""
    td = env.reset()
    forces, qpos = [], []
    generator = torch.Generator().manual_seed(0)
    for _ in range(steps):
        td["action"] = torch.rand(env.action_spec.shape, generator=generator)
        td = env.step(td)["next"]
        forces.append(env.backend.view.actuator_force.clone())
        qpos.append(env.backend.view.qpos.clone())
    return torch.stack(forces), torch.stack(qpos)


@pytest.mark.parametrize(
    "make",
    [
        lambda env: perturb.weaken_muscles(env, {"Biceps_Long": 0.3, "Brachialis": 0.5}),
        lambda env: perturb.scale_body_mass(env, {"humerus": 3.0, "ulna": 3.0}),
        lambda env: perturb.force_pulse(env, "radius", [0.0, 0.0, -0.05], start_s=0.03, duration_s=0.05),
        lambda env: perturb.scale_segment_length(env, {"humerus": 1.3}),
    ],
)
def test_body_perturbations_change_the_physics_and_undo_exactly(make):
    env = make_env(EnvConfig(num_envs=2), split="val", evaluation=True)
    before = _physics(env)
    with make(env):
        inside = _physics(env)
    after = _physics(env)
    assert (inside[1] - before[1]).abs().max() > 1e-6
    assert torch.equal(after[0], before[0]) and torch.equal(after[1], before[1])


def test_weakened_muscles_pull_less():
    env = make_env(EnvConfig(num_envs=2), split="val", evaluation=True)
    names = [env.backend.model.actuator(i).name for i in range(env.backend.model.nu)]
    biceps = names.index("Biceps_Long")
    normal, _ = _physics(env, steps=3)
    with perturb.weaken_muscles(env, {"Biceps_Long": 0.5}):
        weak, _ = _physics(env, steps=3)
    # Same start, same excitation, so the same activation after the first control step: half
    # the force, up to the small difference in muscle length the weaker pull made by then.
    torch.testing.assert_close(weak[0, :, biceps], 0.5 * normal[0, :, biceps], rtol=1e-2, atol=0.0)
    with pytest.raises(ValueError, match="unknown muscle names"):
        perturb.weaken_muscles(env, {"Deltoid": 0.5})


def test_analyze_perturb_cli_reports_with_and_without(tmp_path, capsys, caplog):
    import json

    from neuromimic.cli import main
    from neuromimic.models import export_controller

    export = export_controller(_controller(), tmp_path / "export", {"env": EnvConfig().to_dict()})
    config = tmp_path / "perturbation.yaml"
    config.write_text("- silence_units: {units: inhibitory}\n- weaken_muscles: {scales: {Biceps_Long: 0.2}}\n")
    main(["analyze", "perturb", "--ckpt", str(export), "--perturbation", str(config)])
    report = json.loads(capsys.readouterr().out)
    assert report["perturbations"][0] == {"silence_units": {"units": "inhibitory"}}
    baseline, perturbed = report["baseline"], report["perturbed"]
    assert (
        set(baseline["mean_activation"]) == set(perturbed["mean_activation"]) and len(baseline["mean_activation"]) == 9
    )
    assert baseline["total_activation"] != perturbed["total_activation"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("- lesion_everything: {}\n")
    with pytest.raises(SystemExit) as exit_info:  # bad input: one message, exit status 2
        main(["analyze", "perturb", "--ckpt", str(export), "--perturbation", str(bad)])
    assert exit_info.value.code == 2
    assert "unknown perturbation 'lesion_everything'" in caplog.text


def test_force_pulse_acts_only_inside_its_window():
    env = make_env(EnvConfig(num_envs=2), split="val", evaluation=True)
    _, before = _physics(env, steps=12)
    with perturb.force_pulse(env, "radius", [0.0, 0.0, -0.2], start_s=0.05, duration_s=0.03):
        _, pushed = _physics(env, steps=12)
    # Control steps start at 0, 10, 20 ... ms: the pulse acts on the steps starting at 50-70 ms.
    assert torch.equal(pushed[:5], before[:5])
    assert (pushed[5] - before[5]).abs().max() > 1e-6
    assert not env.before_step and (env.backend.external_force == 0).all()


def test_a_longer_segment_is_longer_by_its_factor():
    import mujoco

    env = make_env(EnvConfig(num_envs=1), split="val", evaluation=True)
    model = env.backend.model
    humerus = model.body("humerus").id
    (elbow,) = [b for b in range(model.nbody) if model.body_parentid[b] == humerus and b != humerus]
    data = mujoco.MjData(model)

    def length() -> float:
        mujoco.mj_kinematics(model, data)
        return float(((data.xpos[elbow] - data.xpos[humerus]) ** 2).sum() ** 0.5)

    normal = length()
    with perturb.scale_segment_length(env, {"humerus": 1.5}):
        assert length() == pytest.approx(1.5 * normal, rel=1e-12)
    assert length() == normal


def test_sensory_delay_shifts_the_input_by_whole_steps():
    controller = _controller(functools.partial(MLPCore, hidden_sizes=(16,)))  # no memory of its own
    delayed_observations = torch.cat([OBSERVATIONS[:1].repeat(2, 1, 1), OBSERVATIONS[:-2]])
    expected, _ = _run(controller, delayed_observations)
    with perturb.sensory_delay(controller, 20.0):
        actual, _ = _run(controller, OBSERVATIONS)
    torch.testing.assert_close(actual, expected, rtol=0, atol=0)
    with pytest.raises(ValueError, match="whole number of 10 ms"), perturb.sensory_delay(controller, 15.0):
        pass


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["mjx", "warp"])
def test_body_perturbations_on_accelerated_backends_change_and_undo(backend):
    env = make_env(EnvConfig(backend=backend, num_envs=2), split="val", evaluation=True)
    before = _physics(env, steps=8)
    with perturb.weaken_muscles(env, {"Biceps_Long": 0.3}), perturb.force_pulse(env, "radius", [0, 0, -0.1], 0.0, 0.05):
        inside = _physics(env, steps=8)
    after = _physics(env, steps=8)
    assert (inside[1] - before[1]).abs().max() > 1e-5
    assert torch.equal(after[0], before[0]) and torch.equal(after[1], before[1])


def test_perturbation_input_checks():
    env = make_env(EnvConfig(num_envs=2), split="val", evaluation=True)
    with pytest.raises(ValueError, match="no mass"):
        perturb.scale_body_mass(env, {"radius": 2.0})
    with pytest.raises(ValueError, match="world body"):
        perturb.scale_segment_length(env, {"world": 2.0})
    with pytest.raises(ValueError, match="3 components"):
        perturb.force_pulse(env, "radius", [1.0, 2.0], 0.0, 0.1).__enter__()
    controller = _controller()
    with pytest.raises(ValueError, match="factor must be > 0"):
        perturb.scale_time_constants(controller, 0.0).__enter__()
    with perturb.silence_units(controller, [0]), pytest.raises(RuntimeError, match="one at a time"):
        perturb.inject_current(controller, [1], 1.0).__enter__()


def test_pulses_add_up_and_windows_are_whole_steps():
    env = make_env(EnvConfig(num_envs=1), split="val", evaluation=True)
    seen = []
    env.before_step.append(lambda e: seen.append(e.backend.external_force[0, 5, 2].item()))
    env.reset()
    with (
        perturb.force_pulse(env, "radius", [0, 0, 1.0], start_s=0.07, duration_s=0.02),
        perturb.force_pulse(env, "radius", [0, 0, 2.0], start_s=0.08, duration_s=0.03),
    ):
        td = env.reset()
        for _ in range(12):
            td["action"] = torch.zeros(env.action_spec.shape)
            td = env.step(td)["next"]
    # Hooks run in order, so `seen` shows the force set for the previous step: shift by one.
    assert seen[1:] == [0, 0, 0, 0, 0, 0, 0, 1.0, 3.0, 2.0, 2.0]
    assert (env.backend.external_force == 0).all()
