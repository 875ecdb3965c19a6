"""Pareto optimality over any number of objectives, all minimised, in plain numpy.

Definitions the tests pin down:
- a point is dominated if another point is <= in every objective and < in at least one;
- points with identical objective vectors do not dominate each other, so ties and duplicates are
  all on the frontier (a user sees every configuration that reaches the optimum);
- only the objective values (the seed means) enter: a point with lower variance whose means are
  dominated is still dominated.
"""

from __future__ import annotations

import numpy as np


def pareto_mask(points: np.ndarray) -> np.ndarray:
    """Boolean mask of the non-dominated rows of an (n, d) array, all objectives minimised.

    A stack of point sets (..., n, d) gives one mask per set (..., n): the seed bootstrap asks
    for the frontier of a thousand resampled tables at once. O(n² d) time per set, vectorised
    over the stack; sweeps have thousands of configurations at most.
    """
    points = np.asarray(points, dtype=float)
    if points.ndim < 2:
        raise ValueError(f"points must be an (n, d) array, got shape {points.shape}")
    if not np.isfinite(points).all():
        raise ValueError("points must be finite; exclude NaN/inf trials before the Pareto step")
    mask = np.ones(points.shape[:-1], dtype=bool)
    for i in range(points.shape[-2]):
        point = points[..., i : i + 1, :]
        no_worse = (points <= point).all(axis=-1)
        better = (points < point).any(axis=-1)
        mask[..., i] = ~(no_worse & better).any(axis=-1)
    return mask


def frontier_order(points: np.ndarray) -> np.ndarray:
    """Indices of the non-dominated points sorted by the first objective (then the second):
    the order in which a step line over (compute, quality) is drawn."""
    points = np.asarray(points, dtype=float)
    index = np.flatnonzero(pareto_mask(points))
    keys = tuple(points[index, j] for j in reversed(range(points.shape[1])))
    return index[np.lexsort(keys)] if len(index) else index
