"""Headless MuJoCo rendering of recorded rollouts, with the reference as a ghost body.

`render_frames` draws the simulated body at each recorded pose and, in the same scene, a
see-through green copy at the reference pose (the ghost, hidden where the body covers it),
on a stage (`stage_model`: a sky, a chequered floor under bodies that have none, a
directional light casting shadows), seen by a camera that follows a free-moving body's
centre (smoothed in time by a Gaussian, so it neither jitters nor lags) or frames a
fixed-base body's whole movement, at a distance set by the body's size. Muscles are
coloured by their activation (blue-grey at 0, red at 1) and an overlay gives the time, the
tracking error and the size of the floor's chequers. `recording_frames` draws a `Recording`
with all of these; `render_video` writes it as an MP4 (imageio with its bundled ffmpeg);
`gif_bytes` encodes frames as an animated GIF (what TensorBoard shows as a video, see
`neuromimic.analysis.video.VideoLogger`).

Rendering needs an OpenGL platform without a display: EGL, or OSMesa with
``MUJOCO_GL=osmesa``. The context is created here. `recording_frames` draws the body as
compiled from its MJCF: body perturbations active during the recording are not shown.
"""

from __future__ import annotations

import copy
import io
import logging
import os
from pathlib import Path

import mujoco
import numpy as np

from neuromimic.analysis.record import Recording
from neuromimic.bodies import Body, get_body

# PyOpenGL announces at INFO level that its optional C accelerator is missing.
logging.getLogger("OpenGL.acceleratesupport").setLevel(logging.WARNING)

#: Prefix of the names of what `stage_model` adds to a body (avoids clashes with the MJCF).
STAGE_PREFIX = "neuromimic/stage/"
#: Colour of the reference (ghost) body; its opacity is ``ghost_alpha``.
GHOST_RGB = (0.4, 1.0, 0.0)
#: Scale of the ghost's geoms: a ghost on the body hides inside it, not in a tie of depths.
GHOST_SCALE = 0.97
#: Colours of a muscle at activation 0 and 1 (mixed linearly in between).
MUSCLE_REST_RGB = (0.32, 0.40, 0.68)
MUSCLE_ACTIVE_RGB = (0.95, 0.10, 0.05)
#: Sky at the zenith and at the horizon, and the floor's two chequers.
SKY_RGB = ((0.30, 0.50, 0.78), (0.86, 0.90, 0.96))
FLOOR_RGB = ((0.80, 0.81, 0.83), (0.62, 0.65, 0.70))
#: Camera (azimuth, elevation) in degrees for fixed-base bodies, and for free-moving bodies
#: (azimuth relative to the body's heading in the first frame); other bodies get the
#: defaults below.
VIEWS = {"mouse_forelimb": (150.0, -20.0), "myoarm": (150.0, -15.0)}
FIXED_VIEW = (135.0, -20.0)
FREE_VIEW = (120.0, -20.0)
#: Fraction of the frame's width or height that the body's bounding box spans: a fixed-base
#: body's over the whole recording, a free-moving body's in the first frame (it may turn).
FIXED_FILL = 0.8
FREE_FILL = 0.75
#: Draw shadows when the body's meshes have fewer vertices than this: they double the cost
#: of software rendering of mesh-heavy bodies (timed by hand, MyoLegs at rest: 0.92 -> 0.40 s
#: per 480x368 frame without them).
SHADOW_MAX_MESH_VERTICES = 20_000
#: Direction of the stage's sun (from above, the front left of a body facing +x).
_SUN_DIRECTION = np.array([-0.3, 0.25, -1.0])


class RenderingUnavailable(RuntimeError):
    """No headless OpenGL platform (EGL or OSMesa) could be started."""


def _gl_context(width: int, height: int):
    """A current headless GL context: EGL, or OSMesa when ``MUJOCO_GL=osmesa`` (PyOpenGL
    binds one platform per process, so there is no falling back from one to the other)."""
    platform = "osmesa" if os.environ.get("MUJOCO_GL", "").lower() == "osmesa" else "egl"
    try:
        module = __import__(f"mujoco.{platform}", fromlist=["GLContext"])
        context = module.GLContext(width, height)
        context.make_current()
        return context
    except Exception as error:  # each platform fails in its own way when missing
        raise RenderingUnavailable(
            f"cannot start headless OpenGL through {platform} ({type(error).__name__}: {error}). "
            "Install EGL (`apt-get install libegl1 libgl1-mesa-dri`), or OSMesa "
            "(`apt-get install libosmesa6`) and set MUJOCO_GL=osmesa before starting Python"
        ) from error


def add_stage(spec: mujoco.MjSpec) -> None:
    """Add a stage for drawing to a body's spec, in place: a gradient sky (unless it has a
    skybox), a chequered floor plane (unless it has a plane; it collides with nothing, and
    `render_frames` moves it under the body and sizes its chequers), a directional light
    casting shadows (`render_frames` keeps it above the body) and a softer headlight, which
    replace the body's own lights. Adds no body or joint, so ``qpos`` keeps its layout."""
    if not any(texture.type == mujoco.mjtTexture.mjTEXTURE_SKYBOX for texture in spec.textures):
        spec.add_texture(
            name=f"{STAGE_PREFIX}sky",
            type=mujoco.mjtTexture.mjTEXTURE_SKYBOX,
            builtin=mujoco.mjtBuiltin.mjBUILTIN_GRADIENT,
            rgb1=SKY_RGB[0],
            rgb2=SKY_RGB[1],
            width=512,
            height=3072,
        )
    if not any(geom.type == mujoco.mjtGeom.mjGEOM_PLANE for geom in spec.geoms):
        spec.add_texture(
            name=f"{STAGE_PREFIX}floor",
            type=mujoco.mjtTexture.mjTEXTURE_2D,
            builtin=mujoco.mjtBuiltin.mjBUILTIN_CHECKER,
            rgb1=FLOOR_RGB[0],
            rgb2=FLOOR_RGB[1],
            mark=mujoco.mjtMark.mjMARK_EDGE,
            markrgb=(0.9, 0.9, 0.9),
            width=512,
            height=512,
        )
        material = spec.add_material(name=f"{STAGE_PREFIX}floor", texuniform=True, reflectance=0.0)
        material.textures[mujoco.mjtTextureRole.mjTEXROLE_RGB] = f"{STAGE_PREFIX}floor"
        spec.worldbody.add_geom(
            name=f"{STAGE_PREFIX}floor",
            type=mujoco.mjtGeom.mjGEOM_PLANE,
            size=(1.0, 1.0, 0.1),
            material=f"{STAGE_PREFIX}floor",
            rgba=(1.0, 1.0, 1.0, 1.0),  # not the body's default colour: the texture's
            contype=0,
            conaffinity=0,
            group=0,
        )
    for light in spec.lights:  # one lighting for every body: the headlight and the sun
        light.active = False
    spec.worldbody.add_light(
        name=f"{STAGE_PREFIX}sun",
        type=mujoco.mjtLightType.mjLIGHT_DIRECTIONAL,
        pos=(0.0, 0.0, 1.0),
        dir=tuple(_SUN_DIRECTION),
        castshadow=True,
        diffuse=(0.5, 0.5, 0.48),
        specular=(0.15, 0.15, 0.15),
        ambient=(0.05, 0.05, 0.05),
    )
    spec.visual.headlight.ambient = (0.25, 0.25, 0.25)
    spec.visual.headlight.diffuse = (0.35, 0.35, 0.35)
    spec.visual.headlight.specular = (0.1, 0.1, 0.1)
    spec.visual.rgba.haze = (*SKY_RGB[1], 1.0)
    spec.visual.quality.shadowsize = 2048


def stage_model(body: Body | str) -> mujoco.MjModel:
    """The model of ``body`` (or of the body registered under that key) with `add_stage`'s
    sky, floor and light: what `recording_frames` draws. Its ``qpos`` layout is the body's."""
    body = get_body(body) if isinstance(body, str) else body
    spec = body.load_spec()
    add_stage(spec)
    return spec.compile()


def _free_root(model: mujoco.MjModel) -> int | None:
    """The body whose free joint is the model's first joint, or None (a fixed base)."""
    if model.njnt and model.jnt_type[0] == mujoco.mjtJoint.mjJNT_FREE:
        return int(model.jnt_bodyid[0])
    return None


def _drawn_geoms(model: mujoco.MjModel) -> np.ndarray:
    """Ids of the geoms that move with the body's joints (not the scene's furniture, nor a
    fixed base's torso) and that the default options draw (groups 0-2, not transparent)."""
    ids = np.arange(model.ngeom)
    keep = (model.body_weldid[model.geom_bodyid] != 0) & (model.geom_group < 3)
    rgba = np.where(model.geom_matid[:, None] >= 0, model.mat_rgba[model.geom_matid], model.geom_rgba)
    return ids[keep & (rgba[:, 3] > 0)]


def _bounds(model: mujoco.MjModel, data: mujoco.MjData, geoms: np.ndarray) -> np.ndarray:
    """[2, 3] world bounding box (min, max) of ``geoms`` and of the muscles' paths at the
    posed ``data`` (after `mj_kinematics` and `mj_tendon`)."""
    points = [data.xpos[1:] if not len(geoms) else data.xpos[:0]]  # bodies without geoms: their origins
    if len(geoms):
        aabb = model.geom_aabb[geoms]  # [G, 6]: centre and half sizes in the geom's frame
        signs = np.array(np.meshgrid([-1, 1], [-1, 1], [-1, 1])).reshape(3, 8).T  # [8, 3]
        local = aabb[:, None, :3] + signs[None] * aabb[:, None, 3:]  # [G, 8, 3]
        rotation = data.geom_xmat[geoms].reshape(-1, 3, 3)
        points.append((data.geom_xpos[geoms, None] + np.einsum("gij,gkj->gki", rotation, local)).reshape(-1, 3))
    if model.ntendon:
        used = int(data.ten_wrapadr[-1] + data.ten_wrapnum[-1])
        points.append(data.wrap_xpos.reshape(-1, 3)[:used])
    corners = np.concatenate(points)
    if not len(corners):  # nothing but the world
        corners = np.zeros((1, 3))
    return np.stack([corners.min(axis=0), corners.max(axis=0)])


def _smooth(values: np.ndarray, times: np.ndarray, sigma: float) -> np.ndarray:
    """[T, ...] ``values`` sampled every ``median(diff(times))`` smoothed by a Gaussian of
    standard deviation ``sigma`` (s), which does not lag. Both ends are extended by point
    reflection and the kernel is cut to what they hold, so a body moving steadily stays
    exactly centred up to the last frame."""
    values = np.asarray(values, dtype=np.float64)
    dt = float(np.median(np.abs(np.diff(times)))) if len(values) > 1 else 1.0
    radius = int(min(np.ceil(3 * sigma / max(dt, 1e-12)), len(values) - 1))
    if sigma <= 0 or radius < 1:
        return values.copy()
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) * dt / sigma) ** 2)
    kernel /= kernel.sum()
    head = 2 * values[0] - values[radius:0:-1]
    tail = 2 * values[-1] - values[-2 : -radius - 2 : -1]
    padded = np.concatenate([head, values, tail]).reshape(len(values) + 2 * radius, -1)
    out = np.stack([np.convolve(column, kernel, mode="valid") for column in padded.T], axis=1)
    return out.reshape(values.shape)


def muscle_tendons(model: mujoco.MjModel) -> np.ndarray:
    """[ntendon] index into the activation state (``data.act``) of the muscle pulling on
    each tendon, or -1 for a tendon no muscle pulls on."""
    index = np.full(model.ntendon, -1, dtype=np.int64)
    for actuator in range(model.nu):
        is_muscle = (
            model.actuator_dyntype[actuator] == mujoco.mjtDyn.mjDYN_MUSCLE
            or model.actuator_gaintype[actuator] == mujoco.mjtGain.mjGAIN_MUSCLE
        )
        tendon = model.actuator_trntype[actuator] == mujoco.mjtTrn.mjTRN_TENDON
        if is_muscle and tendon and model.actuator_actadr[actuator] >= 0:
            index[model.actuator_trnid[actuator, 0]] = model.actuator_actadr[actuator]
    return index


def _font_scale(height: int) -> int:
    """An `mjtFontScale` for text about 1/13 of the frame's height (at least 100 %: MuJoCo
    draws its 50 % font as its 100 % one)."""
    scale = int(np.clip(round(height / 240 * 2) * 50, 100, 300))
    return getattr(mujoco.mjtFontScale, f"mjFONTSCALE_{scale}")


def render_frames(
    model: mujoco.MjModel | Body | str,
    qpos: np.ndarray,
    reference_qpos: np.ndarray | None = None,
    width: int = 480,
    height: int = 368,
    ghost_alpha: float = 0.4,
    distance_scale: float = 1.0,
    *,
    times: np.ndarray | None = None,
    error_mm: np.ndarray | None = None,
    activation: np.ndarray | None = None,
    title: str | None = None,
    overlay: bool = True,
    azimuth: float | None = None,
    elevation: float | None = None,
    follow_smoothing: float = 0.2,
    shadows: bool | None = None,
) -> np.ndarray:
    """RGB frames of a body at each pose, with an optional ghost at the reference pose.

    Args:
        model: the compiled model, or a `Body` (or its key) to draw on `stage_model`'s stage.
            A model from `neuromimic.physics.model.compile_model` is drawn as it is (with a
            floor and sky only where its MJCF has them).
        qpos: [T, nq] simulated joint positions (rad).
        reference_qpos: [T, nq] reference joint positions, drawn as the ghost, or None.
        width, height: frame size in pixels (multiples of 16 suit video codecs).
        ghost_alpha: opacity of the ghost (the reference body, tinted `GHOST_RGB`; 0 hides
            it). It is drawn opaque in a second picture that is blended into the first, so
            its overlapping parts do not add up, and the body hides it where they coincide
            (a skin, like the rat's, is left out: MuJoCo poses it with the body's data).
        distance_scale: camera distance relative to the default, which fits the body (a
            free-moving body at its first frame; a fixed-base body, ghost included, over
            all frames) in the frame.
        times: [T] time of each frame (s), shown in the overlay; also the time base of the
            camera's smoothing (default 30 frames per second).
        error_mm: [T] tracking error shown in the overlay (mm), or None.
        activation: [T, na] actuator activations (``data.act``, 0..1); muscles pulling on
            tendons are coloured from `MUSCLE_REST_RGB` (0) to `MUSCLE_ACTIVE_RGB` (1).
        title: text for the top right corner (for example the clip's name).
        overlay: draw the time, the error, the title and the activation colour bar.
        azimuth, elevation: camera angles in degrees; default `VIEWS` for the model's name
            or `FIXED_VIEW`; for a free-moving body the azimuth is relative to its heading in
            the first frame (default `FREE_VIEW`).
        follow_smoothing: standard deviation (s) of the Gaussian that smooths the followed
            centre of a free-moving body (the subtree centre of mass of its root) in time.
        shadows: cast shadows; default when the meshes have fewer than
            `SHADOW_MAX_MESH_VERTICES` vertices.

    Returns:
        [T, height, width, 3] uint8.
    """
    return _render(
        model,
        qpos,
        reference_qpos,
        width,
        height,
        ghost_alpha,
        distance_scale,
        times=times,
        error_mm=error_mm,
        activation=activation,
        title=title,
        overlay=overlay,
        azimuth=azimuth,
        elevation=elevation,
        follow_smoothing=follow_smoothing,
        shadows=shadows,
    )


def _render(
    model,
    qpos,
    reference_qpos=None,
    width=480,
    height=368,
    ghost_alpha=0.4,
    distance_scale=1.0,
    *,
    times=None,
    error_mm=None,
    activation=None,
    title=None,
    overlay=True,
    azimuth=None,
    elevation=None,
    follow_smoothing=0.2,
    shadows=None,
    segment=False,
) -> np.ndarray:
    """`render_frames`; with ``segment``, [T, height, width] int32 maps instead: the id of
    the body drawn at each pixel of the simulated body (0 for a muscle or a skin), -1
    elsewhere (floor, sky; the ghost is not drawn)."""
    if isinstance(model, mujoco.MjModel):
        name, unit_m = bytes(model.names).split(b"\0", 1)[0].decode(), 1.0  # the MJCF's model name
        model = copy.copy(model)  # the stage, the muscles' colours and the light are set on it
    else:
        body = get_body(model) if isinstance(model, str) else model
        name, unit_m = body.key, body.length_unit_m
        model = stage_model(body)
    qpos = np.asarray(qpos, dtype=np.float64)
    if qpos.ndim != 2 or qpos.shape[1] != model.nq:
        raise ValueError(f"qpos must be [T, {model.nq}]; got {qpos.shape}")
    if reference_qpos is not None and np.shape(reference_qpos) != qpos.shape:
        raise ValueError(f"reference_qpos must match qpos {qpos.shape}; got {np.shape(reference_qpos)}")
    count = len(qpos)
    for label, value in (("times", times), ("error_mm", error_mm)):
        if value is not None and np.shape(value) != (count,):
            raise ValueError(f"{label} must be [{count}]; got {np.shape(value)}")
    if activation is not None and np.shape(activation) != (count, model.na):
        raise ValueError(f"activation must be [{count}, {model.na}] (data.act); got {np.shape(activation)}")
    if not count:
        return np.zeros((0, height, width) + (() if segment else (3,)), dtype=np.int32 if segment else np.uint8)
    clock = np.arange(count) / 30.0 if times is None else np.asarray(times, dtype=np.float64)
    simulated, reference = mujoco.MjData(model), mujoco.MjData(model)
    root = _free_root(model)
    # A fixed-base body is framed with its ghost over the whole recording.
    boxes, centres, heading = _track(model, simulated, reference, qpos, reference_qpos if root is None else None, root)

    # The camera: fixed on a fixed-base body's whole movement, or following a free one.
    camera = mujoco.MjvCamera()
    mujoco.mjv_defaultFreeCamera(model, camera)
    default_view = FREE_VIEW if root is not None else VIEWS.get(name, FIXED_VIEW)
    camera.azimuth = (default_view[0] if azimuth is None else azimuth) + heading
    camera.elevation = default_view[1] if elevation is None else elevation
    if root is None:
        extent = np.stack([boxes[:, 0].min(axis=0), boxes[:, 1].max(axis=0)])
        lookat = np.repeat(extent.mean(axis=0)[None], count, axis=0)
    else:
        extent = boxes[0]
        lookat = _smooth(centres, clock, follow_smoothing)
    size = float(np.linalg.norm(extent[1] - extent[0]))  # the box's diagonal
    fill = FREE_FILL if root is not None else FIXED_FILL
    camera.distance = _fit_distance(camera, extent, model.vis.global_.fovy, width / height, fill) * distance_scale
    cell = _place_stage(model, lookat, boxes, size, camera.distance)
    if shadows is None:
        shadows = model.nmeshvert < SHADOW_MAX_MESH_VERTICES
    grid = None if cell is None else _length(cell * unit_m)

    muscles = (
        [(int(t), int(a)) for t, a in enumerate(muscle_tendons(model)) if a >= 0] if activation is not None else []
    )
    rest, active = np.array(MUSCLE_REST_RGB), np.array(MUSCLE_ACTIVE_RGB)
    sun = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_LIGHT, f"{STAGE_PREFIX}sun")
    model.vis.global_.offwidth = max(width, model.vis.global_.offwidth)
    model.vis.global_.offheight = max(height, model.vis.global_.offheight)
    context, render = _gl_context(width, height), None
    try:
        render = mujoco.MjrContext(model, _font_scale(height))
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, render)
        # Body and ghost: each geom, site and tendon segment may be drawn twice.
        scene = mujoco.MjvScene(model, maxgeom=2 * (model.ngeom + model.nsite + 32 * model.ntendon) + 100)
        option, ghost_option, perturbation = mujoco.MjvOption(), mujoco.MjvOption(), mujoco.MjvPerturb()
        option.flags[mujoco.mjtVisFlag.mjVIS_TENDON] = True
        ghost_option.flags[mujoco.mjtVisFlag.mjVIS_TENDON] = False  # muscle colours are the body's
        scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = bool(shadows) and not segment
        scene.flags[mujoco.mjtRndFlag.mjRND_SEGMENT] = segment
        scene.flags[mujoco.mjtRndFlag.mjRND_IDCOLOR] = segment
        viewport = mujoco.MjrRect(0, 0, width, height)
        frames = np.zeros((count, height, width, 3), dtype=np.uint8)
        labels = np.full((count, height, width), -1, dtype=np.int32)
        ghost = reference_qpos is not None and ghost_alpha > 0 and not segment
        alone = np.zeros((height, width, 3), dtype=np.uint8)
        # The first frame drawn has a broken shadow map: draw frame 0 twice.
        for t in [0, *range(count)]:
            for tendon, state in muscles:
                level = float(np.clip(activation[t, state], 0.0, 1.0))
                model.tendon_rgba[tendon, :3] = rest + level * (active - rest)
            simulated.qpos[:] = qpos[t]
            mujoco.mj_fwdPosition(model, simulated)  # kinematics and tendon (muscle) paths
            camera.lookat[:] = lookat[t]
            if sun >= 0:  # the sun's shadow map is centred on it
                model.light_pos[sun] = lookat[t] - _SUN_DIRECTION * size
            mujoco.mjv_updateScene(model, simulated, option, perturbation, camera, mujoco.mjtCatBit.mjCAT_ALL, scene)
            text = None
            if overlay and not segment:
                lines = [("time", f"{clock[t]:.2f} s")] if times is not None else []
                if error_mm is not None:
                    lines.append(("error", f"{float(error_mm[t]):.1f} mm"))
                if grid is not None:
                    lines.append(("grid", grid))
                text = (lines, title, bool(muscles))
            if not ghost:
                _draw(viewport, scene, render, text, frames[t])
                if segment:
                    labels[t] = _segment_bodies(model, scene, frames[t])[::-1]
                continue
            # The ghost, drawn opaque in a second picture that is blended into the first:
            # one opacity however many of its geoms overlap, and hidden behind the body.
            _draw(viewport, scene, render, text, alone)
            reference.qpos[:] = reference_qpos[t]
            mujoco.mj_fwdPosition(model, reference)
            first = scene.ngeom
            mujoco.mjv_addGeoms(model, reference, ghost_option, perturbation, mujoco.mjtCatBit.mjCAT_DYNAMIC, scene)
            for i in range(first, scene.ngeom):
                # a skin is drawn where the scene's body put its vertices: the simulated one's
                skin = scene.geoms[i].objtype == mujoco.mjtObj.mjOBJ_SKIN
                scene.geoms[i].rgba[:] = (*GHOST_RGB, 0.0 if skin else 1.0)
                scene.geoms[i].size[:] *= GHOST_SCALE  # inside the body where they coincide
            _draw(viewport, scene, render, text, frames[t])
            frames[t] = np.round(alone + ghost_alpha * (frames[t].astype(np.float32) - alone)).astype(np.uint8)
    finally:
        if render is not None:
            render.free()
        context.free()
    if segment:
        return labels
    return np.ascontiguousarray(frames[:, ::-1])  # OpenGL rows run bottom-up


def _track(model, simulated, reference, qpos, reference_qpos, root) -> tuple[np.ndarray, np.ndarray, float]:
    """Where the body is in each frame: [T, 2, 3] bounding boxes (of the ghost too, when
    ``reference_qpos`` is given), [T, 3] centres (the subtree centre of mass of ``root``,
    or of the world) and the heading of ``root`` in the first frame (degrees; 0 without)."""
    geoms, heading = _drawn_geoms(model), 0.0
    boxes, centres = np.zeros((len(qpos), 2, 3)), np.zeros((len(qpos), 3))
    for t in range(len(qpos)):
        for data, pose in ((simulated, qpos), (reference, reference_qpos)):
            if pose is None:
                continue
            data.qpos[:] = pose[t]
            mujoco.mj_kinematics(model, data)
            mujoco.mj_comPos(model, data)
            mujoco.mj_tendon(model, data)
            box = _bounds(model, data, geoms)
            boxes[t] = box if data is simulated else [np.minimum(boxes[t, 0], box[0]), np.maximum(boxes[t, 1], box[1])]
        centres[t] = simulated.subtree_com[root if root is not None else 0]
        if t == 0 and root is not None:
            forward = simulated.xmat[root].reshape(3, 3)[:, 0]
            heading = float(np.degrees(np.arctan2(forward[1], forward[0])))
    return boxes, centres, heading


def _place_stage(model, lookat: np.ndarray, boxes: np.ndarray, size: float, distance: float) -> float | None:
    """Fit `add_stage`'s stage to the body's size and place: the floor under its lowest point,
    its chequers about a quarter of ``size`` (returned, or None without that floor); the
    sun's shadow map a few sizes wide; the clipping planes around the camera's ``distance``.
    Also draws the mono view from the camera itself (MuJoCo draws it from the left eye of a
    stereo pair, 34 mm aside by default: more than the mouse forelimb's size)."""
    extent = max(model.stat.extent, 1e-9)  # the unit of the map's relative distances
    model.vis.global_.ipd = 0.0
    model.vis.map.znear = min(model.vis.map.znear, 0.02 * distance / extent)
    model.vis.map.zfar = max(model.vis.map.zfar, 60 * distance / extent)
    if mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_LIGHT, f"{STAGE_PREFIX}sun") >= 0:
        model.vis.map.shadowclip = 2.0 * size / extent
    floor = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, f"{STAGE_PREFIX}floor")
    if floor < 0:
        return None
    model.geom_pos[floor] = (*lookat.mean(axis=0)[:2], boxes[:, 0, 2].min() - 0.05 * size)
    model.geom_sameframe[floor] = 0  # compiled at the world's origin: placed there otherwise
    model.geom_size[floor, :2] = 40 * size
    cell = _cell(size)
    model.mat_texrepeat[model.geom_matid[floor]] = 1.0 / (2 * cell)  # a texture holds 2 x 2 chequers
    return cell


def _length(metres: float) -> str:
    """``0.005`` -> ``"5 mm"``."""
    for unit, scale in (("m", 1.0), ("cm", 1e-2), ("mm", 1e-3), ("um", 1e-6)):
        if metres >= scale * 0.999:
            return f"{metres / scale:g} {unit}"
    return f"{metres:g} m"


def _fit_distance(camera: mujoco.MjvCamera, box: np.ndarray, fovy: float, aspect: float, fill: float) -> float:
    """The camera distance at which the corners of ``box`` [2, 3], seen at the camera's
    azimuth and elevation around the box's centre, span ``fill`` of the frame's width or
    height (whichever is reached first). ``fovy``: vertical field of view in degrees."""
    azimuth, elevation = np.radians(camera.azimuth), np.radians(camera.elevation)
    forward = np.array([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth), np.sin(elevation)])
    right = np.array([np.sin(azimuth), -np.cos(azimuth), 0.0])
    up = np.cross(right, forward)
    signs = np.array(np.meshgrid([0, 1], [0, 1], [0, 1])).reshape(3, 8).T
    corners = np.where(signs, box[1], box[0]) - box.mean(axis=0)
    tan_v = np.tan(np.radians(fovy) / 2) * fill
    across, high, deep = corners @ right, corners @ up, corners @ forward
    # a corner at depth d + deep is inside when |across| <= tan_h (d + deep), likewise up
    distance = max(np.max(np.abs(across) / (tan_v * aspect) - deep), np.max(np.abs(high) / tan_v - deep))
    return float(max(distance, 1e-6))


def _draw(viewport, scene, render, text, out: np.ndarray) -> None:
    """Draw ``scene`` (and the overlay ``text``: `_overlay`'s arguments, or None) into ``out``."""
    mujoco.mjr_render(viewport, scene, render)
    if text is not None:
        _overlay(viewport, render, *text)
    mujoco.mjr_readPixels(out, None, viewport, render)


def _cell(size: float) -> float:
    """Side of a floor chequer for a body of ``size``: a round number (1, 2 or 5 times a power
    of ten) near a quarter of it, so the chequers measure the scene."""
    target = size / 4
    power = 10.0 ** np.floor(np.log10(target))
    return float(min((1, 2, 5, 10), key=lambda m: abs(np.log(m * power / target))) * power)


def _overlay(viewport, render, lines: list[tuple[str, str]], title: str | None, muscles: bool) -> None:
    """``lines`` (name, value) at the top left, the title at the top right, the activation
    colour bar at the bottom left: what fits. A frame under 5 lines of text high gets none;
    under 30 characters wide, the values without their names; under 10 lines high, the first
    two lines only; the title and the bar where there is room beside the rest."""
    font, line = mujoco.mjtFont.mjFONT_NORMAL, render.charHeight
    gap = render.charWidth[ord("0")]

    def width(text: str) -> int:
        return sum(render.charWidth[ord(c)] for c in text)

    if viewport.height < 5 * line:
        return
    if viewport.height < 10 * line:
        lines = lines[:2]
    used = 0
    if lines:
        names, values = zip(*lines, strict=True)
        if viewport.width < 30 * gap:
            names = [""] * len(values)
        used = max(map(width, names)) + max(map(width, values)) + 5 * gap  # the box's margins
        mujoco.mjr_overlay(
            font, mujoco.mjtGridPos.mjGRID_TOPLEFT, viewport, "\n".join(names), "\n".join(values), render
        )
    if title and used + width(title) + 4 * gap <= viewport.width:
        mujoco.mjr_overlay(font, mujoco.mjtGridPos.mjGRID_TOPRIGHT, viewport, title, "", render)
    if muscles:
        for label in ("muscle activation", "activation", ""):
            bar = min(6 * line, viewport.width - width(label + "01") - 2 * line - 2 * gap)
            if bar >= 3 * line:
                _colour_bar(viewport, render, label, bar)
                break


def _colour_bar(viewport, render, label: str, bar: int) -> None:
    """``label 0 [blue ... red] 1``, the bar ``bar`` pixels long, on a dark panel at the
    bottom left."""
    line, steps = render.charHeight, 24

    def width(text: str) -> int:
        return sum(render.charWidth[ord(c)] for c in text)

    x, y = int(0.5 * line), int(0.45 * line)
    zero = x + width(label) + (line // 2 if label else 0)
    start = zero + width("0") + line // 4
    one = start + bar + line // 4
    mujoco.mjr_rectangle(mujoco.MjrRect(0, 0, one + width("1") + line // 2, int(1.5 * line)), 0.1, 0.1, 0.1, 0.5)
    rest, active = np.array(MUSCLE_REST_RGB), np.array(MUSCLE_ACTIVE_RGB)
    edges = np.linspace(start, start + bar, steps + 1).round().astype(int)
    for k in range(steps):
        rgb = rest + (k / (steps - 1)) * (active - rest)
        rect = mujoco.MjrRect(int(edges[k]), y, int(edges[k + 1] - edges[k]), int(0.6 * line))
        mujoco.mjr_rectangle(rect, *rgb, 1.0)
    # mjr_text places text relative to the last viewport set: the whole frame's
    mujoco.mjr_rectangle(viewport, 0.0, 0.0, 0.0, 0.0)
    for text, left in ((label, x), ("0", zero), ("1", one)):
        mujoco.mjr_text(mujoco.mjtFont.mjFONT_NORMAL, text, render, left / viewport.width, y / viewport.height, 1, 1, 1)


def _segment_bodies(model, scene, pixels: np.ndarray) -> np.ndarray:
    """Body id at each pixel of a segmentation render (IDCOLOR: segid + 1 in RGB) where a
    geom of a body other than the world is drawn, 0 where a tendon or a skin is, -1
    elsewhere."""
    rgb = pixels.astype(np.int64)
    segid = rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2] - 1
    lookup = np.full(scene.ngeom + 1, -1, dtype=np.int32)
    for i in range(scene.ngeom):
        geom = scene.geoms[i]
        if geom.objtype == mujoco.mjtObj.mjOBJ_GEOM and model.geom_bodyid[geom.objid] != 0:
            lookup[geom.segid] = model.geom_bodyid[geom.objid]
        elif geom.objtype in (mujoco.mjtObj.mjOBJ_TENDON, mujoco.mjtObj.mjOBJ_SKIN):
            lookup[geom.segid] = 0
    return np.where((segid >= 0) & (segid < scene.ngeom), lookup[np.clip(segid, 0, scene.ngeom)], -1)


def recording_frames(recording: Recording, env: int = 0, step: int = 1, **kwargs) -> np.ndarray:
    """`render_frames` of env ``env`` of a recording (valid steps only, every ``step``-th),
    on `stage_model`'s stage, with the ghost, the muscles' activation, and the time and the
    tracked-site error (``metrics/site_pos_error_mm``) in the overlay; the clip's name is
    the title. ``kwargs`` go to `render_frames`."""
    count = recording["joint/qpos"].shape[0]
    if not 0 <= env < count:
        raise ValueError(f"env {env} is not in the recording, which has {count} envs")
    if step < 1:
        raise ValueError(f"step must be a positive number of control steps; got {step}")
    frames = np.flatnonzero(recording["valid"][env])[::step]
    extras = {"times": recording.time[frames]}
    if "metrics/site_pos_error_mm" in recording.data:
        extras["error_mm"] = recording["metrics/site_pos_error_mm"][env][frames]
    if "muscle/activation" in recording.data:
        extras["activation"] = recording["muscle/activation"][env][frames]
    names = recording.attrs.get("clip_names")
    if names and env < len(names):
        extras["title"] = str(names[env])
    return render_frames(
        recording.attrs["body"],
        recording["joint/qpos"][env][frames],
        recording["reference/qpos"][env][frames],
        **(extras | kwargs),
    )


def render_video(recording: Recording, path: str | Path, env: int = 0, fps: float | None = None, **kwargs) -> Path:
    """Write env ``env`` of a recording as an MP4 (H.264) with the reference as a ghost.

    Args:
        recording: a `neuromimic.analysis.Recording`.
        path: output ``.mp4``.
        env: which env (clip) to render.
        fps: frames per second; default real time (``1 / (control_dt * step)``).
        **kwargs: passed to `recording_frames` and `render_frames` (``step``, size, ghost
            opacity, camera distance and angles, overlay).
    """
    import imageio.v2 as imageio

    frames = recording_frames(recording, env, **kwargs)
    fps = fps or 1.0 / (recording.attrs["control_dt"] * kwargs.get("step", 1))
    path = Path(path)
    with imageio.get_writer(path, fps=fps, codec="libx264", quality=7, macro_block_size=16) as writer:
        for frame in frames:
            writer.append_data(frame)
    return path


def gif_bytes(frames: np.ndarray, fps: float) -> bytes:
    """Frames [T, H, W, 3] uint8 as an animated GIF (looping)."""
    import imageio.v2 as imageio

    buffer = io.BytesIO()
    imageio.mimsave(buffer, list(frames), format="GIF", duration=1000.0 / fps, loop=0)
    return buffer.getvalue()
