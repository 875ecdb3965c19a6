"""Damaged files a trial saved and loads again: a task checkpoint (weights, state.pt,
state.json) or a task-0 prefix that is truncated or changed fails its checksum, is named in one
warning, set aside (not deleted), and the trial falls back to the previous checkpoint or computes
the prefix again. Real files: checkpoints written by save_checkpoint, prefixes by PrefixStore."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import SMALL_TRIAL, merge
from diffusers import DDIMScheduler, UNet2DModel

from cl_sweeps.checkpoint import load_checkpoint, save_checkpoint
from cl_sweeps.checkpoint_files import (
    META_FILE,
    STATE_FILE,
    UNET_DIR,
    CorruptCheckpoint,
    latest_checkpoint,
    task_checkpoint_dir,
)
from cl_sweeps.config import TrialConfig
from cl_sweeps.integrity import CHECKSUMS_FILE
from cl_sweeps.prefix import computed_once
from cl_sweeps.prefix_store import MANIFEST_FILE, PAYLOAD_FILE, PrefixStore
from cl_sweeps.sweep.trainable import readable_or_none


def tiny_unet() -> UNet2DModel:
    return UNet2DModel(
        sample_size=8, in_channels=1, out_channels=1, layers_per_block=1,
        block_out_channels=(8, 8), norm_num_groups=4,
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
    )


def two_checkpoints(root: Path) -> UNet2DModel:
    """Task 0 and task 1 checkpoints under `root`, as a run writes them."""
    model = tiny_unet()
    for task in (0, 1):
        history = [{"task": k, "fid": 10.0 + k} for k in range(task + 1)]
        save_checkpoint(task_checkpoint_dir(root, task), model, task, {"step": task}, history,
                        DDIMScheduler(num_train_timesteps=10))
    return model


def weights(directory: Path) -> Path:
    return next((directory / UNET_DIR).glob("*.safetensors"))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def same_size_change(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [
    pytest.param(lambda d: truncate(weights(d)), id="truncated-weights"),
    pytest.param(lambda d: same_size_change(weights(d)), id="changed-weights"),
    pytest.param(lambda d: truncate(d / STATE_FILE), id="truncated-state.pt"),
    pytest.param(lambda d: same_size_change(d / META_FILE), id="changed-state.json"),
    pytest.param(lambda d: (d / "scheduler" / "scheduler_config.json").unlink(), id="missing-file"),
    pytest.param(lambda d: truncate(d / CHECKSUMS_FILE), id="truncated-checksums"),
])
def test_a_damaged_checkpoint_is_set_aside_and_the_previous_one_used(
    tmp_path: Path, caplog, damage
) -> None:
    two_checkpoints(tmp_path)
    newest = task_checkpoint_dir(tmp_path, 1)
    damage(newest)
    assert latest_checkpoint(tmp_path) == task_checkpoint_dir(tmp_path, 0)
    warning = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warning) == 1 and str(newest) in warning[0]
    assert "set aside" in warning[0] and "using the previous checkpoint" in warning[0]
    assert [p.name.split(".")[0] for p in newest.parent.glob("task_1.corrupt-*")] == ["task_1"]
    restored = load_checkpoint(task_checkpoint_dir(tmp_path, 0), tiny_unet())
    assert restored.task_index == 0 and restored.state["step"] == 0


def test_loading_a_damaged_checkpoint_names_the_file(tmp_path: Path) -> None:
    two_checkpoints(tmp_path)
    directory = task_checkpoint_dir(tmp_path, 1)
    truncate(weights(directory))
    with pytest.raises(CorruptCheckpoint, match=f"{weights(directory)} has .* bytes.*truncated"):
        load_checkpoint(directory, tiny_unet())


def test_an_intact_checkpoint_loads_bit_for_bit(tmp_path: Path) -> None:
    model = two_checkpoints(tmp_path)
    restored = load_checkpoint(latest_checkpoint(tmp_path), tiny_unet())
    assert restored.task_index == 1 and [row["task"] for row in restored.history] == [0, 1]
    saved = model.state_dict()
    assert all(torch.equal(saved[k], v) for k, v in restored.state["model"].items())


def test_a_checkpoint_written_before_checksums_is_trusted(tmp_path: Path) -> None:
    two_checkpoints(tmp_path)
    (task_checkpoint_dir(tmp_path, 1) / CHECKSUMS_FILE).unlink()
    assert latest_checkpoint(tmp_path) == task_checkpoint_dir(tmp_path, 1)


def test_tunes_copy_with_damaged_weights_is_not_used(tmp_path: Path, caplog) -> None:
    two_checkpoints(tmp_path)
    from_tune = task_checkpoint_dir(tmp_path, 1)
    assert readable_or_none(from_tune) == from_tune
    truncate(weights(from_tune))
    assert readable_or_none(from_tune) is None
    assert str(weights(from_tune)) in caplog.text and "continuing from the trial's own" in caplog.text


def naive_trial(tmp: Path) -> TrialConfig:
    return TrialConfig.model_validate(merge(SMALL_TRIAL, {"output_dir": str(tmp / "run")}))


def compute_counting(calls: list[str]):
    def compute() -> tuple[dict[str, float], dict[str, object], float]:
        calls.append("compute")
        return {"fid": 1.0}, {"weights": torch.arange(1000.0)}, 0.5
    return compute


@pytest.mark.parametrize("damage", [
    pytest.param(truncate, id="truncated"),
    pytest.param(same_size_change, id="changed"),
])
def test_a_damaged_prefix_is_set_aside_and_computed_again(tmp_path: Path, caplog, damage) -> None:
    store, config, calls = PrefixStore(tmp_path / "prefixes"), naive_trial(tmp_path), []
    reused: list[dict] = []

    def reuse(payload: dict) -> dict[str, float]:
        reused.append(payload)
        return {"fid": 1.0}

    computed_once(store, config, compute_counting(calls), reuse)
    (key,) = [m["key"] for m in store.manifests()]
    payload = store.path(key) / PAYLOAD_FILE
    damage(payload)
    computed_once(store, config, compute_counting(calls), reuse)
    assert calls == ["compute", "compute"] and reused == []  # trained again, not loaded
    assert str(payload) in caplog.text and "computing it again" in caplog.text
    aside = list(store.root.glob(f".{key}.corrupt-*"))
    assert len(aside) == 1 and (aside[0] / PAYLOAD_FILE).is_file()  # kept, not deleted
    computed_once(store, config, compute_counting(calls), reuse)  # the new one is intact
    assert calls == ["compute", "compute"] and torch.equal(reused[0]["weights"],
                                                           torch.arange(1000.0))


def test_a_prefix_stored_before_checksums_is_trusted_and_a_bad_manifest_is_not(
    tmp_path: Path, caplog
) -> None:
    store = PrefixStore(tmp_path)
    store.publish("k", lambda path: torch.save({"a": 1}, path), {"key": "k"})
    manifest = store.path("k") / MANIFEST_FILE
    manifest.write_text(json.dumps({"key": "k"}))  # as written before checksums
    assert store.payload("k") == store.path("k") / PAYLOAD_FILE
    manifest.write_text('{"key": "k", "payl')
    assert store.payload("k") is None and str(manifest) in caplog.text
    assert store.manifests() == []
