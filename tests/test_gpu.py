"""Tier 3 (GPU): zero copy and no host synchronisation on CUDA. Skipped without a GPU."""

import pytest
import torch

from neuromimic.bodies import get_body
from neuromimic.envs import EnvConfig, make_env
from neuromimic.physics import make_backend
from neuromimic.physics.bridge import buffer_pointer

pytestmark = [pytest.mark.gpu, pytest.mark.slow]


def test_mjx_views_alias_jax_buffers_on_cuda():
    backend = make_backend("mjx", get_body("mouse_forelimb"), num_envs=8, substeps=2, device="cuda")
    backend.step(torch.rand(8, 9, device="cuda"))
    view = backend.view
    assert view.qpos.device.type == "cuda"
    assert view.qpos.data_ptr() == buffer_pointer(backend.data.qpos)
    assert view.act.data_ptr() == buffer_pointer(backend.data.act)


def test_env_step_does_not_synchronise_with_the_host():
    env = make_env(EnvConfig(backend="mjx", num_envs=8), device="cuda")
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
