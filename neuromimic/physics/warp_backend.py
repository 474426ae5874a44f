"""MuJoCo Warp: B bodies as the worlds of one ``mujoco_warp.Data``, seen by torch without copies.

Memory: every tensor of `WarpBackend.view` is made once, by ``wp.to_torch``, from the Warp
arrays of the simulator (qpos, qvel, act, ctrl, sensordata, time) and aliases them for the
backend's whole life: Warp writes the state in place, so the same tensors are current
after every call. The controls and `WarpBackend.external_force` are two Warp arrays of
their own, seen from torch the same way, that the graph copies into the simulator's
``ctrl`` and ``xfrc_applied`` after the scheduled resets (which clear those of a reset
world), so a reset does not drop a step's controls or applied force.

One control step is one captured graph (a CUDA graph on a GPU, Warp's replayed
capture on the CPU), built once and launched per step:

1. apply the resets scheduled by `WarpBackend.schedule_reset` (``reset_data`` on the
   masked worlds, then their qpos, qvel and act copied in from fixed buffers), and clear
   the schedule: a world that is not reset is not touched, and no host branch decides
   whether to reset;
2. copy the controls and applied forces in, and clear the per-world overflow flags;
3. ``substeps`` calls of ``mujoco_warp.step``;
4. one ``mujoco_warp.forward``, so positions, forces and sensors describe the final state
   (``mj_step`` evaluates them before it integrates), as on the other backends;
5. the `unstable` flags: NaN or Inf in the state or sensors, a joint faster than
   ``max_qvel``, or a world whose contacts or constraints overflowed the buffers
   (``nconmax``/``njmax``), which would otherwise drop contacts silently.

`WarpBackend.reset` launches a second graph: the same first step, then a forward pass, so
the reset worlds' sensors are current when it returns. The graphs are captured on
torch's current CUDA stream (Warp is handed that stream), so torch work before and after
a launch is ordered with it without a synchronisation. `model_changed` copies the edited
model's values into the Warp model's arrays and captures the graphs again.

Precision: float32 (Warp's). After one control step from the same state, qpos and act
agree with native MuJoCo (float64) within the tolerance the MJX backend is held to.

The copies that remain (listed in `COPIES`):

1. ``ctrl``: the controls [B, nu] are written into the backend's control array (cast to
   float32 if needed), which the graph copies into the simulator's, once per control
   step; the applied forces [B, nbody, 6] are copied the same way inside the graph.
2. ``reset``: qpos, qvel and act of the scheduled rows are written into fixed buffers
   (cast to float32 if needed), from which the graph copies the masked rows.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from typing import Any

import mujoco
import numpy as np
import torch

from neuromimic.bodies.base import Body
from neuromimic.physics.base import Backend, PhysicsView, reset_to_rest_pose

log = logging.getLogger(__name__)

#: The copies `WarpBackend` still makes; see the module docstring.
COPIES: tuple[str, ...] = (
    (
        "ctrl: [B, nu] written into the backend's control array (cast to float32 if needed), copied into "
        "the simulator's inside the graph with external_force [B, nbody, 6] (per step)"
    ),
    "reset: qpos, qvel, act written into fixed buffers the graph copies masked rows from (per reset)",
)

#: Seconds of simulated time, per control regime, over which `constraint_capacity` measures
#: the largest number of contacts and constraint rows of one body in native MuJoCo.
_SIZING_SECONDS = 0.5


def _import_warp() -> tuple[Any, Any]:
    try:
        import warp as wp

        wp.config.log_level = wp.LOG_WARNING  # no start-up banner on stdout
        wp.config.quiet = True
        import mujoco_warp as mjw
    except ImportError as error:
        raise ImportError(
            "the 'warp' physics backend needs mujoco-warp and warp-lang; install the MJX extra: "
            "pip install 'neuromimic[mjx]'"
        ) from error
    wp.init()
    return wp, mjw


def _warp_device(device: torch.device | str | None) -> torch.device:
    """The torch device for ``device`` (default: the first CUDA GPU if there is one)."""
    if device is None:
        return torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda":
        return torch.device("cuda", device.index or 0)
    if device.type != "cpu":
        raise ValueError(f"the 'warp' backend runs on a CUDA GPU or the CPU; got device={str(device)!r}")
    return device


def constraint_capacity(model: mujoco.MjModel, rest_qpos: np.ndarray, seed: int = 0) -> tuple[int, int]:
    """The most contacts and constraint rows one body has, measured in native MuJoCo.

    Runs the body from ``rest_qpos`` for `_SIZING_SECONDS` with its controls all off, all
    on, and random (a new value every 10 ms), and returns the largest ``ncon`` and
    ``nefc`` seen. `WarpBackend` sizes its buffers from them with a margin.

    Args:
        model: the compiled model.
        rest_qpos: [nq] the pose each run starts from.
        seed: seed of the random controls.

    Returns:
        ``(max_contacts, max_constraint_rows)`` of one body.
    """
    rng = np.random.default_rng(seed)
    data = mujoco.MjData(model)
    low, high = model.actuator_ctrlrange[:, 0], model.actuator_ctrlrange[:, 1]
    hold = max(1, round(0.01 / model.opt.timestep))
    steps = max(1, round(_SIZING_SECONDS / model.opt.timestep))
    most_contacts = most_rows = 0
    for control in (lambda: low, lambda: high, lambda: rng.uniform(low, high)):
        mujoco.mj_resetData(model, data)
        data.qpos[:] = rest_qpos
        mujoco.mj_forward(model, data)
        for step in range(steps):
            if step % hold == 0:
                data.ctrl[:] = control()
            mujoco.mj_step(model, data)
            most_contacts, most_rows = max(most_contacts, data.ncon), max(most_rows, data.nefc)
    return most_contacts, most_rows


def _warp_kernels(wp: Any) -> dict[str, Any]:
    """The backend's own Warp kernels (defined once, on first use)."""

    @wp.kernel(enable_backward=False)
    def copy_masked_rows(mask: wp.array(dtype=bool), source: wp.array2d(dtype=float), target: wp.array2d(dtype=float)):
        world, column = wp.tid()
        if mask[world]:
            target[world, column] = source[world, column]

    @wp.kernel(enable_backward=False)
    def clear_mask(mask: wp.array(dtype=bool)):
        mask[wp.tid()] = False

    @wp.kernel(enable_backward=False)
    def flag_unstable(
        qpos: wp.array2d(dtype=float),
        qvel: wp.array2d(dtype=float),
        act: wp.array2d(dtype=float),
        sensordata: wp.array2d(dtype=float),
        overflow: wp.array(dtype=int),
        capacity_bits: int,
        max_qvel: float,
        unstable: wp.array(dtype=bool),
    ):
        world = wp.tid()
        bad = (overflow[world] & capacity_bits) != 0
        for i in range(qpos.shape[1]):
            bad = bad or not wp.isfinite(qpos[world, i])
        for i in range(qvel.shape[1]):
            speed = qvel[world, i]
            bad = bad or not wp.isfinite(speed) or wp.abs(speed) > max_qvel
        for i in range(act.shape[1]):
            bad = bad or not wp.isfinite(act[world, i])
        for i in range(sensordata.shape[1]):
            bad = bad or not wp.isfinite(sensordata[world, i])
        unstable[world] = bad

    return {"copy_masked_rows": copy_masked_rows, "clear_mask": clear_mask, "flag_unstable": flag_unstable}


class WarpBackend(Backend):
    """B copies of a body in MuJoCo Warp; torch views alias Warp's arrays for good.

    Args:
        body: the body to simulate; compiled with `neuromimic.physics.model.compile_model`.
        num_envs: B, the number of bodies (Warp worlds).
        substeps: physics steps per control step (the control is held during them).
        device: ``"cuda[:i]"`` or ``"cpu"`` (Warp's CPU kernels: for tests, slow); default
            the first CUDA GPU if there is one, else the CPU.
        max_qvel: joint speed (rad/s, or the model's length unit per s) above which a body
            is flagged `unstable`; default the body's `Body.max_qvel`.
        nconmax: contacts allocated per body (all bodies share the pool); default twice the
            most one body had in `constraint_capacity`, and at least MuJoCo Warp's own
            default.
        njmax: constraint rows allocated per body; default as ``nconmax``, from the most
            constraint rows.
        graph: capture each control step as one graph (default); ``False`` launches the
            kernels one by one (for debugging).

    Attributes:
        wp_model: the ``mujoco_warp.Model``.
        wp_data: the ``mujoco_warp.Data`` of the B worlds.
        overflow: [B] int32 torch view of Warp's per-world overflow bits of the last
            control step (``mujoco_warp.OverflowType``); a capacity overflow also sets the
            world's `unstable` flag.
        nconmax, njmax: the buffer sizes in use.
    """

    name = "warp"
    copies = COPIES

    #: Overflow bits that mean a buffer was too small (results are wrong), as opposed to a
    #: solver that stopped at its iteration limit.
    CAPACITY_OVERFLOWS = ("NEFC", "NJMAX_NNZ", "BROADPHASE", "NARROWPHASE", "CCD", "HFIELD", "NVMAX", "EPA_HORIZON")

    def __init__(
        self,
        body: Body,
        num_envs: int,
        substeps: int = 2,
        device: torch.device | str | None = None,
        max_qvel: float | None = None,
        nconmax: int | None = None,
        njmax: int | None = None,
        graph: bool = True,
    ) -> None:
        wp, mjw = _import_warp()
        super().__init__(body, num_envs, substeps, max_qvel)
        self.device = _warp_device(device)
        self._wp, self._mjw = wp, mjw
        self._wp_device = wp.device_from_torch(self.device)
        self._use_graph = graph
        self._kernels = _warp_kernels(wp)
        self._capacity_bits = int(
            np.bitwise_or.reduce([int(getattr(mjw.OverflowType, bit)) for bit in self.CAPACITY_OVERFLOWS])
        )
        self.nconmax, self.njmax = self._buffer_sizes(nconmax, njmax)
        with wp.ScopedDevice(self._wp_device):
            self.wp_model = self._put_model()
            self.wp_data = mjw.make_data(self.model, nworld=num_envs, nconmax=self.nconmax, njmax=self.njmax)
            d = self.wp_data
            nq, nv, na = self.model.nq, self.model.nv, self.model.na
            self._pending = wp.zeros(num_envs, dtype=bool)
            self._pending_qpos = wp.zeros((num_envs, nq), dtype=float)
            self._pending_qvel = wp.zeros((num_envs, nv), dtype=float)
            self._pending_act = wp.zeros((num_envs, max(na, 1)), dtype=float)
            self._unstable = wp.zeros(num_envs, dtype=bool)
            # What the next step holds: copied into the data after the scheduled resets
            # (which clear a reset world's controls and applied forces).
            self._ctrl_in = wp.zeros_like(d.ctrl)
            self._xfrc_in = wp.zeros_like(d.xfrc_applied)
        to_torch = wp.to_torch
        self._pending_t = to_torch(self._pending)
        self._pending_qpos_t = to_torch(self._pending_qpos)
        self._pending_qvel_t = to_torch(self._pending_qvel)
        self._pending_act_t = to_torch(self._pending_act)[:, :na]
        self._ctrl_t = to_torch(self._ctrl_in)
        self.dtype = self._ctrl_t.dtype
        self.external_force = to_torch(self._xfrc_in)
        self.overflow = to_torch(d.overflow)
        sensors, layout = to_torch(d.sensordata), self.layout
        self._view = PhysicsView(
            qpos=to_torch(d.qpos),
            qvel=to_torch(d.qvel),
            act=to_torch(d.act),
            ctrl=to_torch(d.ctrl),
            site_pos_w=sensors[:, layout.site_pos_w].unflatten(1, (layout.num_sites, 3)),
            actuator_length=sensors[:, layout.actuator_length],
            actuator_velocity=sensors[:, layout.actuator_velocity],
            actuator_force=sensors[:, layout.actuator_force],
            time=to_torch(d.time),
            unstable=to_torch(self._unstable),
        )
        self._graphs: dict[str, Any] = {}
        self._scheduled = False  # resets scheduled since the last graph launch
        reset_to_rest_pose(self, self.dtype)
        log.debug(
            "WarpBackend: %d worlds, %d substeps on %s, nconmax %d, njmax %d",
            num_envs,
            substeps,
            self._wp_device,
            self.nconmax,
            self.njmax,
        )

    def _buffer_sizes(self, nconmax: int | None, njmax: int | None) -> tuple[int, int]:
        if nconmax is not None and njmax is not None:
            return nconmax, njmax
        from mujoco_warp._src.io import _default_nconmax, _default_njmax

        contacts, rows = constraint_capacity(self.model, np.asarray(self.body.rest_qpos(self.model)))
        return (
            nconmax if nconmax is not None else max(2 * contacts, _default_nconmax(self.model)),
            njmax if njmax is not None else max(2 * rows, _default_njmax(self.model)),
        )

    def _put_model(self, model: mujoco.MjModel | None = None) -> Any:
        """``mujoco_warp.put_model`` of `model` (or ``model``), with MuJoCo Warp's printed
        overflow warnings off: they go to stdout from inside kernels, and the `unstable`
        flags and `overflow` report each world's overflow instead."""
        wp_model = self._mjw.put_model(self.model if model is None else model)
        wp_model.opt.warn_overflow = 0
        return wp_model

    # ----------------------------------------------------------------- the graphs
    def _apply_pending_resets(self) -> None:
        wp, d, kernels = self._wp, self.wp_data, self._kernels
        self._mjw.reset_data(self.wp_model, d, reset=self._pending)
        for source, target in (
            (self._pending_qpos, d.qpos),
            (self._pending_qvel, d.qvel),
            (self._pending_act, d.act),
        ):
            if target.shape[1]:
                wp.launch(kernels["copy_masked_rows"], dim=target.shape, inputs=[self._pending, source, target])
        wp.launch(kernels["clear_mask"], dim=self.num_envs, inputs=[self._pending])
        wp.launch(kernels["clear_mask"], dim=self.num_envs, inputs=[self._unstable])

    def _flag_unstable(self) -> None:
        d = self.wp_data
        self._wp.launch(
            self._kernels["flag_unstable"],
            dim=self.num_envs,
            inputs=[d.qpos, d.qvel, d.act, d.sensordata, d.overflow, self._capacity_bits, float(self.max_qvel)],
            outputs=[self._unstable],
        )

    def _control_step(self) -> None:
        self._apply_pending_resets()
        self._wp.copy(self.wp_data.ctrl, self._ctrl_in)
        self._wp.copy(self.wp_data.xfrc_applied, self._xfrc_in)
        self.wp_data.overflow.zero_()
        for _ in range(self.substeps):
            self._mjw.step(self.wp_model, self.wp_data)
        self._mjw.forward(self.wp_model, self.wp_data)
        self._flag_unstable()

    def _reset_now(self) -> None:
        self._apply_pending_resets()
        self._mjw.forward(self.wp_model, self.wp_data)

    def _launch(self, name: str) -> None:
        """Run the ``name`` sequence (``"step"`` or ``"reset"``) on torch's current stream,
        as a captured graph (captured on first use) or launch by launch."""
        wp = self._wp
        self._scheduled = False  # both graphs apply the scheduled resets first
        work = {"step": self._control_step, "reset": self._reset_now}[name]
        stream = wp.stream_from_torch(torch.cuda.current_stream(self.device)) if self.device.type == "cuda" else None
        with (
            wp.ScopedDevice(self._wp_device),
            wp.ScopedStream(stream) if stream is not None else contextlib.nullcontext(),
        ):
            if not self._use_graph:
                work()
                return
            if name not in self._graphs:
                # Kernels compile and load while they are captured (CUDA 12.3 drivers and
                # later, and Warp's CPU capture), so the first call runs once, as a graph.
                with wp.ScopedCapture(force_module_load=False) as capture:
                    work()
                self._graphs[name] = capture.graph
            wp.capture_launch(self._graphs[name])

    # ------------------------------------------------------------------------ API
    @property
    def view(self) -> PhysicsView:
        """Torch tensors aliasing Warp's arrays (float32, on `device`); the same tensors
        after every call, overwritten in place. Clone what you want to keep.

        Reading it while resets are scheduled applies them first (the reset graph), so the
        view never shows a body that was asked to restart in its old state."""
        if self._scheduled:
            self._launch("reset")
        return self._view

    def step(self, ctrl: torch.Tensor) -> None:
        """Advance every body by ``substeps`` physics steps with ``ctrl`` held (one graph).

        Args:
            ctrl: [B, nu] controls (muscle excitations in 0..1), float, on `device`.
        """
        self._ctrl_t.copy_(ctrl)
        self._launch("step")

    def schedule_reset(self, mask: torch.Tensor, qpos: torch.Tensor, qvel: torch.Tensor, act: torch.Tensor) -> None:
        """`Backend.schedule_reset`: the rows are reset inside the next step's graph; until
        then `view` still shows their old state."""
        self._pending_t.logical_or_(mask.to(self.device))
        keep = mask.to(self.device)[:, None]
        for buffer, value in ((self._pending_qpos_t, qpos), (self._pending_qvel_t, qvel), (self._pending_act_t, act)):
            buffer.copy_(torch.where(keep, value.to(self.device, self.dtype), buffer))
        self._scheduled = True

    def reset(self, mask: torch.Tensor, qpos: torch.Tensor, qvel: torch.Tensor, act: torch.Tensor) -> None:
        """`Backend.reset` (one graph): reset rows get time 0, zero controls, warm start and
        external force (MuJoCo Warp's ``reset_data``), sensors at the new state, a cleared
        `unstable` flag; rows that are not reset keep their state bitwise."""
        self.schedule_reset(mask, qpos, qvel, act)
        self._launch("reset")

    def _load_model(self) -> None:
        """Copy the edited `model`'s values into the Warp model's arrays, and capture the
        graphs again (values a kernel was specialised on are read at capture)."""
        wp = self._wp
        with wp.ScopedDevice(self._wp_device):
            fresh = self._put_model()
        _copy_arrays(wp, fresh, self.wp_model)
        self.wp_model.opt = fresh.opt
        self._graphs.clear()

    def snapshot(self) -> dict[str, torch.Tensor]:
        """A host copy of every array of the simulator's data (contacts and constraint
        rows included), the scheduled resets and the `unstable` flags."""
        arrays = dict(_arrays(self._wp, self.wp_data, "data"))
        arrays.update(self._own_arrays())
        self._synchronize()
        return {name: torch.from_numpy(array.numpy().copy()) for name, array in arrays.items()}

    def restore(self, snapshot: dict[str, torch.Tensor]) -> None:
        """Load a `snapshot` of a backend of the same body, size and buffer sizes.

        Raises:
            ValueError: if an array is missing or its shape differs.
        """
        arrays = dict(_arrays(self._wp, self.wp_data, "data"))
        arrays.update(self._own_arrays())
        for name, array in arrays.items():
            saved = snapshot.get(name)
            if saved is None or tuple(saved.shape) != tuple(array.numpy().shape):
                raise ValueError(
                    f"snapshot array {name} has shape {None if saved is None else tuple(saved.shape)}; "
                    f"this backend's is {tuple(array.numpy().shape)} (another body, B, nconmax or njmax)"
                )
        for name, array in arrays.items():
            array.assign(snapshot[name].numpy())
        self._scheduled = bool(snapshot["pending"].any())
        self._synchronize()

    def _own_arrays(self) -> dict[str, Any]:
        return {
            "pending": self._pending,
            "pending_qpos": self._pending_qpos,
            "pending_qvel": self._pending_qvel,
            "pending_act": self._pending_act,
            "unstable": self._unstable,
            "ctrl_in": self._ctrl_in,
            "external_force": self._xfrc_in,
        }

    def _synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def bare_seconds(self, ctrl: torch.Tensor, per_control_step: bool = False) -> float:
        """`Backend.bare_seconds`: ``substeps`` calls of ``mujoco_warp.step`` on the body's
        own model, captured as one graph and launched once per control step after writing
        the controls (Warp has no loop over control steps inside a graph, so both forms are
        the same), from the current positions, velocities and activations."""
        wp, mjw = self._wp, self._mjw
        model = self.body.load_model()
        steps = ctrl.shape[0]
        with wp.ScopedDevice(self._wp_device):
            m = self._put_model(model)
            d = mjw.make_data(model, nworld=self.num_envs, nconmax=self.nconmax, njmax=self.njmax)
            for name in ("qpos", "qvel", "act"):
                if getattr(self.view, name).shape[1]:
                    wp.to_torch(getattr(d, name)).copy_(getattr(self.view, name))
            controls = wp.to_torch(d.ctrl)

            def substeps() -> None:
                for _ in range(self.substeps):
                    mjw.step(m, d)

            substeps()  # compile
            with wp.ScopedCapture() as capture:
                substeps()
            self._synchronize()
            start = time.perf_counter()
            for i in range(steps):
                controls.copy_(ctrl[i])
                wp.capture_launch(capture.graph)
            wp.synchronize_device(self._wp_device)
            return time.perf_counter() - start

    def host_seconds_per_call(self, calls: int = 200) -> dict[str, float]:
        """`Backend.host_seconds_per_call`: the step's graph launch (controls written,
        graph launched), each waited for before the next. On a GPU the launch returns once
        the graph is queued; on the CPU Warp replays the graph in the call, so there the
        time is the physics."""
        ctrl = self._ctrl_t.clone()
        seconds = []
        for _ in range(calls + 1):
            self._synchronize()
            start = time.perf_counter()
            self.step(ctrl)
            seconds.append(time.perf_counter() - start)
        self._synchronize()
        seconds = sorted(seconds[1:])
        return {"min": seconds[0], "median": seconds[len(seconds) // 2], "max": seconds[-1]}

    def describe(self) -> dict:
        """`Backend.describe`, with the Warp buffer sizes and whether graphs are used."""
        return {**super().describe(), "nconmax": self.nconmax, "njmax": self.njmax, "graph": self._use_graph}


def _arrays(wp: Any, struct: Any, prefix: str) -> list[tuple[str, Any]]:
    """Every Warp array in a MuJoCo Warp dataclass (nested ones included), by dotted name."""
    found = []
    for field in dataclasses.fields(struct):
        value = getattr(struct, field.name)
        name = f"{prefix}.{field.name}"
        if isinstance(value, wp.array):
            found.append((name, value))
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            found.extend(_arrays(wp, value, name))
    return found


def _copy_arrays(wp: Any, source: Any, target: Any) -> None:
    """Copy every Warp array of ``source`` into the same-named, same-shaped one of ``target``."""
    targets = dict(_arrays(wp, target, ""))
    for name, array in _arrays(wp, source, ""):
        destination = targets.get(name)
        if destination is not None and destination.shape == array.shape and destination.dtype == array.dtype:
            wp.copy(destination, array)
