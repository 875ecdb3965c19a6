"""Hypervolume and its reference-point rule, on points whose volumes are known by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from test_frontier_fakes import write_sweep_dir

from cl_sweeps.frontier import compute_frontier, frontier_table_text, read_sweep_dir
from cl_sweeps.frontier.hypervolume import hypervolume, reference_point


def test_two_objectives_staircase() -> None:
    # (1,3), (2,2), (3,1) against (4,4): 3 + 2 + 1 unit columns = 6
    points = np.array([[1, 3], [2, 2], [3, 1]])
    assert hypervolume(points, np.array([4.0, 4.0])) == pytest.approx(6.0)


def test_dominated_and_duplicate_points_add_nothing() -> None:
    front = np.array([[1, 3], [2, 2], [3, 1]])
    noisy = np.vstack([front, [[2, 3], [3, 3], [2, 2]]])
    assert hypervolume(noisy, np.array([4.0, 4.0])) == hypervolume(front, np.array([4.0, 4.0]))


def test_three_objectives() -> None:
    # a unit cube corner at (1,1,1) against (2,2,2) plus a point that only adds (0,0,0)-(1,...)
    assert hypervolume(np.array([[1, 1, 1]]), np.array([2.0, 2.0, 2.0])) == pytest.approx(1.0)
    two = np.array([[0, 1, 1], [1, 0, 1]])  # union of two 2x1x1 boxes overlapping in 1x1x1
    assert hypervolume(two, np.array([2.0, 2.0, 2.0])) == pytest.approx(3.0)


def test_points_beyond_the_reference_and_non_finite_points_add_nothing() -> None:
    ref = np.array([4.0, 4.0])
    assert hypervolume(np.array([[5, 1], [1, 4]]), ref) == 0.0
    assert hypervolume(np.array([[1, math.inf], [math.nan, 1], [3, 3]]), ref) == 1.0
    assert hypervolume(np.zeros((0, 2)), ref) == 0.0


def test_reference_point_is_worst_plus_a_tenth_of_the_range() -> None:
    points = np.array([[1.0, 10.0], [3.0, 30.0], [2.0, math.inf]])
    assert reference_point(points).tolist() == pytest.approx([3.2, 32.0])
    assert reference_point(np.array([[5.0, 0.0]])).tolist() == pytest.approx([5.5, 0.1])
    with pytest.raises(ValueError, match="finite"):
        reference_point(np.array([[math.nan, 1.0]]))


def test_frontier_reports_the_hypervolume_of_its_configurations(tmp_path: Path) -> None:
    root = write_sweep_dir(tmp_path / "sweep")
    frontier = compute_frontier(read_sweep_dir(root))
    points = np.column_stack([frontier.configs.column(f"{o}_mean").to_numpy()
                              for o in frontier.objectives])
    points = points[np.isfinite(points).all(axis=1)]
    ref = points.max(axis=0) + 0.1 * (points.max(axis=0) - points.min(axis=0))
    assert frontier.reference == pytest.approx(tuple(ref))
    # by hand: sweep the front cheapest first, adding each point's column up to the reference
    front = sorted(p for p in map(tuple, points)
                   if not any((q <= p).all() and (q < p).any() for q in points))
    area, best = 0.0, ref[1]
    for (x, y), nxt in zip(front, [f[0] for f in front[1:]] + [ref[0]]):
        best = min(best, y)
        area += (nxt - x) * (ref[1] - best)
    assert frontier.hypervolume == pytest.approx(area)
    assert "hypervolume" in frontier_table_text(frontier).splitlines()[0]


def test_summary_json_holds_hypervolume_and_reference(tmp_path: Path) -> None:
    from cl_sweeps.frontier import sweep_end_summary

    root = write_sweep_dir(tmp_path / "sweep")
    sweep_end_summary(root)
    summary = json.loads((root / "frontier" / "summary.json").read_text())
    assert summary["hypervolume"] > 0 and len(summary["hypervolume_reference"]) == 2
