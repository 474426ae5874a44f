"""``neuromimic bodies list`` and ``bodies check``: the registered bodies, and a broken body
model caught before any training.

`check_body` (a registered body) and `check_model` (any compiled model) run five checks
and return one JSON-ready report:

- ``counts``: the model compiles and has the documented DoF, actuators and muscles
  (`Body.counts`).
- ``symmetry``: for mirrored bodies (`Body.side_suffixes`), each right/left pair of bodies,
  joints and muscles (paired by name, or member by member in mirrored muscle groups such
  as ``arm_r`` / ``arm_l`` where muscle names carry no side suffix) agrees: segment
  length (distance from the parent), mass, joint range
  (equal, or mirrored: ``[a, b]`` against ``[-b, -a]``), muscle parameters (peak force,
  operating range, length range) and the moment arms of paired muscles about paired
  joints at the rest pose (in magnitude; mirrored axes flip signs). The report names
  every pair that does not agree.
- ``moment_arm_continuity``: each ranged joint is swept over its range on a grid, the
  others held at the rest pose; between two grid points a muscle's length must change as
  its moment arms say (trapezoid rule), so a jump of a tendon path (the known failure of
  wrapping surfaces) is reported with the muscle, the joint and the angle.
- ``stability``: random and extreme controls (all off, all on, random every 10 ms) held
  for ``seconds`` of simulated time from the rest pose produce no NaN, no MuJoCo
  instability warning and no joint faster than `Body.max_qvel`.
- ``backend``: the features the chosen backend cannot simulate
  (`neuromimic.bodies.compat.check_backend_compatibility`), each with the element and the
  backend that supports it.

Findings in an upstream model that its loader cannot correct are listed, with the reason,
in `Body.known_issues`; they are reported under ``accepted`` and do not fail the check.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import math
from dataclasses import dataclass

import mujoco
import numpy as np

from neuromimic.bodies.base import Body, get_body, known_bodies
from neuromimic.bodies.compat import BACKENDS, check_backend_compatibility
from neuromimic.errors import InputError


@dataclass(frozen=True)
class Tolerances:
    """How close mirrored pairs must be, and how much a muscle length may jump.

    Attributes:
        relative: relative tolerance of masses, lengths, forces and moment arms.
        length_m: absolute tolerance of segment lengths and moment arms (model length unit).
        angle_rad: absolute tolerance of joint ranges.
        jump_fraction: largest unexplained change of a muscle's length between two grid
            points, as a fraction of its length range.
    """

    relative: float = 0.02
    length_m: float = 1e-4
    angle_rad: float = 0.02
    jump_fraction: float = 0.02


#: What ``neuromimic bodies check --backend`` checks: every physics backend.
CHECK_BACKENDS = BACKENDS


def list_bodies() -> list[dict]:
    """Every registered body: key, DoF, actuators, muscles, source package and version, and
    the backends that can simulate it."""
    rows = []
    for key in known_bodies():
        body = get_body(key)
        model = body.load_model()
        rows.append(
            {
                "key": key,
                "dof": model.nv,
                "actuators": model.nu,
                "muscles": muscle_count(model),
                "source": f"{body.source} {importlib.metadata.version(body.source)}",
                "backends": [b for b in BACKENDS if not check_backend_compatibility(model, b)],
            }
        )
    return rows


def check_body(key: str, backend: str = "mujoco", seconds: float = 2.0, grid: int = 60, seed: int = 0) -> dict:
    """Validate a registered body: counts, left-right symmetry, moment-arm continuity,
    stability and backend support (`check_model`).

    Args:
        key: body key (``neuromimic bodies list``).
        backend: backend whose support is checked: mujoco, mjx or warp (MuJoCo Warp).
        seconds: simulated seconds of each stability run.
        grid: points per joint range in the moment-arm sweep.
        seed: seed of the random controls of the stability runs.
    """
    body = get_body(key)
    return check_model(body, body.load_model(), backend, seconds=seconds, grid=grid, seed=seed)


def check_model(
    body: Body,
    model: mujoco.MjModel,
    backend: str = "mujoco",
    *,
    seconds: float = 2.0,
    grid: int = 60,
    seed: int = 0,
    tolerances: Tolerances = Tolerances(),
) -> dict:
    """Run every check of the module docstring on a compiled ``model`` described by
    ``body`` (a registered body's own model, or an edited one).

    Args:
        body: the body description (counts, side suffixes, max_qvel, known issues).
        model: the compiled model to check.
        backend: the backend whose compatibility is checked: ``"mujoco"``, ``"mjx"`` or
            ``"warp"`` (MuJoCo Warp).
        seconds: simulated duration of each stability run (s).
        grid: points per joint range in the moment-arm sweep.
        seed: seed of the random controls.
        tolerances: see `Tolerances`.

    Returns:
        ``{"body", "backend", "source", "passed", "checks": {name: {"passed", ...details}}}``.
    """
    if backend not in CHECK_BACKENDS:
        raise InputError(f"unknown backend {backend!r}; bodies check knows {', '.join(CHECK_BACKENDS)}")
    rest = coupled_pose(model, body.rest_qpos(model))[0]
    checks = {
        "counts": _counts(body, model),
        "symmetry": _symmetry(body, model, rest, tolerances),
        "moment_arm_continuity": _moment_arm_continuity(model, rest, grid, tolerances),
        "stability": _stability(body, model, rest, seconds, seed),
        "backend": _backend(model, backend),
    }
    for name, check in checks.items():
        _accept_known_issues(name, check, body.known_issues)
    return {
        "body": body.key,
        "backend": backend,
        "source": body.source,
        "passed": all(check["passed"] for check in checks.values()),
        "checks": checks,
    }


def _accept_known_issues(name: str, check: dict, known: dict[str, str]) -> None:
    """Move the findings of ``check`` listed in `Body.known_issues` to ``check["accepted"]``
    (with the reason); the check passes if no other finding is left."""
    for field_name in ("mismatches", "jumps"):
        findings = check.get(field_name)
        if not findings:
            continue
        accepted, left = [], []
        for finding in findings:
            reason = known.get(f"{name}:{finding.get('pair') or finding.get('muscle')}")
            (accepted if reason else left).append({**finding, "reason": reason} if reason else finding)
        if accepted:
            check[field_name] = left
            check["accepted"] = accepted
            check["passed"] = not left


# ------------------------------------------------------------------------------ counts
def muscle_count(model: mujoco.MjModel) -> int:
    """Number of MuJoCo muscle actuators (muscle gain)."""
    return int((model.actuator_gaintype == mujoco.mjtGain.mjGAIN_MUSCLE).sum())


def _counts(body: Body, model: mujoco.MjModel) -> dict:
    found = {"dof": int(model.nv), "actuators": int(model.nu), "muscles": muscle_count(model)}
    wrong = {name: {"documented": n, "found": found[name]} for name, n in body.counts.items() if found.get(name) != n}
    return {
        "passed": bool(body.counts) and not wrong,
        "found": found,
        "documented": dict(body.counts),
        "mismatches": wrong,
    }


# ---------------------------------------------------------------------------- symmetry
_SCALAR_JOINTS = (int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE))


def _twin(name: str, right: str, left: str) -> str | None:
    """The left twin's name of a right-side name: the side token ends the name
    (``knee_r``) or is followed by ``_`` (``hip_R_supinate``); None otherwise."""
    if name.endswith(right):
        return name[: -len(right)] + left
    if right + "_" in name:
        return name.replace(right + "_", left + "_", 1)
    return None


def _pairs(
    model: mujoco.MjModel, objtype: mujoco.mjtObj, count: int, suffixes: tuple[str, str]
) -> list[tuple[int, int, str]]:
    """``(right id, left id, right name)`` of every right-side element with a left twin."""
    right, left = suffixes
    names = {mujoco.mj_id2name(model, objtype, i): i for i in range(count)}
    pairs = []
    for name, i in names.items():
        twin = _twin(name, right, left) if name else None
        if twin in names:
            pairs.append((i, names[twin], name))
    return pairs


def _group_pairs(model: mujoco.MjModel, body: Body) -> list[tuple[int, int, str]]:
    """``(right id, left id, right name)`` of the muscles of mirrored muscle groups, member
    by member: groups whose names are twins (``arm_r`` and ``arm_l``) pair their i-th
    members, for models whose muscle names do not carry the side suffixes (MuscleMimic's
    ``DELT1`` and ``DELT1_left``). Names the model lacks are skipped (each body's tests
    hold its groups to its model)."""
    right, left = body.side_suffixes
    pairs = []
    for name, members in body.muscle_groups.items():
        twin = _twin(name, right, left)
        if twin is None or twin not in body.muscle_groups or len(body.muscle_groups[twin]) != len(members):
            continue
        for a, b in zip(members, body.muscle_groups[twin], strict=True):
            i = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_ACTUATOR, a)
            j = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_ACTUATOR, b)
            if i >= 0 and j >= 0:
                pairs.append((i, j, a))
    return pairs


def _close(a: float, b: float, tolerances: Tolerances, absolute: float) -> bool:
    return abs(a - b) <= max(absolute, tolerances.relative * max(abs(a), abs(b)))


def _symmetry(body: Body, model: mujoco.MjModel, rest: np.ndarray, tolerances: Tolerances) -> dict:
    if body.side_suffixes is None:
        return {"passed": True, "skipped": "one-sided body (no side_suffixes)"}
    obj = mujoco.mjtObj
    bodies = _pairs(model, obj.mjOBJ_BODY, model.nbody, body.side_suffixes)
    joints = _pairs(model, obj.mjOBJ_JOINT, model.njnt, body.side_suffixes)
    actuators = _pairs(model, obj.mjOBJ_ACTUATOR, model.nu, body.side_suffixes)
    named = {i for i, _, _ in actuators}
    actuators += [pair for pair in dict.fromkeys(_group_pairs(model, body)) if pair[0] not in named]
    mismatches: list[dict] = []

    def compare(kind: str, name: str, what: str, a: float, b: float, absolute: float) -> None:
        if not _close(a, b, tolerances, absolute):
            mismatches.append(
                {"pair": name, "kind": kind, "quantity": what, "right": round(float(a), 6), "left": round(float(b), 6)}
            )

    for i, j, name in bodies:
        compare("body", name, "mass", model.body_mass[i], model.body_mass[j], 1e-9)
        compare(
            "body",
            name,
            "segment_length",
            np.linalg.norm(model.body_pos[i]),
            np.linalg.norm(model.body_pos[j]),
            tolerances.length_m,
        )
    for i, j, name in joints:
        if not model.jnt_limited[i] and not model.jnt_limited[j]:
            continue
        (a0, a1), (b0, b1) = model.jnt_range[i], model.jnt_range[j]
        same = abs(a0 - b0) + abs(a1 - b1)
        mirrored = abs(a0 + b1) + abs(a1 + b0)
        if min(same, mirrored) > 2 * tolerances.angle_rad:
            mismatches.append(
                {
                    "pair": name,
                    "kind": "joint",
                    "quantity": "range",
                    "right": [round(float(a0), 4), round(float(a1), 4)],
                    "left": [round(float(b0), 4), round(float(b1), 4)],
                }
            )
    muscles = [(i, j, n) for i, j, n in actuators if model.actuator_gaintype[i] == mujoco.mjtGain.mjGAIN_MUSCLE]
    for i, j, name in muscles:
        for k, what in ((0, "range_min"), (1, "range_max"), (2, "peak_force")):
            compare("muscle", name, what, model.actuator_gainprm[i, k], model.actuator_gainprm[j, k], 1e-6)
        for k, what in ((0, "length_range_min"), (1, "length_range_max")):
            compare(
                "muscle",
                name,
                what,
                model.actuator_lengthrange[i, k],
                model.actuator_lengthrange[j, k],
                tolerances.length_m,
            )
    if muscles:
        moments = _moment_arms(model, rest)
        dof_pairs = [
            (model.jnt_dofadr[i], model.jnt_dofadr[j], name)
            for i, j, name in joints
            if int(model.jnt_type[i]) in _SCALAR_JOINTS
        ]
        for i, j, muscle in muscles:
            for di, dj, joint in dof_pairs:
                compare(
                    "moment_arm",
                    f"{muscle} about {joint}",
                    "abs_moment_arm",
                    abs(moments[i, di]),
                    abs(moments[j, dj]),
                    tolerances.length_m,
                )
    return {
        "passed": not mismatches,
        "pairs": {"bodies": len(bodies), "joints": len(joints), "muscles": len(muscles)},
        "mismatches": mismatches,
    }


# ------------------------------------------------------------------ moment-arm continuity
def _moment_arms(model: mujoco.MjModel, qpos: np.ndarray, data: mujoco.MjData | None = None) -> np.ndarray:
    """Actuator moment arms [nu, nv] (d length / d qvel) at ``qpos``."""
    data = data or mujoco.MjData(model)
    data.qpos[:] = qpos
    mujoco.mj_fwdPosition(model, data)
    dense = np.zeros((model.nu, model.nv))
    mujoco.mju_sparse2dense(dense, data.actuator_moment, data.moment_rownnz, data.moment_rowadr, data.moment_colind)
    return dense


def joint_couplings(model: mujoco.MjModel) -> list[tuple[int, int, np.ndarray]]:
    """Active joint equalities as ``(follower joint, leader joint, polynomial coefficients
    [5])``: ``q_f - q0_f = sum_k c_k (q_l - q0_l)^k`` (MuJoCo's joint equality)."""
    couplings = []
    for e in range(model.neq):
        if int(model.eq_type[e]) == int(mujoco.mjtEq.mjEQ_JOINT) and model.eq_active0[e] and model.eq_obj2id[e] >= 0:
            couplings.append((int(model.eq_obj1id[e]), int(model.eq_obj2id[e]), np.array(model.eq_data[e, :5])))
    return couplings


def coupled_pose(model: mujoco.MjModel, qpos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``qpos`` with every coupled follower joint set from its leader, and d q_f / d q_l [njnt]
    of each follower (0 for the others)."""
    qpos = qpos.copy()
    slope = np.zeros(model.njnt)
    for follower, leader, c in joint_couplings(model):
        fa, la = model.jnt_qposadr[follower], model.jnt_qposadr[leader]
        x = qpos[la] - model.qpos0[la]
        qpos[fa] = model.qpos0[fa] + c[0] + c[1] * x + c[2] * x**2 + c[3] * x**3 + c[4] * x**4
        slope[follower] = c[1] + 2 * c[2] * x + 3 * c[3] * x**2 + 4 * c[4] * x**3
    return qpos, slope


def _moment_arm_continuity(model: mujoco.MjModel, rest: np.ndarray, grid: int, tolerances: Tolerances) -> dict:
    tendon_actuators = np.flatnonzero(model.actuator_trntype == mujoco.mjtTrn.mjTRN_TENDON)
    if not len(tendon_actuators):
        return {"passed": True, "skipped": "no tendon-driven actuators"}
    span = np.maximum(model.actuator_lengthrange[:, 1] - model.actuator_lengthrange[:, 0], 1e-6)
    couplings = joint_couplings(model)
    followers = {f for f, _, _ in couplings}
    data = mujoco.MjData(model)
    jumps, swept = [], 0
    for joint in range(model.njnt):
        # Coupled joints move with their leader (a follower swept alone is not a pose).
        if int(model.jnt_type[joint]) not in _SCALAR_JOINTS or not model.jnt_limited[joint] or joint in followers:
            continue
        adr = model.jnt_qposadr[joint]
        angles = np.linspace(*model.jnt_range[joint], grid)
        lengths, arms = np.zeros((grid, model.nu)), np.zeros((grid, model.nu))
        for g, angle in enumerate(angles):
            qpos = rest.copy()
            qpos[adr] = angle
            qpos, slope = coupled_pose(model, qpos)
            moments = _moment_arms(model, qpos, data)
            # d length / d angle along the coupled motion: the joint's own arm plus each
            # follower's arm times the follower's slope.
            arms[g] = moments[:, model.jnt_dofadr[joint]]
            for follower, leader, _ in couplings:
                if leader == joint:
                    arms[g] += moments[:, model.jnt_dofadr[follower]] * slope[follower]
            lengths[g] = data.actuator_length
        swept += 1
        step = angles[1] - angles[0]
        unexplained = np.abs(np.diff(lengths, axis=0) - 0.5 * (arms[1:] + arms[:-1]) * step)
        unexplained = unexplained[:, tendon_actuators] / span[tendon_actuators]
        for g, a in zip(*np.nonzero(unexplained > tolerances.jump_fraction), strict=True):
            actuator = int(tendon_actuators[a])
            jumps.append(
                {
                    "muscle": model.actuator(actuator).name,
                    "joint": model.joint(joint).name,
                    "between": [round(float(angles[g]), 4), round(float(angles[g + 1]), 4)],
                    "jump_fraction_of_length_range": round(float(unexplained[g, a]), 4),
                }
            )
    return {"passed": not jumps, "joints_swept": swept, "grid": grid, "jumps": jumps}


# ---------------------------------------------------------------------------- stability
def _stability(body: Body, model: mujoco.MjModel, rest: np.ndarray, seconds: float, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    low, high = model.actuator_ctrlrange[:, 0], model.actuator_ctrlrange[:, 1]
    hold = max(1, round(0.01 / model.opt.timestep))  # a new random control every 10 ms
    steps = max(1, math.ceil(seconds / model.opt.timestep))
    runs = {"all_off": lambda: low, "all_on": lambda: high, "random": lambda: rng.uniform(low, high)}
    results, passed = {}, True
    data = mujoco.MjData(model)
    for name, control in runs.items():
        mujoco.mj_resetData(model, data)
        data.qpos[:] = rest
        mujoco.mj_forward(model, data)
        fastest, failure = 0.0, None
        for step in range(steps):
            if step % hold == 0:
                data.ctrl[:] = control()
            mujoco.mj_step(model, data)
            fastest = max(fastest, float(np.abs(data.qvel).max(initial=0.0)))
            if not (np.isfinite(data.qpos).all() and np.isfinite(data.qvel).all()):
                failure = f"NaN or Inf at t = {data.time:.4f} s"
            elif data.warning[mujoco.mjtWarning.mjWARN_BADQACC].number:
                failure = f"MuJoCo reset the state for a bad acceleration at t = {data.time:.4f} s"
            elif fastest > body.max_qvel:
                failure = f"a joint moved at {fastest:.1f} > max_qvel {body.max_qvel:g} at t = {data.time:.4f} s"
            if failure:
                break
        results[name] = {
            "passed": failure is None,
            "max_abs_qvel": round(fastest, 3),
            **({"failure": failure} if failure else {}),
        }
        passed &= failure is None
    return {"passed": passed, "seconds": seconds, "runs": results}


# ------------------------------------------------------------------------------ backend
def _backend(model: mujoco.MjModel, backend: str) -> dict:
    problems = check_backend_compatibility(model, backend)
    return {"passed": not problems, "unsupported": [dataclasses.asdict(p) for p in problems]}
