"""`cl-sweeps frontier --seeds-advice`: seeds that would separate neighbouring frontier
configurations, from hand-made records and a hand-made sweep directory."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from test_frontier_fakes import GD, FakeTrial, write_sweep_dir

from cl_sweeps.cli import main
from cl_sweeps.frontier import compute_frontier
from cl_sweeps.frontier.advice import seeds_advice, seeds_advice_text, seeds_needed
from cl_sweeps.records import SweepSource, TrialRecord


def test_seeds_needed_by_hand_and_at_the_edges() -> None:
    # √n = (1.645·(5 + 5) + 0.8416·√50) / 10 = 2.24 -> n = 5.02 -> 6
    assert seeds_needed(10.0, 5.0, 5.0) == 6
    assert seeds_needed(20.0, 5.0, 5.0) == 2  # a larger gap needs fewer (at least 2)
    assert seeds_needed(1.0, 0.0, 0.0) == 2  # no spread: two seeds to see that
    assert seeds_needed(0.0, 1.0, 1.0) == math.inf  # equal means: never
    assert math.isnan(seeds_needed(1.0, math.nan, 1.0))  # one seed: unknown


def test_at_the_advised_seeds_the_intervals_separate_about_as_often_as_promised() -> None:
    rng = np.random.default_rng(0)
    difference, std_a, std_b = 3.0, 4.0, 2.0
    n = int(seeds_needed(difference, std_a, std_b))
    draws = 20_000
    a = rng.normal(0.0, std_a, size=(draws, n)).mean(axis=1)
    b = rng.normal(difference, std_b, size=(draws, n)).mean(axis=1)
    half = 1.6449 * (std_a + std_b) / math.sqrt(n)  # 90 % interval half-widths, added
    separated = (b - a > half).mean()
    assert 0.8 <= separated < 0.9  # rounding n up only adds power
    fewer = (b - a > 1.6449 * (std_a + std_b) / math.sqrt(n - 1)).mean()
    assert fewer < 0.8  # one seed fewer is not enough


def record(key: str, seed: int, compute: float, fid: float) -> TrialRecord:
    return TrialRecord(
        trial_id=f"{key}-{seed}", config_key=key, seed=seed, status="COMPLETED",
        params={"strategy.name": key}, final={"train_tflops": compute, "fid_final": fid},
        series={}, tasks_done=2,
    )


def test_each_neighbouring_pair_gets_the_seeds_of_its_harder_side() -> None:
    # three front configurations: cheap/far apart in FID from mid; mid and dear close in FID
    records = [record("cheap", s, 1.0, 80.0 + s) for s in range(3)]
    records += [record("mid", s, 2.0, (20.0, 26.0, 32.0)[s]) for s in range(3)]  # 26 ± 6
    records += [record("dear", s, 3.0, (18.0, 23.0, 28.0)[s]) for s in range(3)]  # 23 ± 5
    advice = seeds_advice(compute_frontier(SweepSource(records)))
    assert [(p.first["config_key"], p.second["config_key"]) for p in advice] == [
        ("cheap", "mid"), ("mid", "dear")]
    cheap_mid, mid_dear = advice
    assert cheap_mid.objective == "fid_final" and cheap_mid.seeds == 2  # 54 apart at std 1, 6
    assert mid_dear.objective == "fid_final" and mid_dear.difference == 3.0
    assert mid_dear.seeds == seeds_needed(3.0, 6.0, 5.0) > 3  # more seeds than the sweep ran
    text = seeds_advice_text(compute_frontier(SweepSource(records)))
    assert "seeds needed" in text and str(int(mid_dear.seeds)) in text.splitlines()[3]


def test_one_seed_gives_unknown_advice() -> None:
    records = [record("cheap", 0, 1.0, 80.0), record("dear", 0, 3.0, 20.0)]
    text = seeds_advice_text(compute_frontier(SweepSource(records)))
    assert "unknown (one seed)" in text


def test_cli_prints_the_advice(tmp_path: Path, capsys) -> None:
    params = {"strategy.name": GD, "strategy.teacher_steps": 2}
    trials = [FakeTrial(f"a{s}", {**params, "strategy.lambd": 1.0}, s, 2.0, 30.0 + 4 * s)
              for s in range(3)]
    trials += [FakeTrial(f"b{s}", {**params, "strategy.lambd": 0.5}, s, 3.0, 27.0 + 3 * s)
               for s in range(3)]
    sweep = write_sweep_dir(tmp_path / "sweep", trials)
    code = main(["frontier", "--sweep-dir", str(sweep), "--no-log", "--seeds-advice",
                 "--third-objective", "kld", "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert code == 0
    assert "Seeds advice for neighbouring frontier configurations:" in out
    assert "P(pareto)" in out
