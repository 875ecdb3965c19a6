"""The docs' reference pages, rendered from the code's own declarations so they cannot drift:
trial-config and sweep-file keys from the pydantic models (types, defaults, field
descriptions), metrics from `metrics.py`, strategies from the strategy catalog.

The MkDocs hook (docs/hooks.py) replaces a `<!-- reference: NAME -->` line with `render(NAME)`.
Torch-free: it reads declarations only.
"""

from __future__ import annotations

import ast
import types
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from cl_sweeps import metrics
from cl_sweeps.strategies.catalog import catalog

STRATEGIES_DIR = Path(__file__).parent / "strategies"


def _type_name(annotation: Any) -> str:
    """A short, readable type: `int | None`, `list[int]`, `'auto' | 'cpu'`."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    if origin is not None:
        inner = ", ".join(_type_name(a) for a in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    if annotation is type(None):
        return "None"
    return getattr(annotation, "__name__", str(annotation))


def _section(annotation: Any) -> type[BaseModel] | None:
    """The nested model of a field that is a section (e.g. `data`), else None."""
    candidates = [annotation, *typing.get_args(annotation)]
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _default(info: Any) -> str:
    if info.default_factory is not None:
        try:
            value = info.default_factory()
        except TypeError:  # a factory that needs the validated data
            return "(computed)"
    elif info.default is PydanticUndefined:
        return "(required)"
    else:
        value = info.default
    if isinstance(value, BaseModel):
        return "(section)"
    if isinstance(value, list) and value and isinstance(value[0], BaseModel):
        return ", ".join(str(v.model_dump()) for v in value)
    return f"`{value!r}`" if value is not None else "`None`"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def model_rows(
    model: type[BaseModel], prefix: str = "", collapse: tuple[str, ...] = ()
) -> Iterator[tuple[str, str, str, str]]:
    """(dotted key, type, default, description) for every field, sections expanded in place
    except those named in `collapse`."""
    for name, info in model.model_fields.items():
        key = f"{prefix}{info.alias or name}"
        section = _section(info.annotation)
        if section is not None and key in collapse:
            yield key, "section", "", _cell(info.description or "")
            continue
        if section is not None and _default(info) in ("(section)", "`None`"):
            summary = (section.__doc__ or "").strip().split("\n\n")[0]
            kind = "section" if _default(info) == "(section)" else "section or null (off)"
            yield key, kind, "", _cell(info.description or summary)
            yield from model_rows(section, f"{key}.")
            continue
        yield key, _type_name(info.annotation), _default(info), _cell(info.description or "")


def model_table(model: type[BaseModel], collapse: tuple[str, ...] = ()) -> str:
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for key, kind, default, meaning in model_rows(model, collapse=collapse):
        lines.append(f"| `{key}` | {_cell(kind)} | {default} | {meaning} |")
    return "\n".join(lines)


def trial_config_table() -> str:
    from cl_sweeps.config import TrialConfig

    return model_table(TrialConfig)


def sweep_file_table() -> str:
    from cl_sweeps.sweep.schema import SweepConfig

    rows = model_table(SweepConfig, collapse=("base",))
    return rows + "\n\n`base` is a trial config: its keys are in the trial-config reference."


def metrics_table() -> str:
    lines = ["| name | meaning | logged |", "|---|---|---|"]
    for spec in metrics.METRICS:
        lines.append(f"| `{spec.name}` | {_cell(spec.meaning)} | {spec.when} |")
    return "\n".join(lines)


def _module_summary(module: str) -> str:
    """The first paragraph of a strategy module's docstring, read without importing it."""
    path = STRATEGIES_DIR / f"{module.rsplit('.', 1)[-1]}.py"
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    return _cell(doc.split("\n\n")[0])


SETTING_WORDS = {"both": "both", "conditional": "conditional only",
                 "unconditional": "unconditional only"}


def strategies_table() -> str:
    lines = ["| name | what it does (module docstring) | setting | knobs it reads |",
             "|---|---|---|---|"]
    for name, info in sorted(catalog().items()):
        knobs = ", ".join(f"`{k}`" for k in info.knobs) or "—"
        lines.append(f"| `{name}` | {_module_summary(info.module)} | {SETTING_WORDS[info.setting]} "
                     f"| {knobs} |")
    return "\n".join(lines)


PAGES: dict[str, Callable[[], str]] = {
    "trial-config": trial_config_table,
    "sweep-file": sweep_file_table,
    "metrics": metrics_table,
    "strategies": strategies_table,
}


def render(name: str) -> str:
    """The generated Markdown for one reference page; KeyError names the allowed pages."""
    if name not in PAGES:
        raise KeyError(f"unknown reference page {name!r}; allowed: {', '.join(PAGES)}")
    return PAGES[name]()
