"""Each strategy declares the models it works for (SETTING); a trial config, a run file and a
sweep whose search would pair a strategy with the other kind of model are refused before any
compute, naming strategy.name, its value, model.conditional and what is allowed."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
from helpers import SMALL_TRIAL, tiny_sweep, write_yaml

from cl_sweeps.config import ConfigError, parse_trial_config
from cl_sweeps.strategies import catalog as catalog_module
from cl_sweeps.strategies.catalog import SETTINGS, StrategyInfo, read_catalog
from cl_sweeps.sweep.schema import parse_sweep_config

STRATEGIES = Path(catalog_module.__file__).parent


@pytest.fixture
def kinds(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real catalog plus one strategy for each single kind of model."""
    fake = dict(catalog_module.catalog())
    fake["cond_only"] = StrategyInfo("cond_only", "x.cond_only", (), "conditional")
    fake["uncond_only"] = StrategyInfo("uncond_only", "x.uncond_only", (), "unconditional")
    monkeypatch.setattr(catalog_module, "catalog", lambda: fake)


def test_every_strategy_file_declares_its_setting() -> None:
    for path in STRATEGIES.glob("*.py"):
        text = path.read_text()
        declared = re.compile(r"^SETTING = \"(both|conditional|unconditional)\"", re.MULTILINE)
        if re.search(r"^NAME = ", text, re.MULTILINE):
            assert declared.search(text), path


def test_setting_is_read_without_importing_and_checked(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text('import torch\nNAME = "a"\nSETTING = "conditional"\n')
    (tmp_path / "b.py").write_text('NAME = "b"\n')
    found = read_catalog(tmp_path)
    assert (found["a"].setting, found["b"].setting) == ("conditional", "both")
    assert found["a"].works_for(True) and not found["a"].works_for(False)
    assert found["b"].works_for(True) and found["b"].works_for(False)
    (tmp_path / "c.py").write_text('NAME = "c"\nSETTING = "labelled"\n')
    with pytest.raises(ValueError, match="SETTING must be one of both, conditional"):
        read_catalog(tmp_path)
    assert SETTINGS == ("both", "conditional", "unconditional")


@pytest.mark.parametrize("name, conditional, allowed", [
    ("cond_only", False, "model.conditional: true"),
    ("uncond_only", True, "model.conditional: false"),
])
def test_a_trial_with_the_wrong_kind_of_model_is_refused(kinds, name, conditional, allowed):
    with pytest.raises(ConfigError) as error:
        parse_trial_config({"strategy": {"name": name}, "model": {"conditional": conditional}})
    message = str(error.value)
    assert f"strategy.name {name!r} works only for" in message
    assert f"model.conditional is {str(conditional).lower()}" in message
    assert f"allowed: {allowed}" in message and "naive" in message  # a strategy that fits
    assert name not in message.rsplit("(", 1)[1]  # the strategies listed as fitting
    ok = parse_trial_config({"strategy": {"name": name}, "model": {"conditional": not conditional}})
    assert ok.strategy.name == name


def test_the_cli_refuses_it_with_exit_2_and_no_traceback(kinds, tmp_path, capsys):
    from cl_sweeps.cli import main

    out = tmp_path / "out"
    base = {**copy.deepcopy(SMALL_TRIAL), "output_dir": str(out),
            "strategy": {"name": "cond_only"}}
    run_file = write_yaml(tmp_path / "run.yaml", {"base": base})
    assert main(["run", str(run_file), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "strategy.name 'cond_only'" in err and "model.conditional is false" in err
    assert "Traceback" not in err and not out.exists()


def _sweep(search: dict[str, Any], **base: Any) -> dict[str, Any]:
    data = tiny_sweep("settings", Path("/tmp/settings-sweep"), search_algorithm="grid",
                      num_samples=1)
    data["base"].update(base)
    data["search"] = search
    return data


def _rejected(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as error:
        parse_sweep_config(data)
    return str(error.value)


def test_a_searched_strategy_is_checked_against_the_base_model(kinds) -> None:
    message = _rejected(_sweep({"strategy.name": ["naive", "cond_only"]}))
    assert "search.strategy.name.values[1]" in message
    assert "model.conditional is false" in message


def test_a_search_pairing_a_strategy_with_the_wrong_model_is_refused(kinds) -> None:
    both = {"strategy.name": ["naive", "cond_only"], "model.conditional": [True, False]}
    message = _rejected(_sweep(both, model={"conditional": True}))  # each value alone fits
    assert "search.strategy.name='cond_only', search.model.conditional=False" in message
    assert "works only for class-conditional models" in message
    # conditioned so the pair cannot occur: accepted
    fine = {"strategy.name": ["naive", "cond_only"],
            "model.conditional": {"values": [True, False], "when": {"strategy.name": "naive"}},
            "strategy.lambd": {"type": "map", "depends_on": "strategy.name",
                               "values": {"cond_only": 0.5}}}
    sweep = parse_sweep_config(_sweep(fine, model={"conditional": True}))
    assert sweep.search["model.conditional"].when == {"strategy.name": "naive"}
