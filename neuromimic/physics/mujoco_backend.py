"""Native MuJoCo on CPU, B bodies stepped in parallel by ``mujoco.rollout``'s thread pool.

Memory layout: ``mujoco.rollout`` writes every substep's full physics state
(``mjSTATE_FULLPHYSICS``: time, qpos, qvel, act, warm start, ...) INTO a float64 numpy
array owned by the backend, ``state`` [B, substeps, nstate], and the sensors of the final
state into ``sensordata`` [B, 1, nsensordata]. The torch tensors of `MujocoBackend.view`
are ``torch.from_numpy`` views of the last substep's slice of ``state`` and of
``sensordata``, so nothing is copied out of the simulator after a step.

Sensors at the final state: MuJoCo evaluates sensors inside ``mj_step`` before it
integrates, so the physics rollout's own sensor output lags one substep. A second rollout
of one step of an explicit-Euler copy of the model, started from the final state, returns
the sensors of exactly that state (one forward pass per body; its integrated state is
discarded). The physics rollout itself runs a copy of the model with sensors disabled.

The copies that remain (listed in `COPIES`, one per control step unless noted):

1. ``initial_state``: the last substep's state [B, nstate] is copied into a contiguous
   array before the next rollout; rollout reads its initial states from a contiguous
   [B, nstate] array and rejects strided views.
2. ``ctrl``: the controls [B, nu] (float32 from the policy) are cast to float64 and
   broadcast over the substeps into the control buffer [B, substeps, nu] in one
   ``copy_``; rollout takes one control vector per substep.
3. ``final state``: the last substep's state and control are copied into the contiguous
   inputs of the sensor rollout ([B, nstate] and [B, 1, nu]).
4. ``reset``: the masked rows' new states are gathered into one array, written into the
   state buffer, and their sensors evaluated by the same explicit-Euler pass as after a
   step (one rollout call for all reset rows); other rows are not touched.
"""

from __future__ import annotations

import copy
import logging
import os
import time

import mujoco
import numpy as np
import torch
from mujoco import rollout as mj_rollout

from neuromimic.bodies.base import Body
from neuromimic.physics import mujoco_warnings
from neuromimic.physics.base import Backend, PhysicsView, reset_to_rest_pose

log = logging.getLogger(__name__)

#: The copies `MujocoBackend` still makes; see the module docstring.
COPIES: tuple[str, ...] = (
    "initial_state: last substep state [B, nstate] float64 -> contiguous rollout input (per step)",
    (
        "ctrl: [B, nu] any float -> float64 control buffer [B, substeps, nu] "
        "(cast + broadcast, per step), with external_force [B, nbody, 6] beside it"
    ),
    (
        "final state: last substep state [B, nstate] and ctrl [B, 1, nu] -> contiguous inputs of "
        "the sensor rollout (per step)"
    ),
    (
        "reset: masked rows' new states gathered, written into the state buffer, and their "
        "sensors into sensordata (per reset)"
    ),
)

_FULLPHYSICS = mujoco.mjtState.mjSTATE_FULLPHYSICS
#: What each control vector holds: muscle controls, then external forces on the bodies.
CONTROL_SPEC = mujoco.mjtState.mjSTATE_CTRL.value | mujoco.mjtState.mjSTATE_XFRC_APPLIED.value


def state_offsets(model: mujoco.MjModel) -> dict[str, slice]:
    """Slices of ``time``, ``qpos``, ``qvel`` and ``act`` in an ``mjSTATE_FULLPHYSICS`` vector.

    MuJoCo lays out a state vector by increasing ``mjtState`` bit; the offset of one
    component is the size of the components with lower bits that the spec contains.

    Args:
        model: the compiled model.
    """
    offsets: dict[str, slice] = {}
    start = 0
    bit = 1
    while bit < mujoco.mjtState.mjSTATE_USER.value << 1:
        if _FULLPHYSICS.value & bit:
            size = mujoco.mj_stateSize(model, bit)
            name = mujoco.mjtState(bit).name.removeprefix("mjSTATE_").lower()
            offsets[name] = slice(start, start + size)
            start += size
        bit <<= 1
    return {name: offsets[name] for name in ("time", "qpos", "qvel", "act")}


class MujocoBackend(Backend):
    """B copies of a body in native MuJoCo (CPU, float64), stepped by a persistent thread pool.

    Args:
        body: the body to simulate; compiled with `neuromimic.physics.model.compile_model`.
        num_envs: B, the number of bodies.
        substeps: physics steps per control step (the control is held during them).
        nthread: threads of the rollout pool; default: this machine's cores shared among the
            training processes on it (``LOCAL_WORLD_SIZE``, set by DDP launchers), capped by B.
            ``1`` runs on the calling thread.
        max_qvel: joint speed (rad/s, or the model's length unit per s) above which a body
            is flagged `unstable`; default the body's `Body.max_qvel`.
        device: must be ``None`` or a CPU device (native MuJoCo runs on the CPU).

    Attributes:
        model: the compiled `mujoco.MjModel` (body plus sensors).
        num_envs: B.
        device: always ``torch.device("cpu")``.
        substeps: physics steps per control step.
        nthread: threads of the rollout pool.
        copies: the copies that remain (see the module docstring).
        state: [B, substeps, nstate] float64, every substep's ``mjSTATE_FULLPHYSICS``
            state, written in place by rollout.
        sensordata: [B, 1, nsensordata] float64, the sensors of the final state, written in
            place by the sensor rollout.
        control: [B, substeps, nu + 6 nbody] float64, what rollout reads each substep:
            muscle controls, then the external force and torque on each body.
        external_force: [B, nbody, 6] float64 torch view, force (N) then torque (N m) applied to each
            body at its centre of mass in the world frame during the next step (MuJoCo's
            ``xfrc_applied``); zero unless a perturbation sets it.
        initial_state: [B, nstate] float64, the states rollout starts from.
        model_version: counts the calls of `model_changed` (0: the model as compiled).
        unstable: [B] bool, the flags `PhysicsView.unstable` aliases.
    """

    name = "mujoco"
    copies = COPIES

    def __init__(
        self,
        body: Body,
        num_envs: int,
        substeps: int = 2,
        nthread: int | None = None,
        max_qvel: float | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        if device is not None and torch.device(device).type != "cpu":
            raise ValueError(f"the 'mujoco' backend runs on the CPU; got device={device!r}")
        mujoco_warnings.install()
        super().__init__(body, num_envs, substeps, max_qvel)
        self.device = torch.device("cpu")
        if nthread is None:
            processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
            nthread = (os.cpu_count() or 1) // max(1, processes)
        self.nthread = max(1, min(nthread, num_envs))
        self.offsets = state_offsets(self.model)

        model = self.model
        nstate = mujoco.mj_stateSize(model, _FULLPHYSICS)
        self.state = np.zeros((num_envs, substeps, nstate))
        self.sensordata = np.zeros((num_envs, 1, model.nsensordata))
        # Each control vector is [ctrl (nu) | xfrc_applied (nbody x 6)] (CONTROL_SPEC).
        self.control = np.zeros((num_envs, substeps, model.nu + 6 * model.nbody))
        self._external_force = np.zeros((num_envs, model.nbody, 6))
        self.external_force = torch.from_numpy(self._external_force)
        self.initial_state = np.zeros((num_envs, nstate))
        # rollout wants one model per body and one MjData per thread.
        self._datas = [mujoco.MjData(model) for _ in range(self.nthread)]
        # MuJoCo evaluates sensors before it integrates a step, so after the physics
        # substeps they describe the state one substep back. One step of an explicit-Euler
        # copy of the model from the final state evaluates them at that state (one forward
        # pass, against RK4's four per substep); the state it integrates is discarded.
        self._load_model()
        self._final_state = np.zeros((num_envs, nstate))
        self._final_control = np.zeros((num_envs, 1, self.control.shape[-1]))
        self._discarded_state = np.zeros((num_envs, 1, nstate))
        # The state a reset row starts from before its qpos, qvel and act are written.
        self._reset_state = np.zeros(nstate)
        mujoco.mj_getState(model, mujoco.MjData(model), self._reset_state, _FULLPHYSICS)
        self._pool = mj_rollout.Rollout(nthread=self.nthread if self.nthread > 1 else 0)
        self._ctrl_dt = substeps * model.opt.timestep

        self._state_t = torch.from_numpy(self.state)
        self._initial_t = torch.from_numpy(self.initial_state)
        self._control_t = torch.from_numpy(self.control)
        self.unstable = np.zeros(num_envs, dtype=bool)
        self._view = self._make_view()

        reset_to_rest_pose(self, torch.float64)
        log.debug("MujocoBackend: %d bodies, %d threads, %d substeps", num_envs, self.nthread, substeps)

    def _load_model(self) -> None:
        """Make the copies of `model` that the physics rollout and the sensor pass run."""
        # The physics substeps need no sensors: the sensor pass evaluates them once, at the
        # final state.
        physics_model = copy.copy(self.model)
        physics_model.opt.disableflags |= mujoco.mjtDisableBit.mjDSBL_SENSOR
        self._physics_models = [physics_model] * self.num_envs
        # Sensors do not depend on constraint forces: skip the solver in that pass.
        sensor_model = copy.copy(self.model)
        sensor_model.opt.integrator = mujoco.mjtIntegrator.mjINT_EULER
        sensor_model.opt.disableflags |= mujoco.mjtDisableBit.mjDSBL_CONSTRAINT
        self._sensor_models = [sensor_model] * self.num_envs

    def close(self) -> None:
        """Stop the rollout thread pool (the backend cannot step afterwards)."""
        self._pool.close()

    def snapshot(self) -> dict[str, torch.Tensor]:
        """A copy of the whole simulator state (every substep's full physics state, the
        sensors, controls, external forces and `unstable` flags): `restore` continues from
        it bitwise equal to an uninterrupted run."""
        return {
            "state": torch.from_numpy(self.state.copy()),
            "sensordata": torch.from_numpy(self.sensordata.copy()),
            "control": torch.from_numpy(self.control.copy()),
            "external_force": self.external_force.clone(),
            "unstable": torch.from_numpy(self.unstable.copy()),
        }

    def restore(self, snapshot: dict[str, torch.Tensor]) -> None:
        """Load a `snapshot` of a backend of the same body and size into this one's buffers
        (the views keep aliasing them).

        Raises:
            ValueError: if a buffer's shape differs (another body, B or substeps).
        """
        buffers = {
            "state": self.state,
            "sensordata": self.sensordata,
            "control": self.control,
            "external_force": self._external_force,
            "unstable": self.unstable,
        }
        for name, buffer in buffers.items():
            saved = snapshot[name]
            if tuple(saved.shape) != buffer.shape:
                raise ValueError(f"snapshot {name} has shape {tuple(saved.shape)}; this backend's is {buffer.shape}")
        for name, buffer in buffers.items():
            np.copyto(buffer, snapshot[name].cpu().numpy())

    def _make_view(self) -> PhysicsView:
        last = self._state_t[:, -1]
        sensors = torch.from_numpy(self.sensordata)[:, -1]
        layout, offsets = self.layout, self.offsets
        return PhysicsView(
            qpos=last[:, offsets["qpos"]],
            qvel=last[:, offsets["qvel"]],
            act=last[:, offsets["act"]],
            ctrl=self._control_t[:, -1, : self.model.nu],
            site_pos_w=sensors[:, layout.site_pos_w].unflatten(1, (layout.num_sites, 3)),
            actuator_length=sensors[:, layout.actuator_length],
            actuator_velocity=sensors[:, layout.actuator_velocity],
            actuator_force=sensors[:, layout.actuator_force],
            time=last[:, offsets["time"].start],
            unstable=torch.from_numpy(self.unstable),
        )

    @property
    def view(self) -> PhysicsView:
        """Torch views of the last substep's state and sensors (float64, CPU).

        The same tensors are returned after every call: they alias the backend's buffers,
        which rollout and `reset` overwrite in place. Clone what you want to keep.
        """
        return self._view

    def step(self, ctrl: torch.Tensor) -> None:
        """Advance every body by ``substeps`` physics steps with ``ctrl`` held, in one rollout.

        Args:
            ctrl: [B, nu] controls (muscle excitations in 0..1), any float dtype, CPU.
        """
        self._initial_t.copy_(self._state_t[:, -1])
        nu = self.model.nu
        self._control_t[:, :, :nu].copy_(ctrl[:, None, :])
        self.control[:, :, nu:] = self._external_force.reshape(self.num_envs, 1, -1)
        self._pool.rollout(
            self._physics_models,
            self._datas,
            self.initial_state,
            self.control,
            control_spec=CONTROL_SPEC,
            skip_checks=True,
            nstep=self.substeps,
            state=self.state,
        )
        np.copyto(self._final_state, self.state[:, -1])
        np.copyto(self._final_control, self.control[:, -1:])
        self._sensors_at(self._final_state, self._final_control, out=self.sensordata)
        self._update_unstable()

    def _update_unstable(self) -> None:
        """Flag the bodies whose step produced NaN/Inf, a runaway speed, or MuJoCo's reset.

        Plain numpy on the host buffers: a handful of tiny array ops, cheaper than torch's.
        """
        last, offsets = self.state[:, -1], self.offsets
        # A sum is non-finite iff a term is (or it overflows, which is unstable too). A
        # non-finite start state is reset by MuJoCo to qpos0 (finite again): check it here.
        with np.errstate(invalid="ignore", over="ignore"):
            total = last.sum(1) + self.sensordata[:, -1].sum(1) + self.initial_state.sum(1)
        unstable = ~np.isfinite(total)
        unstable |= np.abs(last[:, offsets["qvel"]]).max(1) > self.max_qvel
        # MuJoCo's automatic reset sets time to 0 and rollout then repeats the last state.
        elapsed = last[:, offsets["time"].start] - self.initial_state[:, offsets["time"].start]
        unstable |= np.abs(elapsed - self._ctrl_dt) > 0.5 * self.model.opt.timestep
        self.unstable[:] = unstable

    def reset(
        self,
        mask: torch.Tensor,
        qpos: torch.Tensor,
        qvel: torch.Tensor,
        act: torch.Tensor,
    ) -> None:
        """`Backend.reset`: reset rows get time 0, zero controls and warm start, sensors
        at the new state, and a cleared `unstable` flag. Reads its inputs on the host."""
        rows = torch.nonzero(mask.cpu()).flatten().numpy()
        if rows.size == 0:
            return
        start = np.repeat(self._reset_state[None], rows.size, axis=0)
        offsets = self.offsets
        start[:, offsets["qpos"]] = qpos.detach().cpu().numpy()[rows]
        start[:, offsets["qvel"]] = qvel.detach().cpu().numpy()[rows]
        start[:, offsets["act"]] = act.detach().cpu().numpy()[rows]
        self.state[rows, -1] = start
        self.control[rows] = 0.0
        sensors = np.empty((rows.size, 1, self.model.nsensordata))
        self._sensors_at(start, self.control[rows, -1:], out=sensors)
        self.sensordata[rows] = sensors
        self.unstable[rows] = False

    def _sensors_at(self, state: np.ndarray, control: np.ndarray, out: np.ndarray) -> None:
        """Write into ``out`` [n, 1, nsensordata] the sensors at ``state`` [n, nstate] (the
        explicit-Euler pass; ``control`` [n, 1, nu + 6 nbody] is held during it)."""
        n = state.shape[0]
        self._pool.rollout(
            self._sensor_models[:n],
            self._datas,
            state,
            control,
            control_spec=CONTROL_SPEC,
            skip_checks=True,
            nstep=1,
            state=self._discarded_state[:n],
            sensordata=out,
        )

    def bare_seconds(self, ctrl: torch.Tensor, per_control_step: bool = False) -> float:
        """`Backend.bare_seconds`: ``mujoco.rollout`` of the body's own model with this
        backend's thread count, from full physics states holding the current positions,
        velocities and activations; one call over all steps unless ``per_control_step``."""
        model = self.body.load_model()
        start_state = np.repeat(self._reset_state[None], self.num_envs, axis=0)
        view = self.view
        for name in ("qpos", "qvel", "act"):
            start_state[:, self.offsets[name]] = getattr(view, name).numpy()
        datas = [mujoco.MjData(model) for _ in range(self.nthread)]
        steps = ctrl.shape[0]
        control = np.repeat(ctrl.cpu().numpy().transpose(1, 0, 2), self.substeps, axis=1).astype(np.float64)
        models = [model] * self.num_envs
        with mj_rollout.Rollout(nthread=self.nthread if self.nthread > 1 else 0) as runner:
            runner.rollout(models, datas, start_state, control[:, :2])  # warm-up
            if not per_control_step:
                start = time.perf_counter()
                runner.rollout(models, datas, start_state, control)
                return time.perf_counter() - start
            state = start_state.copy()
            states = np.zeros((self.num_envs, self.substeps, state.shape[1]))
            start = time.perf_counter()
            for i in range(steps):
                chunk = np.ascontiguousarray(control[:, i * self.substeps : (i + 1) * self.substeps])
                runner.rollout(models, datas, state, chunk, nstep=self.substeps, state=states)
                state[:] = states[:, -1]
            return time.perf_counter() - start

    def describe(self) -> dict:
        """`Backend.describe`, with the rollout's thread count."""
        return {**super().describe(), "threads": self.nthread}
