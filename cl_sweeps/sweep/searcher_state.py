"""A searcher state saved by an earlier release, made fit for this one, or refused before any
compute.

Ray Tune pickles the searcher twice (the object in `tuner.pkl`, its state in
`searcher-state-*.pkl`) and `--resume` restores both as they were written. A state from a release
whose searcher held other attributes would fail in every trial (e.g. "'SeedReplicator' object
has no attribute 'plan'"). `upgraded` rebuilds what it can: the SweepPlan from the sweep's
resolved config (what `--resume` has just checked against the sweep file); anything else missing
is refused with the release that wrote the state and what to do. `check_saved_searcher` runs the
same upgrade on the saved state before Ray starts, so the refusal costs nothing.
"""

from __future__ import annotations

import glob
import json
import os
import pickle
from typing import Any

from cl_sweeps import __version__, records
from cl_sweeps.errors import UsageError
from cl_sweeps.records import SweepLayout
from cl_sweeps.sweep.plan import SweepPlan
from cl_sweeps.sweep.schema import SweepConfig

# What SeedReplicator's methods read from its state (tests check the list against get_state).
STATE_KEYS = (
    "inner", "plan", "space", "seeds", "metrics", "constraints", "budget", "layout",
    "default_strategy", "ended", "_wall_before", "_queue", "_groups", "_group_of",
    "_counter", "_prior",
)
OBSOLETE_KEYS = ("base", "seed_keys")  # held before the searcher took the SweepPlan
SEARCHER_STATE_GLOB = "searcher-state-*.pkl"  # Ray Tune's Searcher.CKPT_FILE_TMPL


def upgraded(state: dict[str, Any]) -> dict[str, Any]:
    """`state` with what an earlier release did not save rebuilt; UsageError if something
    cannot be."""
    state = dict(state)
    layout = state.get("layout")
    if "plan" not in state and isinstance(layout, SweepLayout):
        plan = _plan_from(layout)
        if plan is not None:
            state["plan"] = plan
    if "plan" in state:
        for key in OBSOLETE_KEYS:
            state.pop(key, None)
    missing = [key for key in STATE_KEYS if key not in state]
    if missing:
        raise UsageError(_refusal(state, layout, missing))
    return {**state, "release": __version__}  # what it holds now is this release's


def _plan_from(layout: SweepLayout) -> SweepPlan | None:
    """The plan of the sweep that ran, from its resolved config (None if it cannot be read)."""
    resolved = records.read_yaml_mapping(layout.resolved)
    if resolved is None:
        return None
    try:
        return SweepPlan(SweepConfig.model_validate(resolved))
    except (ValueError, TypeError):
        return None


def _refusal(state: dict[str, Any], layout: Any, missing: list[str]) -> str:
    """Which release wrote the state, what it lacks, and what to do."""
    wrote = state.get("release") or _sweep_release(layout)
    by = (f"cl-sweeps {wrote}" if wrote else
          "an earlier cl-sweeps release (one that did not record its release)")
    where = layout.root if isinstance(layout, SweepLayout) else "the sweep's output_dir"
    return (
        f"--resume: the saved Ray Tune searcher state was written by {by} and lacks "
        f"{', '.join(missing)}, which cl-sweeps {__version__} needs and cannot rebuild; resume "
        f"it with the release that started it, or start the sweep afresh in a new output_dir "
        f"(its finished trials in {where} can be imported with `warm_start:`)"
    )


def _sweep_release(layout: Any) -> str | None:
    """The release sweep_state.json names (None if absent or unreadable)."""
    if not isinstance(layout, SweepLayout):
        return None
    try:
        return json.loads(layout.state.read_text()).get("release")
    except (OSError, ValueError, AttributeError):
        return None


def check_saved_searcher(experiment: str) -> None:
    """Refuse, before Ray starts, a resume whose newest saved searcher state this release
    cannot use (nothing to check for a cloud URI or an experiment without one)."""
    if "://" in experiment:
        return
    paths = glob.glob(os.path.join(experiment, SEARCHER_STATE_GLOB))
    if not paths:
        return
    newest = max(paths)  # the one Tune restores (Searcher.restore_from_dir)
    try:
        with open(newest, "rb") as handle:
            state = pickle.load(handle)
    except (OSError, pickle.UnpicklingError, AttributeError, ImportError, EOFError) as error:
        raise UsageError(
            f"--resume: the saved Ray Tune searcher state {newest} cannot be read by cl-sweeps "
            f"{__version__} ({type(error).__name__}: {error}); resume it with the release that "
            "started it, or start the sweep afresh in a new output_dir (its finished trials "
            "can be imported with `warm_start:`)"
        ) from None
    if isinstance(state, dict):
        upgraded(state)
