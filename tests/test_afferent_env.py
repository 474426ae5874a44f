"""`ImitationEnv` with afferent observations and fusimotor actions (native MuJoCo)."""

from __future__ import annotations

import pytest
import torch
from torchrl.envs.utils import check_env_specs

from neuromimic.envs import EnvConfig, controller_spec, make_env
from neuromimic.models import load_controller
from neuromimic.proprioception import AfferentConfig

AFFERENTS = AfferentConfig(dt_ms=2.5, ia_delay_ms=5.0, ii_delay_ms=5.0, ib_delay_ms=5.0)


def afferent_env(proprioception="afferents", fusimotor_action=False, num_envs=4):
    config = EnvConfig(
        num_envs=num_envs, proprioception=proprioception, fusimotor_action=fusimotor_action, afferents=AFFERENTS
    )
    return config, make_env(config, seed=0)


@pytest.mark.parametrize(
    "proprioception, fusimotor_action", [("afferents", False), ("both", False), ("afferents", True), ("both", True)]
)
def test_specs_and_layouts(proprioception, fusimotor_action):
    config, env = afferent_env(proprioception, fusimotor_action)
    check_env_specs(env, seed=0)
    spec = controller_spec(config)
    nu = env.backend.model.nu
    assert env.observation_spec["observation"].shape[-1] == spec.observation_size
    assert env.action_spec.shape[-1] == spec.action_size == nu * (3 if fusimotor_action else 1)
    names = [name for name, _, _ in env.observation_layout]
    assert {"spindle_Ia", "spindle_II", "tendon_organ_Ib"} <= set(names)
    if proprioception == "afferents":  # no joint angle reaches the controller
        assert not {"qpos", "qvel", "muscle_length", "muscle_velocity", "muscle_force"} & set(names)
        assert not any("minus" in name for name in names)
    else:
        assert names[:2] == ["qpos", "qvel"]


def test_observation_carries_the_afferent_rates():
    _, env = afferent_env()
    td = env.reset()
    for _ in range(3):
        td["action"] = torch.full(env.action_spec.shape, 0.4)
        td = env.step(td)["next"]
    slices = env.observation_slices()
    for k, name in enumerate(("spindle_Ia", "spindle_II", "tendon_organ_Ib")):
        expected = env.afferent_rates[:, k].to(torch.float32)
        assert torch.equal(td["observation"][:, slices[name]], expected)
    assert (env.afferent_rates[:, 2] > 0).all()  # active muscles load their tendon organs


def test_masked_reset_resettles_only_the_reset_envs():
    _, env = afferent_env()
    td = env.reset()
    for _ in range(5):
        td["action"] = torch.rand(env.action_spec.shape, generator=torch.Generator().manual_seed(0))
        td = env.step(td)["next"]
    rates = env.afferent_rates.clone()
    state = {name: value.clone() for name, value in env.sensor._state.items()}
    mask = torch.tensor([True, False, True, False])
    td = env.maybe_reset(td.set("done", mask[:, None]))
    assert torch.equal(env.afferent_rates[~mask], rates[~mask])
    for name, value in env.sensor._state.items():
        assert torch.equal(value[~mask], state[name][~mask])
    # Reset envs restart from afferents settled at the new pose with the muscles off (only
    # passive force loads the tendon organs).
    assert not torch.equal(env.afferent_rates[mask], rates[mask])
    _, force = env.sensor._read(env.backend.view)
    assert torch.equal(env.afferent_rates[mask, 2], env.sensor.afferents.tendon_organ.drive(force)[mask])


def test_gamma_static_action_raises_secondary_rates():
    """Two identical bodies given the same alpha drive: more gamma-static, more II firing."""
    _, env = afferent_env(fusimotor_action=True, num_envs=2)
    env.set_seed(0)
    td = env.reset()
    start_qpos = env.backend.view.qpos[0].clone()
    env.backend.reset(
        torch.tensor([False, True]),
        start_qpos.expand(2, -1),
        torch.zeros_like(env.backend.view.qvel),
        torch.zeros_like(env.backend.view.act),
    )
    env.sensor.reset(torch.ones(2, dtype=torch.bool), env.backend.view)
    nu = env.backend.model.nu
    action = torch.full((2, 3 * nu), 0.3)
    action[0, nu : 2 * nu] = 0.0  # no gamma-static
    action[1, nu : 2 * nu] = 1.0  # gamma_max_pps
    for _ in range(20):
        td = env.step(td.set("action", action))["next"]
    assert torch.equal(env.backend.view.qpos[0], env.backend.view.qpos[1])  # gamma moves no joint
    ii = env.afferent_rates[:, 1]
    # Higher everywhere but in spindles too slack to fire at all (fascicles near 0.7 L0).
    assert ((ii[1] > ii[0]) | (ii[1] == 0)).all() and (ii[1] > ii[0]).sum() >= nu - 2


def test_config_errors():
    with pytest.raises(ValueError, match="proprioception"):
        EnvConfig(proprioception="eyes")
    with pytest.raises(ValueError, match="fusimotor_action"):
        EnvConfig(fusimotor_action=True)
    assert EnvConfig.from_dict(EnvConfig(proprioception="both", afferents=AFFERENTS).to_dict()).afferents == AFFERENTS


@pytest.mark.slow
def test_afferent_config_trains_exports_records_and_lesions(tmp_path, tiny_fit):
    """The bundled afferent config trains and exports; recordings hold the afferent rates;
    an Ia lesion changes the controller's action."""
    from neuromimic.analysis import perturb
    from neuromimic.analysis.record import record
    from neuromimic.cli import main
    from neuromimic.models.export import controller_metadata

    checkpoint = tiny_fit("afferent")
    main(["export", "--ckpt", str(checkpoint), "--output", str(tmp_path / "export")])
    controller = load_controller(tmp_path / "export")
    observation = torch.randn(3, controller.spec.observation_size) * 50 + 50
    with torch.no_grad():
        intact = controller(observation)[0]
        with perturb.remove_sensory(controller, ["spindle_Ia"]):
            lesioned = controller(observation)[0]
    assert not torch.equal(intact, lesioned)

    config = EnvConfig.from_dict(controller_metadata(tmp_path / "export")["env"])
    recording = record(controller, config, steps=4)
    slices = controller.spec.observation_slices()
    for k, name in enumerate(("Ia", "II", "Ib")):
        rates = recording[f"afferent/{name}"]  # [B, T, nu]
        assert rates.shape[-1] == 9 and recording.units[f"afferent/{name}"].startswith("pps")
        block = ("spindle_Ia", "spindle_II", "tendon_organ_Ib")[k]
        # The observation of step t+1 shows the rates that arrived at the end of step t.
        assert (recording["observation"][:, 1:, slices[block]] == rates[:, :-1]).all()
