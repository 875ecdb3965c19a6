"""Growing a sweep (--extend) and warm starts, without Ray: the searcher runs only the
(configuration, seed) pairs the records lack and Optuna is told the known ones; the changes
--extend refuses and the warm-start sources that are not comparable are named with their values.
The real sweeps are in test_sweep_grow_e2e.py."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from helpers import TINY_TASKS, tiny_sweep

from cl_sweeps import records
from cl_sweeps.config import ConfigError
from cl_sweeps.sweep.extend import check_extension, grow_output, refused_changes
from cl_sweeps.sweep.plan import SweepPlan
from cl_sweeps.sweep.prior import Prior
from cl_sweeps.sweep.schema import parse_sweep_config
from cl_sweeps.sweep.searcher import build_searcher
from cl_sweeps.sweep.space import SearchSpace, num_configurations
from cl_sweeps.sweep.warm_start import check_sources, import_trials, proposable_fields

LAST = TINY_TASKS - 1
KNOWN = {"strategy.name": "generative_replay", "strategy.teacher_steps": 2,
         "strategy.replay_ratio": 0.75}


def write_trial(root: Path, trial_id: str, fields: dict, seed: int, fid: float,
                status: str = records.COMPLETED) -> None:
    directory = records.SweepLayout(root).trial(trial_id)
    records.write_params(directory, trial_id, {**fields, "seed": seed}, TINY_TASKS)
    for task in range(TINY_TASKS):
        records.record_task(directory, {"task": task, "fid": fid, "fid_final": fid,
                                        "train_tflops": 0.5 * (task + 1)})
    records.write_status(directory, status)


def sweep_of(root: Path, **keys):
    return parse_sweep_config(tiny_sweep("grow", root, **keys))


def test_only_missing_pairs_run_and_optuna_knows_the_old_configuration(tmp_path: Path) -> None:
    write_trial(tmp_path, "old1", KNOWN, seed=1, fid=10.0)
    sweep = sweep_of(tmp_path, seeds=[1, 2], num_samples=2)
    prior = Prior.from_records(records.SweepLayout(tmp_path), sweep)
    assert prior.trials_to_run(num_configurations(sweep), sweep.seed_list()) == 1 + 2
    searcher = build_searcher(SweepPlan(sweep), prior)
    study = searcher.inner._ot_study
    told = study.get_trials(states=[optuna.trial.TrialState.COMPLETE])
    assert [t.params for t in told] == [KNOWN] and told[0].values == [10.0, 1.5]
    first, second, third = (searcher.suggest(f"t{i}") for i in range(3))
    assert first == {**KNOWN, "seed": 2}  # the known configuration's missing seed, first
    assert [second["seed"], third["seed"]] == [1, 2] and second == {**third, "seed": 1}
    searcher.on_trial_complete("t0", {"task": LAST, "fid_final": 30.0, "train_tflops": 1.5})
    assert len(study.trials) == 2  # a top-up is not a new Optuna trial
    searcher.on_trial_complete("t1", {"task": LAST, "fid_final": 4.0, "train_tflops": 1.0})
    searcher.on_trial_complete("t2", {"task": LAST, "fid_final": 6.0, "train_tflops": 1.0})
    assert sorted(t.values for t in study.get_trials(states=[optuna.trial.TrialState.COMPLETE])) \
        == [[5.0, 1.0], [10.0, 1.5]]


def test_a_known_configuration_proposed_again_is_told_not_run(tmp_path: Path) -> None:
    sweep = sweep_of(tmp_path, search={"strategy.name": ["naive", "cumulative"]},
                     search_algorithm="grid", num_samples=None)
    write_trial(tmp_path, "old", {"strategy.name": "naive"}, seed=3, fid=9.0)
    prior = Prior.from_records(records.SweepLayout(tmp_path), sweep)
    assert prior.trials_to_run(num_configurations(sweep), sweep.seed_list()) == 1
    searcher = build_searcher(SweepPlan(sweep), prior)
    assert searcher.suggest("a") == {"strategy.name": "cumulative", "seed": 3}


def test_extend_refuses_changes_that_change_what_a_trial_means() -> None:
    old = {"name": "s", "num_samples": 4, "seeds": [0, 1],
           "base": {"train": {"iterations_per_task": 4}, "seed": 0}}
    grown = {**old, "num_samples": 6, "seeds": [0, 1, 2], "max_concurrent_trials": 3}
    assert refused_changes(old, grown) == []
    moved = {**grown, "base": {**old["base"], "output_dir": "/elsewhere", "device": "cuda"}}
    assert refused_changes(old, moved) == []  # paths and the device do not change results
    changed = {**grown, "base": {"train": {"iterations_per_task": 5}, "seed": 0}}
    assert refused_changes(old, changed) == ["base.train.iterations_per_task: 4 -> 5"]
    fewer = refused_changes(old, {**old, "num_samples": 2, "seeds": [1]})
    assert any(line.startswith("num_samples: 4 -> 2") for line in fewer)
    assert any("[0] dropped" in line for line in fewer)


def test_extend_and_warm_start_read_keys_added_since_at_their_defaults(tmp_path: Path) -> None:
    """A sweep an earlier release ran lacks the keys added since (here strategy.lora_self_reg):
    grown or used as a warm-start source, they are read at their defaults, not taken for
    changes; set off the default, they are refused with the key named."""
    old = sweep_of(tmp_path / "old", num_samples=1)
    layout = records.SweepLayout(tmp_path / "old")
    saved = old.model_dump(mode="json")
    del saved["base"]["strategy"]["lora_self_reg"]
    records.write_yaml(layout.resolved, saved)
    records.write_json(layout.state, {"config_hash": "x"})
    layout.trials.mkdir(parents=True)
    grown = old.model_dump(mode="json") | {"num_samples": 2}
    assert check_extension(layout, grown, old, SearchSpace(old)) == {"config_hash": "x"}
    grown["base"]["strategy"]["lora_self_reg"] = 0.5
    with pytest.raises(ConfigError, match=r"base.strategy.lora_self_reg: 0.0 -> 0.5"):
        check_extension(layout, grown, old, SearchSpace(old))
    assert len(check_sources(sweep_of(tmp_path / "new", warm_start=[str(layout.root)]))) == 1


def test_warm_start_imports_proposable_trials_and_refuses_another_base(tmp_path: Path) -> None:
    source = tmp_path / "old"
    old = sweep_of(source)
    records.write_yaml(records.SweepLayout(source).resolved, old.model_dump(mode="json"))
    write_trial(source, "in", KNOWN, seed=3, fid=12.0)
    write_trial(source, "out", {**KNOWN, "strategy.replay_ratio": 0.2}, seed=3, fid=11.0)
    write_trial(source, "failed", {**KNOWN, "strategy.teacher_steps": 1}, seed=3, fid=1.0,
                status=records.FAILED)
    new = sweep_of(tmp_path / "new", warm_start=[str(source)])
    space = SearchSpace(new)
    assert proposable_fields(space, {**old.base.model_dump(mode="json")}) is None  # no strategy
    layout = records.SweepLayout(tmp_path / "new")
    summary = import_trials(new, layout, check_sources(new))
    assert summary["trials"] == 1 and summary["train_tflops"] == pytest.approx(1.5)
    assert summary["sources"][0]["not_proposable"] == 1  # replay_ratio 0.2 is outside 0.5..1
    (imported,) = records.read_trials(layout.trials)
    assert imported.trial_id == "in" and imported.params == KNOWN
    assert (layout.trial("in") / "origin.json").is_file()
    other = sweep_of(tmp_path / "new2", warm_start=[str(source)],
                     base={**old.base.model_dump(mode="json"),
                           "train": {"iterations_per_task": 5, "batch_size": 16}})
    with pytest.raises(ConfigError, match=r"base.train.iterations_per_task = 4, this sweep has 5"):
        check_sources(other)


def test_extend_may_add_search_values_in_a_new_study_taught_the_known_ones(tmp_path: Path) -> None:
    grid = {"search": {"strategy.name": ["naive", "cumulative"]}, "search_algorithm": "grid",
            "num_samples": None}
    old = sweep_of(tmp_path, **grid)
    layout = records.SweepLayout(tmp_path)
    records.write_yaml(layout.resolved, old.model_dump(mode="json"))
    records.write_json(layout.state, {"name": "grow", "parent_run_id": "p"})
    write_trial(tmp_path, "a", {"strategy.name": "naive"}, seed=3, fid=9.0)
    write_trial(tmp_path, "b", {"strategy.name": "cumulative"}, seed=3, fid=5.0)
    grown = sweep_of(tmp_path, **{**grid, "search": {"strategy.name": ["naive", "cumulative",
                                                                       "er"]}})
    space = SearchSpace(grown)
    resolved = grown.model_dump(mode="json")
    state = grow_output(layout, grown, space, resolved, "h", "text", [])
    assert state["study_name"] == "grow-extended-1" and state["parent_run_id"] == "p"
    prior = Prior.from_records(layout, grown, state["study_name"])
    searcher = build_searcher(SweepPlan(grown), prior)
    assert searcher.suggest("t") == {"strategy.name": "er", "seed": 3}
    assert searcher.inner._ot_study.study_name == "grow-extended-1"
    told = searcher.inner._ot_study.get_trials(states=[optuna.trial.TrialState.COMPLETE])
    assert sorted(t.values[0] for t in told) == [5.0, 9.0]
    shrunk = sweep_of(tmp_path, **{**grid, "search": {"strategy.name": ["cumulative", "er"]}})
    with pytest.raises(ConfigError, match=r"search: \{'strategy.name': 'naive'\} ran, and the "
                       "new search cannot propose it"):
        check_extension(layout, shrunk.model_dump(mode="json"), shrunk, SearchSpace(shrunk))


def test_nsga2_breeds_its_first_trials_from_the_known_configurations(tmp_path: Path) -> None:
    for index, (steps, ratio) in enumerate([(1, 0.5), (2, 0.75), (3, 1.0)]):
        write_trial(tmp_path, f"old{index}", {**KNOWN, "strategy.teacher_steps": steps,
                                              "strategy.replay_ratio": ratio}, seed=1,
                    fid=10.0 + index)
    sweep = sweep_of(tmp_path, seeds=[1], num_samples=5, search_algorithm={
        "name": "optuna", "sampler": "nsga2", "population_size": 2, "seed": 0})
    searcher = build_searcher(SweepPlan(sweep), Prior.from_records(records.SweepLayout(tmp_path),
                                                                   sweep))
    study = searcher.inner._ot_study
    key = "NSGAIISampler:generation"
    assert [t.system_attrs.get(key) for t in study.trials] == [0, 0, 0]  # else never read
    searcher.suggest("t0")
    assert study.trials[-1].system_attrs[key] == 1  # its parents: the known configurations
