"""Tier 1: reward terms, the imitation task and the controller on hand-made tensors."""

import math

import pytest
import torch

from neuromimic.models import Controller, ControllerSpec, RunningNorm
from neuromimic.physics.base import PhysicsView
from neuromimic.tasks import ImitationTask, ReferenceFrame
from neuromimic.tasks import terms as T


def _view(qpos, site, ctrl=None, force=None, B=2, nu=3):
    zeros = torch.zeros(B, nu)
    return PhysicsView(
        qpos=qpos,
        qvel=torch.zeros_like(qpos),
        act=zeros,
        ctrl=zeros if ctrl is None else ctrl,
        site_pos_w=site,
        actuator_length=zeros,
        actuator_velocity=zeros,
        actuator_force=zeros if force is None else force,
        time=torch.zeros(B),
        unstable=torch.zeros(B, dtype=torch.bool),
    )


def test_site_error_and_kernel_in_physical_units():
    ref = ReferenceFrame(torch.zeros(2, 4), torch.zeros(2, 4), torch.zeros(2, 1, 3))
    site = torch.tensor([[[0.0, 0.0, 0.0]], [[0.003, 0.004, 0.0]]])  # 0 mm and 5 mm away
    sim = _view(torch.zeros(2, 4), site)
    errors = T.tracking_errors(sim, ref)
    assert torch.allclose(errors.site_pos, torch.tensor([0.0, 0.005]))
    value = T.site_pos_error_exp(sim, errors, sigma=0.005)
    assert torch.allclose(value, torch.tensor([1.0, math.exp(-1.0)]))


def test_joint_error_is_rms_in_radians():
    ref = ReferenceFrame(torch.zeros(2, 4), torch.zeros(2, 4), torch.zeros(2, 1, 3))
    qpos = torch.tensor([[0.1, 0.1, 0.1, 0.1], [0.2, 0.0, 0.0, 0.0]])
    sim = _view(qpos, torch.zeros(2, 1, 3))
    errors = T.tracking_errors(sim, ref)
    assert torch.allclose(errors.joint_pos, torch.tensor([0.1, 0.1]))
    assert torch.allclose(T.joint_pos_error_exp(sim, errors, sigma=0.1), torch.full((2,), math.exp(-1.0)))


def test_costs_and_weighted_reward():
    ref = ReferenceFrame(torch.zeros(2, 4), torch.zeros(2, 4), torch.zeros(2, 1, 3))
    ctrl = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    force = torch.tensor([[-0.5, -0.5, -0.5], [0.0, 0.0, 0.0]])
    sim = _view(torch.zeros(2, 4), torch.zeros(2, 1, 3), ctrl=ctrl, force=force)
    task = ImitationTask(weights={"site_pos_error_exp": 1.0, "ctrl_l2": -0.5, "muscle_force_l2": -1.0})
    values = task.reward_terms(sim, T.tracking_errors(sim, ref), max_force=torch.ones(3))
    assert set(values) == {"site_pos_error_exp", "ctrl_l2", "muscle_force_l2"}
    assert torch.allclose(values["muscle_force_l2"], torch.tensor([0.25, 0.0]))
    assert torch.allclose(task.reward(values), torch.tensor([1.0 - 0.5 - 0.25, 1.0]))


def test_termination_threshold_and_unknown_terms():
    ref = ReferenceFrame(torch.zeros(2, 4), torch.zeros(2, 4), torch.zeros(2, 1, 3))
    site = torch.tensor([[[0.002, 0.0, 0.0]], [[0.004, 0.0, 0.0]]])
    task = ImitationTask(termination_distance=0.003)
    site_error = T.tracking_errors(_view(torch.zeros(2, 4), site), ref).site_pos
    assert task.terminated(site_error).tolist() == [False, True]
    assert not ImitationTask(termination_distance=math.inf).terminated(site_error).any()
    with pytest.raises(ValueError, match="model.env.task.weights is .wrist_bonus.; it must be a reward term"):
        ImitationTask(weights={"wrist_bonus": 1.0})


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
