"""Physically valid episode starts: reference frames that do not put a body inside the floor or itself.

A body placed on a reference frame that penetrates the floor is thrown out of it on its
first step: MuJoCo's solver pushes it out with large forces, several solver iterations
and tens of contacts. Fitted rat23 clips did this in every frame: the tail, which no
keypoint constrains, kept its rest angles relative to a pitching pelvis and went up to
8 cm into the floor. Three corrections, in order:

1. the keypoint fit poses the joints that move no keypoint (the tail) so that their
   geoms clear the floor, as near their rest angles as it can (`clear_floor`);
2. clip makers lift every frame of a free-root body out of the floor by what is left
   (`lift_out_of_floor`), recorded in the clip's meta;
3. the env starts episodes only on frames that penetrate neither the floor nor the body
   itself beyond a tolerance (`valid_starts`).
"""

from __future__ import annotations

import mujoco
import numpy as np

#: Penetration accepted at an episode start, in m (converted to the model's length unit).
START_PENETRATION_TOLERANCE_M = 1e-3


def _plane_geoms(model: mujoco.MjModel) -> np.ndarray:
    """[ngeom] bool: the world's plane geoms (floors)."""
    return (model.geom_type == mujoco.mjtGeom.mjGEOM_PLANE) & (model.geom_bodyid == 0)


def penetrations(
    model: mujoco.MjModel, data: mujoco.MjData, qpos: np.ndarray, accepted: dict[tuple[int, int], float] | None = None
) -> tuple[float, float, int]:
    """The deepest floor and self penetration at pose ``qpos`` [nq] (model length units, 0
    when none) and the number of contacts.

    Args:
        accepted: geom pairs -> a depth of self penetration that does not count (the
            overlaps of the body's own rest pose, `rest_overlaps`).
    """
    data.qpos[:] = qpos
    mujoco.mj_kinematics(model, data)
    mujoco.mj_collision(model, data)
    floor = self_depth = 0.0
    planes = _plane_geoms(model)
    for contact in data.contact[: data.ncon]:
        depth = -float(contact.dist)
        if depth <= 0:
            continue
        if planes[contact.geom1] or planes[contact.geom2]:
            floor = max(floor, depth)
        elif model.geom_bodyid[contact.geom1] and model.geom_bodyid[contact.geom2]:
            pair = (min(contact.geom1, contact.geom2), max(contact.geom1, contact.geom2))
            self_depth = max(self_depth, depth - (accepted or {}).get(pair, 0.0))
    return floor, self_depth, int(data.ncon)


def rest_overlaps(model: mujoco.MjModel, rest_qpos: np.ndarray) -> dict[tuple[int, int], float]:
    """The geom pairs of the body that overlap in its own rest pose, with their depth (a
    model's accepted overlaps: MyoArm's humerus and thorax collision geoms, 11 mm)."""
    data = mujoco.MjData(model)
    data.qpos[:] = rest_qpos
    mujoco.mj_kinematics(model, data)
    mujoco.mj_collision(model, data)
    planes = _plane_geoms(model)
    return {
        (min(c.geom1, c.geom2), max(c.geom1, c.geom2)): -float(c.dist)
        for c in data.contact[: data.ncon]
        if c.dist < 0 and not (planes[c.geom1] or planes[c.geom2])
    }


def lift_out_of_floor(model: mujoco.MjModel, qpos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Raise a free-root body in every frame by as much as it penetrates the floor.

    Args:
        model: the body's compiled model (with its floor).
        qpos: [T, nq] poses; the first joint must be free.

    Returns:
        ``(lifted qpos [T, nq], lift [T])``, the lift in the model's length unit (0 where
        the frame was clear of the floor); a body without a floor is returned unchanged.
    """
    qpos = np.array(qpos, dtype=np.float64)
    lift = np.zeros(qpos.shape[0])
    if not _plane_geoms(model).any() or model.njnt == 0 or model.jnt_type[0] != mujoco.mjtJoint.mjJNT_FREE:
        return qpos, lift
    data = mujoco.MjData(model)
    for t in range(qpos.shape[0]):
        # A plane's contact normal is vertical: one lift by the deepest penetration clears
        # it; a second pass catches geoms the first lift brought into contact range.
        for _ in range(2):
            depth = penetrations(model, data, qpos[t])[0]
            if depth <= 0:
                break
            qpos[t, 2] += depth
            lift[t] += depth
    return qpos, lift


def valid_starts(
    model: mujoco.MjModel, qpos: np.ndarray, tolerance: float, rest_qpos: np.ndarray | None = None
) -> np.ndarray:
    """[T] bool: the frames of ``qpos`` [T, nq] where the body penetrates neither the floor
    nor itself by more than ``tolerance`` (model length units); overlaps already present
    in the rest pose ``rest_qpos`` [nq] count only by how much they grow."""
    data = mujoco.MjData(model)
    accepted = rest_overlaps(model, rest_qpos) if rest_qpos is not None else {}
    ok = np.empty(qpos.shape[0], dtype=bool)
    for t in range(qpos.shape[0]):
        floor, self_depth, _ = penetrations(model, data, qpos[t], accepted)
        ok[t] = max(floor, self_depth) <= tolerance
    return ok


def unobserved_dofs(model: mujoco.MjModel, keypoint_bodies: list[int]) -> np.ndarray:
    """[nv] bool: the hinge and slide dofs that move none of the bodies carrying a keypoint."""
    observed = set()
    for body in keypoint_bodies:
        while body > 0:
            observed.add(int(body))
            body = int(model.body_parentid[body])
    free = np.zeros(model.nv, dtype=bool)
    for j in range(model.njnt):
        if int(model.jnt_type[j]) in (int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE)):
            free[model.jnt_dofadr[j]] = int(model.jnt_bodyid[j]) not in observed
    return free


def clear_floor(
    model: mujoco.MjModel, qpos: np.ndarray, dofs: np.ndarray, iterations: int = 30, damping: float = 1e-3
) -> tuple[np.ndarray, np.ndarray]:
    """Move the dofs ``dofs`` of every frame until the body's geoms clear the floor.

    Damped Gauss-Newton on the penetration depth of each floor contact with respect to
    the chosen dofs (their Jacobian at the contact point), steps clipped to the joints'
    ranges; the other coordinates (root, keypoint-bearing joints) do not move.

    Args:
        model: the body's compiled model (with its floor).
        qpos: [T, nq] poses.
        dofs: [nv] bool, the hinge or slide dofs that may move (`unobserved_dofs`).
        iterations: Gauss-Newton steps per frame at most.
        damping: Levenberg damping, in the units of the squared Jacobian.

    Returns:
        ``(qpos [T, nq], depth [T])``: the new poses and the floor penetration left in
        each (0 where cleared).
    """
    qpos = np.array(qpos, dtype=np.float64)
    depth_left = np.zeros(qpos.shape[0])
    planes = _plane_geoms(model)
    columns = np.flatnonzero(dofs)
    if not planes.any() or columns.size == 0:
        return qpos, np.array(
            [penetrations(model, mujoco.MjData(model), q)[0] for q in qpos]
        ) if planes.any() else depth_left
    qadr = np.array([model.jnt_qposadr[model.dof_jntid[d]] for d in columns])
    joints = model.dof_jntid[columns]
    limited = model.jnt_limited[joints].astype(bool)
    low, high = model.jnt_range[joints, 0], model.jnt_range[joints, 1]
    movable = {int(model.jnt_bodyid[j]) for j in joints}
    data = mujoco.MjData(model)
    jacp = np.zeros((3, model.nv))
    for t in range(qpos.shape[0]):
        for _ in range(iterations):
            data.qpos[:] = qpos[t]
            mujoco.mj_kinematics(model, data)
            mujoco.mj_comPos(model, data)
            mujoco.mj_collision(model, data)
            rows, depths = [], []
            for contact in data.contact[: data.ncon]:
                if contact.dist >= 0 or not (planes[contact.geom1] or planes[contact.geom2]):
                    continue
                geom = contact.geom2 if planes[contact.geom1] else contact.geom1
                body = int(model.geom_bodyid[geom])
                if not _moved_by(model, body, movable):
                    continue
                mujoco.mj_jac(model, data, jacp, None, contact.pos, body)
                rows.append(jacp[2, columns].copy())
                depths.append(-contact.dist)
            if not rows:
                break
            J, r = np.array(rows), np.array(depths) + 1e-4  # aim a tenth of a millimetre above
            step = J.T @ np.linalg.solve(J @ J.T + damping * np.eye(len(r)), r)
            moved = qpos[t, qadr] + step
            qpos[t, qadr] = np.where(limited, np.clip(moved, low, high), moved)
        depth_left[t] = penetrations(model, data, qpos[t])[0]
    return qpos, depth_left


def _moved_by(model: mujoco.MjModel, body: int, movable: set[int]) -> bool:
    """Whether a joint of a body in ``movable`` is an ancestor-or-self of ``body``."""
    while body > 0:
        if body in movable:
            return True
        body = int(model.body_parentid[body])
    return False
