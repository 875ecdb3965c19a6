"""MO-ASHA on hand-made results: rungs on the task axis, dominated configurations stopped,
non-dominated ones kept, seed replicas judged on their mean and stopped together."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers import tiny_sweep
from ray.tune.schedulers import TrialScheduler

from cl_sweeps.config import ConfigError
from cl_sweeps.sweep.moasha import MOASHA, MOASHAScheduler, nondominated_order, rung_levels
from cl_sweeps.sweep.plan import SweepPlan
from cl_sweeps.sweep.schema import check_sweep, parse_sweep_config
from cl_sweeps.sweep.tuner import make_scheduler

FID, TFLOPS = "fid", "train_tflops"


def scheduler(levels=(1,), reduction_factor=2.0, modes=("min", "min")) -> MOASHA:
    return MOASHA([FID, TFLOPS], list(modes), list(levels), reduction_factor)


def report(core: MOASHA, trial: str, config: str, task: int, fid: float, tflops: float) -> bool:
    return core.on_result(trial, config, task, {FID: fid, TFLOPS: tflops})


def test_rung_levels_on_the_task_axis() -> None:
    assert rung_levels(1, 2, 3) == [1, 2]  # 5 tasks: rungs after task index 1 and 2
    assert rung_levels(1, 3, 8) == [1, 3]
    assert rung_levels(2, 2, 10) == [2, 4, 8]
    assert rung_levels(1, 1.5, 5) == [1, 2, 3, 5]
    assert rung_levels(3, 2, 2) == []


def test_dominated_configuration_is_stopped_and_non_dominated_ones_kept() -> None:
    core = scheduler()
    assert report(core, "a", "A", 0, 50.0, 1.0)  # before the first rung: always continue
    assert report(core, "a", "A", 1, 10.0, 1.0)  # first at the rung
    assert not report(core, "b", "B", 1, 20.0, 2.0)  # worse FID and more compute than A
    assert report(core, "c", "C", 1, 5.0, 3.0)  # better FID at more compute: on the front
    assert report(core, "d", "D", 1, 30.0, 0.5)  # cheapest: on the front
    assert core.stopped == {"B": 1}
    assert not report(core, "b", "B", 2, 1.0, 1.0)  # once stopped, always stopped


def test_every_point_of_a_large_first_front_is_kept() -> None:
    core = scheduler(reduction_factor=4.0)
    for i in range(6):  # all mutually non-dominated: more than 1/4 of the rung, none stopped
        assert report(core, f"t{i}", f"C{i}", 1, 10.0 - i, 1.0 + i)
    assert not core.stopped


def test_a_dominated_point_in_the_top_fraction_continues() -> None:
    core = scheduler()
    for trial, fid, tflops in [("a", 1, 10), ("c", 10, 1), ("d", 20, 20), ("e", 21, 21)]:
        report(core, trial, trial.upper(), 1, fid, tflops)
    # b is dominated by a, but ranks 3rd of 5 (fronts: {a, c}, {b}, ...) < 5 / 2: kept
    assert report(core, "b", "B", 1, 2, 11)
    # f ranks 6th of 6: stopped
    assert not report(core, "f", "F", 1, 30, 30)


def test_replicas_are_judged_on_their_mean_and_stopped_together() -> None:
    core = scheduler()
    assert report(core, "x1", "X", 1, 10.0, 1.0)
    assert report(core, "y1", "Y", 1, 8.0, 1.0)  # dominates X's point so far
    # alone, x2 (7, 1) would be on the front; X's mean (8.5, 1) is dominated by Y: stop X
    assert not report(core, "x2", "X", 1, 7.0, 1.0)
    assert core.stopped == {"X": 1}
    assert not report(core, "x1", "X", 2, 1.0, 1.0)  # the replica that passed stops next report
    assert not report(core, "x3", "X", 0, 1.0, 1.0)  # a replica not yet at the rung too
    assert report(core, "y2", "Y", 1, 9.0, 1.0)


def test_max_objectives_non_finite_values_and_restarts() -> None:
    core = scheduler(modes=("max", "min"))
    assert report(core, "a", "A", 1, 10.0, 1.0)
    assert not report(core, "b", "B", 1, 5.0, 1.0)  # lower is worse when maximised
    assert not report(core, "n", "N", 1, math.nan, 0.1)  # a NaN objective ranks last
    assert report(core, "a", "A", 1, 0.0, 9.0)  # a restarted trial re-reporting its rung
    assert nondominated_order([[1, 1], [math.inf, 0], [2, 2]])[0] == [0, 2, 1]


def test_ray_scheduler_stops_through_tune() -> None:
    core = scheduler()
    tune_scheduler = MOASHAScheduler(core, lambda config: config["strategy.name"])

    def trial(trial_id: str, name: str) -> SimpleNamespace:
        return SimpleNamespace(trial_id=trial_id, config={"strategy.name": name, "seed": 0})

    result = {"task": 1, FID: 10.0, TFLOPS: 1.0}
    assert tune_scheduler.on_trial_result(None, trial("a", "gd"), result) == "CONTINUE"
    worse = {"task": 1, FID: 11.0, TFLOPS: 2.0}
    assert tune_scheduler.on_trial_result(None, trial("b", "gr"), worse) == TrialScheduler.STOP
    assert tune_scheduler.on_trial_result(None, trial("c", "x"), {"task": 1}) == "CONTINUE"


def test_sweep_file_moasha_uses_the_objectives_per_task_forms() -> None:
    sweep = parse_sweep_config(tiny_sweep("mo", Path("/tmp/mo"), scheduler="moasha"))
    assert check_sweep(sweep) == []
    assert sweep.scheduler_objectives() == [("fid", "min"), ("train_tflops", "min")]
    built = make_scheduler(SweepPlan(sweep))
    assert isinstance(built, MOASHAScheduler)
    assert built.core.metrics == ["fid", "train_tflops"] and built.core.levels == [1]


def test_moasha_sweep_file_errors() -> None:
    with pytest.raises(ConfigError, match="scheduler: metric applies to type: asha only"):
        parse_sweep_config(tiny_sweep("mo", Path("/tmp/mo"), scheduler={
            "type": "moasha", "metric": "fid"}))
    with pytest.raises(ConfigError, match="objectives.1..metric: 'forgetting' has no form"):
        parse_sweep_config(tiny_sweep(
            "mo", Path("/tmp/mo"), scheduler="moasha",
            objectives={"fid_final": "min", "forgetting": "min"}))
