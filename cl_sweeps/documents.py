"""Reading run and sweep files: one YAML mapping, read so that no input can crash, hang or flood
the validation that follows.

Refused, each with a one-line reason that names the file (and the line where YAML knows it):
bytes that are not UTF-8, YAML syntax errors and tags (`!!python/...`), several documents, a
document that is not a mapping (an empty file included: it would silently mean "all defaults"),
duplicate keys (YAML's default is last-wins), merge keys (`<<`: their keys would bypass the
duplicate check), integers longer than Python converts, nesting
deeper than MAX_DEPTH, and aliases that expand beyond MAX_NODES (a "billion laughs" file is a
few hundred bytes). Files above MAX_BYTES are not read at all.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

MAX_BYTES = 1_000_000
MAX_DEPTH = 32
MAX_NODES = 100_000
MAX_SHOWN = 80  # characters of a value quoted in an error message


class DocumentError(ValueError):
    """The file is not a readable YAML mapping (config.ConfigError wraps it)."""


def shorten(value: Any, limit: int = MAX_SHOWN) -> str:
    """repr(value), cut to `limit` characters: error messages stay one screen."""
    try:
        text = repr(value)
    except (RecursionError, ValueError):  # a huge int or deeply nested value
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys."""

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise DocumentError(
                    f"line {key_node.start_mark.line + 1}: YAML merge keys (<<) are not "
                    "supported; write the keys out (an alias of a whole value, *name, works)"
                )
            key = self.construct_object(key_node, deep=deep)
            try:
                hash(key)
            except TypeError:
                raise DocumentError(
                    f"line {key_node.start_mark.line + 1}: a key must be a plain value, "
                    f"got {shorten(key)}"
                ) from None
            if key in seen:
                raise DocumentError(
                    f"line {key_node.start_mark.line + 1}: duplicate key {shorten(key)} "
                    f"(first at line {seen[key]}); each key may appear once"
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def _check_depth(text: str) -> None:
    """Stop at the first collection nested deeper than MAX_DEPTH, reading events one by one
    (YAML's scanner slows down quadratically with flow nesting: it must not see all of it)."""
    depth = 0
    for event in yaml.parse(text, Loader=_StrictLoader):
        if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                raise DocumentError(
                    f"line {event.start_mark.line + 1}: nested deeper than {MAX_DEPTH} levels"
                )
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            depth -= 1


def _check_shape(root: Node) -> None:
    """Depth and expanded size of the node graph (aliases share nodes: count them once per
    use), computed without expanding anything."""
    sizes: dict[int, int] = {}
    depths: dict[int, int] = {}
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if key in sizes and not done:
            continue
        children: list[Node] = []
        if isinstance(node, SequenceNode):
            children = list(node.value)
        elif isinstance(node, MappingNode):
            children = [part for pair in node.value for part in pair]
        if not done:
            stack.append((node, True))
            stack.extend((child, False) for child in children if id(child) not in sizes)
            sizes[key] = -1  # in progress (a recursive alias cannot occur in YAML 1.1 safely)
            continue
        sizes[key] = 1 + sum(max(sizes.get(id(c), 1), 1) for c in children)
        depths[key] = 1 + max((depths.get(id(c), 1) for c in children), default=0)
        if depths[key] > MAX_DEPTH:
            raise DocumentError(
                f"line {node.start_mark.line + 1}: nested deeper than {MAX_DEPTH} levels"
            )
        if sizes[key] > MAX_NODES:
            raise DocumentError(
                f"the document expands to more than {MAX_NODES:,} values (aliases included); "
                "a run or sweep file is far smaller"
            )


def parse_value(text: str, source: str) -> Any:
    """The one YAML value `text` holds (None if empty), read as strictly as a file."""
    limit = sys.getrecursionlimit()
    try:
        sys.setrecursionlimit(max(limit, 5000))
        _check_depth(text)
        root = yaml.compose(text, Loader=_StrictLoader)
        if root is None:
            return None
        _check_shape(root)
        loader = _StrictLoader(text)
        try:
            data = loader.construct_document(root)
        finally:
            loader.dispose()
    except DocumentError as error:
        message = str(error)
        raise DocumentError(message if message.startswith(source) else f"{source}: {message}")
    except yaml.YAMLError as error:
        raise DocumentError(f"{source}: not valid YAML: {_yaml_reason(error)}") from None
    except RecursionError:
        raise DocumentError(f"{source}: nested too deeply to read") from None
    except ValueError as error:  # int() beyond sys.get_int_max_str_digits, and the like
        raise DocumentError(f"{source}: {shorten(str(error), 200)}") from None
    finally:
        sys.setrecursionlimit(limit)
    return data


def parse_document(text: str, source: str) -> dict[str, Any]:
    """The one mapping `text` holds; DocumentError naming `source` otherwise."""
    data = parse_value(text, source)
    if data is None:
        raise DocumentError(f"{source}: the file is empty; expected a mapping of keys")
    if not isinstance(data, dict):
        raise DocumentError(
            f"{source}: expected a mapping of keys at the top level, got a "
            f"{type(data).__name__} ({shorten(data)})"
        )
    return data


def _yaml_reason(error: yaml.YAMLError) -> str:
    """YAML's problem and where, in one line (its own text repeats the offending line)."""
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return where + shorten(problem, 200).strip("'\"")


def load_document(path: str | Path) -> dict[str, Any]:
    """Read `path` as one YAML mapping (see the module docstring for what is refused)."""
    path = Path(path)
    if not path.is_file():
        raise DocumentError(f"config file {str(path)!r} does not exist")
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise DocumentError(f"{path}: {size:,} bytes; a run or sweep file is at most {MAX_BYTES:,}")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DocumentError(
            f"{path}: not UTF-8 text (byte {raw[error.start]:#04x} at offset {error.start})"
        ) from None
    return parse_document(text, str(path))
