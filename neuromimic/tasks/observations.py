"""Observation terms: what the controller sees, one declared block each (`OBSERVATIONS`).

Proprioceptive terms return [B, size]; reference terms (``future=True``) return
[B, F, size], one block per future reference frame (``<name>_t+<k>`` in the layout).
Two families describe a free-root body: the *world* family (``qpos``, ``qvel``,
``ref_qpos_minus_qpos``, ``ref_site_minus_site``: positions and orientations in the
world frame, the layout of neuromimic's first versions) and the *egocentric* family
(``root_height``, ``gravity_b``, ``root_*_vel_b``, ``joint_*``, ``ref_root_*``,
``ref_*_h``: the body and the reference seen from the body, in its heading frame, so that
the observation does not change when body and reference move or turn together on the
floor). `default_observations` picks a family for a body.
"""

from __future__ import annotations

import torch

from neuromimic.tasks import rotations
from neuromimic.tasks.base import BodyInfo, StepState, Term, declare

#: Every observation term by name.
OBSERVATIONS: dict[str, Term] = {}


def _obs(name: str, units: str, size, needs: tuple[str, ...] = (), future: bool = False):
    return declare(OBSERVATIONS, name, units, needs, size=size, future=future)


# ------------------------------------------------------------------------ proprioception
@_obs("qpos", "rad", lambda b: b.nq)
def qpos(state: StepState) -> torch.Tensor:
    """Joint positions as MuJoCo holds them (a free root: world position and quaternion)."""
    return state.sim.qpos


@_obs("qvel", "rad/s", lambda b: b.nv)
def qvel(state: StepState) -> torch.Tensor:
    """Joint velocities as MuJoCo holds them."""
    return state.sim.qvel


@_obs("joint_pos", "rad", lambda b: b.nq - b.root_q)
def joint_pos(state: StepState) -> torch.Tensor:
    """Joint angles without the root."""
    return state.sim.qpos[:, state.body.root_q :]


@_obs("joint_vel", "rad/s", lambda b: b.nv - b.root_v)
def joint_vel(state: StepState) -> torch.Tensor:
    """Joint velocities without the root."""
    return state.sim.qvel[:, state.body.root_v :]


@_obs("root_height", "m", lambda b: 1, needs=("free_root",))
def root_height(state: StepState) -> torch.Tensor:
    """Height of the root above the floor (z = 0)."""
    return state.sim.qpos[:, 2:3]


@_obs("gravity_b", "unit vector", lambda b: 3, needs=("free_root",))
def gravity_b(state: StepState) -> torch.Tensor:
    """The direction of gravity in the root's frame (what a vestibular organ senses)."""
    down = torch.tensor([0.0, 0.0, -1.0], dtype=state.root_quat.dtype, device=state.root_quat.device)
    return rotations.quat_rotate_inverse(state.root_quat, down.expand(state.root_quat.shape[0], 3))


@_obs("root_lin_vel_b", "m/s", lambda b: 3, needs=("free_root",))
def root_lin_vel_b(state: StepState) -> torch.Tensor:
    """Linear velocity of the root in its own frame."""
    return rotations.quat_rotate_inverse(state.root_quat, state.sim.qvel[:, :3])


@_obs("root_ang_vel_b", "rad/s", lambda b: 3, needs=("free_root",))
def root_ang_vel_b(state: StepState) -> torch.Tensor:
    """Angular velocity of the root in its own frame (MuJoCo's free-joint qvel[3:6])."""
    return state.sim.qvel[:, 3:6]


@_obs("actuator_activation", "actuator state (MuJoCo act)", lambda b: b.na, needs=("servos",))
def actuator_activation(state: StepState) -> torch.Tensor:
    """Activation states of non-muscle actuators (a servo's filtered control)."""
    return state.sim.act


@_obs("muscle_activation", "0..1", lambda b: b.nu, needs=("muscles",))
def muscle_activation(state: StepState) -> torch.Tensor:
    """Muscle activations (an efference copy)."""
    return state.sim.act


@_obs("muscle_length", "fraction of the muscle's length range", lambda b: b.nu, needs=("muscles",))
def muscle_length(state: StepState) -> torch.Tensor:
    """Muscle-tendon lengths, 0 and 1 at the ends of each muscle's length range."""
    low, high = state.body.length_range.unbind(-1)
    return (state.sim.actuator_length - low) / (high - low)


@_obs("muscle_velocity", "length ranges per s", lambda b: b.nu, needs=("muscles",))
def muscle_velocity(state: StepState) -> torch.Tensor:
    """Muscle-tendon velocities in length ranges per second."""
    low, high = state.body.length_range.unbind(-1)
    return state.sim.actuator_velocity / (high - low)


@_obs("muscle_force", "fraction of peak isometric force", lambda b: b.nu, needs=("muscles",))
def muscle_force(state: StepState) -> torch.Tensor:
    """Muscle tension as a fraction of peak isometric force (positive: muscles pull)."""
    return state.sim.actuator_force / -state.body.max_force


def _afferent(index: int):
    def rates(state: StepState) -> torch.Tensor:
        return state.afferent_rates[:, index]

    return rates


for _index, (_name, _doc) in enumerate(
    (
        ("spindle_Ia", "Spindle primary (Ia) rates."),
        ("spindle_II", "Spindle secondary (II) rates."),
        ("tendon_organ_Ib", "Tendon organ (Ib) rates."),
    )
):
    _fn = _afferent(_index)
    _fn.__doc__ = _doc
    _obs(_name, "pps", lambda b: b.nu, needs=("muscles", "afferents"))(_fn)


# ---------------------------------------------------------------- reference, world frame
@_obs("ref_qpos_minus_qpos", "rad", lambda b: b.nq, future=True)
def ref_qpos_minus_qpos(state: StepState) -> torch.Tensor:
    """Reference qpos minus the body's (a free root: world position and quaternion components)."""
    return state.future.qpos - state.sim.qpos[:, None]


@_obs("ref_site_minus_site", "m", lambda b: 3 * b.num_sites, future=True)
def ref_site_minus_site(state: StepState) -> torch.Tensor:
    """Reference tracked-site positions minus the body's, world frame."""
    return (state.future.site_pos_w - state.sim.site_pos_w[:, None]).flatten(2)


@_obs("ref_qpos", "rad", lambda b: b.nq, future=True)
def ref_qpos(state: StepState) -> torch.Tensor:
    """Reference qpos as it is (no joint angle of the body enters it)."""
    return state.future.qpos


@_obs("ref_site", "m (world frame)", lambda b: 3 * b.num_sites, future=True)
def ref_site(state: StepState) -> torch.Tensor:
    """Reference tracked-site positions, world frame."""
    return state.future.site_pos_w.flatten(2)


# ------------------------------------------------------------ reference, egocentric
@_obs("ref_joint_pos_minus_joint_pos", "rad", lambda b: b.nq - b.root_q, future=True)
def ref_joint_pos_minus_joint_pos(state: StepState) -> torch.Tensor:
    """Reference joint angles minus the body's (root excluded)."""
    r = state.body.root_q
    return state.future.qpos[..., r:] - state.sim.qpos[:, None, r:]


@_obs("ref_joint_pos", "rad", lambda b: b.nq - b.root_q, future=True)
def ref_joint_pos(state: StepState) -> torch.Tensor:
    """Reference joint angles (root excluded)."""
    return state.future.qpos[..., state.body.root_q :]


@_obs("ref_root_pos_h", "m", lambda b: 3, needs=("free_root",), future=True)
def ref_root_pos_h(state: StepState) -> torch.Tensor:
    """Where the reference's root is, from the body's root, in its heading frame."""
    return state.to_heading(state.future.qpos[..., :3] - state.sim.qpos[:, None, :3])


@_obs("ref_root_rot_b", "rad (rotation vector)", lambda b: 3, needs=("free_root",), future=True)
def ref_root_rot_b(state: StepState) -> torch.Tensor:
    """The rotation from the body's root orientation to the reference's, as a rotation
    vector in the root's frame."""
    current = rotations.quat_conjugate(state.root_quat)[:, None].expand_as(state.future.qpos[..., 3:7])
    return rotations.quat_to_rotation_vector(rotations.quat_multiply(current, state.future.qpos[..., 3:7]))


@_obs("ref_site_minus_site_h", "m", lambda b: 3 * b.num_sites, future=True, needs=("free_root",))
def ref_site_minus_site_h(state: StepState) -> torch.Tensor:
    """Reference tracked-site positions minus the body's, in its heading frame."""
    return state.to_heading(state.future.site_pos_w - state.sim.site_pos_w[:, None]).flatten(2)


@_obs("ref_site_h", "m", lambda b: 3 * b.num_sites, future=True, needs=("free_root",))
def ref_site_h(state: StepState) -> torch.Tensor:
    """Reference tracked-site positions from the body's root, in its heading frame."""
    return state.to_heading(state.future.site_pos_w - state.sim.qpos[:, None, None, :3]).flatten(2)


#: What the controller senses of its own body (`default_observations`): joint angles and
#: muscle state, spindle and tendon organ rates instead, or both.
PROPRIOCEPTION = ("joints", "afferents", "both")
#: How a free-root body sees itself and the reference (`default_observations`).
FRAMES = ("egocentric", "world")


def default_observations(body: BodyInfo, proprioception: str = "joints", frame: str = "egocentric") -> list[str]:
    """The observation terms of an env, in layout order.

    Args:
        body: the body (its actuators and root decide the blocks).
        proprioception: one of `PROPRIOCEPTION`. With ``"afferents"`` no joint angle of
            the body reaches the controller: the reference is shown as it is, not relative
            to the body.
        frame: one of `FRAMES`; only free-root bodies differ. ``"world"`` is the layout of
            neuromimic's first versions (checkpoints made with it still load).
    """
    joints = proprioception in ("joints", "both")
    egocentric = frame == "egocentric" and body.free_root
    names: list[str] = []
    if egocentric:
        names += ["root_height", "gravity_b", "root_lin_vel_b", "root_ang_vel_b"]
        if joints:
            names += ["joint_pos", "joint_vel"]
    elif joints:
        names += ["qpos", "qvel"]
    if not body.muscles:
        names += ["actuator_activation"] if body.na else []
    else:
        names.append("muscle_activation")
        if joints:
            names += ["muscle_length", "muscle_velocity", "muscle_force"]
        if proprioception != "joints":
            names += ["spindle_Ia", "spindle_II", "tendon_organ_Ib"]
    if egocentric:
        reference = (
            ["ref_joint_pos_minus_joint_pos", "ref_site_minus_site_h"] if joints else ["ref_joint_pos", "ref_site_h"]
        )
        names += ["ref_root_pos_h", "ref_root_rot_b", *reference]
    elif joints:
        names += ["ref_qpos_minus_qpos", "ref_site_minus_site"]
    else:
        names += ["ref_qpos", "ref_site"]
    return names
