"""Task-prefix sharing: a run that reuses a shared task 0 ends bit-identical (CPU) to one that
trains its own; concurrent runs compute a prefix once; a killed writer leaves no usable prefix."""

from __future__ import annotations

import multiprocessing
import os
import signal
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import SMALL_TRIAL, merge
from filelock import FileLock

from cl_sweeps.config import TrialConfig
from cl_sweeps.prefix import prefix_key
from cl_sweeps.prefix_store import MANIFEST_FILE, PrefixStore
from cl_sweeps.sequence import Engine, run_sequence
from cl_sweeps.strategies import available_strategies, strategy_class
from cl_sweeps.strategies.catalog import strategy_info

REUSERS = ["generative_distillation", "er", "ewc"]  # teacher, memory and Fisher end_task hooks


def trial(tmp: Path, name: str, **override: Any) -> TrialConfig:
    data = merge(SMALL_TRIAL, {"output_dir": str(tmp / name), "strategy": {"name": name}})
    return TrialConfig.model_validate(merge(data, override))


def comparable(history: list[dict[str, float]]) -> list[dict[str, str]]:
    """Every metric except wall time, memory and the accounting of what was reused."""
    return [
        {k: repr(v) for k, v in row.items()
         if "seconds" not in k and "memory" not in k and k != "reused_train_tflops"}
        for row in history
    ]


def test_prefix_key_covers_what_task_zero_depends_on(tmp_path: Path) -> None:
    keys = {name: prefix_key(trial(tmp_path, name)) for name in ("naive", "er", "ewc")}
    assert len(set(keys.values())) == 1 and None not in keys.values()
    knobs = trial(tmp_path, "generative_distillation", strategy={"teacher_steps": 7, "lambd": 3})
    assert prefix_key(knobs) == keys["naive"]
    assert prefix_key(trial(tmp_path, "naive", seed=4)) != keys["naive"]
    assert prefix_key(trial(tmp_path, "naive", train={"lr": 1e-3})) != keys["naive"]
    assert prefix_key(trial(tmp_path, "naive", evaluation={"eval_steps": 3})) != keys["naive"]
    assert prefix_key(trial(tmp_path, "si")) is None  # SI accumulates state during task 0
    assert prefix_key(trial(tmp_path, "naive", data={"tasks": [[0, 1]]})) is None


@pytest.mark.parametrize(
    "name", [n for n in available_strategies() if strategy_class(n).shares_task0]
)
def test_every_sharing_strategy_trains_task_zero_like_naive(tmp_path: Path, name: str) -> None:
    """What `shares_task0` promises: the same weights, optimiser, generators and counts."""
    engines = {}
    # a conditional-only strategy is compared with naive on the same conditional model
    model = {"model": {"conditional": True}} if not strategy_info(name).works_for(False) else {}
    for strategy in ("naive", name):
        engine = Engine(trial(tmp_path, strategy, **model))
        engine.fit_task(0, progress=False)
        engines[strategy] = engine
    naive, other = engines["naive"], engines[name]
    for key, value in naive.model.state_dict().items():
        assert torch.equal(value, other.model.state_dict()[key]), key
    assert naive.counter.snapshot() == other.counter.snapshot()
    assert torch.equal(naive.data_generator.get_state(), other.data_generator.get_state())
    assert torch.equal(naive.context.generator.get_state(), other.context.generator.get_state())
    assert repr(naive.optimizer.state_dict()["state"]) == repr(other.optimizer.state_dict()["state"])


def test_si_does_not_share_task_zero() -> None:
    assert not strategy_class("si").shares_task0


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, PrefixStore, list]:
    """naive computes the prefix (its metrics are checked against an unshared naive run)."""
    root = tmp_path_factory.mktemp("prefix")
    store = PrefixStore(root / "prefixes")
    computed = run_sequence(trial(root / "shared", "naive"), prefixes=store).history
    return root, store, computed


def test_the_computing_run_matches_an_unshared_run(shared) -> None:
    root, store, computed = shared
    alone = run_sequence(trial(root / "alone", "naive")).history
    assert comparable(computed) == comparable(alone)
    assert [row["reused_train_tflops"] for row in computed] == [0.0] * len(computed)
    assert len(store.manifests()) == 1


@pytest.mark.parametrize("name", REUSERS)
def test_a_reused_prefix_ends_bit_identical_to_training_task_zero(shared, name: str) -> None:
    root, store, computed = shared
    alone = run_sequence(trial(root / "alone", name)).history
    reused = run_sequence(trial(root / "shared", name), prefixes=store).history
    assert comparable(reused) == comparable(alone)
    task0 = computed[0]["train_tflops"]
    assert [row["reused_train_tflops"] for row in reused] == [task0] * len(reused)
    assert reused[-1]["train_tflops"] == alone[-1]["train_tflops"]  # the full price, reported
    assert (root / "shared" / name / "samples" / "task_0.png").is_file()
    assert len(store.manifests()) == 1


def _run_shared(config: dict, root: str) -> float:
    torch.set_num_threads(1)
    history = run_sequence(TrialConfig.model_validate(config), prefixes=PrefixStore(root)).history
    return history[0]["reused_train_tflops"]


def _killed_while_publishing(config: dict, root: str) -> None:
    publish = PrefixStore.publish

    def die_after_the_payload(store, key, write_payload, manifest) -> bool:
        def write_then_die(path: Path) -> None:
            write_payload(path)
            os.kill(os.getpid(), signal.SIGKILL)  # the payload is written, the manifest never

        return publish(store, key, write_then_die, manifest)

    PrefixStore.publish = die_after_the_payload
    torch.set_num_threads(1)
    run_sequence(TrialConfig.model_validate(config), prefixes=PrefixStore(root))


def two_tasks(tmp: Path, name: str) -> dict:
    return trial(tmp, name, data={"tasks": [[0, 1], [2, 3]]}).model_dump(mode="json")


def test_concurrent_runs_compute_a_prefix_once(tmp_path: Path) -> None:
    root = str(tmp_path / "prefixes")
    configs = [two_tasks(tmp_path, n) for n in ("naive", "er", "generative_replay")]
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        reused = pool.starmap(_run_shared, [(c, root) for c in configs])
    assert sorted(r > 0 for r in reused) == [False, True, True], reused  # one computed it
    assert len(PrefixStore(root).manifests()) == 1


def test_a_killed_writer_leaves_no_usable_prefix(tmp_path: Path) -> None:
    root = tmp_path / "prefixes"
    config = two_tasks(tmp_path, "naive")
    key = prefix_key(TrialConfig.model_validate(config))
    child = multiprocessing.get_context("spawn").Process(
        target=_killed_while_publishing, args=(config, str(root))
    )
    child.start()
    child.join(300)
    assert child.exitcode == -signal.SIGKILL
    leftovers = [p for p in root.iterdir() if p.name.startswith(f".{key}.tmp-")]
    assert leftovers and (leftovers[0] / "prefix.pt").is_file()  # half written, under tmp
    store = PrefixStore(root)
    assert store.payload(key) is None and not store.path(key).exists() and store.manifests() == []
    with FileLock(str(root / f".{key}.lock"), timeout=5):
        pass  # the dead writer's lock is free
    again = dict(config, output_dir=str(tmp_path / "again"))
    assert _run_shared(again, str(root)) == 0.0  # computed anew, then published
    assert (store.path(key) / MANIFEST_FILE).is_file()


def test_first_writer_wins(tmp_path: Path) -> None:
    store = PrefixStore(tmp_path)
    assert store.publish("k", lambda path: path.write_text("first"), {"key": "k"})
    assert not store.publish("k", lambda path: path.write_text("second"), {"key": "k"})
    assert store.payload("k").read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["k"]  # no temporary left behind


def test_a_field_added_to_the_engine_state_is_restored_by_resume_and_by_prefix_reuse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """State added once, in Engine.snapshot/load, reaches both task checkpoints and task-0
    prefixes: prefix.py and checkpoint.py are not told about it."""
    snapshot, load, fit_task, evaluate = Engine.snapshot, Engine.load, Engine.fit_task, Engine.evaluate

    def snapshot_with_probe(self, **kw):
        return {**snapshot(self, **kw), "probe": torch.tensor(getattr(self, "probe", 0))}

    def load_with_probe(self, state):
        load(self, state)
        self.probe = int(state["probe"])

    def fit_task_counting(self, task_index, progress):
        fit_task(self, task_index, progress)
        self.probe = getattr(self, "probe", 0) + 1  # tasks trained by this engine's lineage

    def evaluate_showing(self, task_index, tflops_before):
        return {**evaluate(self, task_index, tflops_before), "probe": float(self.probe)}

    monkeypatch.setattr(Engine, "snapshot", snapshot_with_probe)
    monkeypatch.setattr(Engine, "load", load_with_probe)
    monkeypatch.setattr(Engine, "fit_task", fit_task_counting)
    monkeypatch.setattr(Engine, "evaluate", evaluate_showing)
    config = TrialConfig.model_validate(two_tasks(tmp_path, "naive"))

    store = PrefixStore(tmp_path / "prefixes")
    computed = run_sequence(config, prefixes=store).history
    reused = run_sequence(config.model_copy(update={"output_dir": str(tmp_path / "b")}),
                          prefixes=store).history
    assert reused[0]["reused_train_tflops"] > 0  # task 0 came from the prefix
    assert [row["probe"] for row in computed] == [row["probe"] for row in reused] == [1.0, 2.0]

    def crash_after_task_0(task_index, metrics, checkpoint_dir):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sequence(config, crash_after_task_0)
    resumed = run_sequence(config, resume_from=Path(config.output_dir) / "checkpoints" / "task_0")
    assert resumed.history[-1]["probe"] == 2.0  # 1 without the restored field
