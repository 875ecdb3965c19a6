"""Which strategies exist and which `StrategyConfig` knobs each reads, known without torch.

A strategy is one file in this folder that declares, at module level,

    NAME = "er"
    KNOBS = ("replay_ratio", "memory_size", "lambd", "weight_replay_loss")

(string literals, the shared tuples below, or sums of them). The declarations are read from the source with
`ast`, so listing the strategies, validating a config or a sweep file never imports torch or
diffusers; the implementation is imported by name only when a trial builds its strategy
(`cl_sweeps.strategies.strategy_class`). Adding a strategy is adding its file (and README row).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import cache
from pathlib import Path

# The knobs of a strategy that replays teacher generations (partial/intermediate included).
GENERATION_KNOBS = (
    "replay_ratio",
    "teacher_steps",
    "teacher_eta",
    "lambd",
    "weight_replay_loss",
    "replay_timesteps",
    "guidance_scale",  # read only with model.conditional
)
# The knobs every strategy with a teacher reads: which teacher (frozen or EMA) and its decay.
TEACHER_KNOBS = ("teacher", "ema_decay")
SHARED_KNOBS = {"GENERATION_KNOBS": GENERATION_KNOBS, "TEACHER_KNOBS": TEACHER_KNOBS}


@dataclass(frozen=True)
class StrategyInfo:
    """A strategy's declaration: its config name, its module and the knobs it reads."""

    name: str
    module: str
    knobs: tuple[str, ...]


def read_catalog(directory: Path, package: str = __package__ or "") -> dict[str, StrategyInfo]:
    """Every strategy declared by a `*.py` file in `directory`, in file-name order."""
    found: dict[str, StrategyInfo] = {}
    for path in sorted(directory.glob("*.py")):
        declared = _declarations(path)
        if "NAME" not in declared:
            continue  # a helper module (base, teacher, penalty, this file)
        name = declared["NAME"]
        if not isinstance(name, str) or not name:
            raise ValueError(f"{path}: NAME must be a non-empty string literal, got {name!r}")
        if name in found:
            raise ValueError(f"{path}: strategy {name!r} is also declared by {found[name].module}")
        knobs = declared.get("KNOBS", ())
        module = f"{package}.{path.stem}" if package else path.stem
        found[name] = StrategyInfo(name, module, tuple(knobs))
    return found


def _declarations(path: Path) -> dict[str, object]:
    """Module-level NAME and KNOBS of a file, evaluated from literals and SHARED_KNOBS."""
    values: dict[str, object] = {}
    for node in ast.parse(path.read_text(), str(path)).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        else:
            continue
        if isinstance(target, ast.Name) and target.id in ("NAME", "KNOBS"):
            values[target.id] = _evaluate(value, path)
    return values


def _evaluate(node: ast.expr, path: Path) -> object:
    if isinstance(node, ast.Name) and node.id in SHARED_KNOBS:
        return SHARED_KNOBS[node.id]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return tuple(_evaluate(node.left, path)) + tuple(_evaluate(node.right, path))
    try:
        value = ast.literal_eval(node)
    except ValueError:
        raise ValueError(
            f"{path}:{node.lineno}: NAME and KNOBS must be literals (or "
            f"{', '.join(SHARED_KNOBS)}), so they can be read without importing the strategy"
        ) from None
    return tuple(value) if isinstance(value, list) else value


@cache
def catalog() -> dict[str, StrategyInfo]:
    """The strategies of this package (read once per process)."""
    return read_catalog(Path(__file__).parent)


def strategy_names() -> list[str]:
    """Names accepted by `strategy.name`."""
    return list(catalog())


def strategy_info(name: str) -> StrategyInfo:
    try:
        return catalog()[name]
    except KeyError:
        raise ValueError(
            f"unknown strategy {name!r}; allowed: {', '.join(catalog())}"
        ) from None


def strategy_knobs(name: str) -> tuple[str, ...]:
    """The StrategyConfig fields strategy `name` reads; ValueError for an unknown name."""
    return strategy_info(name).knobs
