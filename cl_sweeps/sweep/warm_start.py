"""`warm_start:` in a sweep file: start a new sweep from what finished sweeps already measured.

Each source is the output_dir of an earlier sweep. It is refused (exit 2, before anything is
written) when its results cannot be compared with this sweep's: a base trial key that differs and
that this sweep does not search (another dataset, class order, number of tasks, evaluation
protocol, ...), or other seed keys. Then every COMPLETED trial of it whose full trial
configuration and seed this sweep can propose is imported: its records are copied into this
sweep's trials/ (params.json rewritten in this sweep's keys, with `origin`), so the frontier and
report hold it, and the searcher counts its (configuration, seed) as done (sweep/prior.py): it
is not trained again, and the Optuna study is told it as a finished trial.
"""

from __future__ import annotations

import copy
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cl_sweeps import records
from cl_sweeps.config import ConfigError, get_dotted, set_dotted
from cl_sweeps.records import COMPLETED, SEED_PARAM, SweepLayout, TrialRecord
from cl_sweeps.results import METRICS_JSONL, METRICS_PARQUET
from cl_sweeps.sweep.extend import INERT_KEYS, differences, under
from cl_sweeps.sweep.output_dir import as_read_now
from cl_sweeps.sweep.prior import walked_trial
from cl_sweeps.sweep.schema import SweepConfig
from cl_sweeps.sweep.space import SearchSpace, expected_tasks

COPIED = (METRICS_JSONL, METRICS_PARQUET, records.STATUS_FILE, "samples")


@dataclass
class Source:
    """One warm-start source, checked: its records and resolved sweep."""

    root: Path
    resolved: dict[str, Any]
    trials: list[TrialRecord] = field(default_factory=list)


def _free(key: str, sweep: SweepConfig) -> bool:
    """A base key that may differ: inert, a seed key, or set by a search parameter."""
    return under(key, (*INERT_KEYS, *sweep.seed_keys, *(sweep.field_of(k) for k in sweep.search)))


def check_sources(sweep: SweepConfig) -> list[Source]:
    """Every warm_start source, read and checked; ConfigError naming the key otherwise."""
    base = sweep.base.model_dump(mode="json")
    sources = []
    for index, path in enumerate(sweep.warm_start):
        where = f"warm_start[{index}]"
        layout = SweepLayout(Path(path))
        resolved = records.read_yaml_mapping(layout.resolved)
        if resolved is None or not layout.trials.is_dir():
            raise ConfigError(f"{where}: {path} is not a sweep's output_dir (no "
                              f"{records.RESOLVED_FILE} and trials/); allowed: the output_dir "
                              "of a finished sweep")
        resolved = as_read_now(resolved)  # keys added since it ran: their defaults
        if layout.root.resolve() == Path(sweep.output_dir or "").resolve():
            raise ConfigError(f"{where}: {path} is this sweep's own output_dir; grow a sweep "
                              "with `cl-sweeps sweep FILE --extend`")
        if list(resolved.get("seed_keys") or ["seed"]) != list(sweep.seed_keys):
            raise ConfigError(f"{where}: {path} set seed_keys {resolved.get('seed_keys')}, this "
                              f"sweep {sweep.seed_keys}: its seeds mean something else")
        for key, old, new in differences(resolved.get("base") or {}, base):
            if not _free(key, sweep):
                raise ConfigError(
                    f"{where}: {path} ran base.{key} = {old!r}, this sweep has {new!r}; results "
                    "are not comparable (a source may differ only in keys this sweep searches, "
                    f"paths and device); search base.{key} or start without that source")
        sources.append(Source(layout.root, resolved, records.read_trials(layout.trials)))
    return sources


def full_config(base: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    data = copy.deepcopy(base)
    for key, value in params.items():
        set_dotted(data, key, value)
    return data


def proposable_fields(space: SearchSpace, full: dict[str, Any]) -> dict[str, Any] | None:
    """The trial fields with which this sweep would run the trial configuration `full`, or None
    if its search space cannot propose it."""
    sweep = space.sweep
    wanted = {key: get_dotted(full, sweep.field_of(key)) for key in space.order
              if sweep.search[key].type != "map"}
    trial = walked_trial(space, wanted)
    if trial is None:
        return None
    fields = space.to_fields(trial.params)
    mine = full_config(sweep.base.model_dump(mode="json"), fields)
    if any(not under(key, (*INERT_KEYS, *sweep.seed_keys))
           for key, _, _ in differences(full, mine)):
        return None
    return fields


def import_trials(sweep: SweepConfig, layout: SweepLayout, sources: list[Source]) -> dict:
    """Copy every source trial this sweep can propose (COMPLETED, one of its seeds, a
    (configuration, seed) not imported yet) into its records; what was imported, also written
    to warm_start.json."""
    space = SearchSpace(sweep)
    seeds = set(sweep.seed_list())
    have: set[tuple[str, int]] = set()
    summary: dict[str, Any] = {"sources": [], "trials": 0, "train_tflops": 0.0,
                               "trial_ids": []}
    for source in sources:
        counts = {"source": str(source.root), "imported": 0, "not_proposable": 0, "other": 0}
        for record in source.trials:
            if record.status != COMPLETED or record.seed not in seeds:
                counts["other"] += 1
                continue
            full = full_config(source.resolved.get("base") or {}, record.params)
            fields = proposable_fields(space, full)
            pair = (records.config_key(fields or {}), int(record.seed))
            if fields is None or pair in have:
                counts["not_proposable" if fields is None else "other"] += 1
                continue
            have.add(pair)
            copy_trial(source.root, layout, record, fields, sweep)
            counts["imported"] += 1
            summary["trials"] += 1
            summary["trial_ids"].append(record.trial_id)
            summary["train_tflops"] += record.final.get("train_tflops", 0.0) - record.final.get(
                "reused_train_tflops", 0.0)
        summary["sources"].append(counts)
    records.write_json(layout.warm_start, summary)
    return summary


def copy_trial(
    source: Path, layout: SweepLayout, record: TrialRecord, fields: dict[str, Any],
    sweep: SweepConfig,
) -> None:
    """The source trial's metrics and status under this sweep's trials/<id>, params in this
    sweep's keys, and where it came from."""
    origin = SweepLayout(source).trial(record.trial_id)
    target = layout.trial(record.trial_id)
    target.mkdir(parents=True, exist_ok=True)
    for name in COPIED:
        path = origin / name
        if path.is_dir():
            shutil.copytree(path, target / name, dirs_exist_ok=True)
        elif path.is_file():
            shutil.copy2(path, target / name)
    params = {**fields, SEED_PARAM: record.seed}
    base = sweep.base.model_dump(mode="json")
    records.write_params(target, record.trial_id, params,
                         expected_tasks(base, params, list(sweep.seed_keys)))
    records.write_json(records.TrialLayout(target).origin,
                       {"sweep": str(source), "trial_id": record.trial_id})


def warm_start_line(summary: dict[str, Any]) -> str:
    """The console's line: what was imported and the training compute it saves."""
    sources = ", ".join(f"{s['imported']} from {s['source']}" for s in summary["sources"])
    return (f"warm start: {summary['trials']} trials imported, not trained again ({sources}); "
            f"{summary['train_tflops']:.4g} training TFLOPs reused")


def read_summary(layout: SweepLayout) -> dict[str, Any] | None:
    """What a warm start imported into this sweep (None: it was not warm-started)."""
    return records.read_json_mapping(layout.warm_start)


def spent_here(trials: list[TrialRecord], layout: SweepLayout) -> list[TrialRecord]:
    """The trials this sweep trained itself (the imported ones left out)."""
    imported = set((read_summary(layout) or {}).get("trial_ids") or [])
    return [t for t in trials if t.trial_id not in imported]
