"""`cl-sweeps sweep FILE --extend`: grow a sweep that ended, in its own output_dir.

Ray Tune cannot do it: `Tuner.restore` brings back the saved TuneConfig (num_samples included)
and is not meant to change a search (ray-project/ray issue 42221). So the grown sweep is a new
Tuner in the same Ray experiment directory, the same records, Optuna study (its storage keeps
every earlier trial; `load_if_exists`) and MLflow parent run; its searcher is given what the
records hold (sweep/prior.py) and starts only the (configuration, seed) pairs they lack.
A later --resume restores that newest Tuner.

What may change: `num_samples` (up, not down), `seeds` (added, none taken away), the values of
the search's parameters (choices added, ranges widened: every configuration run so far must stay
in the space), and the keys that do not change what a trial means (how many run at once,
failures, budget). Optuna's storage cannot change a categorical parameter's choices within a
study, so a grown search continues in a new study `<name>-extended-<n>` of the same storage,
taught every known configuration as a finished trial (sweep/prior.py). Anything else
would make the new trials unlike the old ones; it is refused with each key's old and new value,
before anything is written or computed. Base paths and the device may differ (INERT_KEYS), and
keys a later release added are read at their defaults (output_dir.as_read_now).
"""

from __future__ import annotations

import time
from typing import Any

from cl_sweeps import records
from cl_sweeps.config import ConfigError
from cl_sweeps.records import SweepLayout
from cl_sweeps.results import atomic_write
from cl_sweeps.sweep.output_dir import as_read_now
from cl_sweeps.sweep.paths import TRIAL_PATH_FIELDS
from cl_sweeps.sweep.prior import Prior, optuna_params
from cl_sweeps.sweep.schema import SweepConfig
from cl_sweeps.sweep.space import SearchSpace, num_configurations

# Keys that do not change what a trial means (beyond num_samples and seeds, checked apart).
FREE_KEYS = ("budget", "max_concurrent_trials", "resources_per_trial", "max_failures",
             "reuse_actors")
MISSING = "<absent>"
# Base keys that do not change a trial's results: where it writes and reads, and the device.
INERT_KEYS = (*TRIAL_PATH_FIELDS, "device")


def differences(old: Any, new: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """(dotted key, old value, new value) for every leaf in which two mappings differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        found: list[tuple[str, Any, Any]] = []
        for key in sorted({*old, *new}, key=str):
            found += differences(old.get(key, MISSING), new.get(key, MISSING),
                                 f"{prefix}.{key}" if prefix else str(key))
        return found
    return [] if old == new else [(prefix, old, new)]


def under(key: str, keys: tuple[str, ...]) -> bool:
    """`key` is one of `keys` or inside one of them."""
    return any(key == k or key.startswith(k + ".") for k in keys)


def seed_list(resolved: dict[str, Any]) -> list[int]:
    return list(resolved.get("seeds") or [(resolved.get("base") or {}).get("seed")])


def refused_changes(saved: dict[str, Any], resolved: dict[str, Any]) -> list[str]:
    """What --extend cannot take, one line per key: 'key: old -> new (why)'."""
    lines = [
        f"{key}: {old!r} -> {new!r}"
        for key, old, new in differences(saved, resolved)
        if key.split(".")[0] not in ("num_samples", "seeds", "search", *FREE_KEYS)
        and not under(key, tuple(f"base.{k}" for k in INERT_KEYS))
    ]
    old_keys, new_keys = list(saved.get("search") or {}), list(resolved.get("search") or {})
    if old_keys != new_keys:
        lines.append(f"search: parameters {old_keys} -> {new_keys} (their values may grow; "
                     "parameters may not be added, removed or reordered)")
    old_seeds, new_seeds = seed_list(saved), seed_list(resolved)
    dropped = [s for s in old_seeds if s not in new_seeds]
    if dropped:
        lines.append(f"seeds: {old_seeds} -> {new_seeds} (seeds may be added, not taken away: "
                     f"{dropped} dropped)")
    old_n, new_n = saved.get("num_samples"), resolved.get("num_samples")
    if old_n is not None and new_n is not None and new_n < old_n:
        lines.append(f"num_samples: {old_n} -> {new_n} (may be raised, not lowered)")
    return lines


def saved_sweep(layout: SweepLayout) -> dict[str, Any]:
    """The resolved sweep of output_dir, as this release reads it."""
    return as_read_now(records.read_yaml_mapping(layout.resolved) or {})


def search_grown(layout: SweepLayout, resolved: dict[str, Any]) -> bool:
    return saved_sweep(layout).get("search") != resolved.get("search")


def outside_space(layout: SweepLayout, sweep: SweepConfig, space: SearchSpace) -> list[str]:
    """The known configurations the grown search space cannot propose (one line each)."""
    prior = Prior.from_records(layout, sweep)
    return [f"search: {known.fields} ran, and the new search cannot propose it (values may be "
            "added to the search, not taken away)"
            for known in prior.configurations.values() if optuna_params(space, known.fields) is None]


def check_extension(
    layout: SweepLayout, resolved: dict[str, Any], sweep: SweepConfig, space: SearchSpace
) -> dict[str, Any]:
    """The saved sweep state, once the sweep in output_dir can be grown into `resolved`;
    ConfigError (exit 2) naming every refused key otherwise."""
    if not layout.state.is_file():
        raise ConfigError(f"--extend: {layout.root} holds no sweep to extend (no "
                          f"{layout.state.name}); start it without --extend")
    running = [r.trial_id for r in records.read_trials(layout.trials)
               if r.status not in records.ENDED]
    if running:
        raise ConfigError(
            f"--extend: {len(running)} trial(s) of {layout.root} did not end "
            f"({', '.join(running[:3])}); finish the sweep with --resume first, then --extend")
    refused = refused_changes(saved_sweep(layout), resolved)
    if not refused and search_grown(layout, resolved):
        refused = outside_space(layout, sweep, space)[:5]
    if refused:
        raise ConfigError(
            "--extend: the sweep may only raise num_samples, add seeds, add values to the "
            f"search or change {', '.join(FREE_KEYS)}; it differs from the one in {layout.resolved} in:\n  "
            + "\n  ".join(refused) + "\nstart a new sweep (another name or output_dir) for that")
    return records.read_json_mapping(layout.state) or {}


def write_extension(
    layout: SweepLayout, sweep: SweepConfig, space: SearchSpace, resolved: dict[str, Any],
    digest: str, file_text: str, overrides: list[str], state: dict[str, Any],
) -> dict[str, Any]:
    """The grown sweep becomes the sweep of output_dir (what --resume and every reader use);
    the file it grew from is kept as sweep.<n>.yaml, and state.json lists each growth."""
    grown = list(state.get("extended") or [])
    new_study = search_grown(layout, resolved)
    kept = layout.root / f"sweep.{len(grown) + 1}.yaml"
    if layout.sweep_file.is_file():
        kept.write_text(layout.sweep_file.read_text())
    text = file_text + ("\n# applied with --set: " + " ".join(overrides) + "\n" if overrides
                        else "")
    atomic_write(layout.sweep_file, lambda tmp: tmp.write_text(text))
    records.write_yaml(layout.resolved, resolved)
    records.write_json(layout.search_space, space.describe())
    grown.append({"time": time.time(), "previous_file": kept.name,
                  "configurations": num_configurations(sweep), "seeds": sweep.seed_list()})
    study = {"study_name": f"{sweep.name}-extended-{len(grown)}"} if new_study else {}
    state = {**state, "config_hash": digest, "extended": grown, **study}
    records.write_json(layout.state, state)
    return state


def grow_output(
    layout: SweepLayout, sweep: SweepConfig, space: SearchSpace, resolved: dict[str, Any],
    digest: str, file_text: str, overrides: list[str],
) -> dict[str, Any]:
    """--extend's output_dir: checked (nothing written if refused), then rewritten for the grown
    sweep; the sweep state (parent run id kept)."""
    state = check_extension(layout, resolved, sweep, space)
    return write_extension(layout, sweep, space, resolved, digest, file_text, overrides, state)
