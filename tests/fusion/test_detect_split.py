"""fusion.detect.split: rows of parked cars and groups of people cut apart; a cyclist left whole."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from fusion.detect import SplitConfig
from fusion.detect.cluster import Clusters
from fusion.detect.fit import S_EXT1, S_EXT2, Shapes, fit_clusters
from fusion.detect.split import split_rows

F32 = npt.NDArray[np.float32]


def one_cluster(xyz: F32) -> tuple[Clusters, Shapes, F32]:
    """All points as cluster 0 (heights above the ground are their z), and its fitted shape."""
    n = xyz.shape[0]
    clusters = Clusters(np.zeros(n, np.int64), np.arange(n, dtype=np.int64), np.array([0, n], np.int64))
    height = np.ascontiguousarray(xyz[:, 2])
    return clusters, fit_clusters(xyz, height, clusters), height


def grid(x: npt.ArrayLike, y: npt.ArrayLike, z: npt.ArrayLike) -> F32:
    gx, gy, gz = np.meshgrid(np.asarray(x), np.asarray(y), np.asarray(z), indexing="ij")
    return np.ascontiguousarray(np.stack([gx.ravel(), gy.ravel(), gz.ravel()], axis=1), dtype=np.float32)


def lengths(shapes: Shapes) -> list[float]:
    v = shapes.values
    return sorted(np.round(np.maximum(v[:, S_EXT1], v[:, S_EXT2]), 1).tolist())


def test_a_row_of_three_parked_cars_is_cut_into_three_cars() -> None:
    """Three 4.6 m car sides 1.2 m apart, sampled every 0.8 m as a grazing view samples them, and
    1.3 m steps inside a car (wider than the gap between two cars): the cut keeps each car whole."""
    sides = [np.array([0.0, 0.8, 1.6, 2.4, 3.1, 4.6]) + start for start in (10.0, 15.8, 21.6)]
    sides[1] = np.array([0.0, 1.3, 2.6, 3.9, 4.6]) + 15.8
    xyz = np.concatenate([grid(s, [9.5], np.arange(0.3, 1.45, 0.1)) for s in sides])
    clusters, shapes, height = one_cluster(xyz)
    assert lengths(shapes) == [16.2]

    cut_clusters, cut = split_rows(xyz, height, clusters, shapes)

    assert lengths(cut) == [4.6, 4.6, 4.6]
    assert len(cut_clusters) == 3 and (cut_clusters.labels >= 0).all()
    assert np.array_equal(np.sort(cut_clusters.order), np.arange(xyz.shape[0]))


def test_a_car_length_cluster_and_a_disabled_split_are_left_alone() -> None:
    xyz = grid(np.arange(10.0, 14.6, 0.5), [9.5], np.arange(0.3, 1.45, 0.1))
    clusters, shapes, height = one_cluster(xyz)
    assert split_rows(xyz, height, clusters, shapes)[1] is shapes
    row = np.concatenate([xyz, xyz + np.array([6.0, 0.0, 0.0], dtype=np.float32)])
    clusters, shapes, height = one_cluster(row)
    off = SplitConfig(min_length=0.0, group_min_length=0.0)
    assert split_rows(row, height, clusters, shapes, off)[1] is shapes
    assert len(split_rows(row, height, clusters, shapes)[1]) == 2


def test_three_people_side_by_side_are_cut_into_three_and_a_cyclist_is_not() -> None:
    body = np.arange(0.0, 0.46, 0.05)
    people = np.concatenate(
        [grid(6.0 + 0.8 * k + body, 3.0 + body, np.arange(0.2, 1.76, 0.1)) for k in range(3)]
    )
    clusters, shapes, height = one_cluster(people)
    assert lengths(shapes) == [2.1]
    assert lengths(split_rows(people, height, clusters, shapes)[1]) == [0.5, 0.5, 0.5]

    cyclist = grid(np.arange(6.0, 7.81, 0.05), [3.0, 3.65], np.arange(0.2, 1.71, 0.1))
    clusters, shapes, height = one_cluster(cyclist)
    assert split_rows(cyclist, height, clusters, shapes)[1] is shapes


def test_pieces_smaller_than_min_points_are_dropped() -> None:
    big = grid(np.arange(10.0, 14.6, 0.5), [9.5], np.arange(0.3, 1.45, 0.1))
    small = grid([16.5, 17.0], [9.5], [0.5])
    xyz = np.concatenate([big, small])
    clusters, shapes, height = one_cluster(xyz)
    cut_clusters, cut = split_rows(xyz, height, clusters, shapes, min_points=10)
    assert len(cut) == 1 and lengths(cut) == [4.5]
    assert (cut_clusters.labels[-2:] == -1).all() and (cut_clusters.labels[:-2] == 0).all()
