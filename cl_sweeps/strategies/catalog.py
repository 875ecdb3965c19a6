"""Which strategies exist and which `StrategyConfig` knobs each reads, known without torch.

A strategy is one file in this folder that declares, at module level,

    NAME = "er"
    KNOBS = ("replay_ratio", "memory_size", "lambd", "weight_replay_loss")
    SETTING = "both"  # or "conditional" / "unconditional": the models it works for

(string literals, the shared tuples below, or sums of them). SETTING says whether the strategy
works for unconditional models, class-conditional ones (`model.conditional`) or both, so a
trial config that pairs it with the other kind fails validation before any compute
(`setting_problem`). The declarations are read from the source with
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
# The models a strategy works for (its module's SETTING); a file without SETTING works for both.
SETTINGS = ("both", "conditional", "unconditional")
DECLARED = ("NAME", "KNOBS", "SETTING")


@dataclass(frozen=True)
class StrategyInfo:
    """A strategy's declaration: its config name, its module, the knobs it reads and the models
    it works for (one of SETTINGS)."""

    name: str
    module: str
    knobs: tuple[str, ...]
    setting: str = "both"

    def works_for(self, conditional: bool) -> bool:
        """Whether the strategy works for a conditional (True) or unconditional (False) model."""
        return self.setting == "both" or (self.setting == "conditional") == conditional


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
        setting = declared.get("SETTING", "both")
        if setting not in SETTINGS:
            raise ValueError(f"{path}: SETTING must be one of {', '.join(SETTINGS)}, "
                             f"got {setting!r}")
        module = f"{package}.{path.stem}" if package else path.stem
        found[name] = StrategyInfo(name, module, tuple(knobs), str(setting))
    return found


def _declarations(path: Path) -> dict[str, object]:
    """Module-level NAME, KNOBS and SETTING of a file, evaluated from literals and
    SHARED_KNOBS."""
    values: dict[str, object] = {}
    for node in ast.parse(path.read_text(), str(path)).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        else:
            continue
        if isinstance(target, ast.Name) and target.id in DECLARED:
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
            f"{path}:{node.lineno}: NAME, KNOBS and SETTING must be literals (or "
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


def setting_problem(name: str, conditional: bool) -> str | None:
    """Why strategy `name` cannot train a model with `model.conditional` = `conditional` (the
    field, the value and what is allowed), or None if it can. An unknown name is left to the
    name's own check."""
    info = catalog().get(name)
    if info is None or info.works_for(conditional):
        return None
    kind = "class-conditional" if info.setting == "conditional" else "unconditional"
    others = [n for n, i in catalog().items() if i.works_for(conditional)]
    return (
        f"strategy.name {name!r} works only for {kind} models, but model.conditional is "
        f"{str(conditional).lower()}; allowed: model.conditional: "
        f"{str(info.setting == 'conditional').lower()}, or a strategy that works for "
        f"{'class-conditional' if conditional else 'unconditional'} models "
        f"({', '.join(others)})"
    )
