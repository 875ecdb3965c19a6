"""The sweep plan: the sweep file's facts resolved once, a trial's task count built once per
trial config, and the plan picklable (Tune checkpoints what holds it)."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import pytest
from helpers import tiny_sweep

from cl_sweeps.records import SEED_PARAM
from cl_sweeps.sweep import plan as plan_module
from cl_sweeps.sweep.paths import with_absolute_paths
from cl_sweeps.sweep.plan import SweepPlan
from cl_sweeps.sweep.schema import parse_sweep_config


def planned(tmp_path: Path, **keys: object) -> SweepPlan:
    data = tiny_sweep("plan", tmp_path / "out", **keys)
    if "data.num_tasks" in data["search"]:  # the count comes from num_tasks, not a task list
        data["base"]["data"]["tasks"] = None
    return SweepPlan(with_absolute_paths(parse_sweep_config(data), tmp_path))


def test_the_task_count_follows_the_sampled_values_and_is_built_once_per_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = planned(tmp_path, search={"data.num_tasks": [2, 5]})
    built: list[dict] = []
    real = plan_module.expected_tasks

    def counting(base: dict, params: dict, seed_keys: list[str]) -> int:
        built.append(params)
        return real(base, params, seed_keys)

    monkeypatch.setattr(plan_module, "expected_tasks", counting)
    two, five = {"data.num_tasks": 2, SEED_PARAM: 0}, {"data.num_tasks": 5, SEED_PARAM: 0}
    assert [plan.tasks_of(two), plan.tasks_of(five), plan.tasks_of(dict(two))] == [2, 5, 2]
    assert built == [two, five]


def test_the_plan_holds_the_objectives_per_task_forms_and_the_scheduler(tmp_path: Path) -> None:
    plan = planned(tmp_path, scheduler="moasha", seeds=[0, 1])
    assert [(o.metric, o.per_task) for o in plan.objectives] == [
        ("fid_final", "fid"), ("train_tflops", "train_tflops")]
    assert plan.scheduler == ("fid", "min")
    assert plan.scheduler_objectives == (("fid", "min"), ("train_tflops", "min"))
    assert plan.display_metrics() == ("task", "fid", "train_tflops", "fid_final")
    assert (plan.configurations, plan.seeds, plan.trials) == (2, (0, 1), 4)
    assert plan.layout.root == tmp_path / "out" and plan.base_tasks == 3


def test_a_plan_pickles_with_what_it_computed(tmp_path: Path) -> None:
    plan = planned(tmp_path)
    plan.tasks_of({SEED_PARAM: 0})
    copy = pickle.loads(pickle.dumps(plan))
    assert copy._tasks == plan._tasks and copy.trials == plan.trials


def test_share_prefix_on_a_cloud_storage_is_warned_once_and_off(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    plan = planned(tmp_path, share_prefix=True, storage_path="s3://bucket/ray")
    with caplog.at_level(logging.WARNING, logger=plan_module.__name__):
        assert plan.prefix_dir is None and plan.prefix_dir is None
    assert len([r for r in caplog.records if "share_prefix" in r.getMessage()]) == 1
    local = planned(tmp_path, share_prefix=True)
    assert local.prefix_dir == str(tmp_path / "out" / "ray" / "plan-prefixes")


def test_an_unresolved_sweep_has_no_layout() -> None:
    data = {**tiny_sweep("plan", Path("out")), "output_dir": None}
    plan = SweepPlan(parse_sweep_config(data))
    with pytest.raises(ValueError, match="output_dir: not resolved"):
        plan.layout  # noqa: B018
