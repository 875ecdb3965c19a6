"""Seed noise of a frontier: how sure is a configuration's place on it?

A frontier ranks configurations by their seed means, but a mean over three seeds moves with the
seeds. The bootstrap here resamples, for every configuration, its own seed replicas with
replacement (RESAMPLES times, a fixed generator seed, so the numbers are reproducible), and
recomputes from each resampled table of means what the frontier computes from the real one:

- `p_pareto`: the share of resamples in which the configuration is on the Pareto set (the
  project's one `pareto_mask`, vectorised over the resamples). 1: on the front whatever the
  seeds; 0.4: a lucky seed may have put it there.
- a LEVEL (90 %) percentile interval of each objective's seed mean, per configuration: two
  configurations whose intervals overlap cannot be told apart at this number of seeds.
- the hypervolume's LEVEL interval (the project's one `hypervolume`, at the point estimate's
  reference point, so the interval is in the same units; a resampled point beyond the reference
  adds nothing, as in the point estimate).

A configuration with a single seed has no spread to resample: it is held at its value and its
probability and intervals are unknown (NaN). With one seed everywhere, nothing can be said.
The bootstrap of a mean over n seeds takes at most C(2n-1, n) distinct values (n = 2: three),
so with few seeds the intervals are coarse; they say that, rather than hide it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cl_sweeps.frontier.hypervolume import hypervolume
from cl_sweeps.frontier.pareto import pareto_mask

RESAMPLES = 1000
LEVEL = 0.9
SEED = 0


@dataclass(frozen=True)
class SeedNoise:
    """The bootstrap's answer for the configurations of one frontier (rows in their order)."""

    p_pareto: np.ndarray  # (C,): share of resamples on the Pareto set; NaN with one seed
    low: np.ndarray  # (C, d): lower end of each objective's LEVEL interval (minimised units)
    high: np.ndarray  # (C, d): upper end
    hypervolume: tuple[float, float] | None  # LEVEL interval; None without a reference point
    single_seed: int  # configurations with one seed, held at their value
    resamples: int = RESAMPLES
    level: float = LEVEL
    seed: int = SEED


def intervals_overlap(a: tuple[float, float], b: tuple[float, float]) -> bool | None:
    """Whether two (low, high) intervals overlap: the two configurations cannot be told apart
    at this number of seeds. None when either is unknown (NaN: a single seed)."""
    if np.isnan([*a, *b]).any():
        return None
    return bool(a[0] <= b[1] and b[0] <= a[1])


def resampled_means(
    replicas: Sequence[np.ndarray], resamples: int, rng: np.random.Generator
) -> np.ndarray:
    """(resamples, C, d) bootstrap means: configuration c's (n_c, d) seed values resampled with
    replacement, n_c at a time. Configurations with the same n are drawn together."""
    dims = replicas[0].shape[1]
    out = np.empty((resamples, len(replicas), dims))
    sizes = np.array([len(r) for r in replicas])
    for n in np.unique(sizes):
        members = np.flatnonzero(sizes == n)
        values = np.stack([replicas[i] for i in members])  # (k, n, d)
        draws = rng.integers(0, n, size=(resamples, len(members), n))
        rows = np.arange(len(members))[None, :, None]
        out[:, members, :] = values[rows, draws].mean(axis=2)
    return out


def never_on_front(means: np.ndarray) -> np.ndarray:
    """(C,) configurations that another one dominates in every resample: its worst resampled
    means dominate their best. Exact, and it makes the bootstrap fast: such a configuration is
    never on the front, and whatever it dominates its dominator dominates too, so the Pareto
    sets and hypervolumes of the rest are the same without it."""
    best, worst = means.min(axis=0), means.max(axis=0)  # (C, d)
    no_worse = (worst[None, :, :] <= best[:, None, :]).all(axis=-1)  # [c, j]: j's worst <= c's best
    better = (worst[None, :, :] < best[:, None, :]).any(axis=-1)
    return (no_worse & better).any(axis=1)


def seed_noise(
    replicas: Sequence[np.ndarray],
    reference: np.ndarray | None,
    resamples: int = RESAMPLES,
    level: float = LEVEL,
    seed: int = SEED,
) -> SeedNoise | None:
    """Bootstrap the seed replicas of each configuration ((n_c, d) arrays of finite objective
    values, all minimised: negate a maximised one first). None when no configuration has two
    seeds: then nothing can be said about noise."""
    if resamples < 1 or not 0 < level < 1:
        raise ValueError(f"resamples must be >= 1 and level in (0, 1), got {resamples}, {level}")
    replicas = [np.asarray(r, dtype=float).reshape(len(r), -1) for r in replicas]
    sizes = np.array([len(r) for r in replicas])
    if not len(replicas) or sizes.max() < 2:
        return None
    if (sizes < 1).any():
        raise ValueError("every configuration needs at least one seed value")
    means = resampled_means(replicas, resamples, np.random.default_rng(seed))
    tails = 100 * (1 - level) / 2
    low, high = np.percentile(means, [tails, 100 - tails], axis=0)
    single = sizes < 2
    candidates = ~never_on_front(means)
    p_pareto = np.zeros(len(replicas))
    p_pareto[candidates] = pareto_mask(means[:, candidates]).mean(axis=0)
    p_pareto[single] = np.nan
    low[single], high[single] = np.nan, np.nan
    interval = None
    if reference is not None:  # dominated points add no volume: the candidates give it all
        volumes = np.array([hypervolume(sample, reference) for sample in means[:, candidates]])
        lo, hi = np.percentile(volumes, [tails, 100 - tails])
        interval = (float(lo), float(hi))
    return SeedNoise(p_pareto, low, high, interval, int(single.sum()), resamples, level, seed)
