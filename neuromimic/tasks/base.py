"""What every term reads, and how terms are declared.

A *term* is one small pure torch function of the state of B bodies at one control step
(`StepState`), declared once with its name, units, size and what it needs from the body
(`BodyInfo`); observations, rewards and terminations are lists of terms, and the env's
observation layout, its tensors and the config's keys all come from those declarations
(`neuromimic.envs.terms.TermSet` binds them).

Needs (`Term.needs`) name body features: ``"muscles"`` (every actuator is a MuJoCo
muscle), ``"servos"`` (no actuator is a muscle), ``"free_root"`` (the first joint is a
free joint), ``"fixed_root"`` (it is not), ``"afferents"`` (the env runs the spindle and
tendon organ models).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field

import mujoco
import numpy as np
import torch

from neuromimic.physics_view import PhysicsView
from neuromimic.tasks import rotations

#: The body features a term may need (see the module docstring).
NEEDS = ("muscles", "servos", "free_root", "fixed_root", "afferents")


@dataclass(frozen=True)
class ReferenceFrame:
    """The reference of each of B bodies at one or more instants.

    Attributes:
        qpos: reference joint positions [B, ..., nq] in rad (a free root: m and quaternion).
        qvel: reference joint velocities [B, ..., nv] in rad/s.
        site_pos_w: reference world positions of the tracked sites [B, ..., S, 3] in m.
    """

    qpos: torch.Tensor
    qvel: torch.Tensor
    site_pos_w: torch.Tensor


@dataclass(frozen=True)
class BodyInfo:
    """What terms need to know about the simulated body, as tensors on the env's device.

    Attributes:
        key: the body's registry key.
        nq, nv, nu, na: sizes of qpos, qvel, the actuators and their activation states.
        num_sites: S, the tracked sites.
        muscles: every actuator is a muscle.
        free_root: the first joint is a free joint (``qpos[:7]``: position in m and a
            quaternion; ``qvel[:6]``: linear velocity in the world frame, angular velocity
            in the body frame, MuJoCo's convention).
        afferents: the env runs the spindle and tendon organ models.
        length_unit_m: metres per length unit of the model (the fly is modelled in cm).
        forward: the root body's forward axis [3] in its own frame (heading frames).
        max_force: peak isometric force of each muscle [nu] in N, or None.
        length_range: [nu, 2] muscle-tendon length range (m) of each actuator.
        ctrl_range: [nu, 2] control range of each actuator.
    """

    key: str
    nq: int
    nv: int
    nu: int
    na: int
    num_sites: int
    muscles: bool
    free_root: bool
    afferents: bool
    length_unit_m: float
    forward: torch.Tensor
    max_force: torch.Tensor | None
    length_range: torch.Tensor
    ctrl_range: torch.Tensor

    @classmethod
    def of(
        cls,
        model: mujoco.MjModel,
        key: str,
        num_sites: int,
        length_unit_m: float = 1.0,
        afferents: bool = False,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float64,
    ) -> BodyInfo:
        """Read a compiled model.

        Raises:
            ValueError: for actuators the env cannot drive, naming them: muscles mixed
                with other actuators, actuators without a control range, muscles without
                one activation state each.
        """
        names = [model.actuator(i).name or f"#{i}" for i in range(model.nu)]
        is_muscle = model.actuator_gaintype == mujoco.mjtGain.mjGAIN_MUSCLE
        if is_muscle.any() and not is_muscle.all():
            others = [n for n, m in zip(names, is_muscle, strict=True) if not m]
            raise ValueError(
                f"body {key!r} mixes muscles with other actuators ({others[:5]}...); the "
                "imitation env drives bodies whose actuators are all muscles or all non-muscles"
            )
        unlimited = [n for n, limited in zip(names, model.actuator_ctrllimited, strict=True) if not limited]
        if unlimited:
            raise ValueError(
                f"body {key!r}: actuators {unlimited[:5]} have no ctrlrange; the env maps "
                "actions in 0..1 onto each actuator's ctrlrange, so give them ctrllimited "
                "and a ctrlrange in the body's model"
            )
        muscles = bool(model.nu) and bool(is_muscle.all())
        if muscles and model.na != model.nu:
            raise ValueError(f"body {key!r}: every muscle needs one activation state (na = nu)")
        to = {"device": device, "dtype": dtype}
        return cls(
            key=key,
            nq=int(model.nq),
            nv=int(model.nv),
            nu=int(model.nu),
            na=int(model.na),
            num_sites=num_sites,
            muscles=muscles,
            free_root=bool(model.njnt > 0 and model.jnt_type[0] == mujoco.mjtJoint.mjJNT_FREE),
            afferents=afferents,
            length_unit_m=length_unit_m,
            forward=torch.tensor([1.0, 0.0, 0.0], **to),
            max_force=torch.as_tensor(np.abs(model.actuator_gainprm[:, 2]), **to) if muscles else None,
            length_range=torch.as_tensor(model.actuator_lengthrange, **to).reshape(-1, 2),
            ctrl_range=torch.as_tensor(model.actuator_ctrlrange, **to).reshape(-1, 2),
        )

    def has(self, need: str) -> bool:
        """Whether the body has the feature ``need`` (one of `NEEDS`)."""
        return {
            "muscles": self.muscles,
            "servos": not self.muscles,
            "free_root": self.free_root,
            "fixed_root": not self.free_root,
            "afferents": self.afferents,
        }[need]

    @property
    def root_q(self) -> int:
        """qpos columns of the root (7 for a free root, else 0): joint angles come after."""
        return 7 if self.free_root else 0

    @property
    def root_v(self) -> int:
        """qvel columns of the root (6 for a free root, else 0)."""
        return 6 if self.free_root else 0


class StepState:
    """The state of B bodies at one control step, as every term reads it.

    The quantities several terms share are computed once, when first read.

    Args:
        sim: the simulated state.
        reference: the reference at the current frame ([B, ...] fields).
        future: the reference at the future frames ([B, F, ...] fields).
        body: the body.
        afferent_rates: [B, 3, nu] afferent rates in pps arriving now, or None.
    """

    def __init__(
        self,
        sim: PhysicsView,
        reference: ReferenceFrame,
        future: ReferenceFrame,
        body: BodyInfo,
        afferent_rates: torch.Tensor | None,
    ) -> None:
        self.sim = sim
        self.reference = reference
        self.future = future
        self.body = body
        self.afferent_rates = afferent_rates

    # ----------------------------------------------------------------- tracking errors
    @functools.cached_property
    def joint_pos_error(self) -> torch.Tensor:
        """Root-mean-square joint angle error [B] in rad (the root excluded)."""
        r = self.body.root_q
        return (self.sim.qpos[:, r:] - self.reference.qpos[:, r:]).square().mean(-1).sqrt()

    @functools.cached_property
    def joint_vel_error(self) -> torch.Tensor:
        """Root-mean-square joint velocity error [B] in rad/s (the root excluded)."""
        r = self.body.root_v
        return (self.sim.qvel[:, r:] - self.reference.qvel[:, r:]).square().mean(-1).sqrt()

    @functools.cached_property
    def site_pos_error(self) -> torch.Tensor:
        """Mean distance of the tracked sites from the reference's [B], model length units."""
        return (self.sim.site_pos_w - self.reference.site_pos_w).norm(dim=-1).mean(-1)

    @functools.cached_property
    def root_pos_error(self) -> torch.Tensor:
        """Distance of the free root from the reference's [B] (model length units)."""
        return (self.sim.qpos[:, :3] - self.reference.qpos[:, :3]).norm(dim=-1)

    @functools.cached_property
    def root_rot_error(self) -> torch.Tensor:
        """Angle between the free root's orientation and the reference's [B] in rad."""
        cos_half = (self.sim.qpos[:, 3:7] * self.reference.qpos[:, 3:7]).sum(-1).abs()
        return 2.0 * torch.acos(cos_half.clamp(max=1.0))

    # ------------------------------------------------------------------ heading frame
    @functools.cached_property
    def root_quat(self) -> torch.Tensor:
        """The free root's orientation [B, 4]."""
        return self.sim.qpos[:, 3:7]

    @functools.cached_property
    def heading(self) -> torch.Tensor:
        """The free root's heading [B, 4]: its yaw about the world z axis
        (`rotations.yaw_quaternion` of its forward axis)."""
        return rotations.yaw_quaternion(self.root_quat, self.body.forward)

    def to_heading(self, vectors_w: torch.Tensor) -> torch.Tensor:
        """World vectors [B, ..., 3] seen in each body's heading frame."""
        heading = self.heading.reshape(self.heading.shape[0], *([1] * (vectors_w.dim() - 2)), 4)
        return rotations.quat_rotate_inverse(heading.expand(*vectors_w.shape[:-1], 4), vectors_w)


@dataclass(frozen=True)
class Term:
    """One declared term.

    Attributes:
        name: its key in configs, layouts and logs.
        fn: the function; observations ``fn(state) -> [B, size]`` (``[B, F, size]`` for a
            term of the future reference frames), rewards ``fn(state, **params) -> [B]``,
            terminations ``fn(state, **params) -> [B] bool``.
        units: units of its values.
        needs: body features it needs (`NEEDS`).
        size: observations only: its width for a body.
        future: observations only: one block per future reference frame.
        doc: one line for error messages and ``--help``.
        params: the keyword parameters of ``fn`` with their defaults.
    """

    name: str
    fn: Callable
    units: str
    needs: tuple[str, ...] = ()
    size: Callable[[BodyInfo], int] | None = None
    future: bool = False
    doc: str = ""
    params: dict[str, object] = field(default_factory=dict)

    def missing(self, body: BodyInfo) -> list[str]:
        """The needs of this term that ``body`` lacks."""
        return [need for need in self.needs if not body.has(need)]


def declare(
    registry: dict[str, Term], name: str, units: str, needs: tuple[str, ...] = (), size=None, future: bool = False
):
    """Decorator: declare ``fn`` as term ``name`` in ``registry`` (see `Term`); its keyword
    parameters with defaults become the term's configurable parameters."""

    def register(fn: Callable) -> Callable:
        if name in registry:
            raise ValueError(f"term {name!r} is declared twice")
        signature = inspect.signature(fn)
        params = {
            p.name: p.default
            for p in list(signature.parameters.values())[1:]
            if p.default is not inspect.Parameter.empty
        }
        doc = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
        registry[name] = Term(
            name=name, fn=fn, units=units, needs=needs, size=size, future=future, doc=doc, params=params
        )
        return fn

    return register
