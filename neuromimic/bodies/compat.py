"""Which features of a compiled body each physics backend can simulate, checked before training.

`check_backend_compatibility` lists the problems of one model on one backend (feature,
element name, the backends that do support it); `require_backend_compatibility` raises
`BackendCompatibilityError` with that list, so a body that a backend cannot run fails
when the backend is built, with a message naming the feature, and not deep inside a
compiled step (MJX fails in ``put_model`` with a bare ``NotImplementedError`` at best,
and at worst inside the first jitted step).

The MJX tables below mirror ``mujoco.mjx`` 3.17 (``mjx/_src/io.py::_put_model_jax``,
``collision_driver._COLLISION_FUNC``, the enums of ``mjx/_src/types.py``) for the JAX
implementation. They are written out here, without importing ``mujoco.mjx``, because
`neuromimic.bodies` never imports JAX; ``tests/test_rodent_body.py`` checks them against
the installed ``mujoco.mjx`` so a MuJoCo upgrade that changes them fails a test.
"""

from __future__ import annotations

import functools
import itertools
import operator
from dataclasses import dataclass

import mujoco

from neuromimic.errors import InputError

#: Backend names `check_backend_compatibility` knows (the keys of the backend registry).
BACKENDS: tuple[str, ...] = ("mujoco", "mjx", "warp")

_G = mujoco.mjtGeom

#: Geom type pairs (ordered by type number) MJX's JAX implementation can collide.
MJX_COLLISION_PAIRS: frozenset[tuple[int, int]] = frozenset(
    (int(a), int(b))
    for a, b in (
        (_G.mjGEOM_PLANE, _G.mjGEOM_SPHERE),
        (_G.mjGEOM_PLANE, _G.mjGEOM_CAPSULE),
        (_G.mjGEOM_PLANE, _G.mjGEOM_BOX),
        (_G.mjGEOM_PLANE, _G.mjGEOM_ELLIPSOID),
        (_G.mjGEOM_PLANE, _G.mjGEOM_CYLINDER),
        (_G.mjGEOM_PLANE, _G.mjGEOM_MESH),
        (_G.mjGEOM_HFIELD, _G.mjGEOM_SPHERE),
        (_G.mjGEOM_HFIELD, _G.mjGEOM_CAPSULE),
        (_G.mjGEOM_HFIELD, _G.mjGEOM_BOX),
        (_G.mjGEOM_HFIELD, _G.mjGEOM_MESH),
        (_G.mjGEOM_SPHERE, _G.mjGEOM_SPHERE),
        (_G.mjGEOM_SPHERE, _G.mjGEOM_CAPSULE),
        (_G.mjGEOM_SPHERE, _G.mjGEOM_CYLINDER),
        (_G.mjGEOM_SPHERE, _G.mjGEOM_ELLIPSOID),
        (_G.mjGEOM_SPHERE, _G.mjGEOM_BOX),
        (_G.mjGEOM_SPHERE, _G.mjGEOM_MESH),
        (_G.mjGEOM_CAPSULE, _G.mjGEOM_CAPSULE),
        (_G.mjGEOM_CAPSULE, _G.mjGEOM_BOX),
        (_G.mjGEOM_CAPSULE, _G.mjGEOM_ELLIPSOID),
        (_G.mjGEOM_CAPSULE, _G.mjGEOM_CYLINDER),
        (_G.mjGEOM_CAPSULE, _G.mjGEOM_MESH),
        (_G.mjGEOM_ELLIPSOID, _G.mjGEOM_ELLIPSOID),
        (_G.mjGEOM_ELLIPSOID, _G.mjGEOM_CYLINDER),
        (_G.mjGEOM_CYLINDER, _G.mjGEOM_CYLINDER),
        (_G.mjGEOM_BOX, _G.mjGEOM_BOX),
        (_G.mjGEOM_BOX, _G.mjGEOM_MESH),
        (_G.mjGEOM_MESH, _G.mjGEOM_MESH),
    )
)


def _values(*members: object) -> frozenset[int]:
    return frozenset(int(m) for m in members)  # type: ignore[call-overload]


#: Enum values MJX (JAX implementation) accepts, per model field: (field, enum, supported).
MJX_ENUMS: tuple[tuple[str, type, frozenset[int]], ...] = (
    (
        "actuator_dyntype",
        mujoco.mjtDyn,
        _values(
            mujoco.mjtDyn.mjDYN_NONE,
            mujoco.mjtDyn.mjDYN_INTEGRATOR,
            mujoco.mjtDyn.mjDYN_FILTER,
            mujoco.mjtDyn.mjDYN_FILTEREXACT,
            mujoco.mjtDyn.mjDYN_MUSCLE,
        ),
    ),
    (
        "actuator_gaintype",
        mujoco.mjtGain,
        _values(mujoco.mjtGain.mjGAIN_FIXED, mujoco.mjtGain.mjGAIN_AFFINE, mujoco.mjtGain.mjGAIN_MUSCLE),
    ),
    (
        "actuator_biastype",
        mujoco.mjtBias,
        _values(mujoco.mjtBias.mjBIAS_NONE, mujoco.mjtBias.mjBIAS_AFFINE, mujoco.mjtBias.mjBIAS_MUSCLE),
    ),
    (
        "actuator_trntype",
        mujoco.mjtTrn,
        _values(
            mujoco.mjtTrn.mjTRN_JOINT,
            mujoco.mjtTrn.mjTRN_JOINTINPARENT,
            mujoco.mjtTrn.mjTRN_SITE,
            mujoco.mjtTrn.mjTRN_TENDON,
        ),
    ),
    (
        "eq_type",
        mujoco.mjtEq,
        _values(mujoco.mjtEq.mjEQ_CONNECT, mujoco.mjtEq.mjEQ_WELD, mujoco.mjtEq.mjEQ_JOINT, mujoco.mjtEq.mjEQ_TENDON),
    ),
    (
        "wrap_type",
        mujoco.mjtWrap,
        _values(
            mujoco.mjtWrap.mjWRAP_JOINT,
            mujoco.mjtWrap.mjWRAP_PULLEY,
            mujoco.mjtWrap.mjWRAP_SITE,
            mujoco.mjtWrap.mjWRAP_SPHERE,
            mujoco.mjtWrap.mjWRAP_CYLINDER,
        ),
    ),
)

_S = mujoco.mjtSensor
#: Sensor types MJX (JAX implementation) accepts in ``put_model``.
MJX_SENSORS: frozenset[int] = _values(
    _S.mjSENS_MAGNETOMETER,
    _S.mjSENS_CAMPROJECTION,
    _S.mjSENS_RANGEFINDER,
    _S.mjSENS_JOINTPOS,
    _S.mjSENS_TENDONPOS,
    _S.mjSENS_ACTUATORPOS,
    _S.mjSENS_BALLQUAT,
    _S.mjSENS_FRAMEPOS,
    _S.mjSENS_FRAMEXAXIS,
    _S.mjSENS_FRAMEYAXIS,
    _S.mjSENS_FRAMEZAXIS,
    _S.mjSENS_FRAMEQUAT,
    _S.mjSENS_SUBTREECOM,
    _S.mjSENS_CLOCK,
    _S.mjSENS_VELOCIMETER,
    _S.mjSENS_GYRO,
    _S.mjSENS_JOINTVEL,
    _S.mjSENS_TENDONVEL,
    _S.mjSENS_ACTUATORVEL,
    _S.mjSENS_BALLANGVEL,
    _S.mjSENS_FRAMELINVEL,
    _S.mjSENS_FRAMEANGVEL,
    _S.mjSENS_SUBTREELINVEL,
    _S.mjSENS_SUBTREEANGMOM,
    _S.mjSENS_TOUCH,
    _S.mjSENS_CONTACT,
    _S.mjSENS_ACCELEROMETER,
    _S.mjSENS_FORCE,
    _S.mjSENS_TORQUE,
    _S.mjSENS_ACTUATORFRC,
    _S.mjSENS_JOINTACTFRC,
    _S.mjSENS_TENDONACTFRC,
    _S.mjSENS_FRAMELINACC,
    _S.mjSENS_FRAMEANGACC,
    _S.mjSENS_TACTILE,
)

#: Option values MJX (JAX implementation) accepts: (option, enum, supported).
MJX_OPTIONS: tuple[tuple[str, type, frozenset[int]], ...] = (
    (
        "integrator",
        mujoco.mjtIntegrator,
        _values(
            mujoco.mjtIntegrator.mjINT_EULER,
            mujoco.mjtIntegrator.mjINT_RK4,
            mujoco.mjtIntegrator.mjINT_IMPLICITFAST,
            mujoco.mjtIntegrator.mjINT_DISCRETE,
        ),
    ),
    ("solver", mujoco.mjtSolver, _values(mujoco.mjtSolver.mjSOL_CG, mujoco.mjtSolver.mjSOL_NEWTON)),
)
#: Enable flags MJX (JAX implementation) accepts; any other set flag is a problem.
MJX_ENABLE_FLAGS: frozenset[int] = _values(
    mujoco.mjtEnableBit.mjENBL_INVDISCRETE,
    mujoco.mjtEnableBit.mjENBL_SLEEP,
    mujoco.mjtEnableBit.mjENBL_IPC,
)


@dataclass(frozen=True)
class Incompatibility:
    """One feature of a model that a backend cannot simulate.

    Attributes:
        feature: what is unsupported, e.g. ``"collision (ELLIPSOID, BOX)"``, ``"touch sensor"``.
        element: the model element(s) that use it, by name, e.g. ``"geoms a / b"``.
        supported_by: backends (`BACKENDS`) that do simulate it.
        backend: the backend that does not.
    """

    feature: str
    element: str
    supported_by: tuple[str, ...]
    backend: str

    def __str__(self) -> str:
        where = ", ".join(self.supported_by) or "no neuromimic backend"
        return f"{self.feature}: {self.element} (not supported by {self.backend}; supported by: {where})"


class BackendCompatibilityError(InputError):
    """A body uses features its backend cannot simulate; ``problems`` lists them."""

    def __init__(self, message: str, problems: list[Incompatibility]) -> None:
        super().__init__(message)
        self.problems = problems


def _name(model: mujoco.MjModel, objtype: mujoco.mjtObj, index: int) -> str:
    return mujoco.mj_id2name(model, objtype, index) or f"#{index}"


def collision_geom_pairs(model: mujoco.MjModel) -> list[tuple[int, int]]:
    """Geom pairs the collision pipeline tests: explicit ``<pair>``s, then every pair of
    geoms on different, non-welded bodies whose contype/conaffinity bits match, minus
    ``<exclude>``d body pairs and (unless disabled) parent-child pairs.

    Mirrors ``mujoco.mjx``'s ``collision_driver.geom_pairs`` (MJX has no broad phase: it
    tests every one of these pairs at every step, so their number is its collision cost).

    Args:
        model: a compiled model.

    Returns:
        ``(geom1, geom2)`` index pairs, ``geom_type[geom1] <= geom_type[geom2]``.
    """
    m = model
    pairs: list[tuple[int, int]] = []
    seen: set[tuple[int, int]] = set()

    def ordered(g1: int, g2: int) -> tuple[int, int]:
        return (g2, g1) if m.geom_type[g1] > m.geom_type[g2] else (g1, g2)

    for i in range(m.npair):
        pair = ordered(int(m.pair_geom1[i]), int(m.pair_geom2[i]))
        seen.add(pair)
        pairs.append(pair)
    excluded = {int(s) for s in m.exclude_signature}
    con = m.geom_contype | m.geom_conaffinity
    filterparent = not (m.opt.disableflags & mujoco.mjtDisableBit.mjDSBL_FILTERPARENT)
    start, num = m.body_geomadr, m.body_geomnum
    plane, hfield = int(_G.mjGEOM_PLANE), int(_G.mjGEOM_HFIELD)
    for b1 in range(m.nbody):
        g1_range = [g for g in range(start[b1], start[b1] + num[b1]) if con[g]]
        if not g1_range:
            continue
        w1 = m.body_weldid[b1]
        w1_parent = m.body_weldid[m.body_parentid[w1]]
        for b2 in range(b1, m.nbody):
            g2_range = [g for g in range(start[b2], start[b2] + num[b2]) if con[g]]
            if not g2_range or ((b1 << 16) + b2) in excluded:
                continue
            w2 = m.body_weldid[b2]
            if w1 == w2:
                continue
            w2_parent = m.body_weldid[m.body_parentid[w2]]
            if filterparent and w1 != 0 and w2 != 0 and (w1 == w2_parent or w2 == w1_parent):
                continue
            for g1, g2 in itertools.product(g1_range, g2_range):
                g1, g2 = ordered(g1, g2)
                t1, t2 = int(m.geom_type[g1]), int(m.geom_type[g2])
                if t1 == plane and t2 in (plane, hfield):
                    continue
                match = m.geom_contype[g1] & m.geom_conaffinity[g2]
                match |= m.geom_contype[g2] & m.geom_conaffinity[g1]
                if not match:
                    continue
                if (g1, g2) not in seen:
                    seen.add((g1, g2))
                    pairs.append((g1, g2))
    return pairs


def _contact_dims(model: mujoco.MjModel, geom_pairs: list[tuple[int, int]]) -> list[tuple[int, int, int]]:
    """``(geom1, geom2, dim)`` of the contacts ``geom_pairs`` would make, as MuJoCo sets
    their dimension: an explicit pair's ``condim``; otherwise the geom of higher priority's,
    or the larger of the two at equal priority. ``geom_pairs`` as `collision_geom_pairs`
    returns them (explicit pairs first)."""
    dims = []
    for index, (g1, g2) in enumerate(geom_pairs):
        if index < model.npair:
            dim = int(model.pair_dim[index])
        elif model.geom_priority[g1] != model.geom_priority[g2]:
            higher = g1 if model.geom_priority[g1] > model.geom_priority[g2] else g2
            dim = int(model.geom_condim[higher])
        else:
            dim = int(max(model.geom_condim[g1], model.geom_condim[g2]))
        dims.append((g1, g2, dim))
    return dims


def _mjx_problems(model: mujoco.MjModel) -> list[Incompatibility]:
    m = model
    problems: list[Incompatibility] = []

    def add(feature: str, element: str) -> None:
        problems.append(Incompatibility(feature, element, ("mujoco",), "mjx"))

    if m.nflex:
        add("flex (deformable) objects", f"{m.nflex} flex(es)")
    for option, enum, supported in MJX_OPTIONS:
        value = int(getattr(m.opt, option))
        if value not in supported:
            add(f"option {option}={enum(value).name}", "<option>")
    for shift in range(int(mujoco.mjtEnableBit.mjNENABLE)):
        bit = 1 << shift
        if m.opt.enableflags & bit and bit not in MJX_ENABLE_FLAGS:
            add(f"enable flag {mujoco.mjtEnableBit(bit).name}", "<option><flag>")
    # Collision pairs: grouped by type pair so a model with hundreds of them stays readable.
    unsupported: dict[tuple[int, int], list[str]] = {}

    def geoms(g1: int, g2: int) -> str:
        return f"{_name(m, mujoco.mjtObj.mjOBJ_GEOM, g1)} / {_name(m, mujoco.mjtObj.mjOBJ_GEOM, g2)}"

    geom_pairs = collision_geom_pairs(m)
    for g1, g2 in geom_pairs:
        types = (int(m.geom_type[g1]), int(m.geom_type[g2]))
        if types not in MJX_COLLISION_PAIRS:
            unsupported.setdefault(types, []).append(geoms(g1, g2))
        elif {int(_G.mjGEOM_MESH), int(_G.mjGEOM_HFIELD)} & set(types) and (m.geom_margin[g1] + m.geom_margin[g2] > 0):
            add(f"collision margin with {_G(max(types)).name}", f"geoms {geoms(g1, g2)}")
    if m.opt.cone == mujoco.mjtCone.mjCONE_ELLIPTIC:
        # MJX's make_data refuses any contact of dimension 1 with an elliptic cone.
        frictionless = [geoms(g1, g2) for g1, g2, dim in _contact_dims(m, geom_pairs) if dim == 1]
        if frictionless:
            shown = "; ".join(frictionless[:5]) + (
                f"; ... ({len(frictionless)} pairs)" if len(frictionless) > 5 else ""
            )
            add("condim 1 (frictionless) contacts with the elliptic friction cone", f"geoms {shown}")
    for (t1, t2), names in unsupported.items():
        shown = "; ".join(names[:5]) + (f"; ... ({len(names)} pairs)" if len(names) > 5 else "")
        add(f"collision ({_G(t1).name}, {_G(t2).name})", f"geoms {shown}")
    for field_name, enum, supported in MJX_ENUMS:
        objtype = {
            "actuator": mujoco.mjtObj.mjOBJ_ACTUATOR,
            "eq": mujoco.mjtObj.mjOBJ_EQUALITY,
        }.get(field_name.split("_")[0])
        for index, value in enumerate(getattr(m, field_name)):
            if int(value) not in supported:
                element = _name(m, objtype, index) if objtype is not None else f"#{index}"
                add(f"{field_name} {enum(int(value)).name}", element)
    for index in range(m.nsensor):
        sensor_type = int(m.sensor_type[index])
        name = _name(m, mujoco.mjtObj.mjOBJ_SENSOR, index)
        if sensor_type not in MJX_SENSORS:
            add(f"sensor type {_S(sensor_type).name}", f"sensor {name}")
        elif sensor_type == int(_S.mjSENS_TOUCH) and not geom_pairs:
            # MJX's sensor_acc builds the contact forces touch sensors read by concatenating
            # one array per contact dimension: with no collision pair the list is empty and
            # tracing fails ("Need at least one array to concatenate").
            add("touch sensor in a model without any collision pair", f"sensor {name}")
        elif sensor_type == int(_S.mjSENS_CONTACT):
            objtype = int(m.sensor_objtype[index])
            reftype = int(m.sensor_reftype[index])
            bad = {int(mujoco.mjtObj.mjOBJ_BODY), int(mujoco.mjtObj.mjOBJ_XBODY)}
            netforce = m.sensor_intprm[index, 1] == 3
            if objtype == int(mujoco.mjtObj.mjOBJ_SITE) or {objtype, reftype} & bad or netforce:
                add(
                    "contact sensor with site/body/subtree matching or netforce reduction",
                    f"sensor {name}",
                )
    return problems


def check_backend_compatibility(model: mujoco.MjModel, backend: str) -> list[Incompatibility]:
    """The features of ``model`` that ``backend`` cannot simulate (empty if none).

    ``"mujoco"`` (native MuJoCo) simulates every feature a model can compile with, so
    its list is always empty. ``"mjx"`` (MJX's JAX implementation) is checked for: flex objects,
    integrator and solver options and enable flags, collision geom type pairs without a
    collision function (e.g. ellipsoid with box), margins on mesh/height-field pairs,
    actuator dynamics/gain/bias/transmission types, equality and wrap types, sensor types,
    touch sensors in a model with no collision pair (MJX's sensor code fails to trace
    them), and contact sensors with matching semantics MJX lacks. ``"warp"``
    (MuJoCo Warp) is checked against the installed ``mujoco_warp``'s own tables of
    supported actuator, equality, geom, sensor and wrap types, integrators, cones, solvers
    and option flags (naming each element), then by its ``put_model`` on the CPU, which
    stops at the first other unsupported feature (plugins, some flex settings).

    Args:
        model: a compiled model (a body's ``load_model()`` or a backend's ``model``).
        backend: a name in `BACKENDS`.

    Returns:
        One `Incompatibility` per problem (unsupported collision pairs grouped by type pair).

    Raises:
        ValueError: if ``backend`` is not a name in `BACKENDS`.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}")
    if backend == "mujoco":
        return []
    if backend == "warp":
        return _warp_problems(model)
    return _mjx_problems(model)


def _warp_problems(model: mujoco.MjModel) -> list[Incompatibility]:
    """MuJoCo Warp's limits, read from the installed ``mujoco_warp`` (its own tables)."""
    try:
        import warp

        warp.config.log_level = warp.LOG_WARNING  # no start-up banner on stdout (bodies check prints JSON there)
        from mujoco_warp import put_model
        from mujoco_warp._src import types as warp_types
    except ImportError as error:
        raise ImportError("checking MuJoCo Warp support needs mujoco-warp: pip install 'neuromimic[mjx]'") from error
    m = model
    problems: list[Incompatibility] = []

    def add(feature: str, element: str) -> None:
        problems.append(Incompatibility(feature, element, ("mujoco",), "warp"))

    _O = mujoco.mjtObj
    for values, supported, enum, objtype, what in (
        (m.actuator_trntype, warp_types.TrnType, mujoco.mjtTrn, _O.mjOBJ_ACTUATOR, "actuator transmission"),
        (m.actuator_dyntype, warp_types.DynType, mujoco.mjtDyn, _O.mjOBJ_ACTUATOR, "actuator dynamics"),
        (m.actuator_gaintype, warp_types.GainType, mujoco.mjtGain, _O.mjOBJ_ACTUATOR, "actuator gain"),
        (m.actuator_biastype, warp_types.BiasType, mujoco.mjtBias, _O.mjOBJ_ACTUATOR, "actuator bias"),
        (m.eq_type, warp_types.EqType, mujoco.mjtEq, _O.mjOBJ_EQUALITY, "equality"),
        (m.geom_type, warp_types.GeomType, mujoco.mjtGeom, _O.mjOBJ_GEOM, "geom"),
        (m.sensor_type, warp_types.SensorType, mujoco.mjtSensor, _O.mjOBJ_SENSOR, "sensor"),
        (m.wrap_type, warp_types.WrapType, mujoco.mjtWrap, None, "tendon wrap"),
    ):
        known = {int(v) for v in supported}
        for index, value in enumerate(values):
            if int(value) not in known:
                element = _name(m, objtype, index) if objtype is not None else f"#{index}"
                add(f"{what} {enum(int(value)).name}", element)
    for option, supported, enum in (
        ("integrator", warp_types.IntegratorType, mujoco.mjtIntegrator),
        ("cone", warp_types.ConeType, mujoco.mjtCone),
        ("solver", warp_types.SolverType, mujoco.mjtSolver),
    ):
        value = int(getattr(m.opt, option))
        if value not in {int(v) for v in supported}:
            add(f"option {option}={enum(value).name}", "<option>")
    for flags, supported, enum in (
        (m.opt.disableflags, warp_types.DisableBit, mujoco.mjtDisableBit),
        (m.opt.enableflags, warp_types.EnableBit, mujoco.mjtEnableBit),
    ):
        unsupported = int(flags) & ~functools.reduce(operator.or_, (int(v) for v in supported), 0)
        for shift in range(unsupported.bit_length()):
            if unsupported >> shift & 1:
                add(f"flag {enum(1 << shift).name}", "<option><flag>")
    if not problems:  # the rest of put_model's checks (plugins, flex settings), on the CPU
        try:
            with warp.ScopedDevice("cpu"):
                put_model(m)
        except NotImplementedError as error:
            add(str(error), "model")
    return problems


def require_backend_compatibility(model: mujoco.MjModel, backend: str, body_key: str | None = None) -> None:
    """Raise if ``backend`` cannot simulate ``model``; call it before building the simulator.

    Args:
        model: a compiled model.
        backend: a name in `BACKENDS`.
        body_key: the body's registry key, for the message.

    Raises:
        BackendCompatibilityError: listing every `Incompatibility`, one per line.
    """
    problems = check_backend_compatibility(model, backend)
    if problems:
        what = f"body {body_key!r}" if body_key else "this model"
        lines = "\n".join(f"  - {p}" for p in problems)
        raise BackendCompatibilityError(
            f"the {backend!r} backend cannot simulate {what}; unsupported features:\n{lines}\n"
            "Edit the body (see neuromimic/bodies/rodent.py for explicit MJX edits) or use "
            "a backend that supports them.",
            problems,
        )


__all__ = [
    "BACKENDS",
    "BackendCompatibilityError",
    "Incompatibility",
    "check_backend_compatibility",
    "collision_geom_pairs",
    "require_backend_compatibility",
]
