"""MuJoCo XLA (MJX): B bodies as one batched `mjx.Data`, stepped by one jitted JAX call.

Per control step one compiled function sets the controls, runs ``substeps`` physics
steps in a ``jax.lax.scan`` and computes the `unstable` flag, all on the device. A masked
reset is a second compiled function: it builds the new rows, runs ``mjx.forward`` on them
(so their sensors are fresh) and selects ``jnp.where(mask, new, old)`` leaf by leaf over
the data pytree, so unmasked rows are bitwise unchanged.

Torch and JAX exchange buffers through `neuromimic.physics.bridge` (DLPack, zero copy).
JAX arrays are immutable, so every call produces new buffers and `MjxBackend.view` is
re-created from them after each call: hold on to ``backend.view`` only until the next
call, and never write into its tensors.

Precision: float32 (JAX's default). After one control step from the same state, qpos and
act agree with native MuJoCo (float64) to about 1e-7 (`tools/compare_backends.py`), far
inside the 1e-4 the tests ask.

Sensor timing: after the substeps the step runs ``mjx.forward`` once, so positions,
forces and sensors describe the final state, as the native backend's do.

The copies that remain (listed in `COPIES`):

1. ``ctrl``: cast to the simulation dtype (float32) if it is not already, and made
   contiguous if it is strided; a float32 contiguous tensor is shared without a copy.
2. ``reset``: qpos, qvel and act are cast to float32 when given in another dtype.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from neuromimic.bodies.base import Body
from neuromimic.physics.base import Backend, PhysicsView, reset_to_rest_pose
from neuromimic.physics.bridge import import_jax, jax_to_torch, torch_to_jax

log = logging.getLogger(__name__)

#: The copies `MjxBackend` still makes; see the module docstring.
COPIES: tuple[str, ...] = (
    "ctrl: [B, nu] cast to float32 / made contiguous when it is not already (per step)",
    "reset: qpos, qvel, act cast to float32 when given in another dtype (per reset)",
)


def _import_mjx() -> Any:
    import_jax()  # sets XLA_PYTHON_CLIENT_PREALLOCATE before the first JAX import
    try:
        from mujoco import mjx
    except ImportError as error:
        raise ImportError(
            "the 'mjx' physics backend needs mujoco-mjx; install the MJX extra: "
            "pip install 'neuromimic[mjx]'"
        ) from error
    return mjx


def _jax_device(device: torch.device | str | None) -> tuple[Any, torch.device]:
    """The JAX device for a torch device (default: JAX's default device), and the torch one."""
    jax = import_jax()
    if device is None:
        jax_device = jax.devices()[0]
    else:
        device = torch.device(device)
        platform = "cpu" if device.type == "cpu" else "gpu"
        jax_device = jax.devices(platform)[device.index or 0]
    if jax_device.platform == "cpu":
        return jax_device, torch.device("cpu")
    return jax_device, torch.device("cuda", jax_device.id)


class MjxBackend(Backend):
    """B copies of a body in MJX; state lives in JAX buffers that torch views through DLPack.

    Args:
        body: the body to simulate; compiled with `neuromimic.physics.model.compile_model`.
        num_envs: B, the number of bodies.
        substeps: physics steps per control step (the control is held during them).
        device: torch device whose JAX counterpart runs the physics; default JAX's default
            device.
        max_qvel: joint speed (rad/s, or the model's length unit per s) above which a body
            is flagged `unstable`; default the body's `Body.max_qvel`.

    Attributes:
        model: the compiled `mujoco.MjModel` (body plus sensors).
        num_envs: B.
        device: the torch device of the views.
        substeps: physics steps per control step.
        data: the batched `mjx.Data` (leaves [B, ...]); replaced by every call.
        external_force: [B, nbody, 6] torch tensor on `device`: force (N) then torque (N m)
            on each body's centre of mass, world frame, during the next step (MuJoCo's
            ``xfrc_applied``); zero unless a perturbation sets it.
        dtype: torch dtype of the views (float32).
        model_version: counts the calls of `model_changed` (0: the model as compiled).
        copies: the copies that remain (see the module docstring).
    """

    name = "mjx"
    copies = COPIES

    def __init__(
        self,
        body: Body,
        num_envs: int,
        substeps: int = 2,
        device: torch.device | str | None = None,
        max_qvel: float | None = None,
    ) -> None:
        mjx = _import_mjx()
        jax = import_jax()
        jnp = jax.numpy
        super().__init__(body, num_envs, substeps, max_qvel)
        self._jax_device, self.device = _jax_device(device)
        self._mx = mjx.put_model(self.model, device=self._jax_device)
        self._step_fn = jax.jit(self._build_step(mjx, jax, jnp))
        self._reset_fn = jax.jit(self._build_reset(mjx, jax, jnp))

        # Committed to the device from the start, so the compiled functions see the same
        # input placement on every call and compile once.
        single = mjx.make_data(self._mx)
        self.data = jax.device_put(
            jax.tree_util.tree_map(
                lambda leaf: jnp.broadcast_to(leaf, (num_envs, *leaf.shape)), single
            ),
            self._jax_device,
        )
        self._unstable = jax.device_put(jnp.zeros(num_envs, dtype=bool), self._jax_device)
        self.dtype = jax_to_torch(self.data.qpos).dtype
        self.external_force = torch.zeros(num_envs, self.model.nbody, 6, dtype=self.dtype, device=self.device)

        reset_to_rest_pose(self, self.dtype)
        log.debug(
            "MjxBackend: %d bodies, %d substeps on %s", num_envs, substeps, self._jax_device,
        )

    # ---------------------------------------------------------------- compiled functions
    def _build_step(self, mjx: Any, jax: Any, jnp: Any) -> Callable:
        """``(mx, data, ctrl [B, nu], xfrc [B, nbody, 6]) -> (data, unstable)``; the model is
        an argument (not a constant of the compiled function) so `model_changed` needs no
        recompilation."""
        substeps, max_qvel = self.substeps, self.max_qvel
        ctrl_dt = substeps * self.model.opt.timestep
        half_dt = 0.5 * self.model.opt.timestep

        def one_body(mx: Any, d: Any, ctrl: Any, xfrc: Any) -> tuple[Any, Any]:
            time0 = d.time
            d = d.replace(ctrl=ctrl.astype(d.ctrl.dtype), xfrc_applied=xfrc.astype(d.xfrc_applied.dtype))
            d, _ = jax.lax.scan(lambda d, _: (mjx.step(mx, d), None), d, None, length=substeps)
            # Positions, velocities, forces and sensors of the final state (mjx.step leaves
            # those of an earlier stage): one forward pass, as native MuJoCo's sensor step.
            d = mjx.forward(mx, d)
            leaves = (d.qpos, d.qvel, d.act, d.sensordata, d.time[None])
            finite = jnp.all(jnp.array([jnp.all(jnp.isfinite(x)) for x in leaves]))
            fast = jnp.max(jnp.abs(d.qvel), initial=0.0) > max_qvel
            stalled = jnp.abs(d.time - time0 - ctrl_dt) > half_dt
            return d, ~finite | fast | stalled

        return jax.vmap(one_body, in_axes=(None, 0, 0, 0))

    def _build_reset(self, mjx: Any, jax: Any, jnp: Any) -> Callable:
        def new_body(mx: Any, qpos: Any, qvel: Any, act: Any) -> Any:
            fresh = mjx.make_data(mx)
            fresh = fresh.replace(qpos=qpos, qvel=qvel, act=act)
            return mjx.forward(mx, fresh)

        def reset(
            mx: Any, data: Any, unstable: Any, mask: Any, qpos: Any, qvel: Any, act: Any
        ) -> tuple[Any, Any]:
            new = jax.vmap(new_body, in_axes=(None, 0, 0, 0))(mx, qpos, qvel, act)

            def select(old: Any, fresh: Any) -> Any:
                row_mask = mask.reshape(mask.shape + (1,) * (old.ndim - 1))
                return jnp.where(row_mask, fresh, old)

            return jax.tree_util.tree_map(select, data, new), jnp.where(mask, False, unstable)

        return reset

    # ---------------------------------------------------------------------------- API
    def _load_model(self) -> None:
        """Put `model` on the device again; the compiled step takes it as an argument, so
        nothing recompiles."""
        self._mx = _import_mjx().put_model(self.model, device=self._jax_device)

    def snapshot(self) -> dict[str, torch.Tensor]:
        """A copy of the whole simulator state on the host: every leaf of the batched
        `mjx.Data` (in tree order) and the `unstable` flags; `restore` loads it back."""
        jax = import_jax()
        leaves = jax.tree_util.tree_leaves(self.data)
        snapshot = {f"data.{i}": torch.from_numpy(np.array(leaf)) for i, leaf in enumerate(leaves)}
        snapshot["unstable"] = torch.from_numpy(np.array(self._unstable))
        return snapshot

    def restore(self, snapshot: dict[str, torch.Tensor]) -> None:
        """Load a `snapshot` of a backend of the same body and size.

        Raises:
            ValueError: if the number or shape of the saved leaves differs.
        """
        jax = import_jax()
        leaves, treedef = jax.tree_util.tree_flatten(self.data)
        saved = [snapshot.get(f"data.{i}") for i in range(len(leaves))]
        for i, (leaf, value) in enumerate(zip(leaves, saved, strict=True)):
            if value is None or tuple(value.shape) != tuple(leaf.shape):
                raise ValueError(
                    f"snapshot leaf {i} has shape {None if value is None else tuple(value.shape)}; "
                    f"this backend's is {tuple(leaf.shape)} (another body or B)"
                )
        restored = [
            jax.device_put(value.numpy().astype(leaf.dtype), self._jax_device)
            for leaf, value in zip(leaves, saved, strict=True)
        ]
        self.data = jax.tree_util.tree_unflatten(treedef, restored)
        self._unstable = jax.device_put(snapshot["unstable"].numpy(), self._jax_device)
        self._refresh_view()

    @property
    def view(self) -> PhysicsView:
        """Torch tensors aliasing the current JAX buffers (read-only; new after every call)."""
        return self._view

    def _refresh_view(self) -> None:
        d, layout = self.data, self.layout
        sensors = jax_to_torch(d.sensordata)
        self._view = PhysicsView(
            qpos=jax_to_torch(d.qpos),
            qvel=jax_to_torch(d.qvel),
            act=jax_to_torch(d.act),
            ctrl=jax_to_torch(d.ctrl),
            site_pos_w=sensors[:, layout.site_pos_w].unflatten(1, (layout.num_sites, 3)),
            actuator_length=sensors[:, layout.actuator_length],
            actuator_velocity=sensors[:, layout.actuator_velocity],
            actuator_force=sensors[:, layout.actuator_force],
            time=jax_to_torch(d.time),
            unstable=jax_to_torch(self._unstable),
        )

    def _to_jax(self, tensor: torch.Tensor) -> Any:
        return torch_to_jax(tensor.detach().to(device=self.device, dtype=self.dtype).contiguous())

    def step(self, ctrl: torch.Tensor) -> None:
        """Advance every body by ``substeps`` physics steps with ``ctrl`` held (one jitted call).

        Args:
            ctrl: [B, nu] controls (muscle excitations in 0..1), float, on `device`. A
                contiguous float32 tensor is shared with JAX, not copied; exporting the new
                views waits for the step on CPU, so it may be reused once `step` returns.
        """
        self.data, self._unstable = self._step_fn(
            self._mx, self.data, self._to_jax(ctrl), self._to_jax(self.external_force)
        )
        self._refresh_view()

    def reset(
        self,
        mask: torch.Tensor,
        qpos: torch.Tensor,
        qvel: torch.Tensor,
        act: torch.Tensor,
    ) -> None:
        """`Backend.reset`, in one jitted call: reset rows get time 0, zero controls and
        warm start, sensors at the new state (``mjx.forward``), a cleared `unstable` flag."""
        mask_j = torch_to_jax(mask.detach().to(device=self.device, dtype=torch.bool).contiguous())
        self.data, self._unstable = self._reset_fn(
            self._mx,
            self.data,
            self._unstable,
            mask_j,
            self._to_jax(qpos),
            self._to_jax(qvel),
            self._to_jax(act),
        )
        self._refresh_view()

    def bare_seconds(self, ctrl: torch.Tensor, per_control_step: bool = False) -> float:
        """`Backend.bare_seconds`: a jitted, vmapped ``mjx.step`` of the body's own model,
        ``substeps`` per control step in a ``lax.scan``; over all control steps in one
        more ``lax.scan`` (one call), or one call per control step."""
        mjx, jax = _import_mjx(), import_jax()
        model = mjx.put_model(self.body.load_model(), device=self._jax_device)
        controls = self._to_jax(ctrl)

        def control_step(data: Any, ctrl: Any) -> tuple[Any, None]:
            data = data.replace(ctrl=ctrl)
            data, _ = jax.lax.scan(lambda d, _: (mjx.step(model, d), None), data, None, length=self.substeps)
            return data, None

        one_step = jax.jit(jax.vmap(control_step))
        all_steps = jax.jit(lambda data, controls: jax.lax.scan(jax.vmap(control_step), data, controls)[0])
        d = self.data
        data = jax.vmap(lambda q, v, a: mjx.make_data(model).replace(qpos=q, qvel=v, act=a))(d.qpos, d.qvel, d.act)
        if per_control_step:
            jax.block_until_ready(one_step(data, controls[0]))  # compile
            start = time.perf_counter()
            for i in range(controls.shape[0]):
                data = one_step(data, controls[i])[0]
            jax.block_until_ready(data)
            return time.perf_counter() - start
        jax.block_until_ready(all_steps(data, controls))  # compile
        start = time.perf_counter()
        jax.block_until_ready(all_steps(data, controls))
        return time.perf_counter() - start
