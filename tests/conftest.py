"""Shared fixtures: small trial configs on the embedded digits data, one CPU thread per test
process (2 shared cores are slow with oversubscribed torch threads), and a per-session
classifier cache so the evaluation classifier is trained once."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import SMALL_TRIAL

from cl_sweeps.config import TrialConfig


@pytest.fixture(autouse=True, scope="session")
def _one_thread_and_cache(tmp_path_factory: pytest.TempPathFactory):
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    mp = pytest.MonkeyPatch()
    mp.setenv("CL_SWEEPS_CACHE", str(tmp_path_factory.mktemp("cl-sweeps-cache")))
    yield
    mp.undo()
    torch.set_num_threads(previous)


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge `override` into a copy of `base`."""
    result = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge(result[key], value)
        else:
            result[key] = value
    return result


@pytest.fixture
def small_trial(tmp_path: Path):
    """Build a small TrialConfig writing under tmp_path, with optional nested overrides."""

    def build(**override: Any) -> TrialConfig:
        data = merge(SMALL_TRIAL, {"output_dir": str(tmp_path / "run"), **override})
        return TrialConfig.model_validate(data)

    return build
