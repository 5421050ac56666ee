"""YAML with line numbers: the data of a document, and the line each key or item is on.

The safe loader builds plain data only (a ``!!python/...`` tag is an error, never a call:
RELIABILITY 9). Composing the node tree first keeps each node's position, so every problem
found later can name the line it is on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml  # type: ignore[import-untyped]

Path = tuple[str | int, ...]


@dataclass
class Located:
    """A parsed document and the 1-based line of each path in it.

    ``lines[("steps", 2, "with", "dataset")]`` is the line of the ``dataset`` key of the
    third step's ``with``; ``lines[()]`` is the document's first line.
    """

    data: Any
    lines: dict[Path, int] = field(default_factory=dict)
    duplicates: list[tuple[Path, int]] = field(default_factory=list)

    def line_of(self, path: Path) -> int:
        """The line of ``path``, or of its nearest ancestor that has one."""
        probe = tuple(path)
        while probe:
            if probe in self.lines:
                return self.lines[probe]
            probe = probe[:-1]
        return self.lines.get((), 1)


class YamlSyntaxError(Exception):
    """The text is not YAML; ``line`` is where the parser stopped (1-based)."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


MAX_DEPTH = 32


def _walk(node: yaml.Node, path: Path, found: Located, seen: set[int]) -> None:
    line = node.start_mark.line + 1
    if len(path) > MAX_DEPTH:
        raise YamlSyntaxError(f"nested more than {MAX_DEPTH} levels deep", line)
    if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
        # An alias is the same node object again: refusing repeats keeps every later walk
        # linear (a "billion laughs" document would otherwise expand exponentially).
        if id(node) in seen:
            where = found.lines.get(path, line)  # the alias's place, not the anchor's
            raise YamlSyntaxError("anchors and aliases (&name, *name) are not supported", where)
        seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        keys: set[Any] = set()
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node)
            child = (*path, key)
            line = key_node.start_mark.line + 1
            if key in keys:
                found.duplicates.append((child, line))
            keys.add(key)
            found.lines.setdefault(child, line)
            _walk(value_node, child, found, seen)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            child = (*path, index)
            found.lines.setdefault(child, item.start_mark.line + 1)
            _walk(item, child, found, seen)


_BOOL = "tag:yaml.org,2002:bool"
_STR = "tag:yaml.org,2002:str"


def _text_keys(root: yaml.Node) -> None:
    """A plain key YAML 1.1 reads as a boolean (``on``, ``off``, ``yes``, ``no``, ``y``,
    ``n``) stays the word written: ``with: {on: ray}`` is the step's ``on`` parameter, not
    ``True``. Values keep YAML's reading."""
    pending, seen = [root], set()
    while pending:
        node = pending.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.tag == _BOOL and key.style is None:
                    key.tag = _STR
                pending.extend((key, value))
        elif isinstance(node, yaml.SequenceNode):
            pending.extend(node.value)


def _line(exc: yaml.YAMLError, text: str) -> int:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if mark is not None:
        return int(mark.line) + 1
    position = getattr(exc, "position", None)  # a ReaderError names a character offset
    return text.count("\n", 0, position) + 1 if isinstance(position, int) else 1


def _reason(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.reader.ReaderError):
        return f"unacceptable character #x{exc.character:04x}: control characters are not allowed"
    return str(getattr(exc, "problem", None) or exc)[:300]


def load_located(text: str) -> Located:
    """Parse one YAML document and record where each key and item is.

    Raises:
        YamlSyntaxError: the text is not YAML, or uses a tag the safe loader refuses.
    """
    try:
        # The reader checks the characters as it is made: a control character fails here.
        loader = yaml.SafeLoader(text)
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(_reason(exc), _line(exc, text)) from None
    try:
        node = loader.get_single_node()
        if node is not None:
            _text_keys(node)
        data = None if node is None else loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(_reason(exc), _line(exc, text)) from None
    except RecursionError:
        raise YamlSyntaxError(f"nested more than {MAX_DEPTH} levels deep", 1) from None
    finally:
        loader.dispose()
    found = Located(data=data)
    if node is not None:
        found.lines[()] = node.start_mark.line + 1
        _walk(node, (), found, set())
    return found
