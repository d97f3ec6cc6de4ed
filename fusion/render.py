"""Static pictures for reports and CI artefacts (`fusion render`): one sweep, or a whole sequence's tracks.

Left, the bird's-eye view in the sweep's lidar frame (forward up, left to the left): the points
shaded by height, each box in its category's colour with a line to its front, its track id, its
velocity as an arrow (where it will be in one second) and its trail over the earlier sweeps. Right,
every camera's synchronised image with the boxes' projected wireframes, their labels and the
LiDAR points coloured by depth (`fusion.scene` does the projection).

`render_tracks` draws every track of a sequence at once, for a reviewer deciding where to look:
left, the map (world frame with poses, else the sensor's) with the ego path, each track's path
(detected boxes as dots, interpolated ones as rings) and its last box; right, one lifeline per track
over the frames (solid where detected, pale where refinement filled a gap), flagged frames marked.
Drawn with matplotlib's object API on the Agg canvas: no display, no global pyplot state.
"""

from __future__ import annotations

import itertools
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from exporters.reader import open_dataset
from fusion.errors import ViewError
from fusion.scene import CATEGORY_COLORS, CameraScene, SceneConfig, SceneFrame, SequenceScene, colormap

QUEUE_ROW_COLOR = "#ffe45c"
"""Background of a lifeline row the review queue names: a colour no category has (red, the old mark,
is the pedestrians' colour, so every pedestrian read as flagged)."""
QUEUE_MARK_COLOR = "#000000"
"""The ticks at flagged frames and the flagged tracks' names."""

if TYPE_CHECKING:
    import pyarrow as pa
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.patches import Circle

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class RenderConfig:
    """How a sweep is drawn."""

    bev_range_m: float = 40.0  # the bird's-eye view shows +-this many metres around the sensor
    panel_height_in: float = 3.2  # height of one camera panel, inches
    dpi: int = 100  # pixels per inch of the PNG
    point_size: float = 1.0  # marker area of a point, points^2
    velocity_horizon_s: float = 1.0  # arrows reach where the box will be after this long
    max_bev_points: int = (
        60_000  # at most this many points are drawn in the bird's-eye view (evenly subsampled)
    )


@dataclass(frozen=True)
class RenderSummary:
    """What `render_frame` drew."""

    path: Path
    width: int
    height: int
    boxes: int
    cameras: tuple[str, ...]


def _rgb(category: str) -> tuple[float, float, float]:
    r, g, b = CATEGORY_COLORS.get(category, CATEGORY_COLORS["unknown"])
    return (r / 255.0, g / 255.0, b / 255.0)


def render_frame(
    out: Path | str,
    sequence_id: str,
    frame_index: int,
    dest: Path | str,
    *,
    config: RenderConfig | None = None,
    overwrite: bool = False,
) -> RenderSummary:
    """Draw sweep `frame_index` of sequence `sequence_id` of dataset `out` into PNG `dest`.

    The PNG is written to a temporary name beside `dest` and renamed into place. Raises ViewError
    when `dest` exists (without `overwrite`) or is not a .png, ExportError / ViewError for an
    unreadable dataset, an unknown sequence or frame.
    """
    cfg = config or RenderConfig()
    path = _destination(dest, overwrite)
    seq = open_dataset(out).sequence(sequence_id)
    try:
        scene = SequenceScene(seq, SceneConfig())
        frame = scene.frame(frame_index)
        trails = scene.trails(frame_index)
    finally:
        seq.close()
    width, height = _draw(frame, trails, path, cfg, points_stored=seq.has_points)
    return RenderSummary(path, width, height, len(frame), tuple(c.name for c in frame.cameras))


def _draw(
    frame: SceneFrame, trails: dict[int, F64], path: Path, cfg: RenderConfig, *, points_stored: bool = True
) -> tuple[int, int]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    cams = frame.cameras
    cols = min(len(cams), 2)  # camera panels side by side; none: the bird's-eye view alone
    rows = max(2, math.ceil(len(cams) / cols)) if cols else 2  # the bird's-eye view spans them all
    aspect = max((c.camera.width / c.camera.height for c in cams), default=1.6)
    h = cfg.panel_height_in
    bev_side = h * rows
    fig_width = bev_side + cols * h * aspect
    title_lines = 1 if cols else 2  # the bird's-eye view alone is too narrow for a one-line title
    head = 0.45 + 0.2 * title_lines  # inches above the panels
    fig = Figure(figsize=(fig_width, h * rows + head), dpi=cfg.dpi, facecolor="white")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(
        rows,
        1 + cols,
        width_ratios=[bev_side, *([h * aspect] * cols)],
        left=0.5 / fig_width,
        right=0.995,
        bottom=0.07,
        top=1.0 - head / (h * rows + head),
        wspace=0.03,
        hspace=0.08,
    )
    bev = fig.add_subplot(grid[:, 0])
    _draw_bev(bev, frame, trails, cfg)
    for k, cam in enumerate(cams):
        _draw_camera(fig.add_subplot(grid[k // cols, 1 + k % cols]), frame, cam, cfg, fig.get_figwidth())
    present = sorted(set(frame.category.tolist()))
    if present:
        bev.legend(
            handles=[Patch(color=_rgb(c), label=c) for c in present],
            loc="lower left",
            fontsize=8,
            framealpha=0.85,
            facecolor="white",
        )
    world = "world poses" if frame.world_from_lidar is not None else "no poses"
    # "0 points" read as an empty sweep when the run was --no-points
    points = f"{len(frame.xyz)} points" if points_stored else "no points stored"
    sep = " · " if title_lines == 1 else "\n"
    fig.suptitle(
        f"{frame.sequence_id} · frame {frame.frame_index} · t = {frame.timestamp_ns} ns{sep}"
        f"{len(frame)} boxes · {points} · {world}",
        fontsize=11,
        x=0.01,
        ha="left",
    )
    return save_png(fig, path, cfg.dpi)


def _destination(dest: Path | str, overwrite: bool) -> Path:
    """`dest` checked before anything is read: a .png, not there yet (or `overwrite`), in a folder."""
    path = Path(dest)
    if path.suffix.lower() != ".png":
        raise ViewError(f"{path}: fusion render writes PNG; give an --out ending in .png")
    if path.exists() and not overwrite:
        raise ViewError(f"{path}: exists; remove it or pass --overwrite")
    if not path.parent.is_dir():
        raise ViewError(f"{path}: its folder {path.parent} does not exist; create it first")
    return path


def save_png(fig: Figure, path: Path, dpi: float) -> tuple[int, int]:
    """Write `fig` as PNG `path` at `dpi` (a temporary name beside it, created by matplotlib, so with
    the umask's permissions, then renamed); its (width, height) in pixels."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.png")  # renamed into place when complete
    try:
        fig.savefig(tmp, dpi=dpi, format="png")
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    width, height = fig.canvas.get_width_height()
    return int(width), int(height)


def _bev(xy: F64) -> tuple[F64, F64]:
    """Lidar x (forward), y (left) -> plot coordinates (right, up)."""
    return -xy[..., 1], xy[..., 0]


def _draw_bev(ax: Axes, frame: SceneFrame, trails: dict[int, F64], cfg: RenderConfig) -> None:
    r = cfg.bev_range_m
    ax.set_facecolor("#f7f7f5")
    ax.set_xlim(-r, r)
    ax.set_ylim(-r, r)
    ax.set_aspect("equal")
    ax.tick_params(labelsize=7)
    ax.set_xlabel("right of the sensor (m)", fontsize=8)
    ax.set_ylabel("ahead of the sensor (m)", fontsize=8)
    for ring in range(10, int(r * 1.5) + 1, 10):  # range rings every 10 m
        ax.add_artist(_circle(ring))
    xyz = frame.xyz
    near = (np.abs(xyz[:, 0]) <= r) & (np.abs(xyz[:, 1]) <= r)
    pts = xyz[near]
    if len(pts) > cfg.max_bev_points:
        pts = pts[:: math.ceil(len(pts) / cfg.max_bev_points)]
    px, py = _bev(pts[:, :2].astype(np.float64))
    ax.scatter(
        px, py, s=cfg.point_size, c=colormap(pts[:, 2], "viridis") / 255.0, linewidths=0, rasterized=True
    )
    ax.plot([0.0], [0.0], marker="^", color="black", markersize=7, zorder=5)  # the sensor, facing forward
    from_world = frame.world_from_lidar.inverse() if frame.world_from_lidar is not None else None
    for i in range(len(frame)):
        box = frame.boxes[i]
        colour = _rgb(str(frame.category[i]))
        corners = _footprint(box)
        cx, cy = _bev(corners)
        ax.fill(cx, cy, facecolor=(*colour, 0.25), edgecolor=colour, linewidth=1.4, zorder=4)
        front = 0.5 * (corners[0] + corners[1])
        fx, fy = _bev(np.stack([box[:2], front]))
        ax.plot(fx, fy, color=colour, linewidth=1.4, zorder=4)
        tid = int(frame.track_id[i])
        trail = trails.get(tid)
        if trail is not None and len(trail) > 1:
            local = from_world.apply(trail)[:, :2] if from_world is not None else trail[:, :2]
            tx, ty = _bev(local)
            ax.plot(tx, ty, color=colour, linewidth=0.9, alpha=0.7, zorder=3)
        if abs(box[0]) < r and abs(box[1]) < r:
            lx, ly = _bev(box[:2])
            ax.text(
                float(lx) + 0.5 * max(box[3], box[4]) + 0.4,
                float(ly),
                str(tid),
                color="white",
                fontsize=7,
                va="center",
                zorder=7,
                bbox={"boxstyle": "round,pad=0.15", "fc": colour, "ec": "none", "alpha": 0.85},
                clip_on=True,
            )
    # velocity arrows (quiver clips them at the axes): where each moving box will be after the horizon
    moving = np.isfinite(frame.velocity).all(axis=1) & (np.hypot(*frame.velocity.T) > 0.3)
    if moving.any():
        ox, oy = _bev(frame.boxes[moving, :2])
        dx, dy = _bev(frame.velocity[moving] * cfg.velocity_horizon_s)
        ax.quiver(
            ox,
            oy,
            dx,
            dy,
            angles="xy",
            scale_units="xy",
            scale=1.0,
            color="#222222",
            width=0.0025,
            headwidth=4.0,
            headlength=5.0,
            zorder=6,
        )
    ax.set_title("bird's-eye view (lidar frame)", fontsize=9)


def _circle(radius: float) -> Circle:
    from matplotlib.patches import Circle

    return Circle((0.0, 0.0), radius, fill=False, edgecolor="#c8c8c8", linewidth=0.6, zorder=1)


def _footprint(box: F64) -> F64:
    """The BEV corners (4, 2) of a box x y z l w h yaw: front-left, front-right, rear-right, rear-left."""
    c, s = math.cos(box[6]), math.sin(box[6])
    hl, hw = 0.5 * box[3], 0.5 * box[4]
    local = np.array([[hl, hw], [hl, -hw], [-hl, -hw], [-hl, hw]])
    rot = np.array([[c, -s], [s, c]])
    return np.asarray(local @ rot.T + box[:2], dtype=np.float64)


def _draw_camera(
    ax: Axes, frame: SceneFrame, cam: CameraScene, cfg: RenderConfig, fig_width_in: float
) -> None:
    h, w = cam.image.shape[:2]
    ax.imshow(cam.image, interpolation="bilinear")
    if len(cam.points_uv):
        ax.scatter(
            cam.points_uv[:, 0],
            cam.points_uv[:, 1],
            s=1.2,
            c=colormap(cam.points_depth, "turbo_r") / 255.0,
            linewidths=0,
            alpha=0.7,
            rasterized=True,
        )
    for wire, row in zip(cam.wireframes, cam.wire_rows, strict=True):
        ax.plot(wire[:, 0], wire[:, 1], color=_rgb(str(frame.category[row])), linewidth=1.3)
    # labels, nearest (largest) boxes first; one that would cover an earlier label is left out
    scale = ax.get_position().width * fig_width_in * cfg.dpi / w  # figure pixels per image pixel
    char_w, char_h = 5.0 / scale, 10.0 / scale  # a 6.5 pt character at the figure's dpi, in image pixels
    placed: list[tuple[float, float, float, float]] = []
    areas = (cam.extents[:, 2] - cam.extents[:, 0]) * (cam.extents[:, 3] - cam.extents[:, 1])
    for k in np.argsort(-areas, kind="stable"):
        row, ext = int(cam.box_rows[k]), cam.extents[k]
        text = f"{frame.category[row]} #{frame.track_id[row]}"
        x0, y1 = float(ext[0]), max(float(ext[1]) - 2.0, char_h)
        rect = (x0, y1 - char_h, x0 + char_w * len(text), y1)
        if any(rect[0] < p[2] and p[0] < rect[2] and rect[1] < p[3] and p[1] < rect[3] for p in placed):
            continue
        placed.append(rect)
        ax.text(
            x0,
            y1,
            text,
            fontsize=6.5,
            color="white",
            va="bottom",
            clip_on=True,
            bbox={
                "boxstyle": "square,pad=0.1",
                "fc": _rgb(str(frame.category[row])),
                "ec": "none",
                "alpha": 0.85,
            },
        )
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.set_xticks([])
    ax.set_yticks([])
    offset_ms = (cam.image_stamp_ns - frame.timestamp_ns) * 1e-6
    moved = "motion-compensated" if cam.motion_compensated else "as at the sweep"
    ax.set_title(
        f"{cam.name}  (image {offset_ms:+.1f} ms from the sweep; {len(cam.box_rows)} boxes, {moved})",
        fontsize=8,
    )


@dataclass(frozen=True)
class TracksConfig:
    """How a sequence's tracks are drawn (`render_tracks`)."""

    dpi: int = 100  # pixels per inch of the PNG
    map_side_in: float = 7.0  # the map's side, inches
    row_height_in: float = 0.11  # height of one track's lifeline, inches
    max_tracks: int = 150  # lifelines drawn at most: the longest tracks (the map shows every track)
    margin_m: float = 5.0  # the map shows this much around the ego path and the tracks


@dataclass(frozen=True)
class TracksSummary:
    """What `render_tracks` drew."""

    path: Path
    width: int
    height: int
    tracks: int
    boxes: int
    interpolated: int
    flagged_tracks: int
    map_frame: str  # the world frame's name, or "lidar" for a sequence without poses


def render_tracks(
    out: Path | str,
    sequence_id: str,
    dest: Path | str,
    *,
    config: TracksConfig | None = None,
    overwrite: bool = False,
) -> TracksSummary:
    """Draw every track of sequence `sequence_id` of dataset `out` into PNG `dest` (module docstring).

    The map is in the world frame when every frame has a pose, else in the lidar frame (a moving
    sensor's: paths then show motion relative to it). Raises as `render_frame` does.
    """
    cfg = config or TracksConfig()
    path = _destination(dest, overwrite)
    seq = open_dataset(out).sequence(sequence_id)
    try:
        frames = seq.frames()
        labels = seq.labels().sort_by([("track_id", "ascending"), ("frame_index", "ascending")])
        flags = seq.flags() if seq.has_flags else None
        world_name = seq.row.get("world_frame")
    finally:
        seq.close()
    poses = frames.column("world_from_lidar").to_pylist()
    has_poses = bool(poses) and all(p is not None for p in poses)
    tracks = _Tracks.of(labels, world=has_poses)
    ego = (
        np.array([[m[3], m[7]] for m in poses], np.float64)  # row-major 4x4: the translation column
        if has_poses
        else np.zeros((0, 2))
    )
    flagged = _flagged_frames(flags)
    map_frame = str(world_name) if has_poses and world_name else ("world" if has_poses else "lidar")
    width, height = _draw_tracks(sequence_id, len(frames), tracks, ego, flagged, map_frame, path, cfg)
    return TracksSummary(
        path,
        width,
        height,
        tracks=len(tracks.ids),
        boxes=len(tracks.frame),
        interpolated=int((~tracks.detected).sum()),
        flagged_tracks=len(set(flagged) & set(tracks.ids.tolist())),
        map_frame=map_frame,
    )


@dataclass(frozen=True)
class _Tracks:
    """The labels grouped by track: rows sorted by (track, frame), `starts` (T + 1) delimiting them."""

    ids: npt.NDArray[np.int64]  # (T,)
    category: list[str]  # (T,)
    starts: npt.NDArray[np.intp]  # (T + 1,)
    frame: npt.NDArray[np.int32]  # (N,)
    boxes: F64  # (N, 5) x y length width yaw on the map
    detected: npt.NDArray[np.bool_]  # (N,)

    @classmethod
    def of(cls, labels: pa.Table, *, world: bool) -> _Tracks:
        def col(name: str) -> F64:
            return np.asarray(labels.column(name).to_numpy(zero_copy_only=False), np.float64)

        track = np.asarray(labels.column("track_id").to_numpy(), np.int64)
        new = np.flatnonzero(np.r_[True, track[1:] != track[:-1]]) if len(track) else np.zeros(0, np.intp)
        starts = np.r_[new, len(track)].astype(np.intp)
        x, y, yaw = (
            (col("world_x"), col("world_y"), col("world_yaw")) if world else (col("x"), col("y"), col("yaw"))
        )
        category = labels.column("category").to_pylist()
        return cls(
            ids=track[new],
            category=[str(category[i]) for i in new],
            starts=starts,
            frame=np.asarray(labels.column("frame_index").to_numpy(), np.int32),
            boxes=np.stack([x, y, col("length"), col("width"), yaw], 1),
            detected=np.asarray(labels.column("origin").to_numpy(zero_copy_only=False) == "detected", bool),
        )


def _flagged_frames(flags: pa.Table | None) -> dict[int, list[int]]:
    """Track id -> the frames its flags name (-1 for a whole-track flag); none without a flags table."""
    if flags is None:
        return {}
    out: dict[int, list[int]] = {}
    for tid, frame in zip(
        flags.column("track_id").to_pylist(), flags.column("frame_index").to_pylist(), strict=True
    ):
        if tid is not None:
            out.setdefault(int(tid), []).append(-1 if frame is None else int(frame))
    return out


def _draw_tracks(
    sequence_id: str,
    num_frames: int,
    tracks: _Tracks,
    ego: F64,
    flagged: dict[int, list[int]],
    map_frame: str,
    path: Path,
    cfg: TracksConfig,
) -> tuple[int, int]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    lengths = np.diff(tracks.starts)
    shown = np.sort(np.argsort(-lengths, kind="stable")[: cfg.max_tracks])  # longest, in id order
    head, foot = 0.75, 0.55  # inches above and below the panels
    panels_in = max(cfg.map_side_in, cfg.row_height_in * len(shown) + 0.2)
    fig_w, fig_h = cfg.map_side_in + 6.5, panels_in + head + foot
    fig = Figure(figsize=(fig_w, fig_h), dpi=cfg.dpi, facecolor="white")
    FigureCanvasAgg(fig)
    map_side = cfg.map_side_in - 0.7  # the map, top-aligned: its labels left of and below it
    map_ax = fig.add_axes(
        (0.6 / fig_w, (fig_h - head - map_side) / fig_h, map_side / fig_w, map_side / fig_h)
    )
    life_left = cfg.map_side_in + 1.2  # room for the lifelines' track names
    life_ax = fig.add_axes(
        (life_left / fig_w, foot / fig_h, (fig_w - life_left - 0.2) / fig_w, panels_in / fig_h)
    )
    _draw_map(map_ax, tracks, ego, map_frame, cfg)
    _draw_lifelines(life_ax, tracks, shown, flagged, num_frames)
    present = sorted(set(tracks.category))
    handles = [Line2D([], [], color=_rgb(c), linewidth=2.5, label=c) for c in present]
    handles += [
        Line2D([], [], color="#555555", marker="o", linestyle="", markersize=4, label="detected"),
        Line2D(
            [],
            [],
            color="#555555",
            marker="o",
            markerfacecolor="white",
            linestyle="",
            markersize=5,
            label="interpolated",
        ),
    ]
    if len(ego):
        handles.append(Line2D([], [], color="black", linewidth=1.5, label="ego path"))
    map_ax.legend(handles=handles, loc="best", fontsize=7, framealpha=0.85, facecolor="white")
    interpolated = int((~tracks.detected).sum())
    more = f" (the {len(shown)} longest drawn as lifelines)" if len(shown) < len(tracks.ids) else ""
    fig.suptitle(
        f"{sequence_id} · {len(tracks.ids)} tracks{more} · {len(tracks.frame)} boxes, "
        f"{interpolated} interpolated · frames 0..{num_frames - 1} · map in the {map_frame} frame",
        fontsize=11,
        x=0.01,
        ha="left",
    )
    return save_png(fig, path, cfg.dpi)


def _draw_map(ax: Axes, tracks: _Tracks, ego: F64, map_frame: str, cfg: TracksConfig) -> None:
    ax.set_facecolor("#f7f7f5")
    ax.set_aspect("equal", adjustable="box")
    ax.tick_params(labelsize=7)
    ax.set_xlabel(f"{map_frame} x (m)", fontsize=8)
    ax.set_ylabel(f"{map_frame} y (m)", fontsize=8)
    ax.grid(color="#dddddd", linewidth=0.5)
    centres = tracks.boxes[:, :2]
    everything = np.concatenate([centres, ego]) if len(ego) else centres
    finite = everything[np.isfinite(everything).all(axis=1)]
    if len(finite):
        lo, hi = finite.min(axis=0), finite.max(axis=0)
        mid, half = 0.5 * (lo + hi), 0.5 * float((hi - lo).max()) + cfg.margin_m  # square: the axes are
        ax.set_xlim(mid[0] - half, mid[0] + half)
        ax.set_ylim(mid[1] - half, mid[1] + half)
    if len(ego):
        ax.plot(ego[:, 0], ego[:, 1], color="black", linewidth=1.5, zorder=5)
        ax.plot(ego[-1, 0], ego[-1, 1], marker="o", color="black", markersize=4, zorder=5)
    for t, tid in enumerate(tracks.ids):
        a, b = int(tracks.starts[t]), int(tracks.starts[t + 1])
        colour = _rgb(tracks.category[t])
        xy, det = centres[a:b], tracks.detected[a:b]
        ax.plot(xy[:, 0], xy[:, 1], color=colour, linewidth=1.0, alpha=0.8, zorder=3)
        ax.scatter(xy[det, 0], xy[det, 1], s=4, color=colour, linewidths=0, zorder=4)
        ax.scatter(
            xy[~det, 0], xy[~det, 1], s=14, facecolors="white", edgecolors=colour, linewidths=0.8, zorder=4
        )
        last = tracks.boxes[b - 1]
        corners = _footprint(np.array([last[0], last[1], 0.0, last[2], last[3], 0.0, last[4]]))
        ax.fill(
            corners[:, 0], corners[:, 1], facecolor=(*colour, 0.2), edgecolor=colour, linewidth=0.9, zorder=4
        )
        ax.text(
            float(last[0]),
            float(last[1]),
            f" {tid}",
            fontsize=6,
            color=colour,
            va="center",
            zorder=6,
            clip_on=True,
        )
    ax.set_title("tracks on the map (ring = a box refinement filled in; outline = the last box)", fontsize=9)


def _draw_lifelines(
    ax: Axes, tracks: _Tracks, shown: npt.NDArray[np.intp], flagged: dict[int, list[int]], num_frames: int
) -> None:
    ax.set_facecolor("white")
    ax.set_xlim(-0.5, max(num_frames, 1) - 0.5)
    ax.set_ylim(len(shown) - 0.5, -0.5)
    ax.tick_params(labelsize=7)
    ax.set_xlabel("frame", fontsize=8)
    ax.grid(axis="x", color="#eeeeee", linewidth=0.5)
    labels = []
    for row, t in enumerate(shown):
        a, b = int(tracks.starts[t]), int(tracks.starts[t + 1])
        colour = _rgb(tracks.category[t])
        frames, det = tracks.frame[a:b], tracks.detected[a:b]
        for lo, hi, is_det in _runs(frames, det):
            ax.plot(
                [lo - 0.45, hi + 0.45],
                [row, row],
                # pale: 35 % of the colour over white, opaque, so it reads the same on a queue row
                color=colour if is_det else tuple(1.0 - 0.35 * (1.0 - c) for c in colour),
                linewidth=4.0 if is_det else 2.0,
                solid_capstyle="butt",
            )
        tid = int(tracks.ids[t])
        if tid in flagged:
            ax.axhspan(row - 0.45, row + 0.45, color=QUEUE_ROW_COLOR, zorder=0, linewidth=0)
        marks = [f for f in flagged.get(tid, []) if f >= 0]
        if marks:
            ax.plot(
                marks,
                [row] * len(marks),
                marker="|",
                color=QUEUE_MARK_COLOR,
                markersize=9,
                markeredgewidth=1.5,
                linestyle="",
                zorder=5,
            )
        labels.append(f"{'! ' if tid in flagged else ''}#{tid} {tracks.category[t]}")
    ax.set_yticks(range(len(shown)))
    ax.set_yticklabels(labels, fontsize=6 if len(shown) > 40 else 7)
    for tick, t in zip(ax.get_yticklabels(), shown, strict=True):
        if int(tracks.ids[t]) in flagged:
            tick.set_color(QUEUE_MARK_COLOR)
            tick.set_fontweight("bold")
            tick.set_backgroundcolor(QUEUE_ROW_COLOR)
    ax.set_title(
        "track lifelines (pale: interpolated; yellow: in the review queue, | = flagged frame)",
        fontsize=8.5,
    )


def _runs(frames: npt.NDArray[np.int32], detected: npt.NDArray[np.bool_]) -> list[tuple[int, int, bool]]:
    """Maximal runs (first frame, last frame, detected) of consecutive frames with the same origin."""
    if len(frames) == 0:
        return []
    cut = np.flatnonzero((np.diff(frames) != 1) | (detected[1:] != detected[:-1])) + 1
    bounds = np.r_[0, cut, len(frames)]
    return [(int(frames[a]), int(frames[b - 1]), bool(detected[a])) for a, b in itertools.pairwise(bounds)]
