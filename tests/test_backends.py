"""Physics backends: protocol, zero-copy views, masked reset, MJX/native agreement, NaN flags."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from neuromimic.bodies import get_body
from neuromimic.physics import Backend, make_backend
from neuromimic.physics.model import compile_model, sensor_layout
from neuromimic.physics.mujoco_backend import MujocoBackend

B = 4
FIELDS = (
    "qpos",
    "qvel",
    "act",
    "ctrl",
    "site_pos_w",
    "actuator_length",
    "actuator_velocity",
    "actuator_force",
    "time",
    "unstable",
)


@pytest.fixture(scope="module")
def body():
    return get_body("mouse_forelimb")


@pytest.fixture(scope="module")
def native(body):
    return make_backend("mujoco", body, num_envs=B, substeps=2, nthread=2)


@pytest.fixture(scope="module")
def mjx_backend(body):
    pytest.importorskip("mujoco.mjx")
    return make_backend("mjx", body, num_envs=B, substeps=2)


@pytest.fixture(scope="module")
def warp_backend(body):
    pytest.importorskip("mujoco_warp")
    return make_backend("warp", body, num_envs=B, substeps=2, device="cpu")


#: Every backend, the accelerator ones marked slow (their first step compiles).
ALL_BACKENDS = ["mujoco", pytest.param("mjx", marks=pytest.mark.slow), pytest.param("warp", marks=pytest.mark.slow)]


def backend_named(name, native, request):
    return native if name == "mujoco" else request.getfixturevalue(f"{name}_backend")


def random_state(model, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A non-trivial state inside the joint ranges: qpos, qvel, act, each [B, ...] float64."""
    g = torch.Generator().manual_seed(seed)
    low, high = (torch.from_numpy(model.jnt_range[:, i].copy()) for i in (0, 1))
    u = torch.rand(B, model.nq, generator=g, dtype=torch.float64)
    qpos = low + (high - low) * (0.2 + 0.6 * u)
    qvel = torch.randn(B, model.nv, generator=g, dtype=torch.float64)
    act = torch.rand(B, model.na, generator=g, dtype=torch.float64)
    return qpos, qvel, act


def snapshot(backend) -> dict[str, torch.Tensor]:
    view = backend.view
    return {name: getattr(view, name).clone() for name in FIELDS}


def assert_rows_bitwise_equal(before, after, rows):
    for name in FIELDS:
        a, b = before[name][rows], after[name][rows]
        assert torch.equal(a.view(torch.uint8) if a.dtype == torch.bool else a, b), name


def test_compiled_model_has_the_sensors(body):
    model = compile_model(body)
    layout = sensor_layout(model, body)
    assert model.nsensordata == 3 * len(body.end_effector_sites) + 3 * model.nu
    assert layout.actuator_force.stop - layout.actuator_force.start == model.nu


def test_make_backend_rejects_unknown_names(body):
    with pytest.raises(ValueError, match="mujoco, mjx"):
        make_backend("bullet", body, num_envs=1, substeps=2)


def test_importing_physics_does_not_import_jax():
    code = "import sys, neuromimic.physics; assert 'jax' not in sys.modules, 'jax imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_native_satisfies_protocol_and_views_alias_rollout_buffers(native):
    assert isinstance(native, Backend)
    assert native.device == torch.device("cpu")
    view = native.view
    state, sensordata = native.state, native.sensordata
    item = state.itemsize
    last = state.ctypes.data + (native.substeps - 1) * state.shape[2] * item
    sensors = sensordata.ctypes.data  # [B, 1, nsensordata]: the sensors of the final state
    layout, offsets = native.layout, native.offsets
    assert view.time.data_ptr() == last + offsets["time"].start * item
    assert view.qpos.data_ptr() == last + offsets["qpos"].start * item
    assert view.qvel.data_ptr() == last + offsets["qvel"].start * item
    assert view.act.data_ptr() == last + offsets["act"].start * item
    assert view.site_pos_w.data_ptr() == sensors + layout.site_pos_w.start * item
    assert view.actuator_force.data_ptr() == sensors + layout.actuator_force.start * item
    assert view.site_pos_w.shape == (B, 1, 3)
    # rollout writes into the same arrays: no reallocation across steps.
    pointers = (state.ctypes.data, sensordata.ctypes.data, view.qpos.data_ptr())
    time_before = view.time.clone()
    native.step(torch.rand(B, native.model.nu))
    assert native.state is state and native.sensordata is sensordata and native.view is view
    assert (state.ctypes.data, sensordata.ctypes.data, native.view.qpos.data_ptr()) == pointers
    assert torch.allclose(view.time, time_before + native.substeps * native.model.opt.timestep)
    assert any("ctrl" in copy for copy in native.copies)
    assert any("initial_state" in copy for copy in native.copies)


@pytest.mark.parametrize("name", ALL_BACKENDS)
def test_masked_reset_leaves_other_rows_bitwise_equal(name, native, request):
    backend = backend_named(name, native, request)
    qpos, qvel, act = random_state(backend.model, seed=1)
    backend.reset(torch.ones(B, dtype=torch.bool), qpos, qvel, act)
    backend.step(torch.rand(B, backend.model.nu))
    before = snapshot(backend)
    mask = torch.zeros(B, dtype=torch.bool)
    mask[1] = True
    qpos2, qvel2, act2 = random_state(backend.model, seed=2)
    backend.reset(mask, qpos2, qvel2, act2)
    after = snapshot(backend)
    assert_rows_bitwise_equal(before, after, ~mask)
    dtype = after["qpos"].dtype
    assert torch.equal(after["qpos"][1], qpos2[1].to(dtype))
    assert torch.equal(after["act"][1], act2[1].to(dtype))
    assert after["time"][1] == 0 and not after["unstable"][1]
    assert not torch.equal(after["site_pos_w"][1], before["site_pos_w"][1])  # sensors refreshed


@pytest.mark.parametrize("name", ALL_BACKENDS)
def test_nan_state_flags_only_its_row(name, native, request):
    backend = backend_named(name, native, request)
    qpos, qvel, act = random_state(backend.model, seed=3)
    backend.reset(torch.ones(B, dtype=torch.bool), qpos, qvel, act)
    backend.step(torch.rand(B, backend.model.nu))
    if name != "mjx":
        backend.view.qpos[2, 0] = float("nan")  # the view aliases the simulator state
    else:  # JAX buffers are immutable: a reset writes the NaN
        qpos_nan = qpos.clone()
        qpos_nan[2, 0] = float("nan")
        backend.reset(torch.arange(B) == 2, qpos_nan, qvel, act)
    backend.step(torch.rand(B, backend.model.nu))
    assert backend.view.unstable.tolist() == [False, False, True, False]
    backend.reset(torch.arange(B) == 2, qpos, qvel, act)
    backend.step(torch.rand(B, backend.model.nu))
    assert not backend.view.unstable.any()


@pytest.mark.parametrize("name", ALL_BACKENDS)
def test_step_is_deterministic(name, native, request):
    backend = backend_named(name, native, request)
    qpos, qvel, act = random_state(backend.model, seed=4)
    ctrl = torch.rand(B, backend.model.nu, generator=torch.Generator().manual_seed(4))
    results = []
    for _ in range(2):
        backend.reset(torch.ones(B, dtype=torch.bool), qpos, qvel, act)
        for _ in range(3):
            backend.step(ctrl)
        results.append(snapshot(backend))
    assert_rows_bitwise_equal(results[0], results[1], slice(None))


@pytest.mark.slow
def test_mjx_views_alias_jax_buffers(mjx_backend):
    from neuromimic.physics.bridge import buffer_pointer

    assert isinstance(mjx_backend, Backend)
    mjx_backend.step(torch.rand(B, mjx_backend.model.nu))
    view, data = mjx_backend.view, mjx_backend.data
    assert view.qpos.data_ptr() == buffer_pointer(data.qpos)
    assert view.qvel.data_ptr() == buffer_pointer(data.qvel)
    assert view.act.data_ptr() == buffer_pointer(data.act)
    assert view.time.data_ptr() == buffer_pointer(data.time)
    item = view.site_pos_w.element_size()
    layout = mjx_backend.layout
    sensors = buffer_pointer(data.sensordata)
    assert view.site_pos_w.data_ptr() == sensors + layout.site_pos_w.start * item
    assert view.actuator_force.data_ptr() == sensors + layout.actuator_force.start * item
    # The backend hands a float32 contiguous action to JAX without copying it.
    ctrl = torch.rand(B, mjx_backend.model.nu)
    handed = []
    original = mjx_backend._to_jax
    mjx_backend._to_jax = lambda tensor: handed.append(original(tensor)) or handed[-1]
    try:
        mjx_backend.step(ctrl)
    finally:
        del mjx_backend._to_jax
    assert buffer_pointer(handed[0]) == ctrl.data_ptr()
    assert any("ctrl" in copy for copy in mjx_backend.copies)


@pytest.mark.parametrize("name", ALL_BACKENDS)
def test_sensors_describe_the_reported_state(name, native, request):
    """After a step, every sensor (sites, muscle length, velocity, force) is MuJoCo's own
    evaluation at the state the view reports."""
    import mujoco

    backend = backend_named(name, native, request)
    model = backend.model
    qpos, qvel, act = random_state(model, seed=11)
    backend.reset(torch.ones(B, dtype=torch.bool), qpos, qvel, act)
    backend.step(torch.rand(B, model.nu, generator=torch.Generator().manual_seed(5)))
    view = backend.view
    data = mujoco.MjData(model)
    tolerance = 1e-12 if name == "mujoco" else 1e-6
    site = model.site(get_body("mouse_forelimb").end_effector_sites[0]).id
    for row in range(B):
        data.qpos[:] = view.qpos[row].double().numpy()
        data.qvel[:] = view.qvel[row].double().numpy()
        data.act[:] = view.act[row].double().numpy()
        data.ctrl[:] = view.ctrl[row].double().numpy()
        mujoco.mj_forward(model, data)
        for quantity, expected in (
            ("site_pos_w", data.site_xpos[site]),
            ("actuator_length", data.actuator_length),
            ("actuator_velocity", data.actuator_velocity),
            ("actuator_force", data.actuator_force),
        ):
            value = getattr(view, quantity)[row].double().numpy().reshape(expected.shape)
            np.testing.assert_allclose(value, expected, atol=tolerance, rtol=1e-6, err_msg=quantity)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mjx", "warp"])
def test_accelerated_backend_agrees_with_native_after_one_control_step(name, native, request):
    other = request.getfixturevalue(f"{name}_backend")
    qpos, qvel, act = random_state(native.model, seed=5)
    ctrl = torch.rand(B, native.model.nu, generator=torch.Generator().manual_seed(5))
    everyone = torch.ones(B, dtype=torch.bool)
    for backend in (native, other):
        backend.reset(everyone, qpos, qvel, act)
        backend.step(ctrl)
    a, b = native.view, other.view
    diff = {name: (getattr(a, name) - getattr(b, name).double()).abs().max().item() for name in FIELDS[:-1]}
    assert diff["qpos"] < 1e-4 and diff["act"] < 1e-4, diff
    assert diff["qvel"] < 1e-3, diff
    assert diff["time"] < 1e-6, diff
    assert diff["site_pos_w"] < 1e-6, diff  # metres; the wrist moves within ~1 cm
    assert diff["actuator_length"] < 1e-6 and diff["actuator_velocity"] < 1e-5, diff
    assert diff["actuator_force"] < 1e-4, diff  # newtons; peak forces are 0.6-0.8 N
    assert not a.unstable.any() and not b.unstable.any()


@pytest.mark.slow
def test_warp_views_alias_warp_arrays(warp_backend):
    """Every view is made once from Warp's arrays and stays theirs: the same tensors, at the
    same addresses, after steps and resets."""
    backend, data = warp_backend, warp_backend.wp_data
    assert isinstance(backend, Backend)
    view = backend.view
    backend.step(torch.rand(B, backend.model.nu))
    backend.reset(torch.arange(B) == 0, *random_state(backend.model, seed=6))
    assert backend.view is view
    for name in ("qpos", "qvel", "act", "ctrl", "time"):
        assert getattr(view, name).data_ptr() == getattr(data, name).ptr, name
    item = view.site_pos_w.element_size()
    assert view.site_pos_w.data_ptr() == data.sensordata.ptr + backend.layout.site_pos_w.start * item
    assert view.actuator_force.data_ptr() == data.sensordata.ptr + backend.layout.actuator_force.start * item
    assert backend.external_force.data_ptr() == backend._xfrc_in.ptr
    assert backend.external_force.shape == (B, backend.model.nbody, 6)
    assert any("ctrl" in copy for copy in backend.copies)


@pytest.mark.slow
def test_warp_scheduled_reset_then_step_equals_reset_then_step(warp_backend):
    backend = warp_backend
    qpos, qvel, act = random_state(backend.model, seed=7)
    qpos2, qvel2, act2 = random_state(backend.model, seed=8)
    ctrl = torch.rand(B, backend.model.nu, generator=torch.Generator().manual_seed(7))
    mask = torch.tensor([False, True, False, True])
    results = []
    for reset in (backend.reset, backend.schedule_reset):
        backend.reset(torch.ones(B, dtype=torch.bool), qpos, qvel, act)
        backend.step(ctrl)
        reset(mask, qpos2, qvel2, act2)
        backend.step(ctrl)
        results.append(snapshot(backend))
    assert_rows_bitwise_equal(results[0], results[1], slice(None))


@pytest.mark.parametrize("name", ALL_BACKENDS)
def test_restored_snapshot_continues_bitwise_equal(name, native, request):
    """A snapshot taken with a reset still scheduled, restored after other steps, continues
    exactly as the run it was taken from."""
    backend = backend_named(name, native, request)
    qpos, qvel, act = random_state(backend.model, seed=9)
    ctrl = torch.rand(3, B, backend.model.nu, generator=torch.Generator().manual_seed(9))
    backend.reset(torch.ones(B, dtype=torch.bool), qpos, qvel, act)
    backend.step(ctrl[0])
    backend.schedule_reset(torch.arange(B) == 2, *random_state(backend.model, seed=10))
    saved = backend.snapshot()
    for i in (1, 2):
        backend.step(ctrl[i])
    expected = snapshot(backend)
    backend.step(ctrl[0])
    backend.restore(saved)
    for i in (1, 2):
        backend.step(ctrl[i])
    assert_rows_bitwise_equal(expected, snapshot(backend), slice(None))


@pytest.mark.slow
def test_warp_flags_a_world_whose_contacts_overflow(body):
    """A world with more contacts than the buffers hold is flagged unstable, not silently
    simulated without them."""
    pytest.importorskip("mujoco_warp")
    backend = make_backend("warp", get_body("rodent"), num_envs=2, substeps=1, device="cpu", nconmax=1, njmax=4)
    backend.step(torch.zeros(2, backend.model.nu))
    assert backend.overflow.ne(0).all()
    assert backend.view.unstable.all()


def test_native_forelimb_is_stable_for_ten_seconds(body):
    backend = MujocoBackend(body, num_envs=8, substeps=2)
    g = torch.Generator().manual_seed(0)
    steps = round(10.0 / (backend.substeps * backend.model.opt.timestep))
    max_qvel = torch.zeros(())
    unstable = torch.zeros(8, dtype=torch.bool)
    for _ in range(steps):
        backend.step(torch.rand(8, backend.model.nu, generator=g))
        max_qvel = torch.maximum(max_qvel, backend.view.qvel.abs().max())
        unstable |= backend.view.unstable
    assert not unstable.any()
    assert np.isfinite(backend.state).all()
    assert backend.view.time[0].item() == pytest.approx(10.0)
    assert max_qvel.item() < 50.0, max_qvel


def test_native_threads_are_shared_among_local_processes(body, monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert MujocoBackend(body, num_envs=16).nthread == 2
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    assert MujocoBackend(body, num_envs=16).nthread == 8
    assert MujocoBackend(body, num_envs=3).nthread == 3
