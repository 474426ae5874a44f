"""The `Backend` base class every physics implementation derives from.

A backend owns the simulator state of B bodies. Torch code never receives a copy of it:
`Backend.view` hands out tensors that alias the simulator's buffers (see each backend for
the copies that remain and why). Derived quantities (site positions, muscle length,
velocity and force) are MuJoCo sensors evaluated at the state the view reports (after the
last physics substep; each backend runs one extra forward pass for them, since MuJoCo's
own step evaluates sensors before it integrates).
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import numpy as np
import torch

from neuromimic.bodies.base import Body
from neuromimic.bodies.compat import require_backend_compatibility
from neuromimic.physics.model import compile_model, sensor_layout
from neuromimic.physics_view import PhysicsView


class Backend(abc.ABC):
    """Simulates B copies of one MuJoCo model; all tensors live on `device`.

    The constructor does what every backend needs first: checks the sizes, compiles the
    body with our sensors (`compile_model`), refuses a body the backend cannot simulate
    (`require_backend_compatibility`, naming each feature) and finds the sensors
    (`sensor_layout`). Subclasses then allocate their simulator and set `device`,
    `external_force` and the views.

    Args:
        body: the body to simulate.
        num_envs: B, the number of bodies.
        substeps: physics steps per control step (the control is held during them).
        max_qvel: joint speed (rad/s, or the model's length unit per s) above which a body
            is flagged `unstable`; default the body's `Body.max_qvel`.

    Attributes:
        name: the backend's name in `neuromimic.physics.make_backend` and in the
            compatibility tables (`neuromimic.bodies.compat.BACKENDS`).
        copies: the copies of simulator state the backend still makes (see its module).
        body, model, num_envs, substeps, max_qvel: as given; ``model`` is the compiled
            `mujoco.MjModel` (body plus sensors).
        layout: where each derived quantity lives in ``sensordata`` (`SensorLayout`).
        device: the torch device of every tensor the backend takes and gives.
        external_force: [B, nbody, 6] tensor on `device`: force (N) then torque (N m) on
            each body's centre of mass, world frame, applied during the next step
            (MuJoCo's ``xfrc_applied``); zero unless a perturbation writes it.
        model_version: counts the calls of `model_changed` (0: the model as compiled).
    """

    name: ClassVar[str]
    copies: ClassVar[tuple[str, ...]] = ()
    device: torch.device
    external_force: torch.Tensor

    def __init__(self, body: Body, num_envs: int, substeps: int, max_qvel: float | None = None) -> None:
        if num_envs < 1 or substeps < 1:
            raise ValueError(f"num_envs and substeps must be >= 1; got {num_envs}, {substeps}")
        self.body = body
        self.model = compile_model(body)
        require_backend_compatibility(self.model, self.name, body_key=body.key)
        self.num_envs = num_envs
        self.substeps = substeps
        self.max_qvel = body.max_qvel if max_qvel is None else max_qvel
        self.layout = sensor_layout(self.model, body)
        self.model_version = 0

    @property
    @abc.abstractmethod
    def view(self) -> PhysicsView:
        """Tensors aliasing the current simulator state (refreshed after every call)."""

    @abc.abstractmethod
    def reset(
        self,
        mask: torch.Tensor,
        qpos: torch.Tensor,
        qvel: torch.Tensor,
        act: torch.Tensor,
    ) -> None:
        """Set the state of the rows where ``mask`` [B] is True; other rows stay bitwise equal.

        Reset rows get time 0, zero controls and warm start, sensors at the new state and a
        cleared `unstable` flag; `view` shows them when the call returns.

        Args:
            mask: [B] bool.
            qpos: [B, nq] joint positions (only masked rows are read).
            qvel: [B, nv] joint velocities.
            act: [B, na] muscle activations.
        """

    def schedule_reset(
        self,
        mask: torch.Tensor,
        qpos: torch.Tensor,
        qvel: torch.Tensor,
        act: torch.Tensor,
    ) -> None:
        """`reset` these rows, at the latest when the next `step` starts.

        For callers that do not read `view` before the next step (the env, when its table
        of reset outputs is current). A backend may fold the reset into the step, so that
        a control step with or without resets is one call and no host branch decides
        whether to reset. By default it resets at once.
        """
        self.reset(mask, qpos, qvel, act)

    @abc.abstractmethod
    def step(self, ctrl: torch.Tensor) -> None:
        """Advance every body by one control step (``substeps`` physics steps), holding ``ctrl``.

        Args:
            ctrl: [B, nu] controls, float, on `device`.
        """

    def model_changed(self) -> None:
        """Call after changing `model` in place (muscle strength, masses...): the simulator
        takes the new values from its next step on, and `model_version` counts the change."""
        self._load_model()
        self.model_version += 1

    @abc.abstractmethod
    def _load_model(self) -> None:
        """Give the simulator the current values of `model` (after an in-place edit)."""

    def close(self) -> None:
        """Release threads or buffers; the backend cannot step afterwards."""

    @abc.abstractmethod
    def snapshot(self) -> dict[str, torch.Tensor]:
        """A host copy of the whole simulator state (everything `restore` needs for a
        continuation bitwise equal to an uninterrupted run), as named tensors."""

    @abc.abstractmethod
    def restore(self, snapshot: dict[str, torch.Tensor]) -> None:
        """Load a `snapshot` of a backend of the same kind, body and size."""

    @abc.abstractmethod
    def bare_seconds(self, ctrl: torch.Tensor, per_control_step: bool = False) -> float:
        """Wall-clock seconds of the bare simulator over a control sequence, compile excluded.

        The bare simulator runs the body's own model (without the sensors the backend adds),
        from the backend's current positions, velocities and activations, each control held
        for ``substeps`` physics steps, with the backend's threads or device: what a
        pipeline with nothing around the physics would do. The backend's state is not
        changed.

        Args:
            ctrl: [steps, B, nu] controls on `device`.
            per_control_step: one simulator call per control step, each starting where the
                last one ended (the most any closed-loop env can do); otherwise the fastest
                open-loop form the simulator has (one call over all steps where it can).
        """

    def describe(self) -> dict[str, Any]:
        """What a benchmark should record about this backend (JSON-serialisable)."""
        return {"backend": self.name, "device": str(self.device), "substeps": self.substeps}

    def host_seconds_per_call(self, calls: int = 200) -> dict[str, float] | None:
        """Host seconds one `step`'s simulator call takes to return to Python, where that
        call is dispatched to a device and returns before the physics is done.

        This is what the call costs the host beyond the physics (argument handling,
        dispatch); each call is waited for before the next, so the device never holds it
        back. ``{"min": ..., "median": ..., "max": ...}`` over ``calls`` calls (after one
        that compiles), or None where the step computes the physics in the call itself
        (the native backend), so that there is no dispatch to time.
        """
        return None


def reset_to_rest_pose(backend: Backend, dtype: torch.dtype) -> None:
    """Put every body of ``backend`` in its body's rest pose, still, with muscles off.

    Args:
        backend: a backend whose constructor has set `Backend.body` and `Backend.model`.
        dtype: the float dtype the backend's views use.
    """
    model, num_envs = backend.model, backend.num_envs
    rest = backend.body.rest_qpos(model)
    backend.reset(
        torch.ones(num_envs, dtype=torch.bool, device=backend.device),
        torch.as_tensor(np.asarray(rest), dtype=dtype, device=backend.device).expand(num_envs, -1),
        torch.zeros(num_envs, model.nv, dtype=dtype, device=backend.device),
        torch.zeros(num_envs, model.na, dtype=dtype, device=backend.device),
    )
