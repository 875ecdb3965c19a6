"""Bad input never produces a traceback, a hang or a flood: every class of mutated run and sweep
file found by fuzzing the shipped examples is a one-screen error naming the field, the value
(secrets redacted) and what is allowed, with exit code 2. Data files that are missing, corrupt
or inconsistent are named. A property test (hypothesis) mutates the schemas at random."""

from __future__ import annotations

import copy
import gzip
import struct
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cl_sweeps.cli import main
from cl_sweeps.config import ConfigError, DataConfig, parse_trial_config
from cl_sweeps.data import load_source
from cl_sweeps.data.sources import DataError
from cl_sweeps.documents import DocumentError, parse_document
from cl_sweeps.errors import UsageError
from cl_sweeps.sweep.schema import parse_sweep_config

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = yaml.safe_load((REPO / "search_spaces" / "quickstart.yaml").read_text())
SECRET = "hunter2-s3cr3t"


def cli(tmp_path: Path, capsys, text: str | bytes, command: str = "sweep") -> tuple[int, str]:
    path = tmp_path / "file.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    code = main([command, str(path), "--dry-run"])
    out = capsys.readouterr()
    return code, out.out + out.err


def sweep_text(**changes: Any) -> str:
    data = copy.deepcopy(QUICKSTART)
    for key, value in changes.items():
        node = data
        *parents, last = key.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return yaml.safe_dump(data, sort_keys=False)


BOMB = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
    f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi")
)

# (file text, command, words the error must contain)
CASES: dict[str, tuple[str | bytes, str, list[str]]] = {
    "YAML syntax": ("name: x\nsearch: [1, 2\nbase: {}\n", "sweep", ["not valid YAML", "line"]),
    "unknown tag": ("base: !!python/object/apply:os.system [ls]\n", "run", ["not valid YAML"]),
    "not UTF-8": (b"name: caf\xe9\n", "sweep", ["not UTF-8", "0xe9"]),
    "huge integer": ("base:\n  seed: " + "9" * 5000 + "\n", "run", ["4300 digits"]),
    "deep nesting": ("base: " + "[" * 5000 + "]" * 5000 + "\n", "run", ["nested deeper"]),
    "alias bomb": (BOMB, "sweep", ["expands to more than"]),
    "empty document": ("", "run", ["empty"]),
    "scalar document": ("42\n", "sweep", ["expected a mapping", "int"]),
    "list document": ("- base: {}\n", "run", ["expected a mapping", "list"]),
    "duplicate key": ("base:\n  seed: 1\n  seed: 2\n", "run", ["duplicate key 'seed'", "line 3"]),
    "two documents": ("base: {}\n---\nbase: {}\n", "run", ["another document"]),
    "inf learning rate": (sweep_text(base__train__lr=float("inf")), "sweep", ["train.lr", "finite"]),
    "nan in a range": (
        sweep_text(search={"strategy.replay_ratio": {"type": "float", "low": float("nan"),
                                                     "high": 1.0}}),
        "sweep", ["low", "finite"],
    ),
    "float grid over a huge span": (
        sweep_text(search={"train.lr": {"type": "float", "low": 1e-300, "high": 1e300,
                                        "step": 1e-300}}),
        "sweep", ["step", "at most"],
    ),
    "empty list in when": (
        sweep_text(search={"strategy.lambd": {"type": "float", "low": 0.1, "high": 1.0,
                                              "when": {"strategy.name": []}}}),
        "sweep", ["when.strategy.name", "empty list"],
    ),
    "class id beyond the dataset": (
        sweep_text(base__data__tasks=[[0, 1], [2, 12]]), "sweep",
        ["base.data", "[12]", "0..9", "10 classes"],
    ),
    "num_tasks that does not divide": (
        sweep_text(base__data__num_tasks=3), "sweep", ["num_tasks=3", "[1, 2, 5, 10]"],
    ),
    "seed beyond the RNGs": (sweep_text(seeds=[0, 2**40]), "sweep", ["seeds", "4294967295"]),
    "negative seed": ("base:\n  seed: -1\n", "run", ["seed", "greater than or equal to 0"]),
    "objective on a task the sweep lacks": (
        sweep_text(objectives={"fid_task_7": "min"}), "sweep", ["fid_task_7", "task 7"],
    ),
    "objective with non-ASCII digits": (
        sweep_text(objectives={"fid_task_\u0663": "min"}), "sweep", ["unknown metric"],
    ),
    "malformed URI": (
        sweep_text(mlflow={"tracking_uri": "http://[::1:5000"}), "sweep",
        ["mlflow.tracking_uri", "not a well-formed URI"],
    ),
    "bool as a number": (sweep_text(base__train__lr=True), "sweep", ["train.lr", "valid number"]),
    "0/1 as a flag": ("base:\n  data:\n    download: 1\n", "run", ["download", "boolean"]),
    "string as a number": ("base:\n  seed: '3'\n", "run", ["seed", "integer"]),
    "name too long for a file name": (
        sweep_text(name="a" * 260), "sweep", ["name", "at most 100 characters"],
    ),
    "float step larger than the range": (
        sweep_text(search={"train.lr": {"type": "float", "low": 0.1, "high": 0.2, "step": 1e12}}),
        "sweep", ["search.train.lr", "larger than the range"],
    ),
    "no tasks": (sweep_text(base__data__tasks=[]), "sweep", ["base.data.tasks", "empty list"]),
    "cuda searched without a GPU reserved": (
        sweep_text(search={"device": ["cpu", "cuda"]}), "sweep",
        ["resources_per_trial.gpu: 0", "search.device='cuda'"],
    ),
    "non-ASCII digits in cuda:N": (
        sweep_text(base__device="cuda:\u0663"), "sweep", ["base.device", "'cuda:N'"],
    ),
    "tracking URI with an unsupported scheme": (
        sweep_text(mlflow={"tracking_uri": "ftp://host/x"}), "sweep",
        ["mlflow.tracking_uri", "unsupported scheme 'ftp'", "http://"],
    ),
    "study storage with an unknown database": (
        sweep_text(optuna_storage="nosuchdb://host/x"), "sweep",
        ["optuna_storage", "unsupported scheme 'nosuchdb'", "sqlite://"],
    ),
    "tracking URI without a host": (
        sweep_text(mlflow={"tracking_uri": "http://"}), "sweep",
        ["mlflow.tracking_uri", "names no host"],
    ),
    "storage_path with an unsupported scheme": (
        sweep_text(storage_path="ftp://bucket/runs"), "sweep",
        ["storage_path", "unsupported scheme 'ftp'", "s3://"],
    ),
    "NUL byte in a path": (
        sweep_text(output_dir="runs/a\x00b"), "sweep", ["output_dir", "NUL byte"],
    ),
    "NUL byte in a trial path": (
        sweep_text(base__data__data_root="/data\x00"), "sweep", ["base.data.data_root", "NUL"],
    ),
    "blank MLflow experiment name": (
        sweep_text(mlflow={"experiment": "  "}), "sweep", ["mlflow.experiment", "blank name"],
    ),
    "structural problem beside an unknown objective": (
        sweep_text(base__train__lr=-1, objectives={"fidd": "min"}), "sweep",
        ["base.train.lr", "objectives[0].metric", "unknown metric", "'fidd'"],
    ),
    "YAML merge key": (
        "common: &c {seed: 1}\nbase:\n  <<: *c\n", "run", ["line 3", "merge keys (<<)"],
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_each_class_of_bad_input_is_a_clear_exit_2(name, tmp_path, capsys) -> None:
    text, command, words = CASES[name]
    code, out = cli(tmp_path, capsys, text, command)
    assert code == 2, out[-2000:]
    assert "Traceback" not in out
    for word in words:
        assert word in out, (word, out[-2000:])
    assert len(out) < 4000 and len(out.splitlines()) < 40  # one screen


@pytest.mark.parametrize(
    "uri",
    [
        f"s3://AKIAXX:{SECRET}@bucket/runs",
        f"s3://bucket/runs?token={SECRET}",
        f"gs://bucket/x?api_key={SECRET}",
        f"https://store/x?access_token={SECRET}",
    ],
)
def test_credentials_in_storage_path_are_refused_and_never_echoed(uri, tmp_path, capsys) -> None:
    code, out = cli(tmp_path, capsys, sweep_text(storage_path=uri))
    assert code == 2 and "storage_path: the location carries credentials" in out
    assert SECRET not in out


@pytest.mark.parametrize("key", ["token", "api_key", "access_token", "sslpassword", "password"])
def test_secret_query_keys_in_uris_are_refused_and_redacted(key, tmp_path, capsys) -> None:
    uri = f"postgresql://me@db/optuna?{key}={SECRET}"
    code, out = cli(tmp_path, capsys, sweep_text(optuna_storage=uri))
    assert code == 2 and "optuna_storage" in out and SECRET not in out


def test_every_problem_is_reported_at_once(tmp_path, capsys) -> None:
    text = sweep_text(base__train__lr=True, base__data__tasks=[[0, 11]], max_failures=-1,
                      storage_path=f"s3://bucket?token={SECRET}")
    code, out = cli(tmp_path, capsys, text)
    assert code == 2
    for field in ("base.train.lr", "base.data", "max_failures"):
        assert field in out, (field, out)


def test_a_set_value_that_is_not_yaml_names_its_key(tmp_path, capsys) -> None:
    path = tmp_path / "file.yaml"
    path.write_text(sweep_text())
    code = main(["sweep", str(path), "--set", "num_samples=[1,", "--dry-run"])
    err = capsys.readouterr().err
    assert code == 2 and "--set num_samples: not valid YAML" in err and "Traceback" not in err


def test_output_dir_must_be_empty_absent_or_a_sweep(tmp_path) -> None:
    from cl_sweeps.records import SweepLayout
    from cl_sweeps.sweep.output_dir import refuse_existing_sweep

    refuse_existing_sweep(SweepLayout(tmp_path / "absent"))
    (tmp_path / "empty").mkdir()
    refuse_existing_sweep(SweepLayout(tmp_path / "empty"))
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "holiday.jpg").write_text("")
    with pytest.raises(ConfigError, match=r"output_dir: .*photos is not empty and holds no "
                       r"cl-sweeps sweep \(holiday.jpg\)"):
        refuse_existing_sweep(SweepLayout(tmp_path / "photos"))
    (tmp_path / "photos" / "holiday.jpg").unlink()
    (tmp_path / "photos" / "sweep_state.json").write_text("{}")
    with pytest.raises(ConfigError, match="already holds a sweep; continue it with --resume"):
        refuse_existing_sweep(SweepLayout(tmp_path / "photos"))


def test_run_dry_run_prints_the_resolved_trial_and_its_tasks(tmp_path, capsys) -> None:
    text = yaml.safe_dump({"base": {"data": {"class_order_seed": 42}, "output_dir": "x"}})
    code, out = cli(tmp_path, capsys, text, "run")
    assert code == 0
    assert "# tasks (5): [[2, 6], [1, 8], [4, 5], [0, 9], [3, 7]]" in out
    assert "valid: 1 run" in out and "lr: 0.0002" in out
    assert not (tmp_path / "x").exists()  # nothing built, nothing written


def test_unwritable_output_dir_is_one_line(tmp_path, capsys) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    text = yaml.safe_dump({"base": {"output_dir": str(blocker / "run"), "device": "cpu"}})
    (tmp_path / "run.yaml").write_text(text)
    code = main(["run", str(tmp_path / "run.yaml")])
    err = capsys.readouterr().err
    assert code == 2 and "output_dir: cannot write to" in err and "Traceback" not in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_requested_but_absent_is_a_usage_error() -> None:
    from cl_sweeps.sequence import resolve_device

    with pytest.raises(UsageError, match="CUDA is not available"):
        resolve_device("cuda")


# --- data files --------------------------------------------------------------------------------


def write_idx(path: Path, magic: int, array: torch.Tensor) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    path.write_bytes(header + array.to(torch.uint8).numpy().tobytes())


def mnist_root(tmp_path: Path, labels: int = 20, magic: int = 2051) -> Path:
    raw = tmp_path / "MNIST" / "raw"
    for split, n in (("train", 20), ("t10k", 10)):
        write_idx(raw / f"{split}-images-idx3-ubyte", magic, torch.randint(0, 255, (n, 28, 28)))
        count = labels if split == "train" else n
        write_idx(raw / f"{split}-labels-idx1-ubyte", 2049, torch.arange(count) % 10)
    return tmp_path


def test_mnist_files_that_load_are_accepted(tmp_path) -> None:
    source = load_source(DataConfig(dataset="mnist", data_root=str(mnist_root(tmp_path))))
    assert len(source.train) == 20 and len(source.test) == 10


def test_corrupt_idx_file_is_named(tmp_path) -> None:
    root = mnist_root(tmp_path, magic=1234)
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte: not an IDX images file "
                                        r"\(magic number 1234, expected 2051\)"):
        load_source(DataConfig(dataset="mnist", data_root=str(root)))


def test_labels_file_shorter_than_images_is_named(tmp_path) -> None:
    root = mnist_root(tmp_path, labels=15)
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte holds 15 labels for 20 images"):
        load_source(DataConfig(dataset="mnist", data_root=str(root)))


def test_corrupt_cifar_batch_is_named(tmp_path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "data_batch_1").write_bytes(gzip.compress(b"not a pickle"))
    with pytest.raises(DataError, match=r"data_batch_1: corrupt"):
        load_source(DataConfig(dataset="cifar10", data_root=str(tmp_path)))


def test_data_errors_exit_2_from_the_cli(tmp_path, capsys) -> None:
    root = mnist_root(tmp_path / "data", labels=15)
    text = yaml.safe_dump({"base": {"data": {"dataset": "mnist", "data_root": str(root)},
                                    "device": "cpu", "output_dir": str(tmp_path / "run")}})
    (tmp_path / "run.yaml").write_text(text)
    code = main(["run", str(tmp_path / "run.yaml"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "holds 15 labels for 20 images" in err and "Traceback" not in err


# --- property test -------------------------------------------------------------------------------

SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)


def keys_of(data: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path into a nested mapping (mutation sites)."""
    paths = [prefix]
    if isinstance(data, dict):
        for key, value in data.items():
            paths += keys_of(value, (*prefix, key))
    return paths


@st.composite
def mutated(draw, document: dict[str, Any]) -> dict[str, Any]:
    data = copy.deepcopy(document)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(keys_of(data)))
        node = data
        for key in path[:-1]:
            node = node[key]
        if not path:
            return draw(VALUES) if draw(st.booleans()) else data
        if draw(st.booleans()) and isinstance(node, dict):
            node.pop(path[-1], None)
        else:
            node[path[-1]] = draw(VALUES)
    return data


PROPERTY = settings(max_examples=150, deadline=timedelta(seconds=10),
                    suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(mutated(QUICKSTART))
def test_any_sweep_document_validates_or_raises_a_config_error(document) -> None:
    if not isinstance(document, dict):
        return  # non-mappings are refused by the loader (tested above)
    try:
        parse_sweep_config(document, "fuzz")
    except ConfigError as error:
        assert len(str(error)) < 20_000


@PROPERTY
@given(mutated(QUICKSTART["base"]))
def test_any_trial_document_validates_or_raises_a_config_error(document) -> None:
    if not isinstance(document, dict):
        return
    try:
        parse_trial_config(document)
    except ConfigError as error:
        assert len(str(error)) < 20_000


@PROPERTY
@given(st.one_of(st.text(max_size=200), mutated(QUICKSTART).map(yaml.safe_dump)))
def test_any_text_reads_as_a_mapping_or_a_document_error(text) -> None:
    try:
        assert isinstance(parse_document(text, "fuzz.yaml"), dict)
    except DocumentError as error:
        assert str(error).startswith("fuzz.yaml") and len(str(error)) < 1000
