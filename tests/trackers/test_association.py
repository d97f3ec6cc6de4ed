"""Costs and matchers of the association step."""

from __future__ import annotations

import numpy as np
import pytest

from fusion.evaluation.iou import bev_iou, iou_3d
from trackers.association import (
    COST_KINDS,
    MATCHERS,
    Association,
    associate,
    cost_matrix,
    giou_3d,
    greedy,
    hungarian,
    pairwise_cost,
)
from trackers.errors import TrackingError

INF = np.inf


def _random_boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.asarray(np.c_[rng.normal(0, 3, (n, 3)), rng.uniform(0.5, 5, (n, 3)), rng.uniform(-3.1, 3.1, n)])


def test_giou_of_known_boxes() -> None:
    unit = np.array([[0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0]])
    apart = np.array([[2.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0]])  # I = 0, U = 2, hull 3 x 1 x 1
    half = np.array([[0.5, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0]])  # I = 0.5, U = 1.5, hull 1.5
    rotated = np.array([[0.0, 0.0, 0.0, 1.0, 1.0, 1.0, np.pi / 2]])
    assert giou_3d(unit, unit)[0, 0] == pytest.approx(1.0)
    assert giou_3d(unit, apart)[0, 0] == pytest.approx(-1.0 / 3.0)
    assert giou_3d(unit, half)[0, 0] == pytest.approx(1.0 / 3.0)
    assert giou_3d(unit, rotated)[0, 0] == pytest.approx(1.0)
    far = np.array([[1000.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0]])
    assert giou_3d(unit, far)[0, 0] == pytest.approx(-1.0, abs=1e-2)


def test_bev_iou_cost_agrees_with_the_evaluation_iou() -> None:
    rng = np.random.default_rng(0)
    a, b = _random_boxes(rng, 30), _random_boxes(rng, 20)
    np.testing.assert_allclose(1.0 - pairwise_cost("bev_iou", a, b), bev_iou(a, b), atol=1e-12)


def test_giou_is_bounded_by_minus_one_and_the_3d_iou() -> None:
    rng = np.random.default_rng(1)
    a, b = _random_boxes(rng, 30), _random_boxes(rng, 20)
    g = giou_3d(a, b)
    iou = iou_3d(a, b)
    assert np.all(g >= -1.0) and np.all(g <= iou + 1e-12)
    overlapping = iou > 0
    assert overlapping.sum() > 20  # the bound is exercised where boxes overlap too


def test_centre_distance_cost() -> None:
    a = np.array([[0.0, 0.0, 0.0, 1, 1, 1, 0]])
    b = np.array([[3.0, 4.0, 0.0, 1, 1, 1, 0], [0.0, 0.0, 2.0, 1, 1, 1, 0]])
    np.testing.assert_allclose(pairwise_cost("centre_distance", a, b), [[5.0, 2.0]])


def test_cost_matrix_gates_categories_and_thresholds() -> None:
    dets = np.array([[0.0, 0, 0, 4, 2, 1.5, 0], [10.0, 0, 0, 4, 2, 1.5, 0], [20.0, 0, 0, 1, 1, 1, 0]])
    tracks = np.array([[0.5, 0, 0, 4, 2, 1.5, 0], [10.2, 0, 0, 4, 2, 1.5, 0], [20.0, 0.5, 0, 1, 1, 1, 0]])
    det_cat = np.array([0, 0, 3])
    track_cat = np.array([0, 1, 3])
    kind = np.array([COST_KINDS["giou_3d"], COST_KINDS["bev_iou"], COST_KINDS["centre_distance"]])
    cost = cost_matrix(dets, tracks, det_cat, track_cat, kind, np.full(3, 5.0), np.array([1.5, 1.0, 0.4]))
    assert np.isfinite(cost[0, 0]) and cost[0, 0] < 0.3
    assert np.all(np.isinf(cost[1]))  # the only near track is another category
    assert np.isinf(cost[2, 2])  # 0.5 m > threshold 0.4
    across = cost_matrix(
        dets,
        tracks,
        det_cat,
        track_cat,
        kind,
        np.full(3, 5.0),
        np.array([1.5, 1.0, 0.6]),
        across_categories=True,
    )
    assert np.isfinite(across[1, 1]) and across[2, 2] == pytest.approx(0.5)
    assert np.isinf(across[0, 2])  # beyond the 5 m gate


def test_association_returns_matches_unmatched_dets_unmatched_tracks() -> None:
    cost = np.array([[0.1, INF, INF], [INF, INF, INF], [INF, 0.2, INF], [INF, INF, 0.3]])
    result = associate(cost)
    assert isinstance(result, Association)
    matches, unmatched_dets, unmatched_tracks = result
    assert matches.tolist() == [[0, 0], [2, 1], [3, 2]]
    assert unmatched_dets.tolist() == [1] and unmatched_tracks.tolist() == []
    assert matches.dtype == np.intp


@pytest.mark.parametrize("matcher", list(MATCHERS.values()))
def test_matchers_handle_empty_and_all_forbidden(matcher: object) -> None:
    assert callable(matcher)
    empty = matcher(np.zeros((0, 3)))
    assert empty.matches.shape == (0, 2) and empty.unmatched_tracks.tolist() == [0, 1, 2]
    none = matcher(np.full((2, 2), INF))
    assert none.matches.shape == (0, 2) and none.unmatched_dets.tolist() == [0, 1]


def test_hungarian_and_greedy_agree_on_an_unambiguous_case() -> None:
    rng = np.random.default_rng(2)
    tracks = np.c_[
        rng.uniform(-50, 50, (40, 2)), np.zeros(40), np.tile([4.0, 2.0, 1.5], (40, 1)), np.zeros(40)
    ]
    order = rng.permutation(40)[:30]
    dets = tracks[order].copy()
    dets[:, :2] += rng.normal(0, 0.1, (30, 2))
    cost = pairwise_cost("centre_distance", dets, tracks)
    cost[cost > 2.0] = INF
    h, g = hungarian(cost), greedy(cost)
    assert h.matches.tolist() == g.matches.tolist() == [[i, int(order[i])] for i in range(30)]
    assert (
        h.unmatched_tracks.tolist()
        == g.unmatched_tracks.tolist()
        == sorted(set(range(40)) - set(order.tolist()))
    )


def test_hungarian_is_optimal_where_greedy_is_not() -> None:
    cost = np.array([[1.0, 2.0], [2.0, 10.0]])
    assert hungarian(cost).matches.tolist() == [[0, 1], [1, 0]]  # total 4
    assert greedy(cost).matches.tolist() == [[0, 0], [1, 1]]  # total 11


def test_hungarian_prefers_more_matches_over_a_cheaper_single_one() -> None:
    cost = np.array([[0.1, 0.5], [0.2, INF]])
    assert hungarian(cost).matches.tolist() == [[0, 1], [1, 0]]


def test_bad_inputs_are_rejected() -> None:
    with pytest.raises(TrackingError, match="cost 'iou'"):
        pairwise_cost("iou", np.zeros((1, 7)), np.zeros((1, 7)))
    with pytest.raises(TrackingError, match=r"\(N, 7\)"):
        pairwise_cost("bev_iou", np.zeros((1, 6)), np.zeros((1, 7)))
    with pytest.raises(TrackingError, match=r"\(D, T\)"):
        associate(np.zeros(3))


def test_hungarian_total_cost_is_optimal_on_sparse_random_costs() -> None:
    """Lone pairs are split off before the solver: the totals still match the plain solver's."""
    from scipy.optimize import linear_sum_assignment

    rng = np.random.default_rng(5)
    for _ in range(50):
        d, t = rng.integers(1, 12, 2)
        cost = rng.uniform(0, 1, (d, t))
        cost[rng.random((d, t)) < 0.75] = INF
        result = hungarian(cost)
        big = np.where(np.isfinite(cost), cost, 1e6)
        r, c = linear_sum_assignment(big)
        ok = np.isfinite(cost[r, c])
        assert len(result.matches) == ok.sum()
        assert cost[result.matches[:, 0], result.matches[:, 1]].sum() == pytest.approx(
            cost[r[ok], c[ok]].sum()
        )
