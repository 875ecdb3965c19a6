"""Hypervolume of a minimisation front, and the one rule that fixes its reference point.

The hypervolume is the area (volume, with three objectives) dominated by the front and bounded
by a reference point: it grows when a search finds a cheaper or better configuration, so it is
the single number that says how far a search has converged. It is computed exactly by moocore
(the reference implementation of the hypervolume algorithms).

Reference point rule (`reference_point`): per objective, the worst value among the points it is
computed from plus REFERENCE_MARGIN of that objective's range (of 1, or of |worst|, when the
range is 0). A sweep computes it from its own finished configurations; the search benchmark from
all configurations of the grid, so every searcher is measured against the same point.
"""

from __future__ import annotations

import numpy as np

REFERENCE_MARGIN = 0.1


def _finite_rows(points: np.ndarray) -> np.ndarray:
    points = np.asarray(points, dtype=float)
    if points.ndim != 2:
        raise ValueError(f"points must be an (n, d) array, got shape {points.shape}")
    return points[np.isfinite(points).all(axis=1)]


def reference_point(points: np.ndarray, margin: float = REFERENCE_MARGIN) -> np.ndarray:
    """The worst finite value of each objective plus `margin` of its range (see the module)."""
    finite = _finite_rows(points)
    if not len(finite):
        raise ValueError("no point with finite objectives to place a reference point")
    worst, best = finite.max(axis=0), finite.min(axis=0)
    span = worst - best
    span = np.where(span > 0, span, np.where(worst != 0, np.abs(worst), 1.0))
    return worst + margin * span


def hypervolume(points: np.ndarray, reference: np.ndarray) -> float:
    """The volume dominated by the finite `points` (all objectives minimised) and bounded by
    `reference`; points not strictly better than the reference in every objective add nothing,
    and no point at all gives 0."""
    import moocore

    reference = np.asarray(reference, dtype=float)
    finite = _finite_rows(points)
    if finite.shape[1:] != reference.shape:
        raise ValueError(f"points have {finite.shape[1]} objectives, reference {reference.shape}")
    inside = finite[(finite < reference).all(axis=1)]
    if not len(inside):
        return 0.0
    return float(moocore.hypervolume(inside, ref=reference))
