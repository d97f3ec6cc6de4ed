"""Camera images by ray casting every pixel through the lens model, at the instant the camera fired.

Each pixel's ray comes from `Camera.unproject`, so straight edges bend exactly as the lens bends
them and occlusion is exact. Shading is flat: a colour per material (per actor), a sun term, and
a little haze with distance. Pixels outside the lens model's valid angle stay black.
"""

from __future__ import annotations

import math
from typing import Final

import cv2
import numpy as np
import numpy.typing as npt
from numba import njit, prange

from fusion.simulate.geometry import inverse
from fusion.simulate.lidar import actors_near
from fusion.simulate.raycast import Material, cast_rays
from fusion.simulate.rig import CameraMount
from fusion.simulate.scene import Scene

RENDER_RANGE: Final = 250.0  # metres; further surfaces are sky-coloured haze
_TILE: Final = 16  # pixels: rays are cast in square tiles that share a cone of directions

_SUN: Final = np.array([0.45, 0.3, 0.84]) / np.linalg.norm([0.45, 0.3, 0.84])
_SKY_HORIZON: Final = np.array([205.0, 220.0, 235.0])
_SKY_ZENITH: Final = np.array([95.0, 145.0, 215.0])
_COLORS: Final[dict[int, tuple[int, int, int]]] = {  # RGB
    Material.ASPHALT: (78, 78, 82),
    Material.MARKING: (232, 232, 225),
    Material.CURB: (175, 175, 168),
    Material.SIDEWALK: (152, 150, 144),
    Material.GRASS: (78, 122, 55),
    Material.BUILDING: (182, 162, 140),
    Material.POLE: (120, 122, 128),
    Material.TRUNK: (92, 64, 42),
    Material.FOLIAGE: (48, 104, 46),
}
_GLASS: Final = np.array([45.0, 55.0, 68.0])
_WINDOW: Final = np.array([70.0, 88.0, 108.0])
_BUILDING: Final = int(Material.BUILDING)
_SKIN: Final = np.array([214.0, 176.0, 146.0])
_DARK: Final = np.array([40.0, 40.0, 58.0])


class CameraRenderer:
    """Renders one camera of a rig; the per-pixel rays are computed once."""

    def __init__(self, mount: CameraMount) -> None:
        self.mount = mount
        cam = mount.camera
        v, u = np.mgrid[0 : cam.height, 0 : cam.width]
        pix = np.stack([u.ravel(), v.ravel()], axis=1).astype(np.float64)
        rays = cam.unproject(pix, 1.0)
        valid = np.isfinite(rays).all(axis=1)
        tiles_x = -(-cam.width // _TILE)
        tile = (v.ravel() // _TILE) * tiles_x + u.ravel() // _TILE
        order = np.flatnonzero(valid)[np.argsort(tile[valid], kind="stable")]
        self._pixels = order  # (P,) flat pixel index of each ray, tile by tile
        rays = rays[order]
        self._rays = rays / np.linalg.norm(rays, axis=1, keepdims=True)  # (P, 3) camera frame
        counts = np.bincount(tile[order], minlength=int(tile.max()) + 1)
        self._groups = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self._base_from_camera = mount.base_from_camera()

    def render(self, scene: Scene, t_ns: int) -> npt.NDArray[np.uint8]:
        """The image (H, W, 3) uint8 BGR the camera takes at `t_ns`."""
        cam = self.mount.camera
        world_from_camera = scene.world_from_base(np.array([t_ns]))[0] @ self._base_from_camera
        rot = world_from_camera[:3, :3]
        origin = world_from_camera[:3, 3]
        dirs = self._rays @ rot.T
        origins = np.broadcast_to(origin, dirs.shape)
        near = actors_near(scene, np.array([t_ns, t_ns]), float(origin[0]), float(origin[1]), RENDER_RANGE)
        states = scene.actor_states(np.array([t_ns]), near.tolist())  # (1, A, 6)
        half = np.ascontiguousarray(scene.actor_half_sizes()[near]).reshape(-1, 3)
        static = scene.static.near(float(origin[0]), float(origin[1]), RENDER_RANGE)
        t, material, actor, normal = cast_rays(
            np.ascontiguousarray(origins),
            np.ascontiguousarray(dirs),
            np.zeros(len(dirs), dtype=np.int64),
            self._groups,
            np.ascontiguousarray(states[..., :4]),
            half,
            static.boxes,
            static.box_material,
            static.cylinders,
            static.cylinder_material,
            static.spheres,
            static.sphere_material,
            scene.ground,
            0.05,
            RENDER_RANGE,
        )
        rgb = self._shade(scene, near, states[0], origin, dirs, t, material, actor, normal)
        image = np.zeros((cam.height * cam.width, 3), dtype=np.uint8)
        image[self._pixels] = rgb[:, ::-1]  # RGB -> BGR
        return image.reshape(cam.height, cam.width, 3)

    def _shade(
        self,
        scene: Scene,
        near: npt.NDArray[np.intp],
        states: npt.NDArray[np.float64],
        origin: npt.NDArray[np.float64],
        dirs: npt.NDArray[np.float64],
        t: npt.NDArray[np.float64],
        material: npt.NDArray[np.uint8],
        actor: npt.NDArray[np.int32],
        normal: npt.NDArray[np.float32],
    ) -> npt.NDArray[np.uint8]:
        palette = np.zeros((256, 3))
        for m, c in _COLORS.items():
            palette[m] = c
        actors = [scene.actors[a] for a in near]
        body = np.array([a.color for a in actors], dtype=np.float64).reshape(-1, 3)
        height = np.array([a.height for a in actors], dtype=np.float64)
        bottom = states[:, 2] - 0.5 * height
        kind = np.array([_KIND.get(a.category, 0) for a in actors], dtype=np.int64)
        rgb: npt.NDArray[np.uint8] = _shade_kernel(
            origin, dirs, t, material, actor, normal, palette, body, bottom, height, kind
        )
        return rgb


_KIND: Final[dict[str, int]] = {"car": 1, "bus": 1, "pedestrian": 2, "cyclist": 2}


@njit(cache=True, parallel=True)
def _shade_kernel(
    origin: npt.NDArray[np.float64],
    dirs: npt.NDArray[np.float64],
    t: npt.NDArray[np.float64],
    material: npt.NDArray[np.uint8],
    actor: npt.NDArray[np.int32],
    normal: npt.NDArray[np.float32],
    palette: npt.NDArray[np.float64],
    body: npt.NDArray[np.float64],
    bottom: npt.NDArray[np.float64],
    height: npt.NDArray[np.float64],
    kind: npt.NDArray[np.int64],
) -> npt.NDArray[np.uint8]:
    """RGB (P, 3) of each ray's hit: material or actor colour, facade windows, glass, heads and legs,
    a sun term, haze with distance, a sky gradient where nothing was hit."""
    n = dirs.shape[0]
    out = np.empty((n, 3), dtype=np.uint8)
    for i in prange(n):
        c = np.empty(3)
        if not np.isfinite(t[i]):
            w = min(max(dirs[i, 2] * 2.5, 0.0), 1.0)
            for k in range(3):
                c[k] = _SKY_HORIZON[k] * (1.0 - w) + _SKY_ZENITH[k] * w
        else:
            px = origin[0] + t[i] * dirs[i, 0]
            py = origin[1] + t[i] * dirs[i, 1]
            pz = origin[2] + t[i] * dirs[i, 2]
            for k in range(3):
                c[k] = palette[material[i], k]
            a = actor[i]
            if a >= 0:
                rel = (pz - bottom[a]) / height[a]
                for k in range(3):
                    c[k] = body[a, k]
                if kind[a] == 1 and 0.62 < rel < 0.95:
                    for k in range(3):
                        c[k] = _GLASS[k]
                elif kind[a] == 2 and rel > 0.86:
                    for k in range(3):
                        c[k] = _SKIN[k]
                elif kind[a] == 2 and rel < 0.45:
                    for k in range(3):
                        c[k] = _DARK[k]
            elif material[i] == _BUILDING and abs(normal[i, 2]) < 0.5:
                along = -px * normal[i, 1] + py * normal[i, 0]
                zz = pz % 3.2
                if 1.0 < zz < 2.3 and along % 2.6 > 0.8:
                    for k in range(3):
                        c[k] = _WINDOW[k]
            sun = abs(normal[i, 0] * _SUN[0] + normal[i, 1] * _SUN[1] + normal[i, 2] * _SUN[2])
            light = 0.55 + 0.45 * min(sun, 1.0)
            haze = 1.0 - math.exp(-t[i] / 400.0)
            for k in range(3):
                c[k] = c[k] * light * (1.0 - haze) + _SKY_HORIZON[k] * haze
        for k in range(3):
            out[i, k] = np.uint8(min(max(round(c[k]), 0.0), 255.0))
    return out


def encode_jpeg(image: npt.NDArray[np.uint8], quality: int) -> bytes:
    """JPEG bytes of a BGR image (deterministic for equal input)."""
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover - OpenCV only fails on invalid input
        raise ValueError("JPEG encoding failed")
    return bytes(buf.tobytes())


def camera_from_world(scene: Scene, mount: CameraMount, t_ns: int) -> npt.NDArray[np.float64]:
    """(4, 4) `camera_from_odom` at `t_ns`."""
    return inverse(scene.world_from_base(np.array([t_ns]))[0] @ mount.base_from_camera())
