"""Sweep files: every malformed kind is rejected with a field-named message before Ray starts;
the shipped search spaces are valid; conditions, grids and paths resolve as documented."""

from __future__ import annotations

import copy
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import optuna
import pytest
from helpers import tiny_sweep, write_yaml

from cl_sweeps.config import ConfigError, TrialConfig
from cl_sweeps.credentials import redact_uri
from cl_sweeps.records import SweepLayout, config_key
from cl_sweeps.sweep.paths import TRIAL_PATH_FIELDS, with_absolute_paths
from cl_sweeps.sweep.schema import SweepConfig, load_sweep_config, parse_sweep_config
from cl_sweeps.sweep.search_params import conditions, grid
from cl_sweeps.sweep.space import SearchSpace, num_configurations, trial_config_for

REPO = Path(__file__).resolve().parents[1]
SEARCH_SPACES = sorted((REPO / "search_spaces").glob("*.yaml"))


def valid(**keys: Any) -> dict[str, Any]:
    return tiny_sweep("unit", Path("/tmp/unit-sweep"), **keys)


def with_search(**params: Any) -> dict[str, Any]:
    data = valid()
    data["search"] = {**data["search"], **params}
    return data


def rejected(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as error:
        parse_sweep_config(data)
    return str(error.value)


# --------------------------------------------------------------------------- malformed files

SECRET = "hunter2-very-secret"


def _base_strategy(name: str) -> dict[str, Any]:
    data = valid()
    data["base"]["strategy"] = {"name": name}
    return data


MALFORMED: dict[str, tuple[dict[str, Any], list[str]]] = {
    "unknown top-level key": (valid(num_sample=3), ["num_sample: unknown key"]),
    "unknown search field": (
        with_search(**{"strategy.teacher_step": [1, 2]}),
        ["search.strategy.teacher_step:", "no field 'teacher_step'", "teacher_steps"],
    ),
    "search a section": (with_search(strategy=[1]), ["search.strategy:", "is a section"]),
    "low above high": (
        with_search(**{"strategy.replay_ratio": {"type": "float", "low": 2.0, "high": 1.0}}),
        ["search.strategy.replay_ratio:", "low=2.0 must be below high=1.0"],
    ),
    "log scale from zero": (
        with_search(**{"strategy.lambd": {"type": "float", "low": 0.0, "high": 3, "log": True}}),
        ["search.strategy.lambd:", "log scale needs low > 0"],
    ),
    "unknown distribution type": (
        with_search(**{"strategy.lambd": {"type": "normal", "low": 0, "high": 1}}),
        ["search.strategy.lambd:", "choice, int, float"],
    ),
    "bound outside the trial config": (
        with_search(**{"strategy.teacher_steps": {"type": "int", "low": 1, "high": 5000}}),
        ["search.strategy.teacher_steps.high:", "1..1000", "(got 5000)"],
    ),
    "choice value invalid": (
        with_search(**{"strategy.name": ["generative_replay", "magic"]}),
        ["search.strategy.name.values[1]:", "unknown strategy 'magic'", "(got 'magic')"],
    ),
    "float on an integer field": (
        with_search(**{"strategy.teacher_steps": {"type": "float", "low": 1, "high": 3}}),
        ["search.strategy.teacher_steps.type:", "integer field"],
    ),
    "condition on an impossible value": (
        with_search(**{"strategy.teacher_steps": {
            "type": "int", "low": 1, "high": 3,
            "when": {"strategy.name": "generative_distilation"},
        }}),
        ["search.strategy.teacher_steps.when.strategy.name:", "'generative_distilation'"],
    ),
    "condition on an unknown parameter": (
        with_search(**{"strategy.teacher_steps": {
            "type": "int", "low": 1, "high": 3, "when": {"strategy.nme": "generative_replay"},
        }}),
        ["search.strategy.teacher_steps.when.strategy.nme:", "allowed: strategy.name"],
    ),
    "knob no strategy reads": (
        with_search(**{"strategy.memory_size": [50, 100]}),
        ["search.strategy.memory_size:", "reads memory_size", "er"],
    ),
    "searching the seed": (with_search(seed=[1, 2]), ["search.seed:", "seeds:"]),
    "two parameters set one field together": (
        with_search(other_ratio={"field": "strategy.replay_ratio", "values": [0.5]}),
        ["search.other_ratio.field:", "also set by search.strategy.replay_ratio"],
    ),
    "unknown objective metric": (
        valid(objectives={"fid_finale": "min"}), ["objectives[0].metric:", "'fid_finale'"]
    ),
    "bad objective mode": (
        valid(objectives=[{"metric": "fid_final", "mode": "lowest"}]),
        ["objectives[0].mode:", "'min' or 'max'", "'lowest'"],
    ),
    "fractional GPU above one": (
        valid(resources_per_trial={"cpu": 1, "gpu": 1.5}),
        ["resources_per_trial.gpu:", "fraction", "1.5"],
    ),
    "GPU reserved for a CPU trial": (
        valid(resources_per_trial={"cpu": 1, "gpu": 0.5}),
        ["resources_per_trial.gpu:", "base.device='cpu'"],
    ),
    "ASHA on a final-only metric": (
        valid(scheduler={"type": "asha", "metric": "fid_final"}),
        ["scheduler.metric:", "'fid_final'", "per-task"],
    ),
    "ASHA grace period past the sequence": (
        valid(scheduler={"type": "asha", "metric": "fid", "grace_period": 2}),
        ["scheduler.grace_period:", "3 tasks"],
    ),
    "grid over a continuous range": (
        valid(search_algorithm="grid"), ["search.strategy.replay_ratio:", "grid"]
    ),
    "password in the tracking URI": (
        valid(mlflow={"tracking_uri": f"http://me:{SECRET}@mlflow.internal:5000"}),
        ["mlflow.tracking_uri:", "password", "environment"],
    ),
    "password in the optuna storage": (
        valid(optuna_storage=f"postgresql://optuna:{SECRET}@db/optuna"),
        ["optuna_storage:", "password"],
    ),
    "plain file store": (valid(mlflow={"tracking_uri": "./mlruns"}), ["mlflow.tracking_uri:"]),
    "seeds repeated": (valid(seeds=[1, 1]), ["seeds:", "twice"]),
    "seed key not an int": (valid(seed_keys=["strategy.name"]), ["seed_keys[0]:", "integer"]),
    "zero concurrency": (valid(max_concurrent_trials=0), ["max_concurrent_trials:"]),
    "bad name": ({**valid(), "name": "my sweep!"}, ["name:", "pattern"]),
    "invalid base": (_base_strategy("magic"), ["base.strategy.name:", "unknown strategy"]),
    "unknown algorithm": (valid(search_algorithm="bayes"), ["search_algorithm.name:"]),
}


@pytest.mark.parametrize("kind", list(MALFORMED))
def test_malformed_sweep_is_rejected_with_field_names(kind: str) -> None:
    data, expected = MALFORMED[kind]
    message = rejected(copy.deepcopy(data))
    for text in expected:
        assert text in message, f"{kind}: {text!r} not in:\n{message}"
    assert SECRET not in message


def test_every_problem_is_reported_at_once() -> None:
    data = valid(seeds=[3, 3], resources_per_trial={"cpu": 1, "gpu": 2.5})
    data["search"]["strategy.teacher_steps"] = {"type": "int", "low": 1, "high": 5000}
    message = rejected(data)
    assert "resources_per_trial.gpu" in message  # structural problems come first, alone
    data["resources_per_trial"] = {"cpu": 1}
    message = rejected(data)
    assert "seeds:" in message and "search.strategy.teacher_steps.high" in message


def test_cli_rejects_malformed_file_without_touching_ray(tmp_path: Path) -> None:
    bad = write_yaml(tmp_path / "bad.yaml", with_search(**{"strategy.teacher_step": [1]}))
    script = textwrap.dedent(f"""
        import sys
        from cl_sweeps.cli import main
        code = main(["sweep", {str(bad)!r}])
        print("RAY_IMPORTED" if "ray" in sys.modules else "RAY_UNTOUCHED")
        sys.exit(code)
    """)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 2, done.stderr
    assert "search.strategy.teacher_step:" in done.stderr
    assert "RAY_UNTOUCHED" in done.stdout
    assert not (tmp_path / "runs").exists()


# --------------------------------------------------------------------------- valid files


@pytest.mark.parametrize("path", SEARCH_SPACES, ids=[p.name for p in SEARCH_SPACES])
def test_shipped_search_spaces_are_valid(path: Path) -> None:
    sweep = load_sweep_config(path)
    assert sweep.name == path.stem
    assert TrialConfig.model_validate(sweep.base.model_dump())
    SearchSpace(sweep).describe()


def test_required_search_spaces_exist() -> None:
    names = {p.stem for p in SEARCH_SPACES}
    assert {"quickstart", "fmnist_distillation", "paper_fmnist", "cifar10_distillation"} <= names


def test_paper_grid_matches_the_paper() -> None:
    sweep = load_sweep_config(REPO / "search_spaces" / "paper_fmnist.yaml")
    assert sweep.seed_list() == [42, 69, 1714]
    points = grid(sweep)
    by_strategy: dict[str, list[dict]] = {}
    for point in points:
        by_strategy.setdefault(point["strategy.name"], []).append(point)
    assert {p["strategy.teacher_steps"] for p in by_strategy["generative_distillation"]} == {
        2, 10, 100
    }
    assert all("strategy.teacher_steps" not in p for p in by_strategy["lwf_distillation"])
    # the reference's runs: 13 λ at 2 teacher steps, λ 0.75 only at 10 and 100 (pinned in full
    # by tests/test_paper_files.py)
    assert len(by_strategy["generative_distillation"]) == 13 + 2
    assert len(points) == num_configurations(sweep) == 36


def test_shorthands_and_defaults() -> None:
    sweep = parse_sweep_config({"base": {"device": "cpu"}}, default_name="from-file")
    assert sweep.name == "from-file" and sweep.search == {} and num_configurations(sweep) == 1
    assert [o.metric for o in sweep.objectives][1] == "train_tflops"
    assert sweep.scheduler is None and sweep.seed_list() == [0]
    asha = parse_sweep_config(valid(scheduler="asha", objectives=["fid_final"]))
    assert asha.scheduler_metric() == ("fid", "min")


# --------------------------------------------------------------------------- search space


def test_teacher_steps_sampled_only_for_teacher_strategies() -> None:
    data = valid()
    data["search"]["strategy.name"] = ["naive", "er", "generative_distillation"]
    data["search"]["strategy.memory_size"] = [50, 100]
    sweep = parse_sweep_config(data)
    assert conditions(sweep, "strategy.teacher_steps") == {
        "strategy.name": ["generative_distillation"]
    }
    assert conditions(sweep, "strategy.memory_size") == {"strategy.name": ["er"]}
    space = SearchSpace(sweep)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    study.optimize(lambda trial: space(trial) or 0.0, n_trials=40)
    seen = set()
    for trial in study.trials:
        name = trial.params["strategy.name"]
        seen.add(name)
        assert ("strategy.teacher_steps" in trial.params) == (name == "generative_distillation")
        assert ("strategy.memory_size" in trial.params) == (name == "er")
    assert seen == {"naive", "er", "generative_distillation"}


def test_trial_config_and_config_key() -> None:
    sweep = parse_sweep_config(valid(seeds=[7, 8], seed_keys=["seed", "data.class_order_seed"]))
    params = {"strategy.name": "generative_replay", "strategy.teacher_steps": 2, "seed": 7}
    trial = trial_config_for(
        sweep.base.model_dump(mode="json"), params, sweep.seed_keys, Path("/x/trials/t1")
    )
    assert trial.seed == 7 and trial.data.class_order_seed == 7
    assert trial.strategy.teacher_steps == 2 and trial.output_dir == "/x/trials/t1"
    assert config_key(params) == config_key({**params, "seed": 8})
    assert config_key(params) != config_key({**params, "strategy.teacher_steps": 3})


def test_paths_become_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = valid(optuna_storage="sqlite:///optuna.db", mlflow={"tracking_uri": "sqlite:///m.db"})
    data.pop("output_dir")
    data["base"]["evaluation"]["cache_dir"] = "cache"
    monkeypatch.delenv("CL_SWEEPS_HOME", raising=False)
    sweep = with_absolute_paths(parse_sweep_config(data), tmp_path)
    layout = SweepLayout(Path(sweep.output_dir))
    assert layout.root == tmp_path / "runs" / "unit"
    assert sweep.storage_path == str(layout.ray)
    assert sweep.optuna_storage == f"sqlite:///{tmp_path}/optuna.db"
    assert sweep.mlflow.tracking_uri == f"sqlite:///{tmp_path}/m.db"
    assert sweep.base.evaluation.cache_dir == str(tmp_path / "cache")
    data.pop("optuna_storage")  # the default: a persistent study in the output_dir
    sweep = with_absolute_paths(parse_sweep_config(data), tmp_path)
    assert sweep.optuna_storage == f"sqlite:///{layout.optuna_db}"


def test_every_path_field_of_the_trial_config_is_made_absolute() -> None:
    """A new path-like field in TrialConfig must be added to TRIAL_PATH_FIELDS."""
    suffixes = ("_dir", "_root", "_path", "_file", "_weights")
    found = []
    for section, info in TrialConfig.model_fields.items():
        model = info.annotation
        fields = model.model_fields if isinstance(model, type) and hasattr(
            model, "model_fields"
        ) else {}
        found += [f"{section}.{name}" for name in fields if name.endswith(suffixes)]
        if section.endswith(suffixes):
            found.append(section)
    assert set(found) <= set(TRIAL_PATH_FIELDS), set(found) - set(TRIAL_PATH_FIELDS)


def test_redaction() -> None:
    assert redact_uri("sqlite:////abs/mlflow.db") == "sqlite:////abs/mlflow.db"
    assert SECRET not in redact_uri(f"postgresql://u:{SECRET}@h:5432/db")
    assert SECRET not in redact_uri(f"http://h/x?token={SECRET}")


def test_credentials_stay_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from cl_sweeps.sweep.tracking import TrackingTarget, resolve_tracking_uri, shareable_uri

    secret_uri = f"https://me:{SECRET}@mlflow.example.org"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", secret_uri)
    sweep = parse_sweep_config(valid())
    uri, source = resolve_tracking_uri(sweep, SweepLayout(Path("/tmp/unit-sweep")))
    assert (uri, source) == (secret_uri, "MLFLOW_TRACKING_URI")
    assert shareable_uri(uri) is None  # never pickled into trials or Tune's experiment state
    assert TrackingTarget(None, "1", "p", "unit").resolved_uri() == secret_uri  # read on nodes
    assert SECRET not in redact_uri(uri)
    file_uri = parse_sweep_config(valid(mlflow={"tracking_uri": "http://mlflow:5000"}))
    assert resolve_tracking_uri(file_uri, SweepLayout(Path("/x")))[0] == "http://mlflow:5000"


def test_sweep_config_is_the_one_model() -> None:
    assert set(SweepConfig.model_fields) >= {
        "name", "output_dir", "base", "search", "objectives", "num_samples",
        "max_concurrent_trials", "resources_per_trial", "scheduler", "seeds",
        "search_algorithm", "optuna_storage", "mlflow", "storage_path",
    }


def test_replaced_key_in_a_search_points_at_its_replacement() -> None:
    message = rejected(with_search(**{"strategy.replay_start_timestep": [0, 500]}))
    assert "search.strategy.replay_start_timestep" in message
    assert "replaced by strategy.replay_timesteps: [low, high)" in message
    data = valid()
    data["base"]["strategy"] = {"name": "naive", "replay_start_timestep": 300}
    message = rejected(data)
    assert "base.strategy" in message and "here [300, 1000]" in message


def test_resume_accepts_a_sweep_saved_before_a_key_existed() -> None:
    """--resume compares the resolved sweep with the saved one as this release reads it: a key
    added to the schema since (here reuse_actors, and strategy.lora_self_reg inside base) counts
    only if the resumed sweep sets it off its default."""
    from cl_sweeps.sweep.output_dir import changed_keys, resolved_config

    resolved = resolved_config(parse_sweep_config(valid()))
    saved = copy.deepcopy(resolved)
    del saved["reuse_actors"], saved["base"]["strategy"]["lora_self_reg"]
    assert changed_keys(saved, resolved) == []
    assert changed_keys(saved, {**resolved, "reuse_actors": False}) == ["reuse_actors"]
    assert changed_keys(saved, {**resolved, "max_failures": 3}) == ["max_failures"]
    off_default = copy.deepcopy(resolved)
    off_default["base"]["strategy"]["lora_self_reg"] = 0.5
    assert changed_keys(saved, off_default) == ["base"]
    assert "gone" in changed_keys({**saved, "gone": 1}, resolved)  # unreadable now: as it is


def test_sweep_and_run_file_errors_show_a_value_by_one_rule() -> None:
    """One formatter of values for both files: secrets redacted, long values cut alike."""
    from cl_sweeps.config import parse_trial_config, shown_value

    secret, long = "postgresql://u:pw@h/db", "x" * 300
    for value in (secret, long):
        with pytest.raises(ConfigError) as sweep_error:
            parse_sweep_config({"base": {}, "resources_per_trial": {"cpu": value}})
        with pytest.raises(ConfigError) as run_error:
            parse_trial_config({"seed": value})
        assert f"(got {shown_value(value)})" in str(sweep_error.value)
        assert f"(got {shown_value(value)})" in str(run_error.value)
        assert "pw" not in str(sweep_error.value) and len(str(sweep_error.value)) < 200
