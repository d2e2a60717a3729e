"""Strict YAML reading and writing: the only module that imports PyYAML.

``yaml.safe_load`` forbids Python object tags but still accepts alias bombs and silently keeps
the last of two duplicate keys. etlctl's inputs (config files, manifests) are small and
written by people or CI, so it refuses anchors/aliases and duplicate keys outright, and
bounds the input size before parsing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import yaml

from etlctl.errors import ValidationError

MAX_YAML_BYTES = 4 * 1024 * 1024
# PyYAML composes nodes recursively: a few thousand '[' would end in a RecursionError.
MAX_YAML_DEPTH = 64


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses aliases, duplicate keys and deep nesting, and remembers lines."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise _YamlRefused(
                "YAML anchors and aliases are not allowed",
                event.start_mark,
            )
        if self._depth >= MAX_YAML_DEPTH:
            raise _YamlRefused(
                f"nested deeper than {MAX_YAML_DEPTH} levels", self.peek_event().start_mark
            )
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, Any] = {}
        key_lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:  # a list or mapping used as a key: `? [a, b]`
                raise _YamlRefused("a key must be a plain value", key_node.start_mark) from None
            if duplicate:
                raise _YamlRefused(f"duplicate key {key!r}", key_node.start_mark)
            seen[key] = True
            key_lines[key] = key_node.start_mark.line + 1
        mapping = super().construct_mapping(node, deep=deep)
        return _LineDict(mapping, line=node.start_mark.line + 1, key_lines=key_lines)


class _LineDict(dict):
    """A dict that knows the line its mapping started on, and each key's line."""

    def __init__(
        self,
        *args: Any,
        line: int = 0,
        key_lines: dict[Any, int] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.line = line
        self.key_lines = key_lines or {}


class _YamlRefused(yaml.YAMLError):
    def __init__(self, problem: str, mark: Any) -> None:
        super().__init__(problem)
        self.problem = problem
        self.problem_mark = mark


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _StrictLoader.construct_mapping
)


def line_of(value: Any, key: Any = None) -> int | None:
    """The source line of a mapping read by this module (or of one of its keys), when known."""
    if key is not None:
        found = getattr(value, "key_lines", {}).get(key)
        if found is not None:
            return found
    return getattr(value, "line", None)


def _describe(exc: yaml.YAMLError, source: str) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    where = f"{source}:{mark.line + 1}" if mark is not None else source
    return f"{where}: {problem}"


def _check_size(text: str | bytes, source: str) -> None:
    if len(text) > MAX_YAML_BYTES:
        raise ValidationError(
            f"{source}: {len(text)} bytes is larger than the {MAX_YAML_BYTES} bytes allowed",
            hint="split it into several files",
        )


def load_all(text: str | bytes, source: str = "<input>") -> Iterator[Any]:
    """Every document of a YAML stream, strictly; errors name the source and the line."""
    _check_size(text, source)
    try:
        # list() so that all parsing errors surface here, not halfway through a caller's loop.
        documents = list(yaml.load_all(text, Loader=_StrictLoader))
    except yaml.YAMLError as exc:
        raise ValidationError(f"invalid YAML in {_describe(exc, source)}") from exc
    except (ValueError, OverflowError) as exc:
        # A value its tag cannot hold: a date 2024-13-01, an integer of 5000 digits.
        raise ValidationError(f"invalid YAML in {source}: {exc}") from None
    except RecursionError:
        raise ValidationError(f"invalid YAML in {source}: nested too deeply") from None
    yield from (doc for doc in documents if doc is not None)


def load_one(text: str | bytes, source: str = "<input>") -> Any:
    documents = list(load_all(text, source))
    if len(documents) != 1:
        raise ValidationError(f"{source}: expected one YAML document, found {len(documents)}")
    return documents[0]


class _PlainDumper(yaml.SafeDumper):
    """Block style, no aliases: exports are read by people and diffed in git."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


_PlainDumper.add_representer(_LineDict, lambda dumper, data: dumper.represent_dict(dict(data)))


def dump_all(documents: list[Any]) -> str:
    return yaml.dump_all(
        documents,
        Dumper=_PlainDumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        explicit_start=True,
    )
