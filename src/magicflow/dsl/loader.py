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
import re
from collections.abc import Callable
from typing import Any, NamedTuple

import yaml

from magicflow.dsl.diagnostics import Diagnostic
from magicflow.dsl.source import Limits, Node, SourceMap, Span, decode_source
from magicflow.dsl.text import clip, describe

__all__ = ["LoadedDocument", "load_yaml"]

_STD = "tag:yaml.org,2002:"
_SCALAR_TAGS = {_STD + t for t in ("str", "int", "float", "bool", "null")}
_STRING_TAGS = {_STD + t for t in ("timestamp", "merge", "value")}
_STR = _STD + "str"
_BOOL = _STD + "bool"
_FLOAT = _STD + "float"
_IMPLICIT: dict[str, list[tuple[str, Any]]] = yaml.resolver.Resolver.yaml_implicit_resolvers
_CONSTRUCTOR = yaml.constructor.SafeConstructor()
_NO_KEY: Any = object()
_BAD_KEY: Any = object()
_MERGE: Any = object()
_INVALID: Any = object()


class LoadedDocument(NamedTuple):
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
    composer.map.root = root
    return LoadedDocument(root, composer.map, composer.diagnostics)


class _Abort(Exception):
    """Stops composing after a fatal problem has been recorded."""


class _Frame(Node):
    """A mapping or list being composed; kept afterwards as its positions."""

    __slots__ = ("anchor", "height", "key", "key_mark", "merges", "size", "value")

    def __init__(self, value: Any, start: Any, anchor: str | None) -> None:
        super().__init__(start, isinstance(value, dict))
        self.value = value
        self.anchor = anchor
        self.key: Any = _NO_KEY
        self.key_mark: Any = None
        self.size = 1  # itself plus the sizes of the collections and aliases in it
        self.height = 1
        self.merges: list[tuple[Any, Any]] = []


def _span(mark: Any) -> Span:
    """1-based position of a parser mark (or of the start of an event)."""
    mark = getattr(mark, "start_mark", mark)
    return Span(mark.line + 1, mark.column + 1) if mark is not None else Span(1, 1)


class _Composer:
    def __init__(self, filename: str, limits: Limits, diagnostics: list[Diagnostic]) -> None:
        self.filename = filename
        self.limits = limits
        self.diagnostics = diagnostics
        self.map = SourceMap()
        self.root: Any = None
        self.stack: list[_Frame] = []
        self.top: _Frame | None = None
        self.anchors: dict[str, tuple[Any, int, int]] = {}
        self.nodes = 0
        self.documents = 0

    def error(self, mark: Any, message: str) -> None:
        span = _span(mark)
        self.diagnostics.append(Diagnostic(self.filename, span.line, span.col, message))

    def compose(self, text: str) -> None:
        handlers: dict[type, Callable[[Any], None]] = {
            yaml.MappingStartEvent: self.start_mapping,
            yaml.SequenceStartEvent: self.start_sequence,
            yaml.MappingEndEvent: self.end,
            yaml.SequenceEndEvent: self.end,
            yaml.AliasEvent: self.alias,
            yaml.DocumentStartEvent: self.document,
        }
        scalar_event, scalar, end = yaml.ScalarEvent, self.scalar, yaml.StreamEndEvent
        loader = yaml.CSafeLoader(text)
        try:
            next_event: Callable[[], Any] = loader.get_event
            while True:
                event = next_event()
                kind = event.__class__
                if kind is scalar_event:
                    scalar(event)
                elif kind is end:
                    break
                else:
                    handler = handlers.get(kind)
                    if handler is not None:
                        handler(event)
        except yaml.MarkedYAMLError as exc:
            self.root = None
            self.syntax_error(exc, text)
        except yaml.YAMLError as exc:
            self.root = None
            self.error(None, f"invalid YAML: {exc}")
        except _Abort:
            self.root = None
        else:
            self.check_root()
        finally:
            loader.dispose()

    def syntax_error(self, exc: yaml.MarkedYAMLError, text: str) -> None:
        mark = exc.problem_mark or exc.context_mark
        span = _span(mark)
        lines = text.split("\n", span.line)
        line_text = lines[span.line - 1] if len(lines) >= span.line else ""
        if line_text[span.col - 1 : span.col] == "\t":
            self.error(mark, "invalid YAML: a tab character; YAML indentation must use spaces")
            return
        message = f"invalid YAML: {exc.problem or 'syntax error'}"
        if exc.context:
            message += f" ({exc.context})"
        self.error(mark, message)

    def check_root(self) -> None:
        if self.documents == 0 or self.root is None:
            self.root = None
            message = "the document is empty; a workflow is a mapping with name, version and steps"
            self.error(None, message)
        elif not isinstance(self.root, dict):
            message = (
                "a workflow must be a mapping (name, version, steps, ...), "
                f"not {describe(self.root)}"
            )
            node = self.map.nodes.get(id(self.root))
            self.error(node.start if node else None, message)
            self.root = None

    def document(self, event: yaml.DocumentStartEvent) -> None:
        self.documents += 1
        if self.documents > 1:
            message = "a workflow file holds one YAML document; found a second one (a '---' line)"
            self.error(event.start_mark, message)
            raise _Abort

    def too_many(self, mark: Any) -> None:
        message = (
            f"the document expands to more than {self.limits.max_nodes:,} values "
            "(too many aliases, or too large)"
        )
        self.error(mark, message)
        raise _Abort

    def scalar(self, event: yaml.ScalarEvent) -> None:
        # The hot path: scalars are most of a document. They are not counted against
        # max_nodes one by one (the byte limit bounds them); aliases count what they expand.
        top = self.top
        if top is not None and top.key is _NO_KEY and top.keys is not None:
            merge = event.value == "<<" and not event.style and event.tag is None
            top.key = _MERGE if merge else event.value
            top.key_mark = event.start_mark
            if event.anchor:
                self.anchors[event.anchor] = (event.value, 1, 0)
            return
        text = event.value
        if event.style or event.tag is not None or text[:1] in _IMPLICIT:
            value = self.construct(event)
        else:
            value = text  # a plain scalar that cannot be a number, boolean or null
        if event.anchor:
            self.anchors[event.anchor] = (value, 1, 0)
        if top is None:
            self.set_root(value, event)
        elif top.keys is None:
            top.value.append(value)
            top.children.append(event)  # type: ignore[union-attr]
        elif top.key.__class__ is str and top.key not in top.value:
            key = top.key
            top.key = _NO_KEY
            top.value[key] = value
            top.keys[key] = top.key_mark
            top.children[key] = event  # type: ignore[call-overload]
        else:
            self.put(top, value, event)

    def construct(self, event: yaml.ScalarEvent) -> Any:
        tag = event.tag
        text = event.value
        if tag is None and not event.style and event.implicit[0]:
            if (
                text.isdigit()
                and text.isascii()
                and (text[0] != "0" or len(text) == 1)
                and len(text) < 19
            ):
                return int(text)  # the common case, without the regular expressions
            tag = _implicit_tag(text)
        elif tag is None or tag == "!":
            return text
        if tag == _STR or tag in _STRING_TAGS:
            return text
        if tag not in _SCALAR_TAGS:
            self.error(event.start_mark, f"unsupported YAML tag {_short(tag)!r}")
            return text
        value = _construct_scalar(tag, text)
        if value is _INVALID:
            what = "a finite number" if tag == _STD + "float" else f"a valid {_short(tag)}"
            self.error(event.start_mark, f"{clip(text)} is not {what}")
            return text
        return value

    def start_mapping(self, event: yaml.MappingStartEvent) -> None:
        self.start(event, {}, "map")

    def start_sequence(self, event: yaml.SequenceStartEvent) -> None:
        self.start(event, [], "seq")

    def start(self, event: yaml.CollectionStartEvent, value: Any, kind: str) -> None:
        mark = event.start_mark
        self.nodes += 1
        if self.nodes > self.limits.max_nodes:
            self.too_many(mark)
        if len(self.stack) >= self.limits.max_depth:
            self.error(mark, f"the document nests deeper than {self.limits.max_depth} levels")
            raise _Abort
        if event.tag not in (None, "!", _STD + kind):
            self.error(mark, f"unsupported YAML tag {_short(event.tag or '')!r}")
        frame = _Frame(value, mark, event.anchor)
        self.map.nodes[id(value)] = frame
        self.stack.append(frame)
        self.top = frame

    def end(self, event: yaml.Event) -> None:
        frame = self.stack.pop()
        self.top = self.stack[-1] if self.stack else None
        if frame.merges:
            self.merge(frame)
        size = frame.size + len(frame.value)  # children counted once more: an upper bound
        if frame.anchor:
            self.anchors[frame.anchor] = (frame.value, size, frame.height)
        self.add(frame.value, size, frame.height, frame.start)

    def alias(self, event: yaml.AliasEvent) -> None:
        mark = event.start_mark
        name = event.anchor or ""
        found = self.anchors.get(name)
        if found is None:
            recursive = any(frame.anchor == name for frame in self.stack)
            self.error(
                mark, f"alias '*{name}' {'refers to itself' if recursive else 'is not defined'}"
            )
            found = (None, 1, 0)
        value, size, height = found
        self.nodes += size
        if self.nodes > self.limits.max_nodes:
            self.too_many(mark)
        if len(self.stack) + height > self.limits.max_depth:
            self.error(mark, f"the document nests deeper than {self.limits.max_depth} levels")
            raise _Abort
        top = self.top
        is_key = top is not None and top.key is _NO_KEY and top.keys is not None
        if top is not None and is_key and isinstance(value, str):
            top.key, top.key_mark = value, mark
            return
        self.add(value, size, height, mark)

    def add(self, value: Any, size: int, height: int, mark: Any) -> None:
        """Put a finished collection or alias into its parent (``mark``: where it is)."""
        top = self.top
        if top is None:
            self.set_root(value, mark)
            return
        top.size += size
        if height >= top.height:
            top.height = height + 1
        if top.keys is None:
            top.value.append(value)
            top.children.append(mark)  # type: ignore[union-attr]
        else:
            self.put(top, value, mark)

    def set_root(self, value: Any, mark: Any) -> None:
        self.root = value
        if not isinstance(value, dict | list):
            self.map.nodes[id(value)] = Node(mark, False)

    def put(self, top: _Frame, value: Any, mark: Any) -> None:
        """Store ``value`` under the pending key of the mapping ``top``."""
        key = top.key
        top.key = _NO_KEY
        if key is _NO_KEY:  # a collection used as a key
            top.key = _BAD_KEY
            self.error(mark, f"a mapping key must be a string, not {describe(value)}")
        elif key is _MERGE:
            top.merges.append((value, top.key_mark))
        elif key is _BAD_KEY:
            return
        elif key in top.value:
            first = top.keys.get(key) if top.keys is not None else None
            where = f" (first defined on line {first.line + 1})" if first is not None else ""
            self.error(top.key_mark, f"duplicate key {key!r}{where}")
        else:
            top.value[key] = value
            top.keys[key] = top.key_mark  # type: ignore[index]
            top.children[key] = mark

    def merge(self, frame: _Frame) -> None:
        target = frame.value
        assert frame.keys is not None
        for value, mark in frame.merges:
            sources = value if isinstance(value, list) else [value]
            if not all(isinstance(source, dict) for source in sources):
                self.error(mark, "'<<' merges a mapping or a list of mappings")
                continue
            for source in sources:
                for key, item in source.items():
                    if key not in target:
                        target[key] = item
                        frame.keys[key] = mark
                        frame.children[key] = mark


_RESOLVED: dict[str, str] = {}


def _implicit_tag(text: str) -> str:
    """The tag YAML 1.1 gives a plain scalar (``30s`` is a string, ``yes`` a boolean)."""
    tag = _RESOLVED.get(text)
    if tag is None:
        tag = next((t for t, regexp in _IMPLICIT.get(text[:1], ()) if regexp.match(text)), _STR)
        if len(_RESOLVED) > 4096:
            _RESOLVED.clear()
        _RESOLVED[text] = tag
    return tag


_BOOLS = yaml.constructor.SafeConstructor.bool_values
_SIMPLE_FLOAT = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def _construct_scalar(tag: str, text: str) -> Any:
    """The value of a scalar with a standard tag, or ``_INVALID``."""
    if tag == _BOOL and text.lower() in _BOOLS:
        return _BOOLS[text.lower()]
    if tag == _FLOAT and _SIMPLE_FLOAT.fullmatch(text):
        value = float(text)
        return value if math.isfinite(value) else _INVALID
    try:
        value = _CONSTRUCTOR.yaml_constructors[tag](_CONSTRUCTOR, yaml.ScalarNode(tag, text))
    except (ValueError, TypeError, KeyError, OverflowError, yaml.YAMLError):
        return _INVALID
    if value is None and tag != _STD + "null":
        return _INVALID
    if isinstance(value, float) and not math.isfinite(value):
        return _INVALID
    return value


def _short(tag: str) -> str:
    return "!!" + tag[len(_STD) :] if tag.startswith(_STD) else tag
