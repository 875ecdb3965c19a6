"""The validation split: held out of the training images, disjoint from train and test, the same
for every trial; measured with the same samples; chosen on by a sweep."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from conftest import merge
from helpers import SMALL_TRIAL

from cl_sweeps.config import DataConfig
from cl_sweeps.data import build_task_stream, load_source
from cl_sweeps.data.idx import DataError
from cl_sweeps.data.sources import ImageSet, hold_out
from cl_sweeps.metrics import per_task_form
from cl_sweeps.sweep.schema import parse_sweep_config


def numbered(count: int, classes: int) -> ImageSet:
    """Images whose single pixel is their index: where an image went is exactly known."""
    return ImageSet(torch.arange(count, dtype=torch.float32).view(-1, 1, 1, 1),
                    torch.arange(count) % classes)


def ids(images: ImageSet) -> set[int]:
    return set(images.images.flatten().long().tolist())


def test_hold_out_is_disjoint_per_class_seeded_and_complete() -> None:
    train = numbered(100, 5)
    kept, validation = hold_out(train, 3, seed=0)
    assert ids(kept).isdisjoint(ids(validation)) and ids(kept) | ids(validation) == set(range(100))
    assert torch.bincount(validation.labels).tolist() == [3] * 5
    again = hold_out(train, 3, seed=0)[1]
    assert torch.equal(again.images, validation.images)  # stable: a resumed trial sees the same
    assert not torch.equal(hold_out(train, 3, seed=1)[1].images, validation.images)
    with pytest.raises(DataError, match=r"data.validation_per_class=20: class 0 has only 20"):
        hold_out(train, 20, seed=0)


def rows(images: torch.Tensor) -> set[bytes]:
    return {row.numpy().tobytes() for row in images.flatten(1)}


def test_digits_validation_is_disjoint_from_train_and_test() -> None:
    plain = load_source(DataConfig(dataset="digits"))
    split = load_source(DataConfig(dataset="digits", validation_per_class=36))
    assert plain.validation is None
    validation = split.validation
    assert torch.bincount(validation.labels).tolist() == [36] * 10  # as many as test (35-37)
    assert len(split.train) + len(validation) == len(plain.train)
    assert torch.equal(split.test.images, plain.test.images)  # test untouched
    # by content: no validation image is also a training or a test image
    train_rows, test_rows = rows(split.train.images), rows(split.test.images)
    assert not [r for r in rows(validation.images) if r in train_rows or r in test_rows]
    stream = build_task_stream(DataConfig(dataset="digits", validation_per_class=36), split)
    assert [sorted(v.labels.unique().tolist()) for v in stream.validation] == stream.task_classes
    assert len(stream.seen_validation(1)) == 4 * 36 and build_task_stream(
        DataConfig(dataset="digits"), plain).seen_validation(0) is None


def test_a_sweep_with_a_split_chooses_on_validation_metrics() -> None:
    sweep = {"base": {"data": {"dataset": "digits", "validation_per_class": 10}},
             "objectives": {"fid_final": "min", "train_tflops": "min", "kld": "min"},
             "scheduler": "moasha"}
    parsed = parse_sweep_config(sweep)
    assert [o.metric for o in parsed.objectives] == ["fid_final_val", "train_tflops", "kld_val"]
    assert parsed.scheduler_objectives() == [
        ("fid_val", "min"), ("train_tflops", "min"), ("kld_val", "min")]
    asha = parse_sweep_config({**sweep, "scheduler": "asha"})
    assert asha.scheduler_metric() == ("fid_val", "min")
    plain = parse_sweep_config({**sweep, "base": {"data": {"dataset": "digits"}}})
    assert [o.metric for o in plain.objectives] == ["fid_final", "train_tflops", "kld"]
    assert per_task_form("fid_final") == "fid" and per_task_form("train_tflops") == "train_tflops"


def test_the_paper_presets_and_the_quickstart_choose_on_validation() -> None:
    from cl_sweeps.sweep.schema import load_sweep_config

    spaces = Path(__file__).resolve().parent.parent / "search_spaces"
    for name in ("paper_digits", "paper_fmnist", "paper_cifar10", "quickstart"):
        sweep = load_sweep_config(spaces / f"{name}.yaml")
        assert sweep.base.data.validation_per_class is not None, name
        assert sweep.objectives[0].metric == "fid_final_val", name


def test_the_schedulers_a_split_sweep_builds_stop_on_validation_metrics() -> None:
    """A trial better on test FID but worse on validation FID is the one MO-ASHA stops."""
    from types import SimpleNamespace

    from ray.tune.schedulers import TrialScheduler

    from cl_sweeps.sweep.plan import SweepPlan
    from cl_sweeps.sweep.tuner import make_scheduler

    sweep = parse_sweep_config({
        "base": {"data": {"dataset": "digits", "num_tasks": 5, "validation_per_class": 10}},
        "search": {"strategy.name": ["naive", "cumulative"]},
        "scheduler": {"type": "moasha", "grace_period": 1, "reduction_factor": 2},
    })
    built = make_scheduler(SweepPlan(sweep))
    assert built.core.metrics == ["fid_val", "train_tflops"]

    def trial(trial_id: str, name: str) -> SimpleNamespace:
        return SimpleNamespace(trial_id=trial_id, config={"strategy.name": name, "seed": 0})

    good = {"task": 1, "fid": 30.0, "fid_val": 10.0, "train_tflops": 1.0}
    lucky_on_test = {"task": 1, "fid": 5.0, "fid_val": 20.0, "train_tflops": 1.0}
    assert built.on_trial_result(None, trial("a", "naive"), good) == "CONTINUE"
    assert built.on_trial_result(None, trial("b", "cumulative"), lucky_on_test) == (
        TrialScheduler.STOP)
    asha = make_scheduler(SweepPlan(parse_sweep_config({
        "base": {"data": {"dataset": "digits", "num_tasks": 5, "validation_per_class": 10}},
        "scheduler": "asha"})))
    assert asha.metric == "fid_val"


def test_the_frontier_of_a_split_sweep_chooses_on_validation_and_names_the_test_columns() -> None:
    from cl_sweeps.frontier import compute_frontier, frontier_table_text, objectives_for
    from cl_sweeps.frontier.build import on_validation
    from cl_sweeps.records import SweepSource, TrialRecord

    def record(key: str, seed: int, val: float, test: float) -> TrialRecord:
        return TrialRecord(trial_id=f"{key}{seed}", config_key=key, seed=seed,
                           status="COMPLETED", params={"strategy.name": key},
                           final={"train_tflops": 1.0, "fid_final_val": val, "fid_final": test},
                           tasks_done=2)

    # on test, b looks best; on validation, a is: the frontier chooses a and shows b's luck
    source = SweepSource([record("a", 0, 10.0, 12.0), record("b", 0, 11.0, 9.0)])
    objectives = on_validation(objectives_for(), source)
    assert objectives == ("train_tflops", "fid_final_val")
    assert on_validation(objectives_for(), SweepSource([])) == objectives_for()
    frontier = compute_frontier(source, objectives)
    assert frontier.pareto_configs().column("config_key").to_pylist() == ["a"]
    text = frontier_table_text(frontier)
    assert ("chosen on the validation split (fid_final_val); the test metrics beside them "
            "(fid_final) report the choice") in text


def test_the_report_shows_the_classifiers_validation_accuracy_beside_the_test_one() -> None:
    import pyarrow as pa

    from cl_sweeps.frontier.report import report_selection

    columns = ["fid_final", "kld", "fid_final_val", "kld_val", "accuracy_final",
               "accuracy_forgetting", "accuracy_final_val"]
    metrics, select_by = report_selection(pa.table({c: [1.0] for c in columns}))
    assert select_by == "fid_final_val"
    assert metrics == ("fid_final_val", "kld_val", "accuracy_final_val", "fid_final", "kld",
                       "forgetting", "train_tflops", "accuracy_final", "accuracy_forgetting")
    without_split = pa.table({c: [1.0] for c in columns if not c.endswith("_val")})
    assert report_selection(without_split) == (
        ("fid_final", "kld", "forgetting", "train_tflops", "accuracy_final",
         "accuracy_forgetting"), "fid_final")


def test_the_catalogs_smallest_training_class_is_the_datas() -> None:
    from cl_sweeps.data.catalog import dataset_info

    plain = load_source(DataConfig(dataset="digits"))
    assert int(torch.bincount(plain.train.labels).min()) == dataset_info(
        "digits").min_train_per_class


def _split_file(tmp_path: Path, data: dict, search: dict | None = None) -> Path:
    """A run file (search None) or a sweep file over the small trial with `data` merged in."""
    base = merge(SMALL_TRIAL, {"data": data, "output_dir": str(tmp_path / "run")})
    document: dict = {"base": base}
    if search is not None:
        document.update(name="split", output_dir=str(tmp_path / "sweep"), search=search)
    path = tmp_path / ("sweep.yaml" if search is not None else "run.yaml")
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.mark.parametrize(
    ("data", "search", "words"),
    [
        ({"validation_per_class": 139, "max_train_per_class": None}, None,
         ["base.data", "validation_per_class=139", "smallest class of digits has 139",
          "allowed: at most 138"]),
        ({"validation_per_class": 40}, None,  # the small trial keeps 40 per class
         ["base.data", "validation_per_class=40", "max_train_per_class=40", "at most 39"]),
        ({"validation_per_class": 60}, {"strategy.name": ["naive"]},
         ["base.data", "validation_per_class=60", "at most 39"]),
        ({"validation_per_class": 5}, {"data.validation_per_class": [5, 39, 40]},
         ["search.data.validation_per_class.values[2]", "validation_per_class=40",
          "at most 39"]),
    ],
    ids=["run", "run-capped", "sweep-base", "sweep-searched"],
)
def test_a_split_that_leaves_no_training_images_is_refused_before_any_compute(
    tmp_path: Path, capsys: pytest.CaptureFixture, data: dict, search: dict | None,
    words: list[str],
) -> None:
    from cl_sweeps.cli import main

    path = _split_file(tmp_path, data, search)
    code = main(["sweep" if search is not None else "run", str(path)])
    out = capsys.readouterr()
    text = out.out + out.err
    assert code == 2, text[-2000:]
    assert "Traceback" not in text and len(text.splitlines()) < 10
    for word in words:
        assert word in text, (word, text)
    assert not (tmp_path / "run").exists() and not (tmp_path / "sweep").exists()
    assert "values[1]" not in text  # 39 leaves one image per class: allowed


def test_a_split_sweep_on_the_classifiers_accuracy_chooses_on_accuracy_val() -> None:
    sweep = parse_sweep_config({
        "base": merge(SMALL_TRIAL, {"data": {"validation_per_class": 5},
                                    "classifier_replay": {"mode": "naive"}}),
        "objectives": {"accuracy_final": "max", "train_tflops": "min"}, "scheduler": "asha"})
    assert [o.metric for o in sweep.objectives] == ["accuracy_final_val", "train_tflops"]
    assert sweep.scheduler_metric() == ("accuracy_val", "max")
