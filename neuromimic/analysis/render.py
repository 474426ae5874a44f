"""Headless MuJoCo rendering of recorded rollouts, with the reference as a ghost body.

`render_frames` draws the simulated body at each recorded pose and, in the same scene, a
semi-transparent copy at the reference pose; `render_video` writes them as an MP4
(imageio with its bundled ffmpeg); `gif_bytes` encodes frames as an animated GIF (what
TensorBoard shows as a video, see `neuromimic.analysis.video.VideoLogger`).

Rendering needs an OpenGL platform without a display: EGL, or OSMesa with
``MUJOCO_GL=osmesa``. The context is created here. `recording_frames` draws the body as
compiled from its MJCF: body perturbations active during the recording are not shown.
"""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path

import mujoco
import numpy as np

from neuromimic.analysis.record import Recording
from neuromimic.bodies import get_body
from neuromimic.physics.model import compile_model

# PyOpenGL announces at INFO level that its optional C accelerator is missing.
logging.getLogger("OpenGL.acceleratesupport").setLevel(logging.WARNING)


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


def _camera(model: mujoco.MjModel) -> tuple[mujoco.MjvCamera, int | None]:
    """MuJoCo's default free camera and ``None``; for a body with a free root, a camera two
    body sizes away and the root body's id, whose subtree centre of mass it should look at
    in every frame (the default camera would frame the whole floor)."""
    camera = mujoco.MjvCamera()
    mujoco.mjv_defaultFreeCamera(model, camera)
    if not (model.njnt and model.jnt_type[0] == mujoco.mjtJoint.mjJNT_FREE):
        return camera, None
    data = mujoco.MjData(model)
    mujoco.mj_kinematics(model, data)
    root = int(model.jnt_bodyid[0])
    size = float(np.ptp(data.xpos[model.body_rootid == root], axis=0).max())
    camera.distance = 2.0 * max(size, 1e-3)
    camera.elevation = -25.0
    return camera, root


def render_frames(
    model: mujoco.MjModel,
    qpos: np.ndarray,
    reference_qpos: np.ndarray | None = None,
    width: int = 480,
    height: int = 368,
    ghost_alpha: float = 0.3,
    distance_scale: float = 1.0,
) -> np.ndarray:
    """RGB frames of a body at each pose, with an optional ghost at the reference pose.

    Args:
        model: the compiled model (`neuromimic.physics.model.compile_model`).
        qpos: [T, nq] simulated joint positions (rad).
        reference_qpos: [T, nq] reference joint positions drawn semi-transparent, or None.
        width, height: frame size in pixels (multiples of 16 suit video codecs).
        ghost_alpha: opacity of the reference body.
        distance_scale: camera distance relative to the default (MuJoCo's free camera, or
            for free-moving bodies two body sizes from the root, following it).

    Returns:
        [T, height, width, 3] uint8.
    """
    qpos = np.asarray(qpos, dtype=np.float64)
    if qpos.ndim != 2 or qpos.shape[1] != model.nq:
        raise ValueError(f"qpos must be [T, {model.nq}]; got {qpos.shape}")
    if reference_qpos is not None and np.shape(reference_qpos) != qpos.shape:
        raise ValueError(f"reference_qpos must match qpos {qpos.shape}; got {np.shape(reference_qpos)}")
    model.vis.global_.offwidth = max(width, model.vis.global_.offwidth)
    model.vis.global_.offheight = max(height, model.vis.global_.offheight)
    context, render = _gl_context(width, height), None
    try:
        render = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_150)
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, render)
        # Body and ghost: each geom, site and tendon segment may be drawn twice.
        scene = mujoco.MjvScene(model, maxgeom=2 * (model.ngeom + model.nsite + 32 * model.ntendon) + 100)
        (camera, followed), option, perturbation = _camera(model), mujoco.MjvOption(), mujoco.MjvPerturb()
        camera.distance *= distance_scale
        # Shadows double the cost of software (OSMesa/EGL-less) rendering of mesh-heavy
        # bodies (timed by hand, MyoLegs at rest: 0.92 -> 0.40 s per 480x368 frame); the
        # floor grid gives depth.
        scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
        viewport = mujoco.MjrRect(0, 0, width, height)
        simulated, reference = mujoco.MjData(model), mujoco.MjData(model)
        frames = np.zeros((len(qpos), height, width, 3), dtype=np.uint8)
        for t in range(len(qpos)):
            simulated.qpos[:] = qpos[t]
            mujoco.mj_fwdPosition(model, simulated)  # kinematics and tendon (muscle) paths
            if followed is not None:
                camera.lookat[:] = simulated.subtree_com[followed]
            mujoco.mjv_updateScene(model, simulated, option, perturbation, camera, mujoco.mjtCatBit.mjCAT_ALL, scene)
            if reference_qpos is not None:
                reference.qpos[:] = reference_qpos[t]
                mujoco.mj_fwdPosition(model, reference)
                first = scene.ngeom
                mujoco.mjv_addGeoms(model, reference, option, perturbation, mujoco.mjtCatBit.mjCAT_DYNAMIC, scene)
                for i in range(first, scene.ngeom):
                    scene.geoms[i].rgba[:] = (0.3, 0.6, 1.0, ghost_alpha)
            mujoco.mjr_render(viewport, scene, render)
            mujoco.mjr_readPixels(frames[t], None, viewport, render)
    finally:
        if render is not None:
            render.free()
        context.free()
    return np.ascontiguousarray(frames[:, ::-1])  # OpenGL rows run bottom-up


def recording_frames(recording: Recording, env: int = 0, **kwargs) -> np.ndarray:
    """`render_frames` of env ``env`` of a recording (valid steps only), ghost included."""
    count = recording["joint/qpos"].shape[0]
    if not 0 <= env < count:
        raise ValueError(f"env {env} is not in the recording, which has {count} envs")
    valid = recording["valid"][env]
    model = compile_model(get_body(recording.attrs["body"]))
    return render_frames(model, recording["joint/qpos"][env][valid], recording["reference/qpos"][env][valid], **kwargs)


def render_video(recording: Recording, path: str | Path, env: int = 0, fps: float | None = None, **kwargs) -> Path:
    """Write env ``env`` of a recording as an MP4 (H.264) with the reference as a ghost.

    Args:
        recording: a `neuromimic.analysis.Recording`.
        path: output ``.mp4``.
        env: which env (clip) to render.
        fps: frames per second; default real time (``1 / control_dt``).
        **kwargs: passed to `render_frames` (size, ghost opacity, camera distance).
    """
    import imageio.v2 as imageio

    frames = recording_frames(recording, env, **kwargs)
    fps = fps or 1.0 / recording.attrs["control_dt"]
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
