"""MuJoCo XLA (MJX): B bodies as one batched `mjx.Data`, stepped by one jitted JAX call.

Per control step one compiled function sets the controls, runs ``substeps`` physics
steps in a ``jax.lax.scan`` and computes the `unstable` flag, all on the device.

Flat calls: the compiled functions take and return a few flat arrays only, never the
`mjx.Model` / `mjx.Data` objects. Handed those objects, every call of a jitted function
walks their static fields in Python and crc32-hashes every static numpy array (meshes,
textures) to find its compiled program, and returns 85 arrays to wrap: 0.36 ms of host
time per call for the mouse, 4.8 ms for MyoArm, 8.0 ms for the fly on the 2-core
reference CPU, against 12 us for the flat call (fastest of 1500 calls of a stand-in
without device work; ``tools/mjx_host_overhead.py`` measures both). Here the model and the
batched data are split once (`jax.tree_util.tree_flatten`, `FlatLayout`) into their array
leaves and their static structure; the structure is closed over by the compiled
functions, and the leaves travel packed into one 1-D buffer per dtype (`_Packing`),
except the leaves the views show (qpos, qvel, act, ctrl, sensordata, time), which stay
arrays of their own so that torch can alias them: a step call passes 14 arrays and
returns 10. The model's numeric leaves are arguments, not constants: `Backend.model_changed`
recompiles nothing (a change of a static field, such as a geom type, recompiles).

Resets. `MjxBackend.reset` is a second compiled function: it starts the masked rows from
a fresh single-body `mjx.Data` (made outside the compiled code, again after a model change, by
``mjx.make_data``) holding the given qpos, qvel and act, runs ``mjx.forward`` on them (so
their sensors are fresh) and selects ``jnp.where(mask, new, old)`` leaf by leaf, so
unmasked rows are bitwise unchanged. `MjxBackend.schedule_reset` instead keeps the mask
and the states on the device and folds them into the next step's single call: the rows
start from the fresh data, then take the substeps. No host reads the mask and no call is
made for it. The result is bitwise that of `reset` then `step` (``mjx.step`` begins with
the forward pass that `reset` runs, and that pass changes none of its own inputs;
``tests/test_mjx_host.py`` checks it on the mouse). Building the backend schedules the
rest pose this way, so it compiles nothing. Reading
`MjxBackend.view` (or `MjxBackend.data`) while a reset is pending applies it at once.

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
3. ``schedule_reset``: mask, qpos, qvel and act are copied into buffers the backend owns
   (the caller may write into its tensors before the step that applies them).
4. ``packing``: inside the compiled functions, the model's leaves are cut out of their
   buffers once per call (small: the model), and the data's leaves are written into
   theirs by a concatenation that XLA fuses with the ops that compute them (the mouse's
   step at B=256 on the CPU takes no longer than with the objects passed whole).
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from neuromimic.bodies.base import Body
from neuromimic.physics.base import Backend, PhysicsView
from neuromimic.physics.bridge import import_jax, jax_to_torch, torch_to_jax

log = logging.getLogger(__name__)

#: The copies `MjxBackend` still makes; see the module docstring.
COPIES: tuple[str, ...] = (
    "ctrl: [B, nu] cast to float32 / made contiguous when it is not already (per step)",
    "reset: qpos, qvel, act cast to float32 when given in another dtype (per reset)",
    "schedule_reset: mask, qpos, qvel, act copied into buffers the backend owns (per scheduled reset)",
    "packing: the model's leaves cut out of their packed buffers on the device (per call, inside the compiled functions)",
)

#: The `mjx.Data` leaves the views alias; they stay arrays of their own (in this order).
VIEW_LEAVES: tuple[str, ...] = ("qpos", "qvel", "act", "ctrl", "sensordata", "time")


def _import_mjx() -> Any:
    import_jax()  # sets XLA_PYTHON_CLIENT_PREALLOCATE before the first JAX import
    try:
        from mujoco import mjx
    except ImportError as error:
        raise ImportError(
            "the 'mjx' physics backend needs mujoco-mjx; install the MJX extra: pip install 'neuromimic[mjx]'"
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


class _Packing:
    """The leaves of a pytree as a few arrays: the leaves named in ``apart`` as they are,
    then all other leaves raveled and concatenated into one 1-D buffer per dtype.

    `pack` and `unpack` work on numpy arrays (on the host) and on JAX arrays (inside a
    compiled function) alike; they only reshape, slice and concatenate, so values are
    bitwise preserved.

    Args:
        leaves: the leaves (anything with ``shape`` and ``dtype``), in tree order.
        apart: indices of the leaves kept as arrays of their own, in the order wanted.
    """

    def __init__(self, leaves: Sequence[Any], apart: Sequence[int] = ()) -> None:
        self.apart = tuple(apart)
        self.shapes = tuple(tuple(leaf.shape) for leaf in leaves)
        self.dtypes = tuple(np.dtype(leaf.dtype) for leaf in leaves)
        groups: dict[np.dtype, list[int]] = {}
        for i, dtype in enumerate(self.dtypes):
            if i not in self.apart:
                groups.setdefault(dtype, []).append(i)
        self.groups = tuple(tuple(group) for group in groups.values())
        #: leaf index -> (position in the packed tuple, start, stop) of a packed leaf.
        self.slots: dict[int, tuple[int, int, int]] = {}
        for g, group in enumerate(self.groups):
            offset = 0
            for i in group:
                size = int(np.prod(self.shapes[i], dtype=np.int64))
                self.slots[i] = (len(self.apart) + g, offset, offset + size)
                offset += size

    def __len__(self) -> int:
        return len(self.apart) + len(self.groups)

    def pack(self, leaves: Sequence[Any], concatenate: Callable) -> tuple:
        """The packed tuple of ``leaves``; ``concatenate`` is ``np.concatenate`` or ``jnp.concatenate``."""
        buffers = tuple(concatenate([leaves[i].reshape(-1) for i in group]) for group in self.groups)
        return tuple(leaves[i] for i in self.apart) + buffers

    def unpack(self, packed: Sequence[Any]) -> list:
        """The leaves, in tree order, of a packed tuple."""
        leaves: list[Any] = [None] * len(self.shapes)
        for k, i in enumerate(self.apart):
            leaves[i] = packed[k]
        for i, (position, start, stop) in self.slots.items():
            leaves[i] = packed[position][start:stop].reshape(self.shapes[i])
        return leaves


def _host(array: Any) -> np.ndarray:
    return np.asarray(array)


class FlatLayout:
    """How `MjxBackend` hands an `mjx.Model` and a batched `mjx.Data` to its compiled
    functions: as tuples of arrays (`_Packing`), their static structure kept here.

    Args:
        mx: the `mjx.Model`.
        template: a single-body `mjx.Data` of it (``mjx.make_data``); the batched data
            has the same structure with a leading axis of ``num_envs``.
        num_envs: B.

    Attributes:
        model_def, data_def: the static structure (treedef) of the model and of the data
            (batched or single); the compiled functions close over them.
        model, template, data: the `_Packing` of the model's leaves, of the single-body
            data's and of the batched data's (whose view leaves, `VIEW_LEAVES`, come first,
            apart).
    """

    def __init__(self, mx: Any, template: Any, num_envs: int) -> None:
        jax = import_jax()
        model_leaves, self.model_def = jax.tree_util.tree_flatten(mx)
        paths, self.data_def = jax.tree_util.tree_flatten_with_path(template)
        names = [jax.tree_util.keystr(path) for path, _ in paths]
        self.num_envs = num_envs
        self.model = _Packing(model_leaves)
        self.template = _Packing([leaf for _, leaf in paths])
        self.data = _Packing(
            [np.empty((num_envs, *leaf.shape), leaf.dtype) for _, leaf in paths],
            apart=[names.index(f".{name}") for name in VIEW_LEAVES],
        )

    def flat_model(self, mx: Any) -> tuple[np.ndarray, ...]:
        """The packed leaves of ``mx`` (a model of the same static structure), on the host."""
        return self.model.pack([_host(x) for x in import_jax().tree_util.tree_leaves(mx)], np.concatenate)

    def flat_template(self, template: Any) -> tuple[np.ndarray, ...]:
        """The packed leaves of a single-body data, on the host."""
        return self.template.pack([_host(x) for x in import_jax().tree_util.tree_leaves(template)], np.concatenate)

    def flat_batch(self, template: Any) -> tuple[np.ndarray, ...]:
        """The packed batched data with ``template`` in every row, on the host."""
        leaves = import_jax().tree_util.tree_leaves(template)
        return self.data.pack([np.broadcast_to(_host(x), (self.num_envs, *x.shape)) for x in leaves], np.concatenate)

    def stand_in(self, copying: bool = False) -> Callable:
        """A jitted function with the compiled step's inputs ``(model, state, ctrl, xfrc)``
        and outputs ``(state, unstable)`` but no physics: the host cost of a step call,
        without minutes of compilation.

        Args:
            copying: each output array a copy of its input (on a CPU, XLA copies them on
                the calling thread: the time then grows with the size of the data);
                otherwise the state is donated and returned as it is (no device work at
                all: pass the returned state to the next call).
        """
        jax = import_jax()
        jnp, num_envs = jax.numpy, self.num_envs

        def stand_in(model: tuple, state: tuple, ctrl: Any, xfrc: Any) -> tuple[tuple, Any]:
            if copying:
                state = tuple(jnp.array(x, copy=True) for x in state)
            return state, jnp.zeros(num_envs, dtype=bool)

        return jax.jit(stand_in) if copying else jax.jit(stand_in, donate_argnums=1)


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
        data: the batched `mjx.Data` (leaves [B, ...]), assembled on access from the flat
            state (its qpos, qvel, act, ctrl, sensordata and time are the buffers the views
            alias); replaced by every call.
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
        jax = import_jax()
        super().__init__(body, num_envs, substeps, max_qvel)
        self._jax_device, self.device = _jax_device(device)
        self._pending: tuple[torch.Tensor, ...] | None = None
        self._layout: FlatLayout | None = None
        self._load_model()  # the flat model, the template data and the compiled functions

        # The batched state: the template in every row, committed to the device from the
        # start, so the compiled functions see the same input placement on every call and
        # compile once.
        self._state = self._put(self._layout.flat_batch(self._template_data))
        self._unstable = jax.device_put(np.zeros(num_envs, dtype=bool), self._jax_device)
        self.dtype = jax_to_torch(self._state[0]).dtype
        self.external_force = torch.zeros(num_envs, self.model.nbody, 6, dtype=self.dtype, device=self.device)

        # Every body in its rest pose, still, with muscles off (`reset_to_rest_pose`), as a
        # scheduled reset: building the backend compiles nothing; the first step (or the
        # first read of `view`) applies it.
        everyone = torch.ones(num_envs, dtype=torch.bool, device=self.device)
        rest = torch.as_tensor(np.asarray(body.rest_qpos(self.model)), dtype=self.dtype, device=self.device)
        zeros = torch.zeros(num_envs, max(self.model.nv, self.model.na), dtype=self.dtype, device=self.device)
        self.schedule_reset(everyone, rest.expand(num_envs, -1), zeros[:, : self.model.nv], zeros[:, : self.model.na])
        self._refresh_view()
        log.debug(
            "MjxBackend: %d bodies, %d substeps on %s",
            num_envs,
            substeps,
            self._jax_device,
        )

    def _put(self, arrays: Sequence[Any]) -> tuple:
        jax = import_jax()
        return tuple(jax.device_put(np.ascontiguousarray(a), self._jax_device) for a in arrays)

    # ---------------------------------------------------------------- compiled functions
    def _load_model(self) -> None:
        """Put `model` on the device again, as flat buffers, and make the fresh single-body
        data a reset starts from (``mjx.make_data``, outside the compiled code). The
        compiled functions take both as arguments, so nothing recompiles, unless a static
        field of the model changed (then they are rebuilt).

        Raises:
            ValueError: if the change alters the layout of the simulator's data (its
                static fields or sizes); build a new backend for such a model.
        """
        mjx, jax = _import_mjx(), import_jax()
        mx = mjx.put_model(self.model, device=self._jax_device)
        template = mjx.make_data(mx)
        layout = FlatLayout(mx, template, self.num_envs)
        if self._layout is None or layout.model_def != self._layout.model_def:
            if self._layout is not None:
                if layout.data_def != self._layout.data_def:
                    raise ValueError(
                        "the model change altered the layout of MJX's data; build a new backend for this model"
                    )
                log.info("MjxBackend: a static field of the model changed; recompiling")
            self._layout = layout
            self._build_functions(mjx, jax)
        self._model = self._put(self._layout.flat_model(mx))
        self._template_data = template
        self._template = self._put(self._layout.flat_template(template))

    def _build_functions(self, mjx: Any, jax: Any) -> None:
        """Compile (lazily, at their first call) the step, the step with a folded reset and
        the reset; each takes and returns tuples of arrays only."""
        jnp = jax.numpy
        layout = self._layout
        assert layout is not None
        model_def, data_def = layout.model_def, layout.data_def
        model_packing, data_packing, template_packing = layout.model, layout.data, layout.template

        def model_of(flat: tuple) -> Any:
            # The barrier makes XLA cut the leaves out of their buffers once per call: left
            # to itself it slices them inside the substep loop, where each use of a model
            # array then costs more (on the CPU, the mouse's step took 35% longer).
            leaves = jax.lax.optimization_barrier(model_packing.unpack(flat))
            return jax.tree_util.tree_unflatten(model_def, leaves)

        def data_of(state: tuple) -> Any:
            return jax.tree_util.tree_unflatten(data_def, data_packing.unpack(state))

        def template_of(flat: tuple) -> Any:
            return jax.tree_util.tree_unflatten(data_def, template_packing.unpack(flat))

        def state_of(data: Any) -> tuple:
            leaves, treedef = jax.tree_util.tree_flatten(data)
            if treedef != data_def:
                raise RuntimeError("MJX changed the static structure of its data during a step")
            return data_packing.pack(leaves, jnp.concatenate)

        def select(mask: Any, new: Any, old: Any) -> Any:
            """``new`` where ``mask`` [B], else ``old``, leaf by leaf (``new`` broadcasts)."""

            def leaf(old_leaf: Any, new_leaf: Any) -> Any:
                row_mask = mask.reshape(mask.shape + (1,) * (old_leaf.ndim - 1))
                return jnp.where(row_mask, new_leaf, old_leaf)

            return jax.tree_util.tree_map(leaf, old, new)

        batched_step = jax.vmap(
            control_step(self.substeps, self.max_qvel, self.model.opt.timestep), in_axes=(None, 0, 0, 0)
        )

        def step(model: tuple, state: tuple, ctrl: Any, xfrc: Any) -> tuple[tuple, Any]:
            data, unstable = batched_step(model_of(model), data_of(state), ctrl, xfrc)
            return state_of(data), unstable

        def step_after_reset(
            model: tuple, state: tuple, ctrl: Any, xfrc: Any, template: tuple, mask: Any, qpos: Any, qvel: Any, act: Any
        ) -> tuple[tuple, Any]:
            # The reset rows start from the fresh data; the forward pass `reset` would run
            # on them is the first thing mjx.step does, so it is not run twice.
            fresh = template_of(template).replace(qpos=qpos, qvel=qvel, act=act)
            data = select(mask, fresh, data_of(state))
            data, unstable = batched_step(model_of(model), data, ctrl, xfrc)
            return state_of(data), unstable

        def reset(
            model: tuple, state: tuple, unstable: Any, template: tuple, mask: Any, qpos: Any, qvel: Any, act: Any
        ) -> tuple[tuple, Any]:
            mx, fresh = model_of(model), template_of(template)

            def new_body(qpos: Any, qvel: Any, act: Any) -> Any:
                return mjx.forward(mx, fresh.replace(qpos=qpos, qvel=qvel, act=act))

            new = jax.vmap(new_body)(qpos, qvel, act)
            return state_of(select(mask, new, data_of(state))), jnp.where(mask, False, unstable)

        self._step_fn = jax.jit(step)
        self._step_after_reset_fn = jax.jit(step_after_reset)
        self._reset_fn = jax.jit(reset)
        self._unpack_fn = jax.jit(
            lambda buffers: [
                data_packing.unpack((None,) * len(data_packing.apart) + buffers)[i] for i in data_packing.slots
            ]
        )

    # ---------------------------------------------------------------------------- API
    @property
    def data(self) -> Any:
        """The batched `mjx.Data` of the current state (applies a pending reset first).

        Its view leaves (qpos, qvel, act, ctrl, sensordata, time) are the buffers the views
        alias; the other leaves are unpacked into new arrays at each access.
        """
        self._apply_pending()
        jax = import_jax()
        packing = self._layout.data
        leaves: list[Any] = [None] * len(packing.shapes)
        for k, i in enumerate(packing.apart):
            leaves[i] = self._state[k]
        for i, leaf in zip(packing.slots, self._unpack_fn(self._state[len(packing.apart) :]), strict=True):
            leaves[i] = leaf
        return jax.tree_util.tree_unflatten(self._layout.data_def, leaves)

    def snapshot(self) -> dict[str, torch.Tensor]:
        """A copy of the whole simulator state on the host: every leaf of the batched
        `mjx.Data` (in tree order), the `unstable` flags and a pending reset's mask,
        qpos, qvel and act (``pending.*``, only while one is pending); `restore` loads it
        back."""
        leaves = self._layout.data.unpack([_host(x) for x in self._state])
        snapshot = {f"data.{i}": torch.from_numpy(np.array(leaf)) for i, leaf in enumerate(leaves)}
        snapshot["unstable"] = torch.from_numpy(np.array(self._unstable))
        if self._pending is not None:
            for name, value in zip(("mask", "qpos", "qvel", "act"), self._pending, strict=True):
                snapshot[f"pending.{name}"] = value.cpu().clone()
        return snapshot

    def restore(self, snapshot: dict[str, torch.Tensor]) -> None:
        """Load a `snapshot` of a backend of the same body and size (a reset pending when
        it was taken is pending again).

        Raises:
            ValueError: if the number or shape of the saved leaves differs.
        """
        jax = import_jax()
        packing = self._layout.data
        saved = [snapshot.get(f"data.{i}") for i in range(len(packing.shapes))]
        for i, (shape, value) in enumerate(zip(packing.shapes, saved, strict=True)):
            if value is None or tuple(value.shape) != shape:
                raise ValueError(
                    f"snapshot leaf {i} has shape {None if value is None else tuple(value.shape)}; "
                    f"this backend's is {shape} (another body or B)"
                )
        leaves = [value.numpy().astype(dtype) for value, dtype in zip(saved, packing.dtypes, strict=True)]
        self._state = self._put(packing.pack(leaves, np.concatenate))
        self._unstable = jax.device_put(snapshot["unstable"].numpy(), self._jax_device)
        self._pending = None
        if "pending.mask" in snapshot:
            self._pending = tuple(
                snapshot[f"pending.{name}"].to(self.device).clone() for name in ("mask", "qpos", "qvel", "act")
            )
        self._refresh_view()

    @property
    def view(self) -> PhysicsView:
        """Torch tensors aliasing the current JAX buffers (read-only; new after every call).

        Reading it while a reset is pending (`schedule_reset`) applies that reset at once.
        """
        self._apply_pending()
        return self._view

    def _refresh_view(self) -> None:
        qpos, qvel, act, ctrl, sensordata, time_ = (jax_to_torch(x) for x in self._state[: len(VIEW_LEAVES)])
        layout = self.layout
        self._view = PhysicsView(
            qpos=qpos,
            qvel=qvel,
            act=act,
            ctrl=ctrl,
            site_pos_w=sensordata[:, layout.site_pos_w].unflatten(1, (layout.num_sites, 3)),
            actuator_length=sensordata[:, layout.actuator_length],
            actuator_velocity=sensordata[:, layout.actuator_velocity],
            actuator_force=sensordata[:, layout.actuator_force],
            time=time_,
            unstable=jax_to_torch(self._unstable),
        )

    def _to_jax(self, tensor: torch.Tensor) -> Any:
        return torch_to_jax(tensor.detach().to(device=self.device, dtype=self.dtype).contiguous())

    def _owned(self, tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """A contiguous copy of ``tensor`` in ``dtype`` on `device` (one copy kernel)."""
        return torch.empty(tensor.shape, dtype=dtype, device=self.device).copy_(tensor.detach())

    def step(self, ctrl: torch.Tensor) -> None:
        """Advance every body by ``substeps`` physics steps with ``ctrl`` held (one jitted
        call, which applies a pending reset first).

        Args:
            ctrl: [B, nu] controls (muscle excitations in 0..1), float, on `device`. A
                contiguous float32 tensor is shared with JAX, not copied; exporting the new
                views waits for the step on CPU, so it may be reused once `step` returns.
        """
        args = (self._model, self._state, self._to_jax(ctrl), self._to_jax(self.external_force))
        if self._pending is None:
            self._state, self._unstable = self._step_fn(*args)
        else:
            pending = tuple(torch_to_jax(x) for x in self._pending)
            self._state, self._unstable = self._step_after_reset_fn(*args, self._template, *pending)
            self._pending = None
        self._refresh_view()

    def reset(
        self,
        mask: torch.Tensor,
        qpos: torch.Tensor,
        qvel: torch.Tensor,
        act: torch.Tensor,
    ) -> None:
        """`Backend.reset`, in one jitted call: reset rows get time 0, zero controls and
        warm start, sensors at the new state (``mjx.forward``), a cleared `unstable` flag.
        A pending reset (`schedule_reset`) is applied in the same call, before this one."""
        mask = mask.detach().to(device=self.device, dtype=torch.bool)
        qpos, qvel, act = (x.detach().to(device=self.device, dtype=self.dtype) for x in (qpos, qvel, act))
        if self._pending is not None:
            mask, qpos, qvel, act = self._merged(mask, qpos, qvel, act)
        self._pending = None
        self._state, self._unstable = self._reset_fn(
            self._model,
            self._state,
            self._unstable,
            self._template,
            torch_to_jax(mask.contiguous()),
            self._to_jax(qpos),
            self._to_jax(qvel),
            self._to_jax(act),
        )
        self._refresh_view()

    def schedule_reset(
        self,
        mask: torch.Tensor,
        qpos: torch.Tensor,
        qvel: torch.Tensor,
        act: torch.Tensor,
    ) -> None:
        """`Backend.schedule_reset`: keep the reset on the device and fold it into the
        next `step`'s call (bitwise the result of `reset` then `step`); nothing is read
        on the host and no call is made now. Until then `view` would show the rows before
        the reset: reading it (or `data`) applies the reset at once instead. A second
        scheduled reset of a row before the step replaces the first."""
        if self._pending is None:
            self._pending = (
                self._owned(mask, torch.bool),
                self._owned(qpos, self.dtype),
                self._owned(qvel, self.dtype),
                self._owned(act, self.dtype),
            )
        else:
            self._pending = self._merged(mask, qpos, qvel, act)

    def _merged(
        self, mask: torch.Tensor, qpos: torch.Tensor, qvel: torch.Tensor, act: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        """The pending reset with the rows of ``mask`` replaced by this one (device ops)."""
        assert self._pending is not None
        old_mask, old_qpos, old_qvel, old_act = self._pending
        mask = mask.detach().to(device=self.device, dtype=torch.bool)
        rows = mask[:, None]
        return (
            old_mask | mask,
            *(
                torch.where(rows, new.detach().to(device=self.device, dtype=self.dtype), old)
                for new, old in ((qpos, old_qpos), (qvel, old_qvel), (act, old_act))
            ),
        )

    def _apply_pending(self) -> None:
        """Apply a pending reset now (its own jitted call)."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self.reset(*pending)

    def host_seconds_per_call(self, calls: int = 200, stand_in: bool = False) -> dict[str, float]:
        """`Backend.host_seconds_per_call`: the jitted step call (no reset pending) with
        the current state, its results dropped.

        On a GPU the call returns once the step is queued. On a CPU, XLA runs part of the
        step on the calling thread before it returns, and its worker threads share the
        cores with it, so there the time grows with B and the physics; ``stand_in=True``
        times the call alone.

        Args:
            calls: calls timed (after one that compiles).
            stand_in: time `FlatLayout.stand_in` instead (on a copy of the state): the
                step's inputs and outputs without any device work, which compiles in a
                moment even where the step takes minutes to compile (MyoArm, the fly and
                the rat on a CPU).
        """
        jax = import_jax()
        assert self._layout is not None
        ctrl = jax.device_put(np.zeros((self.num_envs, self.model.nu), np.float32), self._jax_device)
        xfrc = jax.device_put(np.zeros((self.num_envs, self.model.nbody, 6), np.float32), self._jax_device)
        if stand_in:
            state = tuple(jax.numpy.array(x, copy=True) for x in self._state)
            return summary(time_calls(self._layout.stand_in(), (self._model, state, ctrl, xfrc), calls, carry=True))
        return summary(time_calls(self._step_fn, (self._model, self._state, ctrl, xfrc), calls))

    def describe(self) -> dict[str, Any]:
        """`Backend.describe`, with the number of arrays one step call passes and returns."""
        return {
            **super().describe(),
            "step_call_arrays": {"in": len(self._model) + len(self._state) + 2, "out": len(self._state) + 1},
        }

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
        self._apply_pending()
        qpos, qvel, act = self._state[:3]
        data = jax.vmap(lambda q, v, a: mjx.make_data(model).replace(qpos=q, qvel=v, act=a))(qpos, qvel, act)
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


def control_step(substeps: int, max_qvel: float, timestep: float) -> Callable:
    """One body's control step, ``(mx, d, ctrl [nu], xfrc [nbody, 6]) -> (d, unstable)``:
    the controls held for ``substeps`` ``mjx.step``s in a ``lax.scan``, one ``mjx.forward``
    of the final state, and the `unstable` flag (NaN/Inf, a joint faster than
    ``max_qvel``, or a step that did not advance time by ``substeps * timestep``)."""
    mjx, jax = _import_mjx(), import_jax()
    jnp = jax.numpy
    ctrl_dt, half_dt = substeps * timestep, 0.5 * timestep

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

    return one_body


def time_calls(function: Callable, args: tuple, calls: int, carry: bool = False) -> list[float]:
    """Host seconds a jitted ``function(*args)`` takes to return, for each of ``calls``
    calls (after one that compiles). Each result is waited for before the next call, so
    the device never holds a call back: what is timed is the call's own host work.

    Args:
        function, args: the call.
        calls: calls timed.
        carry: ``args[1]`` is replaced by ``result[0]`` after each call (for a function
            that donates its state, such as `FlatLayout.stand_in`).
    """
    jax = import_jax()
    seconds = []
    for i in range(calls + 1):
        start = time.perf_counter()
        result = function(*args)
        seconds.append(time.perf_counter() - start)
        jax.block_until_ready(result)
        if carry:
            args = (args[0], result[0], *args[2:])
    return seconds[1:]


def summary(seconds: Sequence[float]) -> dict[str, float]:
    """``{"min", "median", "max"}`` of ``seconds``."""
    return {"min": min(seconds), "median": statistics.median(seconds), "max": max(seconds)}
