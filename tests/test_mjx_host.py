"""MJX's flat calls and folded resets: the same physics, bitwise, for less host time per call."""

import numpy as np
import pytest
import torch

from neuromimic.bodies import get_body

mjx = pytest.importorskip("mujoco.mjx")

from neuromimic.physics.mjx_backend import MjxBackend, control_step

B = 4


def random_state(model, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """qpos inside the joint ranges, qvel and act, each [B, ...] float32."""
    g = torch.Generator().manual_seed(seed)
    low, high = (torch.from_numpy(model.jnt_range[:, i].copy()).float() for i in (0, 1))
    qpos = low + (high - low) * (0.2 + 0.6 * torch.rand(B, model.nq, generator=g))
    return qpos, torch.randn(B, model.nv, generator=g), torch.rand(B, model.na, generator=g)


def leaves(backend) -> list[np.ndarray]:
    import jax

    return [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(backend.data)]


def assert_bitwise_equal(a: list[np.ndarray], b: list[np.ndarray], rows=slice(None)) -> None:
    assert len(a) == len(b)
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        assert x.dtype == y.dtype and x.shape == y.shape, i
        assert x[rows].tobytes() == y[rows].tobytes(), f"leaf {i} differs"


@pytest.fixture(scope="module")
def backend():
    return MjxBackend(get_body("mouse_forelimb"), num_envs=B, substeps=2)


@pytest.fixture(scope="module")
def start(backend):
    """A snapshot of a non-trivial state (after a reset to random states and one step)."""
    backend.reset(torch.ones(B, dtype=torch.bool), *random_state(backend.model, seed=1))
    backend.step(torch.rand(B, backend.model.nu, generator=torch.Generator().manual_seed(1)))
    return backend.snapshot()


def controls(backend, seed: int) -> torch.Tensor:
    return torch.rand(B, backend.model.nu, generator=torch.Generator().manual_seed(seed))


def test_building_compiles_nothing_and_the_rest_pose_is_pending():
    backend = MjxBackend(get_body("mouse_forelimb"), num_envs=2, substeps=2)
    assert backend._step_fn._cache_size() == 0 and backend._reset_fn._cache_size() == 0
    assert "pending.mask" in backend.snapshot()
    calls = backend.describe()["step_call_arrays"]
    assert calls["in"] <= 20 and calls["out"] <= 12, calls  # the model and data have ~200 leaves


@pytest.mark.slow
def test_flat_step_is_bitwise_the_step_of_whole_model_and_data(backend, start):
    import jax

    backend.restore(start)
    step_whole = jax.jit(
        jax.vmap(control_step(backend.substeps, backend.max_qvel, backend.model.opt.timestep), in_axes=(None, 0, 0, 0))
    )
    mx = mjx.put_model(backend.model)
    data, unstable = backend.data, None
    for seed in (2, 3):
        ctrl = controls(backend, seed)
        data, unstable = step_whole(mx, data, ctrl.numpy(), np.zeros((B, backend.model.nbody, 6), np.float32))
        backend.step(ctrl)
    assert_bitwise_equal(leaves(backend), [np.asarray(x) for x in jax.tree_util.tree_leaves(data)])
    assert np.array_equal(np.asarray(unstable), backend.view.unstable.numpy())


@pytest.mark.slow
def test_scheduled_reset_then_step_is_bitwise_reset_then_step(backend, start):
    mask = torch.tensor([False, True, False, True])
    new_state = random_state(backend.model, seed=2)
    ctrl = controls(backend, 4)

    backend.restore(start)
    backend.reset(mask, *new_state)
    backend.step(ctrl)
    immediate = leaves(backend)

    backend.restore(start)
    backend.schedule_reset(mask, *new_state)
    assert backend._pending is not None
    backend.step(ctrl)
    assert backend._pending is None
    folded = leaves(backend)
    assert_bitwise_equal(immediate, folded)

    backend.restore(start)
    backend.step(ctrl)
    assert_bitwise_equal(leaves(backend), folded, rows=~mask.numpy())  # rows not reset: as if none was
    assert np.asarray(folded[0])[mask.numpy()].tobytes() != np.asarray(leaves(backend)[0])[mask.numpy()].tobytes()


@pytest.mark.slow
def test_reading_the_view_applies_a_pending_reset(backend, start):
    backend.restore(start)
    mask = torch.tensor([True, False, False, False])
    qpos, qvel, act = random_state(backend.model, seed=3)
    before = backend._view.qpos.clone()
    backend.schedule_reset(mask, qpos, qvel, act)
    qpos.fill_(1.0)  # the backend holds its own copy
    view = backend.view
    assert backend._pending is None
    assert torch.equal(view.qpos[0], random_state(backend.model, seed=3)[0][0])
    assert view.time[0] == 0 and torch.equal(view.qpos[1:], before[1:])


@pytest.mark.slow
def test_two_scheduled_resets_before_a_step_are_one(backend, start):
    first, second = random_state(backend.model, seed=5), random_state(backend.model, seed=6)
    ctrl = controls(backend, 7)
    backend.restore(start)
    backend.reset(torch.tensor([True, True, False, False]), *first)
    backend.reset(torch.tensor([False, True, True, False]), *second)
    backend.step(ctrl)
    expected = leaves(backend)
    backend.restore(start)
    backend.schedule_reset(torch.tensor([True, True, False, False]), *first)
    backend.schedule_reset(torch.tensor([False, True, True, False]), *second)
    backend.step(ctrl)
    assert_bitwise_equal(expected, leaves(backend))


@pytest.mark.slow
def test_a_snapshot_with_a_pending_reset_continues_bitwise(backend, start):
    backend.restore(start)
    backend.schedule_reset(torch.tensor([False, False, True, False]), *random_state(backend.model, seed=8))
    saved = backend.snapshot()
    assert saved["pending.mask"].tolist() == [False, False, True, False]
    backend.step(controls(backend, 9))
    backend.step(controls(backend, 10))
    uninterrupted = leaves(backend)
    backend.restore(start)  # no reset pending in this one
    assert backend._pending is None
    backend.restore(saved)
    backend.step(controls(backend, 9))
    backend.step(controls(backend, 10))
    assert_bitwise_equal(uninterrupted, leaves(backend))


@pytest.mark.slow
def test_model_changed_recompiles_nothing_and_takes_effect(backend, start):
    backend.restore(start)
    ctrl = controls(backend, 11)
    backend.step(ctrl)
    compiled = (backend._step_fn._cache_size(), backend._reset_fn._cache_size())
    as_built = backend.view.qpos.clone()
    gain = backend.model.actuator_gainprm.copy()
    try:
        backend.model.actuator_gainprm[:, 2] *= 0.1  # a tenth of each muscle's peak force
        backend.model_changed()
        backend.restore(start)
        backend.step(ctrl)
        assert not torch.equal(backend.view.qpos, as_built)
        backend.reset(torch.ones(B, dtype=torch.bool), *random_state(backend.model, seed=12))
    finally:
        backend.model.actuator_gainprm[:] = gain
        backend.model_changed()
    assert (backend._step_fn._cache_size(), backend._reset_fn._cache_size()) == compiled
    backend.restore(start)
    backend.step(ctrl)
    assert torch.equal(backend.view.qpos, as_built)


@pytest.mark.slow
def test_host_seconds_per_call(backend):
    for stand_in in (False, True):
        seconds = backend.host_seconds_per_call(calls=20, stand_in=stand_in)
        assert set(seconds) == {"min", "median", "max"}
        assert 0 < seconds["min"] <= seconds["median"] <= seconds["max"] < 1.0


@pytest.mark.slow
def test_env_folds_its_resets_into_the_next_step_and_resumes_exactly():
    from neuromimic.envs import EnvConfig, make_env

    env = make_env(EnvConfig(backend="mjx", num_envs=B), seed=0)
    td = env.reset()
    assert env.backend._pending is not None  # the table of starts is current: no call yet
    actions = [torch.rand(env.action_spec.shape, generator=torch.Generator().manual_seed(s)) for s in range(4)]
    td["action"] = actions[0]
    td = env.step(td)["next"]
    assert env.backend._pending is None
    td = env.maybe_reset(td.set("done", torch.tensor([[True], [False], [True], [False]])))
    assert env.backend._pending is not None and env.backend._pending[0].tolist() == [True, False, True, False]
    saved, root = env.snapshot(), td.clone()

    def run(td) -> list:
        out = []
        for action in actions[1:]:
            td["action"] = action
            out.append(env.step(td)["next"])
            td = out[-1]
        return out

    def equal(a: list, b: list) -> bool:
        return all(
            torch.equal(x[key], y[key]) for x, y in zip(a, b, strict=True) for key in ("observation", "reward", "done")
        )

    folded = run(root.clone())
    env.restore(saved)
    assert env.backend._pending is not None
    assert equal(folded, run(root.clone()))  # resumed with the reset still pending
    env.restore(saved)
    env.backend.view  # noqa: B018 (reading the view applies the reset at once)
    assert env.backend._pending is None
    assert equal(folded, run(root.clone()))  # a reset of its own call: the same steps


def _compilation_cache_dir_after_import(tmp_path, **env: str) -> tuple[str, list[str]]:
    """In a fresh interpreter with ``env``: import JAX the way the backends do, compile one
    small program, and return JAX's cache folder and the files written to ``tmp_path``."""
    import json
    import os
    import subprocess
    import sys

    script = (
        "import json, jax.numpy as jnp, jax\n"
        "from neuromimic.physics.bridge import import_jax\n"
        "import_jax()\n"
        "jax.jit(lambda x: jnp.sin(x) * 2)(jnp.ones(3)).block_until_ready()\n"
        "print(json.dumps(jax.config.jax_compilation_cache_dir))\n"
    )
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("JAX_", "NEUROMIMIC_"))}
    environment.update(JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", XDG_CACHE_HOME=str(tmp_path / "xdg"), **env)
    done = subprocess.run([sys.executable, "-c", script], env=environment, capture_output=True, text=True, check=True)
    written = sorted(str(path.relative_to(tmp_path)) for path in tmp_path.rglob("*") if path.is_file())
    return json.loads(done.stdout.strip().splitlines()[-1]), written


def test_compiled_programs_are_kept_between_runs_where_the_user_says(tmp_path):
    """MJX's programs go to ``$XDG_CACHE_HOME/neuromimic/jax`` by default, to
    ``$NEUROMIMIC_JAX_CACHE`` when set, nowhere when it is empty, and where the user pointed
    JAX's own setting when they did."""
    default, written = _compilation_cache_dir_after_import(tmp_path)
    assert default == str(tmp_path / "xdg" / "neuromimic" / "jax") and written
    assert all(path.startswith("xdg/neuromimic/jax/") for path in written)

    chosen, written = _compilation_cache_dir_after_import(
        tmp_path / "a", NEUROMIMIC_JAX_CACHE=str(tmp_path / "a" / "c")
    )
    assert chosen == str(tmp_path / "a" / "c") and all(path.startswith("c/") for path in written) and written

    off, written = _compilation_cache_dir_after_import(tmp_path / "b", NEUROMIMIC_JAX_CACHE="")
    assert off is None and written == []

    users, written = _compilation_cache_dir_after_import(
        tmp_path / "d", JAX_COMPILATION_CACHE_DIR=str(tmp_path / "d" / "j")
    )
    assert users == str(tmp_path / "d" / "j") and all(path.startswith("j/") for path in written) and written
