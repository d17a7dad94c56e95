"""Reading YAML: any input gives data or diagnostics, with 1-based positions, never raises."""

import codecs
import time

import pytest

from magicflow.dsl import Limits
from magicflow.dsl.loader import load_yaml


def problems(source: str | bytes, **limits: int) -> list[tuple[int, int, str]]:
    loaded = load_yaml(source, "f.yaml", Limits(**limits) if limits else None)
    return [(d.line, d.col, d.message) for d in loaded.diagnostics]


def test_plain_data_and_no_problems() -> None:
    loaded = load_yaml("a: 1\nb: [x, 2.5, true, null]\nc: {d: e}\n")
    assert loaded.data == {"a": 1, "b": ["x", 2.5, True, None], "c": {"d": "e"}}
    assert loaded.diagnostics == []


def test_positions_of_keys_and_values() -> None:
    source_map = load_yaml("a: 1\nb:\n  - x\n  - {c: 'text'}\n").source_map
    assert source_map.key(("b",))[:2] == (2, 1)
    assert source_map.value(("b", 1, "c"))[:2] == (4, 9)
    assert source_map.key(("b", 1, "c"))[:2] == (4, 6)
    assert source_map.value(("b", 9, "nope"))[:2] == (3, 3)  # nearest known parent
    assert source_map.inside(("b", 1, "c"), 2)[:2] == (4, 12)  # after the quote


def test_keys_are_the_text_written() -> None:
    assert load_yaml("on: yes\n1: x\nnull: y\n").data == {"on": True, "1": "x", "null": "y"}


def test_yaml_11_scalars_match_pyyaml() -> None:
    data = load_yaml("a: 010\nb: 0x1f\nc: 1_000\nd: 1:30\ne: 1.5e+3\nf: Off\ng: ~\n").data
    assert data == {"a": 8, "b": 31, "c": 1000, "d": 90, "e": 1500.0, "f": False, "g": None}


def test_timestamps_stay_strings() -> None:
    assert load_yaml("d: 2024-01-31\n").data == {"d": "2024-01-31"}


def test_duplicate_key_is_reported_at_the_second() -> None:
    assert problems("a: 1\nb: 2\na: 3\n") == [(3, 1, "duplicate key 'a' (first defined on line 1)")]


@pytest.mark.parametrize("source", ["", "   \n", "# only a comment\n", "---\n", "~\n"])
def test_empty_document(source: str) -> None:
    [(line, col, message)] = problems(source)
    assert (line, col) == (1, 1)
    assert "empty" in message


@pytest.mark.parametrize(("source", "kind"), [("- a\n", "a list"), ("hello\n", "a string")])
def test_top_level_must_be_a_mapping(source: str, kind: str) -> None:
    [(_, _, message)] = problems(source)
    assert message.endswith(f"not {kind}")


def test_multiple_documents() -> None:
    [(line, _, message)] = problems("a: 1\n---\nb: 2\n")
    assert line == 2
    assert "one YAML document" in message


def test_tab_indentation() -> None:
    assert problems("a:\n\tb: 1\n") == [
        (2, 1, "invalid YAML: a tab character; YAML indentation must use spaces")
    ]


def test_syntax_error_has_a_position() -> None:
    [(line, col, message)] = problems("a: [1, 2\nb: 3\n")
    assert line == 2
    assert col >= 1
    assert message.startswith("invalid YAML:")


def test_unknown_and_recursive_aliases() -> None:
    assert problems("a: *nope\n") == [(1, 4, "alias '*nope' is not defined")]
    assert problems("a: &x [*x]\n") == [(1, 8, "alias '*x' refers to itself")]


def test_aliases_are_expanded() -> None:
    assert load_yaml("a: &x {k: [1]}\nb: *x\n").data == {"a": {"k": [1]}, "b": {"k": [1]}}


def test_merge_keys() -> None:
    data = load_yaml("base: &b {x: 1, y: 1}\nc:\n  <<: *b\n  y: 2\n").data
    assert data == {"base": {"x": 1, "y": 1}, "c": {"y": 2, "x": 1}}


def test_billion_laughs_is_one_diagnostic_and_fast() -> None:
    lines = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for level in range(1, 10):
        prev, name = chr(96 + level), chr(97 + level)
        lines.append(f"{name}: &{name} [{', '.join([f'*{prev}'] * 10)}]")
    start = time.perf_counter()
    found = problems("\n".join(lines) + "\n")
    assert time.perf_counter() - start < 1.0
    assert len(found) == 1
    assert "expands to more than 200,000 values" in found[0][2]


def test_deep_nesting_is_refused() -> None:
    [(_, _, message)] = problems("a: " + "[" * 500 + "]" * 500 + "\n")
    assert "nests deeper than 64 levels" in message


def test_deep_nesting_through_aliases_is_refused() -> None:
    deep = "[" * 40 + "1" + "]" * 40
    [(_, _, message)] = problems(f"a: &a {deep}\nb: {'[' * 40}*a{']' * 40}\n")
    assert "nests deeper" in message


def test_size_limit_is_checked_before_parsing() -> None:
    big = b"a: " + b"x" * (2 << 20)
    start = time.perf_counter()
    [(line, col, message)] = problems(big)
    assert time.perf_counter() - start < 0.5
    assert (line, col) == (1, 1)
    assert "the limit is 1,048,576 bytes" in message
    assert problems("a: xxxxxxxx\n", max_bytes=8)[0][2].endswith("the limit is 8 bytes")


def test_binary_junk() -> None:
    [(_, _, message)] = problems(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    assert "binary data" in message


def test_not_utf8() -> None:
    [(line, col, message)] = problems(b"a: ok\nb: caf\xe9\n")
    assert (line, col) == (2, 7)
    assert "not UTF-8 text (invalid byte 0xe9)" in message


def test_control_characters() -> None:
    [(line, col, message)] = problems("a: 1\nb: x\x07y\n")
    assert (line, col) == (2, 5)
    assert "U+0007" in message


@pytest.mark.parametrize(
    "encoded",
    [
        codecs.BOM_UTF8 + "a: é\n".encode(),
        codecs.BOM_UTF16_LE + "a: é\n".encode("utf-16-le"),
        codecs.BOM_UTF16_BE + "a: é\n".encode("utf-16-be"),
    ],
)
def test_byte_order_marks(encoded: bytes) -> None:
    loaded = load_yaml(encoded)
    assert loaded.diagnostics == []
    assert loaded.data == {"a": "é"}


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("a: !!binary aGk=\n", "unsupported YAML tag '!!binary'"),
        ("a: !custom x\n", "unsupported YAML tag '!custom'"),
        ("a: !!set {x}\n", "unsupported YAML tag '!!set'"),
        ("a: !!int nope\n", "'nope' is not a valid !!int"),
        ("a: .inf\n", "'.inf' is not a finite number"),
        ("a: " + "9" * 5000 + "\n", "is not a valid !!int"),
    ],
)
def test_unsupported_values(source: str, message: str) -> None:
    [(_, _, found)] = problems(source)
    assert message in found


def test_explicit_standard_tags() -> None:
    assert load_yaml("a: !!str 1\nb: !!float 2\nc: ! 3\n").data == {"a": "1", "b": 2.0, "c": "3"}


def test_non_string_keys() -> None:
    loaded = load_yaml("? [a, b]\n: 1\nc: 2\n")
    assert loaded.data == {"c": 2}
    assert [d.message for d in loaded.diagnostics] == ["a mapping key must be a string, not a list"]


def test_several_problems_in_one_pass() -> None:
    found = problems("a: 1\na: 2\nb: *missing\nc: !!binary eA==\n")
    assert [line for line, _, _ in found] == [2, 3, 4]
