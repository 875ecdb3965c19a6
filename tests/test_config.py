"""Bad input fails before any training, naming the field, the value and what is allowed."""

from __future__ import annotations

import pytest

from cl_sweeps.config import ConfigError, load_trial_config, parse_trial_config


@pytest.mark.parametrize(
    "data,expected",
    [
        ({"strategy": {"name": "magic"}}, ["strategy.name", "'magic'", "naive", "cumulative", "er"]),
        ({"data": {"dataset": "imagenet"}}, ["data.dataset", "'imagenet'", "digits", "cifar10"]),
        ({"train": {"iterations_per_task": 0}}, ["train.iterations_per_task", "greater than 0"]),
        ({"train": {"batch_size": -4}}, ["train.batch_size", "-4", "greater than 0"]),
        ({"strategy": {"replay_ratio": -0.5}}, ["strategy.replay_ratio", "-0.5", "greater than"]),
        (
            {"data": {"tasks": [[0, 1], [1, 2]]}},
            ["data.tasks", "class 1 is in task 0 and task 1", "one task only"],
        ),
        ({"strategy": {"nmae": "er"}}, ["strategy.nmae", "unknown key"]),
        ({"learning_rate": 0.1}, ["learning_rate", "unknown key"]),
        ({"strategy": {"teacher_steps": 2000}}, ["teacher_steps=2000", "1000", "1..1000"]),
        ({"device": "tpu"}, ["device", "'tpu'", "'cpu'"]),
        (
            {"train": {"iterations_per_task": 5, "epochs_per_task": 2}},
            ["iterations_per_task=5", "epochs_per_task=2", "exactly one"],
        ),
        ({"data": {"dataset": "cifar10"}}, ["data.data_root", "cifar10", "data.download"]),
        ({"evaluation": {"n_eval_samples": 1}}, ["evaluation.n_eval_samples", "1", "2"]),
        (
            {"strategy": {"replay_start_timestep": 300}},
            ["strategy", "replay_start_timestep=300", "replaced by replay_timesteps",
             "[300, 1000]"],
        ),
        (
            {"strategy": {"replay_timesteps": [600, 200]}},
            ["strategy", "replay_timesteps=[600, 200]", "0 <= low < high <= 1000"],
        ),
    ],
)
def test_bad_trial_config_names_field_value_and_allowed(data, expected):
    with pytest.raises(ConfigError) as error:
        parse_trial_config(data)
    for fragment in expected:
        assert fragment in str(error.value), (fragment, str(error.value))


def test_yaml_base_section_errors_are_prefixed(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("base:\n  strategy:\n    name: er\n    replay_ratio: -1\n")
    with pytest.raises(ConfigError, match=r"base\.strategy\.replay_ratio"):
        load_trial_config(path)


def test_overrides_apply_and_are_validated(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("base:\n  strategy:\n    name: naive\n")
    config = load_trial_config(path, ["strategy.name=er", "train.batch_size=32"])
    assert config.strategy.name == "er" and config.train.batch_size == 32
    with pytest.raises(ConfigError, match="key=value"):
        load_trial_config(path, ["strategy.name"])
    with pytest.raises(ConfigError, match="base.train.batch_size"):
        load_trial_config(path, ["train.batch_size=0"])


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_trial_config(tmp_path / "nope.yaml")


def test_every_paper_sweep_evaluates_with_the_papers_10000_samples():
    from pathlib import Path

    files = sorted((Path(__file__).parent.parent / "search_spaces").glob("paper_*.yaml"))
    assert len(files) >= 2
    for path in files:
        config = load_trial_config(path)
        assert config.evaluation.n_eval_samples == 10_000, path.name
        expected_steps = 20 if config.data.dataset == "cifar10" else 10
        assert config.evaluation.eval_steps == expected_steps, path.name


def test_dotted_keys_read_back_what_they_set() -> None:
    """One getter beside the setter (warm starts, reports and records all read through it)."""
    from cl_sweeps.config import get_dotted, set_dotted

    data: dict = {"strategy": {"name": "er"}, "seed": 3}
    set_dotted(data, "strategy.replay_ratio", 0.5)
    set_dotted(data, "train.lr", 1e-3)  # a new section
    assert get_dotted(data, "strategy.replay_ratio") == 0.5
    assert get_dotted(data, "train.lr") == 1e-3 and get_dotted(data, "seed") == 3
    assert get_dotted(data, "strategy") == {"name": "er", "replay_ratio": 0.5}
    for absent in ("strategy.lambd", "model.channels", "seed.value", "strategy.name.x"):
        assert get_dotted(data, absent) is None
    assert get_dotted(None, "strategy.name") is None
