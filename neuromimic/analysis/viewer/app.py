"""`Viewer`: the viser server, its page (controls, plots) and the scene drawn at each frame."""

from __future__ import annotations

import contextlib
import io
import logging
import socket
import threading
import time

import numpy as np

from neuromimic.analysis.render import FIXED_VIEW, FREE_VIEW, GHOST_RGB, VIEWS, muscle_tendons
from neuromimic.analysis.viewer import scene
from neuromimic.analysis.viewer.plots import PALETTE, parse_units, with_cursor
from neuromimic.analysis.viewer.sources import Episode, Source, activation_names

log = logging.getLogger(__name__)

#: Playback speeds offered, as multiples of real time.
SPEEDS = ("0.1x", "0.25x", "0.5x", "1x", "2x", "4x")
#: Frames drawn per second of wall time while playing.
PLAYBACK_FPS = 30.0
#: Opacity of the reference (ghost) body.
GHOST_OPACITY = 0.35
#: Points on the body (tracked sites, fitted keypoints), their targets (reference sites,
#: measured keypoints), the lines between them, and contact force arrows.
MARKER_RGB = (0.05, 0.2, 0.9)
TARGET_RGB = (0.85, 0.0, 0.65)
RESIDUAL_RGB = (0.1, 0.1, 0.1)
FORCE_RGB = (0.1, 0.7, 0.2)
#: Camera distance from the body's centre, in body sizes.
CAMERA_DISTANCE = 1.3
#: What the "Show" checkboxes show.
LAYER_HINTS = {
    "body": "the simulated body (a clip's body)",
    "ghost": "the reference, translucent",
    "tendons": "tendons, coloured by their muscle's activation (blue 0, red 1; grey: no muscle)",
    "contact forces": "net contact force on each body, as arrows",
    "tracked points": "blue: points on the body (tracked sites, fitted keypoints); magenta: their targets "
    "(reference sites, measured keypoints); dark lines: their errors",
    "follow body": "keep the free-moving body in the middle",
}
#: Muscles and units plotted at first.
DEFAULT_MUSCLES, DEFAULT_UNITS = 4, "0-7"


def _quiet():
    """viser prints its banner and "Server stopped" on stdout, which is the CLI's JSON channel."""
    return contextlib.redirect_stdout(io.StringIO())


class Viewer:
    """A running viewer: a viser server showing one source.

    Attributes:
        url: where the page is served.
        source: what is shown (None while a checkpoint is being recorded).
        env: the env (clip) shown.
        frame: the frame shown (index into the episode's frames).
        error: the last error shown on the page, or None.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 8080, title: str = "neuromimic view") -> None:
        import viser

        with _quiet():
            self.server = viser.ViserServer(host=host, port=port, label=title, verbose=False)
        self.host, self.port = host, self.server.get_port()
        shown = socket.gethostname() if host in ("0.0.0.0", "::") else host
        self.url = f"http://{shown}:{self.port}"
        self.source: Source | None = None
        self.episode: Episode | None = None
        self.env = self.frame = 0
        self.error: str | None = None
        self._error_topic = ""
        self.failure: Exception | None = None  # what stopped a checkpoint from being shown
        self._suppress_slider = False
        self._series: dict = {}
        self.ready = threading.Event()
        self._lock = threading.RLock()
        self._stopped = threading.Event()
        self._playing = False
        self.nodes: dict = {}  # the scene nodes redrawn at each frame, by name
        gui = self.server.gui
        gui.configure_theme(show_logo=False, show_share_button=False, control_width="medium")
        gui.main_panel.dock_left()
        self._title = gui.add_markdown(f"**{title}**")
        self._error = gui.add_html("", visible=False)
        self._status = gui.add_markdown("", visible=False)
        self._progress = gui.add_progress_bar(0.0, visible=False, animated=True)
        self.server.scene.set_up_direction("+z")
        self._player = threading.Thread(target=self._play_loop, name="neuromimic-view-player", daemon=True)
        self._player.start()

    # -- status on the page ------------------------------------------------------------------

    def show_error(self, message: str, topic: str = "") -> None:
        """Show ``message`` on the page as an error (and log it); ``topic`` names what it is
        about, for `clear_error`."""
        import html

        self.error, self._error_topic = message, topic
        log.error("%s", message)
        self._error.content = (
            '<div style="border:2px solid #c92a2a;background:#fff5f5;color:#c92a2a;padding:8px;'
            f'border-radius:4px;font-size:0.9em"><b>Error</b><br>{html.escape(message)}</div>'
        )
        self._error.visible = True

    def clear_error(self, topic: str) -> None:
        """Hide the error shown, if it is about ``topic`` (the user fixed it)."""
        if self.error is not None and self._error_topic == topic:
            self.error, self._error.visible = None, False

    def show_progress(self, text: str, fraction: float | None) -> None:
        """A status line and a progress bar (``fraction`` 0..1; None hides the bar)."""
        self._status.content, self._status.visible = text, bool(text)
        self._progress.visible = fraction is not None
        if fraction is not None:
            self._progress.value = float(np.clip(100 * fraction, 0, 100))

    def _guarded(self, function):
        """A GUI callback that shows its exception on the page instead of dying silently."""

        def callback(*args) -> None:
            try:
                function(*args)
            except Exception as error:  # the page is where the user looks
                log.exception("viewer callback failed")
                self.show_error(f"{type(error).__name__}: {error}")

        return callback

    # -- building ----------------------------------------------------------------------------

    def load(self, source: Source) -> None:
        """Show ``source``: build the body's meshes, the controls and the plots, and draw
        its first env at its first frame."""
        with self._lock:
            self.source, model = source, source.model
            self.poser = scene.Poser(model)
            self.meshes = scene.body_meshes(model)
            self.tendon_muscle = muscle_tendons(model)
            self.act_names = activation_names(model)
            self.size = scene.model_size(model)
            self.free_root = scene.free_root(model)
            self._title.content = (
                f"**{source.label}**  \nbody `{source.body}`, {len(source.names)} "
                f"{'envs' if source.kind == 'recording' else 'clips'}"
            )
            self._build_controls()
            self._build_plots()
            self._build_meshes()
            self._select_env(0)
        self.ready.set()

    def _build_controls(self) -> None:
        gui, source = self.server.gui, self.source
        options = [f"{i}: {name}" for i, name in enumerate(source.names)]
        self._env_pick = gui.add_dropdown("env" if source.kind == "recording" else "clip", options)
        self._slider = gui.add_slider("time (s)", min=0.0, max=1.0, step=0.01, initial_value=0.0)
        self._play = gui.add_button("Play", icon="player-play")
        self._speed = gui.add_dropdown("speed", SPEEDS, initial_value="1x")
        self._notes = gui.add_markdown("", visible=False)
        with gui.add_folder("Show"):
            layers = ["body", *source.layers] + (["tendons"] if source.model.ntendon else [])
            self._show = {
                name: gui.add_checkbox(name, True, hint=LAYER_HINTS[name])
                for name in sorted(layers, key=list(LAYER_HINTS).index)
                + (["follow body"] if self.free_root is not None else [])
            }
        self._muscle_boxes = {}
        if self.source.model.na and self.source.kind == "recording":
            with gui.add_folder("Muscles plotted", expand_by_default=len(self.act_names) <= 12):
                for k, name in enumerate(self.act_names):
                    self._muscle_boxes[name] = gui.add_checkbox(name, k < DEFAULT_MUSCLES)
        self._unit_pick = self._unit_text = None
        if source.unit_arrays:
            with gui.add_folder("Units plotted"):
                self._unit_pick = gui.add_dropdown("array", list(source.unit_arrays))
                self._unit_text = gui.add_text("units", DEFAULT_UNITS, hint="indices and ranges: 0-7, 12")
        self._env_pick.on_update(self._guarded(lambda _: self._select_env(options.index(self._env_pick.value))))
        self._slider.on_update(self._guarded(self._on_slider))
        self._play.on_click(self._guarded(lambda _: self.pause() if self._playing else self.play()))
        for box in (*self._show.values(), *self._muscle_boxes.values()):
            box.on_update(self._guarded(lambda _: self._draw(self.frame, plots=True)))
        for widget in (self._unit_pick, self._unit_text):
            if widget is not None:
                widget.on_update(self._guarded(lambda _: self._draw(self.frame, plots=True)))

    def _build_plots(self) -> None:
        panel = self.server.gui.add_panel()
        self._plots = {}
        with panel.add_tab("Plots", "chart-line"):
            for key in ("error", "muscles", "units"):
                self._plots[key] = self.server.gui.add_uplot(
                    data=(np.zeros(2), np.zeros(2)), series=({"label": "t"}, {"label": key}), height=210, visible=False
                )
            self._no_plots = self.server.gui.add_markdown("Nothing recorded to plot for this clip.", visible=False)
        panel.dock_right()
        panel.set_width(420)

    def _build_meshes(self) -> None:
        add = self.server.scene
        # The scene is drawn in body sizes (viser's camera and grid expect sizes near 1; a
        # frame's scale does not reach its children): every position is multiplied by
        # `self.unit`, and the root frame moves the body's centre to the origin.
        self.unit = 1.0 / self.size
        self._root = add.add_frame("/nm", show_axes=False)
        self._bodies, self._ghosts = {}, {}
        for body, meshes in self.meshes.items():
            for layer, frames in (("body", self._bodies), ("ghost", self._ghosts)):
                if body == 0 and layer == "ghost":
                    continue
                name = f"/nm/{layer}/{body}"
                frames[body] = add.add_frame(name, show_axes=False)
                for k, mesh in enumerate(meshes):
                    ghost = layer == "ghost"
                    add.add_mesh_simple(
                        f"{name}/mesh{k}",
                        vertices=mesh.vertices * self.unit,
                        faces=mesh.faces,
                        color=GHOST_RGB if ghost else mesh.rgb,
                        opacity=GHOST_OPACITY if ghost else (mesh.opacity if mesh.opacity < 1 else None),
                        cast_shadow=not ghost,
                        receive_shadow=not ghost,
                    )

    # -- showing -----------------------------------------------------------------------------

    def _on_slider(self, _) -> None:
        if not self._suppress_slider:
            self._draw(self._frame_at(self._slider.value), plots=False)

    def _select_env(self, index: int) -> None:
        with self._lock:
            self.env, self.episode = index, self.source.episode(index)
            episode = self.episode
            times = episode.times
            step = float(np.median(np.diff(times))) if len(times) > 1 else 1.0
            self._slider.min, self._slider.max, self._slider.step = float(times[0]), float(times[-1]), step
            notes = list(episode.notes)
            force = episode.contact_force
            self._force_scale = 0.0
            if force is not None and np.abs(force).max() > 0:
                peak = float(np.linalg.norm(force, axis=-1).max())
                self._force_scale = 0.3 * self.size / peak
                notes.append(f"contact force arrows: the largest, {peak:.3g} N, is 0.3 body sizes long")
            self._notes.content, self._notes.visible = "  \n".join(notes), bool(notes)
            first = self.poser(episode.qpos[0])
            self._origin = first.xpos[self.free_root].copy() if self.free_root is not None else None
            points = [first.xpos[1:], first.site_xpos]
            if episode.ghost_qpos is not None:
                points.append(self.poser(episode.ghost_qpos[0]).xpos[1:])
            points = np.concatenate(points)
            self._centre = (points.min(axis=0) + points.max(axis=0)) / 2  # of the first frame's bounding box
            self._place_camera()
            self._place_floor(episode)
            self._suppress_slider = True
            try:
                self._slider.value = float(times[0])
            finally:
                self._suppress_slider = False
            self._draw(0, plots=True)

    def _place_camera(self) -> None:
        view = FREE_VIEW if self.free_root is not None else VIEWS.get(self.source.body, FIXED_VIEW)
        azimuth, elevation = np.radians(view[0]), np.radians(view[1])
        forward = np.array(
            [np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth), np.sin(elevation)]
        )
        camera = self.server.initial_camera
        camera.look_at, camera.position, camera.up = (0.0, 0.0, 0.0), tuple(-CAMERA_DISTANCE * forward), (0.0, 0.0, 1.0)
        camera.near, camera.far = 0.01, 100.0
        for client in self.server.get_clients().values():
            client.camera.look_at, client.camera.position = (0.0, 0.0, 0.0), tuple(-CAMERA_DISTANCE * forward)

    def _place_floor(self, episode: Episode) -> None:
        height = scene.floor_height(self.source.model)
        if height is None:
            lows = [self.poser(q).xpos[1:, 2].min() for q in episode.qpos[:: max(1, len(episode.qpos) // 20)]]
            height = float(min(lows)) - 0.15 * self.size
        cell = 10.0 ** np.floor(np.log10(self.size / 4))  # a round length (model units)
        self.server.scene.add_grid(
            "/nm/floor",
            width=40.0,
            height=40.0,
            plane="xy",
            cell_size=cell * self.unit,
            section_size=10 * cell * self.unit,
            position=tuple(np.array([self._centre[0], self._centre[1], height]) * self.unit),
            infinite_grid=True,
            fade_distance=30.0,
        )

    def _frame_at(self, seconds: float) -> int:
        return int(np.argmin(np.abs(self.episode.times - seconds)))

    def _draw(self, frame: int, plots: bool = True) -> None:
        """Pose every node at ``frame`` of the episode shown and move the plots' cursor."""
        with self._lock, self.server.atomic():
            episode = self.episode
            show = {name: name in self._show and self._show[name].value for name in LAYER_HINTS}
            self.frame = frame = int(np.clip(frame, 0, len(episode.times) - 1))
            pose = self.poser(episode.qpos[frame])
            offset = self._centre.copy()
            if self.free_root is not None and show.get("follow body"):
                offset[:2] += pose.xpos[self.free_root, :2] - self._origin[:2]
            self._root.position = tuple(-offset * self.unit)
            for body, node in self._bodies.items():
                node.visible = show["body"]
                node.position, node.wxyz = pose.xpos[body] * self.unit, pose.xquat[body]
            ghost = episode.ghost_qpos is not None and show["ghost"]
            if ghost:
                reference = self.poser(episode.ghost_qpos[frame])
                for body, node in self._ghosts.items():
                    node.position, node.wxyz = reference.xpos[body] * self.unit, reference.xquat[body]
            for node in self._ghosts.values():
                node.visible = ghost
            self._draw_tendons(pose, frame, show["tendons"])
            self._draw_forces(pose, frame, show["contact forces"])
            self._draw_points(frame, show["tracked points"])
            if plots:
                self._draw_plots(frame)
            else:
                self._move_cursors(frame)

    def _draw_tendons(self, pose: scene.Pose, frame: int, visible: bool) -> None:
        add = self.server.scene
        if not len(pose.segments) or not visible:
            self.nodes["tendons"] = add.add_line_segments("/nm/tendons", np.zeros((1, 2, 3)), (0, 0, 0), visible=False)
            return
        act = self.episode.activation
        muscle = self.tendon_muscle[pose.segment_tendon]
        rgb = np.tile(np.array(scene.PASSIVE_TENDON_RGB), (len(muscle), 1))
        if act is not None:
            driven = muscle >= 0
            rgb[driven] = scene.activation_rgb(act[frame, muscle[driven]])
        width = self.source.model.tendon_width[pose.segment_tendon].mean() if self.source.model.ntendon else 0.0
        thickness = float(max(2 * width * self.unit, 0.006))
        colours = np.repeat(rgb[:, None], 2, axis=1)
        self.nodes["tendons"] = add.add_line_segments(
            "/nm/tendons", pose.segments * self.unit, colours, thickness=thickness
        )

    def _draw_forces(self, pose: scene.Pose, frame: int, visible: bool) -> None:
        force = self.episode.contact_force
        if force is None or not visible or self._force_scale == 0:
            self.nodes["forces"] = self.server.scene.add_arrows(
                "/nm/forces", np.zeros((1, 2, 3)), (0, 0, 0), visible=False
            )
            return
        bodies = np.flatnonzero(np.linalg.norm(force[frame], axis=1) > 1e-9)
        starts = pose.xpos[bodies]
        ends = starts + self._force_scale * force[frame, bodies]
        self.nodes["forces"] = self.server.scene.add_arrows(
            "/nm/forces",
            np.stack([starts, ends], axis=1) * self.unit if len(bodies) else np.zeros((1, 2, 3)),
            FORCE_RGB,
            shaft_radius=0.008,
            head_radius=0.02,
            head_length=0.04,
            visible=bool(len(bodies)),
        )

    def _draw_points(self, frame: int, visible: bool) -> None:
        add, episode = self.server.scene, self.episode
        markers = episode.markers[frame] if episode.markers is not None else np.zeros((0, 3))
        targets = episode.targets[frame] if episode.targets is not None else np.zeros((0, 3))
        for name, points, rgb in (("markers", markers, MARKER_RGB), ("targets", targets, TARGET_RGB)):
            shown = points[np.isfinite(points).all(axis=1)]
            self.nodes[name] = add.add_point_cloud(
                f"/nm/{name}",
                shown * self.unit if len(shown) else np.zeros((1, 3)),
                rgb,
                point_size=0.01,
                point_shape="circle",
                precision="float32",
                visible=visible and bool(len(shown)),
            )
        pairs = np.stack([markers, targets], axis=1) if len(targets) == len(markers) and len(targets) else None
        if pairs is not None:
            pairs = pairs[np.isfinite(pairs).all(axis=(1, 2))]
        self.nodes["residuals"] = add.add_line_segments(
            "/nm/residuals",
            pairs * self.unit if pairs is not None and len(pairs) else np.zeros((1, 2, 3)),
            RESIDUAL_RGB,
            thickness=0.004,
            visible=visible and pairs is not None and bool(len(pairs)),
        )

    # -- plots -------------------------------------------------------------------------------

    def _plot_series(self) -> dict[str, tuple[str, list[str], list[np.ndarray]]]:
        """Plot key -> (title, labels, [T] series)."""
        episode, out = self.episode, {}
        if episode.error is not None:
            out["error"] = (episode.error_label, ["error"], [episode.error])
        if episode.activation is not None and self._muscle_boxes:
            chosen = [k for k, name in enumerate(self.act_names) if self._muscle_boxes[name].value]
            if chosen:
                series = [episode.activation[:, k] for k in chosen]
                out["muscles"] = ("muscle activation (0..1)", [self.act_names[k] for k in chosen], series)
        if self._unit_pick is not None:
            name = self._unit_pick.value
            values = self.source.units(self.env, name)
            try:
                units = parse_units(self._unit_text.value, values.shape[1])
                self.clear_error("units")
            except ValueError as error:
                units = []
                self.show_error(f"units plotted: {error}", topic="units")
            if units:
                out["units"] = (f"{name} (a.u.)", [f"unit {u}" for u in units], [values[:, u] for u in units])
        return out

    def _draw_plots(self, frame: int) -> None:
        self._series = self._plot_series()
        for key, plot in self._plots.items():
            if key not in self._series:
                plot.visible = False
                continue
            title, labels, series = self._series[key]
            plot.series = (
                {"label": "time (s)"},
                *(
                    {"label": label, "stroke": PALETTE[i % len(PALETTE)], "width": 1.5, "points": {"show": False}}
                    for i, label in enumerate(labels)
                ),
                {"label": "now", "stroke": "#555555", "width": 1, "scale": "cursor", "points": {"show": False}},
            )
            plot.title = title
            plot.scales = {"x": {"time": False}, "cursor": {"auto": False, "range": (0.0, 1.0)}}
            plot.data = with_cursor(self.episode.times, series, float(self.episode.times[frame]))
            plot.visible = True

        self._no_plots.visible = not self._series

    def _move_cursors(self, frame: int) -> None:
        now = float(self.episode.times[frame])
        for key, (_, _, series) in self._series.items():
            self._plots[key].data = with_cursor(self.episode.times, series, now)

    # -- playing -----------------------------------------------------------------------------

    def set_time(self, seconds: float) -> None:
        """Show the frame nearest ``seconds`` (moves the slider, as dragging it does)."""
        self._slider.value = float(self.episode.times[self._frame_at(seconds)])

    def set_env(self, index: int) -> None:
        """Show env (clip) ``index`` (as picking it on the page does)."""
        self._env_pick.value = self._env_pick.options[index]

    def play(self) -> None:
        """Play from the frame shown, at the speed chosen on the page, looping."""
        self._playing = True
        self._play.label, self._play.icon = "Pause", "player-pause"

    def pause(self) -> None:
        """Stop playing."""
        self._playing = False
        self._play.label, self._play.icon = "Play", "player-play"

    def _play_loop(self) -> None:
        last, clock, shown = time.perf_counter(), None, None
        while not self._stopped.wait(1.0 / PLAYBACK_FPS):
            now = time.perf_counter()
            elapsed, last = now - last, now
            if not self._playing or self.episode is None:
                clock = None
                continue
            try:
                times = self.episode.times
                if clock is None or self.frame != shown:  # started, or the user moved the slider
                    clock = float(times[self.frame])
                clock += elapsed * float(self._speed.value.rstrip("x"))
                if clock > times[-1]:
                    clock = float(times[0])
                frame = int(np.clip(np.searchsorted(times, clock), 0, len(times) - 1))
                if frame != self.frame:
                    with self._lock:
                        self._slider.value = float(times[frame])
                shown = self.frame
            except Exception as error:  # noqa: BLE001 (shown on the page; playing stops)
                if self._stopped.is_set():  # the server went away under the loop
                    return
                self.pause()
                self.show_error(f"playing failed: {type(error).__name__}: {error}")

    def wait(self) -> None:
        """Serve until `stop` or Ctrl-C."""
        try:
            while not self._stopped.wait(0.5):
                pass
        except KeyboardInterrupt:
            log.info("stopping the viewer")

    def stop(self) -> None:
        """Stop serving."""
        self._stopped.set()
        with _quiet():
            self.server.stop()
