"""Seed noise of a frontier (bootstrap of each configuration's seeds), from hand-made records."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from cl_sweeps.frontier import (
    best_per_strategy_text,
    compute_frontier,
    frontier_summary_text,
    pareto_mask,
    write_frontier_outputs,
)
from cl_sweeps.frontier.bootstrap import intervals_overlap, resampled_means, seed_noise
from cl_sweeps.frontier.build import ONE_SEED, P_PARETO, interval_columns
from cl_sweeps.frontier.hypervolume import hypervolume, reference_point
from cl_sweeps.frontier.outputs import summary_dict
from cl_sweeps.records import SweepSource, TrialRecord


def record(key: str, seed: int, compute: float, fid: float) -> TrialRecord:
    return TrialRecord(
        trial_id=f"{key}-{seed}", config_key=key, seed=seed, status="COMPLETED",
        params={"strategy.name": key.split("-")[0]},
        final={"train_tflops": compute, "fid_final": fid}, series={}, tasks_done=2,
    )


# "gd" dominates "gr" on every seed; "lucky" is on the front only on a good seed: a little dearer
# than "gd" (5.5 vs 5.0), it reaches FID 10 on seed 0 but 40 on seeds 1 and 2, while "gd" sits at
# 20 to 22. "cheap" is the cheapest (compute 1.0) on every seed.
SEEDS = (0, 1, 2)
RECORDS = [
    *(record("gd-1", s, 5.0, 20.0 + s) for s in SEEDS),
    *(record("lucky-1", s, 5.5, (10.0, 40.0, 40.0)[s]) for s in SEEDS),
    *(record("gr-1", s, 6.0, 50.0 + s) for s in SEEDS),
    *(record("cheap-1", s, 1.0, 80.0 + s) for s in SEEDS),
]


def probabilities(records: list[TrialRecord]) -> dict[str, float]:
    frontier = compute_frontier(SweepSource(records))
    configs = frontier.configs
    return dict(zip(configs.column("config_key").to_pylist(), configs.column(P_PARETO).to_pylist()))


def test_a_configuration_dominating_on_every_seed_has_probability_one() -> None:
    p = probabilities(RECORDS)
    assert p["gd-1"] == 1.0 and p["cheap-1"] == 1.0
    assert p["gr-1"] == 0.0  # dominated by gd on every seed


def test_a_configuration_on_the_front_for_some_seeds_only_is_strictly_between() -> None:
    p = probabilities(RECORDS)
    # on the front only when a resample draws seed 0 at least twice (mean <= 20) and gd's mean
    # is higher: neither always nor never
    assert 0.0 < p["lucky-1"] < 1.0
    # its mean (30) is dominated by gd's (21): the point estimate alone would call it off the front
    frontier = compute_frontier(SweepSource(RECORDS))
    pareto = dict(zip(frontier.configs.column("config_key").to_pylist(),
                      frontier.configs.column("pareto").to_pylist()))
    assert pareto["lucky-1"] is False


def test_hypervolume_interval_contains_the_point_estimate() -> None:
    frontier = compute_frontier(SweepSource(RECORDS))
    low, high = frontier.noise.hypervolume
    assert low <= frontier.hypervolume <= high
    assert low < high  # the seeds do move it


def test_bootstrap_is_reproducible_and_uses_the_one_pareto_and_hypervolume() -> None:
    replicas = [np.array([[1.0, 5.0], [1.0, 7.0]]), np.array([[2.0, 4.0], [2.0, 9.0]])]
    ref = reference_point(np.array([r.mean(axis=0) for r in replicas]))
    a, b = seed_noise(replicas, ref), seed_noise(replicas, ref)
    assert np.array_equal(a.p_pareto, b.p_pareto) and a.hypervolume == b.hypervolume
    assert a.resamples >= 1000
    # each resampled mean of config 1 is one of 4, 6.5, 9: P(pareto) = P(mean_1 < mean_0)
    # where config 0's mean is one of 5, 6, 7 (probabilities 1/4, 1/2, 1/4)
    assert 0.3 < a.p_pareto[1] < 0.7
    assert a.p_pareto[0] == 1.0  # the cheapest is always on the front
    # the interval of the mean spans the bootstrap means, in the objectives' units
    assert a.low[0].tolist() == [1.0, 5.0] and a.high[0].tolist() == [1.0, 7.0]
    assert hypervolume(np.array([[1.0, 6.0], [2.0, 6.5]]), ref) <= a.hypervolume[1]


def test_one_seed_everywhere_says_nothing_about_noise() -> None:
    records = [record("gd-1", 0, 5.0, 20.0), record("gr-1", 0, 6.0, 50.0)]
    frontier = compute_frontier(SweepSource(records))
    assert frontier.noise is None
    assert all(math.isnan(p) for p in frontier.configs.column(P_PARETO).to_pylist())
    assert ONE_SEED in frontier_summary_text(frontier)
    assert "P(pareto)" not in frontier_summary_text(frontier)
    assert summary_dict(frontier)["seed_noise"] == {"note": ONE_SEED}


def test_a_single_seed_configuration_is_held_fixed_and_unknown() -> None:
    records = [*RECORDS, record("solo-1", 0, 0.5, 95.0)]
    frontier = compute_frontier(SweepSource(records))
    p = dict(zip(frontier.configs.column("config_key").to_pylist(),
                 frontier.configs.column(P_PARETO).to_pylist()))
    assert math.isnan(p["solo-1"]) and p["gd-1"] == 1.0
    assert frontier.noise.single_seed == 1
    assert "1 configuration with one seed" in frontier_summary_text(frontier)


def test_noise_in_the_table_text_and_plots() -> None:
    frontier = compute_frontier(SweepSource(RECORDS))
    text = frontier_summary_text(frontier)
    assert "P(pareto)" in text and "90 % interval over seeds" in text
    from cl_sweeps.frontier.plots import frontier_figure, frontier_plotly, points_of

    opacity = {p.row["config_key"]: p.opacity for p in points_of(frontier)}
    assert opacity["gd-1"] == 1.0 and opacity["gr-1"] < opacity["lucky-1"] < 1.0
    markers = [trace.marker.opacity for trace in frontier_plotly(frontier).data
               if trace.mode == "markers+text"]
    assert any(0 < min(m) < 1 for m in markers)
    alphas = {round(float(c[3]), 3) for coll in frontier_figure(frontier).axes[0].collections
              for c in getattr(coll, "get_facecolors", list)() if len(c) == 4}
    assert len(alphas - {0.0}) >= 2  # markers drawn at more than one opacity


def test_noise_in_frontier_parquet_and_summary_json(tmp_path: Path) -> None:
    # one objective: no plots to draw, so only the tables and summary.json are written
    frontier = compute_frontier(SweepSource(RECORDS), ("fid_final",))
    paths = write_frontier_outputs(frontier, tmp_path)
    by_key = {row["config_key"]: row for row in pq.read_table(paths["frontier"]).to_pylist()}
    low, high = interval_columns("fid_final")
    # on FID alone, lucky's good seed sometimes beats gd
    assert 0.0 < by_key["gd-1"][P_PARETO] < 1.0 and by_key["gr-1"][P_PARETO] == 0.0
    # 90 % of the bootstrap means: inside the seeds' range, around the mean
    assert 20.0 <= by_key["gd-1"][low] < 21.0 < by_key["gd-1"][high] <= 22.0
    assert 10.0 <= by_key["lucky-1"][low] <= 20.0 and by_key["lucky-1"][high] == 40.0
    summary = json.loads(paths["summary"].read_text())
    noise = summary["seed_noise"]
    assert noise["resamples"] == 1000 and noise["level"] == 0.9
    lo_hv, hi_hv = noise["hypervolume_interval"]
    assert lo_hv <= summary["hypervolume"] <= hi_hv
    assert noise["p_pareto"]["gd-1"] == by_key["gd-1"][P_PARETO]


def test_best_per_strategy_says_whether_best_and_runner_up_are_separable() -> None:
    # gd (20..22) vs lucky (10..40): overlapping; gd vs gr (50..52) would be separable
    text = best_per_strategy_text(compute_frontier(SweepSource(RECORDS)))
    assert "best (gd) and runner-up (lucky) are NOT separable on fid_final" in text
    apart = [r for r in RECORDS if not r.config_key.startswith("lucky")]
    text = best_per_strategy_text(compute_frontier(SweepSource(apart)))
    assert "best (gd) and runner-up (gr) are separable on fid_final" in text
    assert intervals_overlap((1.0, 2.0), (math.nan, 3.0)) is None


def test_a_maximised_objective_keeps_its_interval_in_its_own_units() -> None:
    records = [record("a-1", s, 1.0, 10.0 + s) for s in SEEDS]
    records += [record("b-1", s, 2.0, 30.0 + s) for s in SEEDS]
    frontier = compute_frontier(SweepSource(records), modes=("min", "max"))
    row = {r["config_key"]: r for r in frontier.configs.to_pylist()}["b-1"]
    low, high = interval_columns("fid_final")
    assert 30.0 <= row[low] < 31.0 < row[high] <= 32.0 and row[P_PARETO] == 1.0


def test_pareto_mask_of_a_stack_matches_each_set() -> None:
    rng = np.random.default_rng(1)
    stack = rng.normal(size=(50, 12, 3))
    assert np.array_equal(pareto_mask(stack), np.stack([pareto_mask(s) for s in stack]))


def test_pruning_configurations_never_on_the_front_changes_nothing() -> None:
    rng = np.random.default_rng(2)
    replicas = [rng.normal(size=(3, 2)) * 3 + rng.uniform(0, 30, size=2) for _ in range(40)]
    ref = reference_point(np.array([r.mean(axis=0) for r in replicas]))
    noise = seed_noise(replicas, ref)
    means = resampled_means(replicas, noise.resamples, np.random.default_rng(noise.seed))
    assert np.array_equal(noise.p_pareto, pareto_mask(means).mean(axis=0))
    volumes = [hypervolume(sample, ref) for sample in means]
    assert noise.hypervolume == tuple(np.percentile(volumes, [5, 95]))
    assert (noise.p_pareto == 0).sum() > 20  # most are pruned


def test_bootstrap_of_a_large_sweep_is_fast() -> None:
    rng = np.random.default_rng(0)
    replicas = [rng.normal(size=(3, 2)) * 3 + rng.uniform(0, 50, size=2) for _ in range(300)]
    ref = reference_point(np.array([r.mean(axis=0) for r in replicas]))
    start = time.process_time()  # CPU time: a loaded machine does not make it flaky
    noise = seed_noise(replicas, ref)
    assert time.process_time() - start < 2.0
    assert noise.p_pareto.shape == (300,) and noise.resamples == 1000
