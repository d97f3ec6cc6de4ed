"""A dataset in the Rerun viewer (https://rerun.io): `fusion view OUT [--sequence ID] [--save FILE.rrd]`.

Everything is logged on one timeline, `sweep_time` (the sweeps' header stamps, int64 ns as
timestamps), with a second one, `frame` (the frame index). Entities of sequence ``S``::

    S                              annotation context: one class per category (label, colour)
    S/world                        the sequence's world frame (z up) when it has poses, else the lidar's
    S/world/lidar                  Transform3D world_from_lidar per sweep (absent without poses)
    S/world/lidar/points           Points3D, the sweep (lidar frame), coloured by height or intensity
    S/world/lidar/boxes            Boxes3D, labelled `category #track_id`, class id = category
    S/world/lidar/velocities       Arrows3D, where each box will be in one second
    S/world/lidar/<camera>         Transform3D lidar_from_camera + Pinhole: the camera's frustum
    S/world/tracks                 LineStrips3D, each visible track's centres so far (world frame;
                                   S/world/lidar/tracks, ego-relative, without poses)
    S/cameras/<camera>/image       EncodedImage (JPEG) of the image synchronised with the sweep
    S/cameras/<camera>/boxes       Boxes2D, the boxes' extents in the image, labelled
    S/cameras/<camera>/wireframes  LineStrips2D, the boxes' projected edges
    S/cameras/<camera>/points      Points2D, the LiDAR points in the image, coloured by depth

Projections come from `fusion.scene` (`calib.projection`, lens distortion included, at each
image's own time), not from Rerun's pinhole model, which knows no distortion. Every per-sweep
entity is logged at every sweep (empty when there is nothing), so nothing of an earlier sweep
lingers. With `save` the recording is written to a temporary name and renamed into place.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal

import numpy as np
import numpy.typing as npt

from exporters.reader import Sequence, open_dataset
from fusion.errors import ViewError
from fusion.scene import CATEGORY_COLORS, CATEGORY_IDS, SceneFrame, SequenceScene, colormap

if TYPE_CHECKING:
    import rerun as rr
    import rerun.blueprint as rrb

TIMELINE: Final = "sweep_time"
FRAME_TIMELINE: Final = "frame"
APPLICATION_ID: Final = "fusion"
VIEWER_FLUSH_TIMEOUT_S: Final = 120.0  # how long to wait for a spawned viewer to take the whole recording

ColorBy = Literal["height", "intensity"]


@dataclass(frozen=True)
class ViewConfig:
    """What `log_dataset` logs and how."""

    color_by: ColorBy = "height"  # points coloured by their z (lidar frame) or their intensity
    point_radius_m: float = 0.04  # radius of a LiDAR point in the 3D view
    jpeg_quality: int = 85  # camera images are logged JPEG-compressed at this quality
    velocity_horizon_s: float = 1.0  # velocity arrows reach where the box will be after this long


@dataclass
class ViewSummary:
    """What was logged."""

    sequences: list[str] = field(default_factory=list)
    frames: int = 0
    boxes: int = 0
    points: int = 0
    images: int = 0
    path: Path | None = None


def view_dataset(
    out: Path | str,
    *,
    sequence: str | None = None,
    save: Path | str | None = None,
    overwrite: bool = False,
    config: ViewConfig | None = None,
) -> ViewSummary:
    """Log dataset `out` (every sequence, or only `sequence`) to Rerun: into the .rrd file `save`,
    or, without it, into a viewer spawned for it.

    Raises ViewError when `save` exists (without `overwrite`) or is not an .rrd in an existing
    folder, ExportError / ViewError for an unreadable dataset or an unknown sequence.
    """
    import rerun as rr

    cfg = config or ViewConfig()
    target = Path(save) if save is not None else None
    if target is not None:
        if target.suffix.lower() != ".rrd":
            raise ViewError(f"{target}: a Rerun recording is an .rrd file; give --save FILE.rrd")
        if target.exists() and not overwrite:
            raise ViewError(f"{target}: exists; remove it or pass --overwrite")
        if not target.parent.is_dir():
            raise ViewError(f"{target}: its folder {target.parent} does not exist; create it first")
    dataset = open_dataset(out)
    ids = [sequence] if sequence is not None else dataset.sequence_ids
    sequences = [dataset.sequence(sid) for sid in ids]  # an unknown id fails here, before any output
    rec = rr.RecordingStream(APPLICATION_ID)
    blueprint = _blueprint(sequences)
    summary = ViewSummary()
    if target is None:
        _spawn_viewer(rec, blueprint)
        log_dataset(rec, sequences, cfg, summary)
        rec.flush(timeout_sec=VIEWER_FLUSH_TIMEOUT_S)
        return summary
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")  # renamed into place when complete
    try:
        rec.save(tmp, default_blueprint=blueprint)
        log_dataset(rec, sequences, cfg, summary)
        rec.flush()
        rec.disconnect()
        tmp.replace(target)
    except BaseException:
        rec.disconnect()
        tmp.unlink(missing_ok=True)
        raise
    summary.path = target
    return summary


def _spawn_viewer(rec: rr.RecordingStream, blueprint: rrb.Blueprint) -> None:
    """Start the Rerun viewer (the `rerun` executable installed beside this Python, else the one on PATH)
    and connect `rec` to it."""
    import rerun as rr

    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or os.environ.get("WAYLAND_SOCKET")
    ):
        raise ViewError(
            "no display to open the Rerun viewer on (DISPLAY and WAYLAND_DISPLAY are unset); write a "
            "recording with --save FILE.rrd and open it where there is a screen with `rerun FILE.rrd`"
        )
    beside = Path(sys.executable).parent / "rerun"
    try:
        rr.spawn(
            recording=rec,
            default_blueprint=blueprint,
            executable_path=str(beside) if beside.is_file() else None,
        )
    except RuntimeError as err:
        raise ViewError(
            f"cannot start the Rerun viewer ({str(err).strip().splitlines()[0]}); install rerun-sdk into "
            "this environment, or write a recording with --save FILE.rrd and open it with `rerun FILE.rrd`"
        ) from err


def log_dataset(
    rec: rr.RecordingStream, sequences: list[Sequence], config: ViewConfig, summary: ViewSummary | None = None
) -> ViewSummary:
    """Log each sequence's sweeps into recording stream `rec`."""
    summary = summary if summary is not None else ViewSummary()
    for seq in sequences:
        try:
            _log_sequence(rec, seq, config, summary)
        finally:
            seq.close()
    return summary


def entity_root(sequence_id: str) -> str:
    """The entity path under which a sequence is logged."""
    import rerun as rr

    return "/" + rr.escape_entity_path_part(sequence_id)


def _blueprint(sequences: list[Sequence]) -> rrb.Blueprint:
    import rerun.blueprint as rrb

    tabs = []
    for seq in sequences:
        root = entity_root(seq.sequence_id)
        cams = [rrb.Spatial2DView(origin=f"{root}/cameras/{_part(c)}", name=c) for c in seq.image_cameras()]
        views: list[rrb.Container | rrb.View] = [rrb.Spatial3DView(origin=f"{root}/world", name="3D")]
        if cams:
            views.append(rrb.Grid(*cams))
        tabs.append(rrb.Horizontal(*views, column_shares=[3, 2] if cams else None, name=seq.sequence_id))
    return rrb.Blueprint(rrb.Tabs(*tabs) if len(tabs) > 1 else tabs[0], collapse_panels=False)


def _part(name: str) -> str:
    import rerun as rr

    return str(rr.escape_entity_path_part(name))


def _value_range(frame: SceneFrame, color_by: ColorBy) -> tuple[float, float]:
    """One colour range per sequence (2nd..98th percentile of its first sweep), so colours do not flicker."""
    values = frame.xyz[:, 2] if color_by == "height" else frame.intensity
    if not len(values):
        return (0.0, 1.0)
    lo, hi = np.percentile(values.astype(np.float64), [2.0, 98.0])
    return (float(lo), float(hi) if hi > lo else float(lo) + 1.0)


def _log_sequence(rec: rr.RecordingStream, seq: Sequence, cfg: ViewConfig, summary: ViewSummary) -> None:
    import rerun as rr

    scene = SequenceScene(seq)
    root = entity_root(seq.sequence_id)
    world = f"{root}/world"
    lidar = f"{world}/lidar"
    rec.log(
        root,
        rr.AnnotationContext(
            [
                rr.ClassDescription(info=rr.AnnotationInfo(id=i, label=name, color=CATEGORY_COLORS[name]))
                for name, i in CATEGORY_IDS.items()
            ]
        ),
        static=True,
    )
    rec.log(world, rr.ViewCoordinates.RIGHT_HAND_Z_UP, static=True)
    for name, (camera, lidar_from_camera) in seq.calibration.items():
        path = f"{lidar}/{_part(name)}"
        rec.log(
            path,
            rr.Transform3D(translation=lidar_from_camera.translation, mat3x3=lidar_from_camera.rotation),
            static=True,
        )
        rec.log(
            path,
            rr.Pinhole(
                image_from_camera=np.asarray(camera.K),
                resolution=[camera.width, camera.height],
                camera_xyz=rr.ViewCoordinates.RDF,
                image_plane_distance=1.0,
            ),
            static=True,
        )
    image_cameras = [c for c in seq.image_cameras() if c in seq.calibration]
    tracks = f"{world}/tracks" if scene.has_poses else f"{lidar}/tracks"
    value_range: tuple[float, float] | None = None
    summary.sequences.append(seq.sequence_id)
    for k in range(scene.num_frames):
        frame = scene.frame(k)
        if value_range is None:
            value_range = _value_range(frame, cfg.color_by)
        rec.set_time(TIMELINE, timestamp=np.datetime64(frame.timestamp_ns, "ns"))
        rec.set_time(FRAME_TIMELINE, sequence=k)
        if scene.has_poses and frame.world_from_lidar is not None:
            pose = frame.world_from_lidar
            rec.log(lidar, rr.Transform3D(translation=pose.translation, mat3x3=pose.rotation))
        values = frame.xyz[:, 2] if cfg.color_by == "height" else frame.intensity
        rec.log(
            f"{lidar}/points",
            rr.Points3D(frame.xyz, colors=_colors(values, value_range), radii=cfg.point_radius_m),
        )
        class_ids = np.asarray([CATEGORY_IDS.get(str(c), 0) for c in frame.category], np.uint16)
        labels = frame.box_labels()
        half_yaw = 0.5 * frame.boxes[:, 6]
        quaternions = np.stack(
            [np.zeros_like(half_yaw), np.zeros_like(half_yaw), np.sin(half_yaw), np.cos(half_yaw)], 1
        )
        rec.log(
            f"{lidar}/boxes",
            rr.Boxes3D(
                centers=frame.boxes[:, :3],
                half_sizes=0.5 * frame.boxes[:, 3:6],
                quaternions=quaternions,
                labels=labels,
                class_ids=class_ids,
            ),
        )
        moving = np.isfinite(frame.velocity).all(axis=1)
        vectors = np.zeros((int(moving.sum()), 3))
        vectors[:, :2] = frame.velocity[moving] * cfg.velocity_horizon_s
        rec.log(
            f"{lidar}/velocities",
            rr.Arrows3D(vectors=vectors, origins=frame.boxes[moving, :3], class_ids=class_ids[moving]),
        )
        trails = scene.trails(k)
        tids = [int(t) for t in frame.track_id]
        rec.log(
            tracks,
            rr.LineStrips3D(
                [trails[t] for t in tids],
                class_ids=class_ids,
                labels=[str(t) for t in tids],
                show_labels=False,
            ),
        )
        shown = {c.name: c for c in frame.cameras}
        for name in image_cameras:
            base = f"{root}/cameras/{_part(name)}"
            cam = shown.get(name)
            if cam is None:  # no image within the sync tolerance for this sweep
                rec.log(base, rr.Clear(recursive=True))
                continue
            rec.log(
                f"{base}/image",
                rr.Image(cam.image, color_model="RGB").compress(jpeg_quality=cfg.jpeg_quality),
            )
            rows = cam.box_rows
            rec.log(
                f"{base}/boxes",
                rr.Boxes2D(
                    array=cam.extents,
                    array_format=rr.Box2DFormat.XYXY,
                    labels=[labels[r] for r in rows],
                    class_ids=class_ids[rows],
                ),
            )
            rec.log(
                f"{base}/wireframes",
                rr.LineStrips2D(list(cam.wireframes), class_ids=class_ids[cam.wire_rows], radii=1.0),
            )
            rec.log(
                f"{base}/points",
                rr.Points2D(cam.points_uv, colors=colormap(cam.points_depth, "turbo_r"), radii=1.5),
            )
            summary.images += 1
        summary.frames += 1
        summary.boxes += len(frame)
        summary.points += len(frame.xyz)


def _colors(values: npt.NDArray[np.floating], value_range: tuple[float, float]) -> npt.NDArray[np.uint8]:
    return colormap(values, "turbo", value_range=value_range)
