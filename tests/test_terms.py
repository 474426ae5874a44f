"""Tier 1: declared terms (rewards, terminations, observations, actions) and the controller on hand-made tensors."""

import math

import pytest
import torch

from neuromimic.envs.terms import TermSet
from neuromimic.errors import ConfigError
from neuromimic.models import Controller, ControllerSpec, RunningNorm
from neuromimic.physics_view import PhysicsView
from neuromimic.tasks import BodyInfo, ReferenceFrame, StepState, rewards, rotations


def _body(nq=4, nu=3, free_root=False, muscles=True, sites=1):
    return BodyInfo(
        key="test",
        nq=nq,
        nv=nq - 1 if free_root else nq,
        nu=nu,
        na=nu if muscles else 0,
        num_sites=sites,
        muscles=muscles,
        free_root=free_root,
        afferents=False,
        length_unit_m=1.0,
        forward=torch.tensor([1.0, 0.0, 0.0]),
        max_force=torch.ones(nu) if muscles else None,
        length_range=torch.tensor([[0.0, 1.0]] * nu),
        ctrl_range=torch.tensor([[0.0, 1.0]] * nu),
    )


def _view(qpos, site, ctrl=None, force=None, qvel=None, B=2, nu=3):
    zeros = torch.zeros(B, nu)
    return PhysicsView(
        qpos=qpos,
        qvel=torch.zeros(B, qpos.shape[1]) if qvel is None else qvel,
        act=zeros,
        ctrl=zeros if ctrl is None else ctrl,
        site_pos_w=site,
        actuator_length=zeros,
        actuator_velocity=zeros,
        actuator_force=zeros if force is None else force,
        time=torch.zeros(B),
        unstable=torch.zeros(B, dtype=torch.bool),
    )


def _state(sim, ref=None, body=None, future=None):
    ref = ref or ReferenceFrame(torch.zeros(2, 4), torch.zeros(2, 4), torch.zeros(2, 1, 3))
    future = future or ReferenceFrame(ref.qpos[:, None], ref.qvel[:, None], ref.site_pos_w[:, None])
    return StepState(sim, ref, future, body or _body(), None)


def test_site_error_and_kernel_in_physical_units():
    site = torch.tensor([[[0.0, 0.0, 0.0]], [[0.003, 0.004, 0.0]]])  # 0 mm and 5 mm away
    state = _state(_view(torch.zeros(2, 4), site))
    assert torch.allclose(state.site_pos_error, torch.tensor([0.0, 0.005]))
    value = rewards.site_pos_error_exp(state, sigma=0.005)
    assert torch.allclose(value, torch.tensor([1.0, math.exp(-1.0)]))


def test_joint_error_is_rms_in_radians():
    qpos = torch.tensor([[0.1, 0.1, 0.1, 0.1], [0.2, 0.0, 0.0, 0.0]])
    state = _state(_view(qpos, torch.zeros(2, 1, 3)))
    assert torch.allclose(state.joint_pos_error, torch.tensor([0.1, 0.1]))
    assert torch.allclose(rewards.joint_pos_error_exp(state, sigma=0.1), torch.full((2,), math.exp(-1.0)))


def test_costs_and_weighted_reward_through_a_term_set():
    ctrl = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    force = torch.tensor([[-0.5, -0.5, -0.5], [0.0, 0.0, 0.0]])
    state = _state(_view(torch.zeros(2, 4), torch.zeros(2, 1, 3), ctrl=ctrl, force=force))
    terms = TermSet(
        _body(),
        ["qpos"],
        {
            "site_pos_error_exp": {"weight": 1.0, "sigma": 0.01},
            "ctrl_l2": {"weight": -0.5},
            "muscle_force_l2": {"weight": -1.0},
        },
        {"site_pos_error": {"distance": 0.003}},
        (1,),
    )
    assert terms.reward_names == ("site_pos_error_exp", "ctrl_l2", "muscle_force_l2")
    values = terms.reward_terms(state)
    assert torch.allclose(values[:, 2], torch.tensor([0.25, 0.0]))
    assert torch.allclose(values @ terms.weights("cpu", torch.float32), torch.tensor([1.0 - 0.5 - 0.25, 1.0]))
    assert terms.describe()["rewards"]["site_pos_error_exp"] == {"weight": 1.0, "sigma": 0.01}


def test_termination_threshold():
    site = torch.tensor([[[0.002, 0.0, 0.0]], [[0.004, 0.0, 0.0]]])
    state = _state(_view(torch.zeros(2, 4), site))
    terms = TermSet(_body(), ["qpos"], {"ctrl_l2": {"weight": -1.0}}, {"site_pos_error": {"distance": 0.003}}, (1,))
    assert terms.terminated(state).tolist() == [False, True]
    assert not TermSet(_body(), ["qpos"], {"ctrl_l2": {"weight": -1.0}}, {}, (1,)).terminated(state).any()


@pytest.mark.parametrize(
    ("observations", "rewards_", "terminations", "expected"),
    [
        (["qpos"], {"wrist_bonus": {"weight": 1.0}}, {}, "model.env.rewards names 'wrist_bonus'; it must be one of"),
        (["qpos"], {"joint_pos_eror_exp": {"weight": 1.0}}, {}, "(did you mean 'joint_pos_error_exp'?)"),
        (
            ["qpos"],
            {"ctrl_l2": {"weight": 1.0, "sigma": 0.1}},
            {},
            "model.env.rewards.ctrl_l2 takes no parameters and weight, not ['sigma']",
        ),
        (["qpos"], {"ctrl_l2": {}}, {}, "model.env.rewards.ctrl_l2 needs a numeric weight"),
        (
            ["qpos"],
            {"site_pos_error_exp": {"weight": 1.0, "sigma": 0}},
            {},
            "model.env.rewards.site_pos_error_exp.sigma is 0; it must be a number > 0",
        ),
        (
            ["qpos"],
            {"root_pos_error_exp": {"weight": 1.0}},
            {},
            "'root_pos_error_exp', which needs free_root; body 'test' has none",
        ),
        (
            ["root_height"],
            {"ctrl_l2": {"weight": 1.0}},
            {},
            "model.env.observations names 'root_height', which needs free_root",
        ),
        (["qpos"], {"ctrl_l2": {"weight": 1.0}}, {"site_pos_eror": {}}, "model.env.terminations names 'site_pos_eror'"),
        (["qpos", "qpos"], {"ctrl_l2": {"weight": 1.0}}, {}, "names a term twice"),
    ],
)
def test_bad_term_configs_name_the_field(observations, rewards_, terminations, expected):
    with pytest.raises(ConfigError) as error:
        TermSet(_body(), observations, rewards_, terminations, (1,))
    assert expected in str(error.value)


def _turn(yaw: float, shift: torch.Tensor):
    """Rotation by ``yaw`` about z then a horizontal shift, on positions [..., 3] and quaternions [..., 4]."""
    q = torch.tensor([math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)], dtype=torch.float64)
    return (lambda p: rotations.quat_rotate(q.expand(*p.shape[:-1], 4), p) + shift), (
        lambda r: rotations.quat_multiply(q.expand_as(r), r)
    )


def test_egocentric_observation_is_unchanged_when_body_and_reference_turn_and_move_together():
    from neuromimic.tasks.observations import OBSERVATIONS, default_observations

    torch.manual_seed(0)
    body = _body(nq=9, nu=3, free_root=True, muscles=False, sites=2)
    body = BodyInfo(
        **{
            **body.__dict__,
            "forward": body.forward.double(),
            "ctrl_range": body.ctrl_range.double(),
            "length_range": body.length_range.double(),
        }
    )

    def random_pose(batch):
        quat = torch.nn.functional.normalize(torch.randn(*batch, 4, dtype=torch.float64), dim=-1)
        return torch.cat(
            [torch.randn(*batch, 3, dtype=torch.float64), quat, torch.randn(*batch, 2, dtype=torch.float64)], dim=-1
        )

    qpos, qvel = random_pose((2,)), torch.randn(2, 8, dtype=torch.float64)
    sites = torch.randn(2, 2, 3, dtype=torch.float64)
    future = ReferenceFrame(
        random_pose((2, 3)), torch.randn(2, 3, 8, dtype=torch.float64), torch.randn(2, 3, 2, 3, dtype=torch.float64)
    )
    names = default_observations(body)
    assert names[:4] == ["root_height", "gravity_b", "root_lin_vel_b", "root_ang_vel_b"]

    def observe(qpos, qvel, sites, future, names=names):
        sim = PhysicsView(
            qpos=qpos,
            qvel=qvel,
            act=torch.zeros(2, 0),
            ctrl=torch.zeros(2, 3),
            site_pos_w=sites,
            actuator_length=torch.zeros(2, 3),
            actuator_velocity=torch.zeros(2, 3),
            actuator_force=torch.zeros(2, 3),
            time=torch.zeros(2),
            unstable=torch.zeros(2, dtype=torch.bool),
        )
        current = ReferenceFrame(future.qpos[:, 0], future.qvel[:, 0], future.site_pos_w[:, 0])
        state = StepState(sim, current, future, body, None)
        return torch.cat([OBSERVATIONS[n].fn(state).flatten(1) for n in names], dim=-1)

    move, turn = _turn(1.1, torch.tensor([0.4, -2.0, 0.0], dtype=torch.float64))

    def moved_pose(q):
        return torch.cat([move(q[..., :3]), turn(q[..., 3:7]), q[..., 7:]], dim=-1)

    def moved_vel(v):  # world linear velocity turns; angular velocity is in the body frame
        return torch.cat([move(v[..., :3]) - move(torch.zeros_like(v[..., :3])), v[..., 3:]], dim=-1)

    before = observe(qpos, qvel, sites, future)
    after = observe(
        moved_pose(qpos),
        moved_vel(qvel),
        move(sites),
        ReferenceFrame(moved_pose(future.qpos), future.qvel, move(future.site_pos_w)),
    )
    torch.testing.assert_close(after, before, rtol=1e-9, atol=1e-9)
    # The world-frame family sees the same motion: the test can tell the two apart.
    world = ["qpos", "ref_site_minus_site"]
    assert not torch.allclose(
        observe(
            moved_pose(qpos),
            moved_vel(qvel),
            move(sites),
            ReferenceFrame(moved_pose(future.qpos), future.qvel, move(future.site_pos_w)),
            world,
        ),
        observe(qpos, qvel, sites, future, world),
    )


def test_rotation_vector_of_a_quaternion():
    half = torch.tensor([math.cos(0.4), math.sin(0.4), 0.0, 0.0])  # 0.8 rad about x
    torch.testing.assert_close(rotations.quat_to_rotation_vector(half), torch.tensor([0.8, 0.0, 0.0]))
    torch.testing.assert_close(rotations.quat_to_rotation_vector(-half), torch.tensor([0.8, 0.0, 0.0]))
    torch.testing.assert_close(rotations.quat_to_rotation_vector(torch.tensor([1.0, 0.0, 0.0, 0.0])), torch.zeros(3))


def test_running_norm_matches_batch_statistics():
    torch.manual_seed(0)
    data = torch.randn(1000, 5) * torch.tensor([1.0, 2.0, 0.1, 5.0, 1e-3]) + 3.0
    norm = RunningNorm(5)
    for chunk in data.split(137):
        norm.update(chunk.double().mean(0), chunk.double().var(0, unbiased=False), torch.tensor(float(len(chunk))))
    assert torch.allclose(norm.mean, data.mean(0), rtol=1e-5, atol=1e-6)
    assert torch.allclose(norm.var, data.var(0, unbiased=False), rtol=1e-4, atol=1e-10)
    assert norm.count.item() == 1000


def test_controller_actions_in_muscle_range():
    controller = Controller(ControllerSpec(observation_size=7, action_size=9, control_dt=0.01))
    torch.nn.init.normal_(controller.readout.weight, std=100.0)  # saturate on purpose
    action, state = controller(torch.randn(32, 7) * 100)
    assert action.shape == (32, 9) and state == {}
    assert (action >= 0).all() and (action <= 1).all()
    loc, scale, _, activity = controller.step(torch.randn(4, 7))
    assert loc.shape == scale.shape == (4, 9) and (scale > 0).all()
    assert set(activity) == {"layer_0", "layer_1"}
