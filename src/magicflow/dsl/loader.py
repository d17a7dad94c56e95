"""YAML text -> plain data (dicts, lists, str, int, float, bool, None) plus source positions.

The text is checked before any parsing (size, encoding, characters YAML refuses), then
parsed into an event stream by libyaml (``yaml.CSafeLoader``) and composed here, without
recursion, into plain data. Composing ourselves lets us record the line and column of every
key and value by path, report duplicate keys, refuse unsupported tags, and bound both the
size of the document after alias expansion ("billion laughs") and its nesting depth. Every
problem becomes a :class:`~magicflow.dsl.diagnostics.Diagnostic`; nothing raises.

Mapping keys are always strings: a key is the text the author wrote (``on:`` is the key
``"on"``, not ``True``). ``<<`` merge keys are supported. Timestamps stay strings.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml

from magicflow.dsl.diagnostics import Diagnostic
from magicflow.dsl.source import Limits, Path, SourceMap, Span, decode_source
from magicflow.dsl.text import clip, describe

__all__ = ["LoadedDocument", "load_yaml"]

_STD = "tag:yaml.org,2002:"
_SCALAR_TAGS = {_STD + t for t in ("str", "int", "float", "bool", "null")}
_STRING_TAGS = {_STD + t for t in ("timestamp", "merge", "value")}
_RESOLVER = yaml.resolver.Resolver()
_CONSTRUCTOR = yaml.constructor.SafeConstructor()
_NO_KEY: Any = object()
_BAD_KEY: Any = object()
_MERGE: Any = object()
_INVALID: Any = object()


@dataclass(slots=True)
class LoadedDocument:
    """``data`` is the top-level mapping, or None when the text is not a usable document."""

    data: dict[str, Any] | None
    source_map: SourceMap
    diagnostics: list[Diagnostic]


def load_yaml(
    source: str | bytes, filename: str = "<string>", limits: Limits | None = None
) -> LoadedDocument:
    """Read one YAML document into plain data, positions and diagnostics. Never raises."""
    limits = limits or Limits()
    text, diagnostics = decode_source(source, filename, limits)
    composer = _Composer(filename, limits, diagnostics)
    if text is not None:
        composer.compose(text)
    root = composer.root if isinstance(composer.root, dict) else None
    return LoadedDocument(root, composer.map, composer.diagnostics)


class _Abort(Exception):
    """Stops composing after a fatal problem has been recorded."""


class _Frame:
    __slots__ = ("anchor", "height", "key", "key_span", "merges", "path", "size", "value")

    def __init__(self, value: dict[str, Any] | list[Any], path: Path | None, anchor: str | None):
        self.value = value
        self.path = path
        self.anchor = anchor
        self.key: Any = _NO_KEY
        self.key_span = Span(1, 1)
        self.size = 1
        self.height = 1
        self.merges: list[tuple[Any, Span]] = []


def _span(mark: Any) -> Span:
    return Span(mark.line + 1, mark.column + 1) if mark is not None else Span(1, 1)


class _Composer:
    def __init__(self, filename: str, limits: Limits, diagnostics: list[Diagnostic]) -> None:
        self.filename = filename
        self.limits = limits
        self.diagnostics = diagnostics
        self.map = SourceMap()
        self.root: Any = None
        self.stack: list[_Frame] = []
        self.anchors: dict[str, tuple[Any, int, int]] = {}
        self.nodes = 0
        self.documents = 0

    def error(self, span: Span, message: str, path: Path = ()) -> None:
        self.diagnostics.append(Diagnostic(self.filename, span.line, span.col, message, path=path))

    def compose(self, text: str) -> None:
        handlers: dict[type, Callable[[Any], None]] = {
            yaml.ScalarEvent: self.scalar,
            yaml.MappingStartEvent: self.start_mapping,
            yaml.SequenceStartEvent: self.start_sequence,
            yaml.MappingEndEvent: self.end,
            yaml.SequenceEndEvent: self.end,
            yaml.AliasEvent: self.alias,
            yaml.DocumentStartEvent: self.document,
        }
        try:
            for event in yaml.parse(text, Loader=yaml.CSafeLoader):
                handler = handlers.get(event.__class__)
                if handler is not None:
                    handler(event)
        except yaml.MarkedYAMLError as exc:
            self.root = None
            self.syntax_error(exc, text)
        except yaml.YAMLError as exc:
            self.root = None
            self.error(Span(1, 1), f"invalid YAML: {exc}")
        except _Abort:
            self.root = None
        else:
            self.check_root()

    def syntax_error(self, exc: yaml.MarkedYAMLError, text: str) -> None:
        span = _span(exc.problem_mark or exc.context_mark)
        lines = text.split("\n", span.line)
        line_text = lines[span.line - 1] if len(lines) >= span.line else ""
        if line_text[span.col - 1 : span.col] == "\t":
            self.error(span, "invalid YAML: a tab character; YAML indentation must use spaces")
            return
        message = f"invalid YAML: {exc.problem or 'syntax error'}"
        if exc.context:
            message += f" ({exc.context})"
        self.error(span, message)

    def check_root(self) -> None:
        if self.documents == 0 or self.root is None:
            self.root = None
            message = "the document is empty; a workflow is a mapping with name, version and steps"
            self.error(Span(1, 1), message)
        elif not isinstance(self.root, dict):
            message = (
                f"a workflow must be a mapping (name, version, steps, ...), "
                f"not {describe(self.root)}"
            )
            self.error(self.map.value(()), message)
            self.root = None

    def document(self, event: yaml.DocumentStartEvent) -> None:
        self.documents += 1
        if self.documents > 1:
            message = "a workflow file holds one YAML document; found a second one (a '---' line)"
            self.error(_span(event.start_mark), message)
            raise _Abort

    def child_path(self) -> Path | None:
        """The path of the value about to be added, or None where paths are not tracked."""
        if not self.stack:
            return ()
        top = self.stack[-1]
        if top.path is None:
            return None
        if isinstance(top.value, list):
            return (*top.path, len(top.value))
        if top.key is _NO_KEY or top.key is _BAD_KEY or top.key is _MERGE:
            return None
        return (*top.path, top.key)

    def in_key(self) -> _Frame | None:
        """The mapping waiting for a key, if the next node is that key."""
        top = self.stack[-1] if self.stack else None
        if top is not None and top.key is _NO_KEY and isinstance(top.value, dict):
            return top
        return None

    def count(self, size: int, span: Span) -> None:
        self.nodes += size
        if self.nodes > self.limits.max_nodes:
            message = (
                f"the document expands to more than {self.limits.max_nodes:,} values "
                "(too many aliases, or too large)"
            )
            self.error(span, message)
            raise _Abort

    def scalar(self, event: yaml.ScalarEvent) -> None:
        span = _span(event.start_mark)
        self.count(1, span)
        mapping = self.in_key()
        if mapping is not None:
            merge = event.value == "<<" and not event.style and event.tag is None
            mapping.key, mapping.key_span = (_MERGE if merge else event.value), span
            if event.anchor:
                self.anchors[event.anchor] = (event.value, 1, 0)
            return
        path = self.child_path()
        value = self.construct(event, span, path)
        if path is not None:
            self.map.values[path] = Span(span.line, span.col, _inner_column(event))
        if event.anchor:
            self.anchors[event.anchor] = (value, 1, 0)
        self.add(value, 1, 0, span)

    def construct(self, event: yaml.ScalarEvent, span: Span, path: Path | None) -> Any:
        tag = event.tag
        text = event.value
        if tag is None and not event.style and event.implicit[0]:
            tag = _RESOLVER.resolve(yaml.ScalarNode, text, (True, False))  # type: ignore[no-untyped-call]
        elif tag is None or tag == "!":
            return text
        if tag == _STD + "str" or tag in _STRING_TAGS:
            return text
        if tag not in _SCALAR_TAGS:
            self.error(span, f"unsupported YAML tag {_short(tag)!r}", path or ())
            return text
        value = _construct_scalar(tag, text)
        if value is _INVALID:
            what = "a finite number" if tag == _STD + "float" else f"a valid {_short(tag)}"
            self.error(span, f"{clip(text)} is not {what}", path or ())
            return text
        if path is not None and value is not None:
            self.map.raw[path] = text
        return value

    def start_mapping(self, event: yaml.MappingStartEvent) -> None:
        self.start(event, {}, "map")

    def start_sequence(self, event: yaml.SequenceStartEvent) -> None:
        self.start(event, [], "seq")

    def start(
        self, event: yaml.CollectionStartEvent, value: dict[str, Any] | list[Any], kind: str
    ) -> None:
        span = _span(event.start_mark)
        self.count(1, span)
        if len(self.stack) >= self.limits.max_depth:
            self.error(span, f"the document nests deeper than {self.limits.max_depth} levels")
            raise _Abort
        if event.tag not in (None, "!", _STD + kind):
            self.error(span, f"unsupported YAML tag {_short(event.tag or '')!r}")
        path = self.child_path()
        if path is not None:
            self.map.values[path] = span
        self.stack.append(_Frame(value, path, event.anchor))

    def end(self, event: yaml.Event) -> None:
        frame = self.stack.pop()
        if frame.merges:
            self.merge(frame)
        if frame.anchor:
            self.anchors[frame.anchor] = (frame.value, frame.size, frame.height)
        self.add(frame.value, frame.size, frame.height, _span(event.start_mark))

    def alias(self, event: yaml.AliasEvent) -> None:
        span = _span(event.start_mark)
        name = event.anchor or ""
        found = self.anchors.get(name)
        if found is None:
            recursive = any(frame.anchor == name for frame in self.stack)
            self.error(
                span, f"alias '*{name}' {'refers to itself' if recursive else 'is not defined'}"
            )
            found = (None, 1, 0)
        value, size, height = found
        self.count(size, span)
        if len(self.stack) + height > self.limits.max_depth:
            self.error(span, f"the document nests deeper than {self.limits.max_depth} levels")
            raise _Abort
        mapping = self.in_key()
        if mapping is not None and isinstance(value, str):
            mapping.key, mapping.key_span = value, span
            return
        path = self.child_path()
        if path is not None:
            self.map.values[path] = span
        self.add(value, size, height, span)

    def add(self, value: Any, size: int, height: int, span: Span) -> None:
        if not self.stack:
            self.root = value
            return
        top = self.stack[-1]
        top.size += size
        if height >= top.height:
            top.height = height + 1
        container = top.value
        if isinstance(container, list):
            container.append(value)
            return
        key = top.key
        top.key = _NO_KEY
        if key is _NO_KEY:  # a collection used as a key
            top.key = _BAD_KEY
            self.error(span, f"a mapping key must be a string, not {describe(value)}")
        elif key is _MERGE:
            top.merges.append((value, top.key_span))
        elif key is not _BAD_KEY:
            self.set_key(top, container, key, value)

    def set_key(self, top: _Frame, container: dict[str, Any], key: str, value: Any) -> None:
        path = None if top.path is None else (*top.path, key)
        if key in container:
            first = self.map.keys.get(path) if path is not None else None
            where = f" (first defined on line {first.line})" if first else ""
            self.error(top.key_span, f"duplicate key {key!r}{where}", path or ())
            return
        container[key] = value
        if path is not None:
            self.map.keys[path] = top.key_span

    def merge(self, frame: _Frame) -> None:
        target = frame.value
        assert isinstance(target, dict)
        for value, span in frame.merges:
            sources = value if isinstance(value, list) else [value]
            if not all(isinstance(source, dict) for source in sources):
                self.error(span, "'<<' merges a mapping or a list of mappings")
                continue
            for source in sources:
                for key, item in source.items():
                    if key in target:
                        continue
                    target[key] = item
                    if frame.path is not None:
                        self.map.keys[(*frame.path, key)] = span
                        self.map.values.setdefault((*frame.path, key), span)


def _construct_scalar(tag: str, text: str) -> Any:
    """The value of a scalar with a standard tag, or ``_INVALID``."""
    try:
        value = _CONSTRUCTOR.yaml_constructors[tag](_CONSTRUCTOR, yaml.ScalarNode(tag, text))
    except (ValueError, TypeError, KeyError, OverflowError, yaml.YAMLError):
        return _INVALID
    if value is None and tag != _STD + "null":
        return _INVALID
    if isinstance(value, float) and not math.isfinite(value):
        return _INVALID
    return value


def _inner_column(event: yaml.ScalarEvent) -> int:
    """1-based column of a one-line plain or quoted scalar's first character, else 0."""
    quoted = 1 if event.style in ("'", '"') else 0
    if event.style and not quoted:
        return 0
    start, end = event.start_mark, event.end_mark
    if start is None or end is None or end.line != start.line:
        return 0
    if end.column - start.column != len(event.value) + 2 * quoted:
        return 0
    return start.column + 1 + quoted


def _short(tag: str) -> str:
    return "!!" + tag[len(_STD) :] if tag.startswith(_STD) else tag
