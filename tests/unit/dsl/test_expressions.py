"""The expression language: syntax, scope rules, errors at compile and run time, templates."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import pickle
import threading
import time
from datetime import date
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from magicflow.dsl.expressions import (
    EvaluationError,
    Expression,
    ExpressionError,
    Template,
    TemplateError,
    compile_condition,
    compile_expression,
    compile_template,
)
from magicflow.errors import MagicFlowError

IDS = frozenset({"validate-user", "create-account", "a", "a-b", "b", "fan"})


def make_scope() -> dict[str, Any]:
    return {
        "input": {
            "email": "Ada@Example.com",
            "plan": "pro",
            "items": [10, 20, 30],
            "n": 3,
            "ratio": 0.5,
            "flag": True,
            "none": None,
            "user": {"name": "Ada", "tags": ["x", "y"], "first-name": "A", "true": None},
            "__class__": "data",
        },
        "steps": {
            "validate-user": {
                "output": {"email": "ada@example.com", "score": 7},
                "status": "completed",
            },
            "a": {"output": 5, "status": "completed"},
            "a-b": {"output": {"v": "ab"}, "status": "completed"},
            "b": {"output": None, "status": "skipped"},
        },
        "item": {"sku": "s-1", "qty": 2},
        "index": 1,
        "execution": {"id": "ex-1"},
        "workflow": {"name": "onboarding", "version": "1.2.0"},
    }


SCOPE = make_scope()


def ev(source: str, scope: dict[str, Any] | None = None) -> Any:
    return compile_expression(source, IDS).evaluate(SCOPE if scope is None else scope)


def compile_error(source: str) -> ExpressionError:
    with pytest.raises(ExpressionError) as info:
        compile_expression(source, IDS)
    return info.value


def eval_error(source: str) -> EvaluationError:
    with pytest.raises(EvaluationError) as info:
        ev(source)
    return info.value


# Literals, operators, precedence, functions ------------------------------------------------

LITERALS = [
    ("'single'", "single"),
    ('"double"', "double"),
    ("'it\\'s'", "it's"),
    ('"say \\"hi\\""', 'say "hi"'),
    ("'a\\nb\\tc\\\\d\\/e'", "a\nb\tc\\d/e"),
    ("'\\u00e9t\\u00E9'", "été"),
    ("'naïve ☃'", "naïve ☃"),
    ("'${not an expression}'", "${not an expression}"),
    ("''", ""),
    ("0", 0),
    ("42", 42),
    ("3.25", 3.25),
    ("1e3", 1000.0),
    ("2.5E-1", 0.25),
    ("-7", -7),
    ("true", True),
    ("false", False),
    ("null", None),
    ("[]", []),
    ("[1, 'two', null, [true]]", [1, "two", None, [True]]),
    ("{}", {}),
    ("{'k': 1, \"j\": [2]}", {"k": 1, "j": [2]}),
    ("{'nested': {'deep': [1, {'x': null}]}}", {"nested": {"deep": [1, {"x": None}]}}),
    ("[1, 2,]", [1, 2]),
]


@pytest.mark.parametrize(("source", "expected"), LITERALS)
def test_literals(source: str, expected: Any) -> None:
    result = ev(source)
    assert result == expected
    assert type(result) is type(expected)


OPERATORS = [
    ("1 == 1", True),
    ("1 == 1.0", True),
    ("'a' == 'a'", True),
    ("[1, 2] == [1, 2]", True),
    ("{'a': 1} == {'a': 1}", True),
    ("null == null", True),
    ("true == 1", False),  # as in JSON, a boolean is not a number
    ("0 == false", False),
    ("[1, true] == [1, 1]", False),
    ("[1, [true]] == [1.0, [true]]", True),
    ("{'a': false} == {'a': 0}", False),
    ("{'a': 1} == {'b': 1}", False),
    ("input.user == input.user", True),
    ("[1] == {'a': 1}", False),
    ("'1' == 1", False),
    ("1 != 2", True),
    ("true != 1", True),
    ("'a' != 'a'", False),
    ("1 < 2", True),
    ("2 <= 2", True),
    ("3 > 2.5", True),
    ("2 >= 3", False),
    ("'abc' < 'abd'", True),
    ("0 < input.n < 5", True),
    ("0 < input.n < 2", False),
    ("true and 1", 1),
    ("false and 1", False),
    ("null or 'x'", "x"),
    ("'y' or 'x'", "y"),
    ("true && false", False),
    ("false || true", True),
    ("not true", False),
    ("!false", True),
    ("!!'x'", True),
    ("not ''", True),
    ("not []", True),
    ("not {}", True),
    ("not 0", True),
    ("not null", True),
    ("'b' in 'abc'", True),
    ("'z' in 'abc'", False),
    ("20 in input.items", True),
    ("'plan' in input", True),
    ("'nope' in input", False),
    ("'z' not in ['a']", True),
    ("1 in [true]", False),
    ("1 + 2", 3),
    ("1.5 + 1", 2.5),
    ("'ab' + 'cd'", "abcd"),
    ("[1] + [2]", [1, 2]),
    ("5 - 7", -2),
    ("3 * 4", 12),
    ("7 / 2", 3.5),
    ("6 / 3", 2.0),
    ("-input.n", -3),
    ("+input.ratio", 0.5),
    ("- - 2", 2),
]


@pytest.mark.parametrize(("source", "expected"), OPERATORS)
def test_operators(source: str, expected: Any) -> None:
    result = ev(source)
    assert result == expected
    assert type(result) is type(expected)


PRECEDENCE = [
    ("1 + 2 * 3", 7),
    ("(1 + 2) * 3", 9),
    ("10 - 4 - 3", 3),
    ("12 / 2 / 3", 2.0),
    ("-2 * 3", -6),
    ("1 + 2 == 3", True),
    ("1 < 2 == true", False),  # a chain: 1 < 2 and 2 == true
    ("true or false and false", True),
    ("(true or false) and false", False),
    ("true || false && false", True),
    ("not true == false", True),  # not (true == false)
    ("!true == false", True),  # ! is spelled not: same precedence
    ("not 1 in [1]", False),
    ("1 == 1 and 2 == 2 or false", True),
    ("input.plan == 'pro' && input.n > 2 && !input.none", True),
    ("[1, 2, 3][1 + 1]", 3),
    ("{'a': {'b': 5}}['a']['b'] * 2", 10),
]


@pytest.mark.parametrize(("source", "expected"), PRECEDENCE)
def test_precedence(source: str, expected: Any) -> None:
    assert ev(source) == expected


FUNCTIONS = [
    ("len('abc')", 3),
    ("len(input.items)", 3),
    ("len(input.user)", 4),
    ("len([])", 0),
    ("contains(input.email, '@')", True),
    ("contains(input.items, 20)", True),
    ("contains(input.items, 21)", False),
    ("contains(input.user, 'name')", True),
    ("contains(input.user, 1)", False),
    ("starts_with(input.email, 'Ada')", True),
    ("starts_with(input.email, 'ada')", False),
    ("ends_with(input.email, '.com')", True),
    ("lower(input.email)", "ada@example.com"),
    ("upper('é')", "É"),
    ("default(input.none, 'fb')", "fb"),
    ("default(input.plan, 'fb')", "pro"),
    ("default(input.missing, 'fb')", "fb"),
    ("default(input.missing.deeper, 1)", 1),
    ("default(input.none.deeper, 2)", 2),
    ("default(input.items[9], 3)", 3),
    ("default(steps.create-account.output.id, 'none yet')", "none yet"),
    ("default(steps.b.output, {})", {}),
    ("default(input.flag, true)", True),
    ("default(false, true)", False),
    ("default(0, 1)", 0),
    ("default(input.missing, default(input.other, 'second'))", "second"),
    ("default(len(input.missing), 0)", 0),
    ("default(input.missing, input.plan) + '!'", "pro!"),
    ("len(default(input.missing, [1, 2]))", 2),
    ("upper(default(input.user.nick, input.user.name))", "ADA"),
]


@pytest.mark.parametrize(("source", "expected"), FUNCTIONS)
def test_functions(source: str, expected: Any) -> None:
    assert ev(source) == expected


def test_default_evaluates_its_fallback_only_when_needed() -> None:
    assert ev("default(input.plan, 1 / 0)") == "pro"
    assert eval_error("default(input.missing, 1 / 0)").args[0] == "division by zero"


def test_default_does_not_hide_type_errors() -> None:
    assert str(eval_error("default(1 + 'a', 0)")) == "cannot apply '+' to number and string"
    assert "cannot read 'x' of string" in str(eval_error("default(input.plan.x, 0)"))


def test_and_or_short_circuit() -> None:
    assert ev("false && input.missing") is False
    assert ev("true || input.missing") is True
    assert ev("input.plan == 'free' and input.missing.x") is False


# Paths and scope ---------------------------------------------------------------------------

PATHS = [
    ("input", SCOPE["input"]),
    ("input.email", "Ada@Example.com"),
    ("input.items", [10, 20, 30]),  # the key "items", never dict.items
    ("input.items[0]", 10),
    ("input.items[-1]", 30),
    ("input['items'][2]", 30),
    ("input.user.tags[1]", "y"),
    ("input.user['first-name']", "A"),
    ("input['__class__']", "data"),  # a data key, not an attribute
    ("input.items[input.n - 2]", 20),
    ("input.items[index]", 20),
    ("input.user[lower('NAME')]", "Ada"),
    ("steps.validate-user.output.email", "ada@example.com"),
    ("steps.validate-user.status", "completed"),
    ("steps['validate-user'].output['score']", 7),
    ("steps.a.output", 5),
    ("steps.a-b.output.v", "ab"),
    ("steps.a-b.output", {"v": "ab"}),
    ("steps.a.output-1", 4),  # hyphen after a key is subtraction
    ("steps.a.output - steps.a.output", 0),
    ("steps.b.output", None),
    ("steps.b.status", "skipped"),
    ("item", {"sku": "s-1", "qty": 2}),
    ("item.qty * 10", 20),
    ("index", 1),
    ("execution.id", "ex-1"),
    ("workflow.name", "onboarding"),
    ("workflow.version", "1.2.0"),
    ("input.user.true", None),  # any word after '.' is a key
]


@pytest.mark.parametrize(("source", "expected"), PATHS)
def test_paths(source: str, expected: Any) -> None:
    scope = make_scope()
    assert ev(source, scope) == expected


def test_step_ids_with_hyphens_match_the_whole_known_id() -> None:
    expr = compile_expression("steps.a-b.output.v + steps.a.status", IDS)
    assert expr.step_refs == frozenset({"a-b", "a"})
    assert expr.evaluate(SCOPE) == "abcompleted"
    # "a-b" without a step of that id is not read as steps.a minus b
    error = compile_error("steps.a-c.output")
    assert error.message.startswith("unknown step id 'a-c'; did you mean")
    assert error.column == 6


@pytest.mark.parametrize(
    ("source", "refs", "uses_item"),
    [
        ("input.email", set(), False),
        ("steps.validate-user.output.email == steps.a.output", {"validate-user", "a"}, False),
        ("default(steps.a-b.output, steps.b.output)", {"a-b", "b"}, False),
        ("steps['fan'].output[index]", {"fan"}, True),
        ("item.sku", set(), True),
        ("len([index])", set(), True),
        ("'item' + 'index'", set(), False),
        ("input.item", set(), False),
    ],
)
def test_collects_step_refs_and_item_use(source: str, refs: set[str], uses_item: bool) -> None:
    expr = compile_expression(source, IDS)
    assert expr.step_refs == frozenset(refs)
    assert expr.uses_item is uses_item


def test_source_is_the_stripped_text() -> None:
    assert compile_expression("  input.email ", IDS).source == "input.email"
    assert compile_condition("${ input.n > 1 }", IDS).source == "input.n > 1"


# Compile errors ----------------------------------------------------------------------------

COMPILE_ERRORS = [
    # (source, column, message fragment)
    ("inpt.email", 0, "unknown name 'inpt'; did you mean 'input'?"),
    ("input.x == itme", 11, "did you mean 'item'?"),
    ("zzz", 0, "unknown name 'zzz' (known roots: input, steps"),
    ("True", 0, "did you mean 'true'?"),
    ("None", 0, "did you mean 'null'?"),
    (
        "steps.validat-user.output",
        6,
        "unknown step id 'validat-user'; did you mean 'validate-user'?",
    ),
    ("steps.nope.output", 6, "unknown step id 'nope' (known steps: a, a-b, b, create-account, fan"),
    ("steps.a.outptu", 8, "steps.a must be followed by .output or .status; did you mean 'output'?"),
    ("steps.a", 6, "steps.a must be followed by .output or .status"),
    ("steps.a[0]", 8, "steps.a must be followed by .output or .status"),
    ("steps[input.x].output", 6, "a step id after steps must be written literally"),
    ("steps", 0, "use steps.<id>.output, not steps alone"),
    ("steps.", 6, "expected a step id after 'steps.'"),
    ("workflow.nmae", 9, "workflow has no field 'nmae'; did you mean 'name'?"),
    ("workflow.owner", 9, "workflow has no field 'owner' (it has: name, version)"),
    ("execution.uid", 10, "did you mean 'id'?"),
    ("execution", 0, "use execution.id, not execution alone"),
    ("workflow", 0, "use workflow.name or workflow.version"),
    ("lenn(input)", 0, "unknown function 'lenn'; did you mean 'len'?"),
    ("print(1)", 0, "unknown function 'print' (functions: len, contains"),
    ("input(1)", 0, "unknown function 'input'"),
    ("len", 0, "'len' is a function: call it as len(...)"),
    ("len(1, 2)", 0, "len() takes 1 argument (2 given)"),
    ("contains('a')", 0, "contains() takes 2 arguments (1 given)"),
    ("default()", 0, "default() takes 2 arguments (0 given)"),
    ("input.items()", 0, "only these functions can be called"),
    ("'abc'.upper()", 0, "only these functions can be called"),
    ("1 ** 2", 2, "'**' is not supported"),
    ("7 // 2", 2, "'//' is not supported; use '/'"),
    ("7 % 2", 2, "'%' is not supported"),
    ("a = 1", 2, "use '==' to compare"),
    ("1 & 2", 2, "use '&&' or 'and'"),
    ("1 | 2", 2, "use '||' or 'or'"),
    ("true ? 1 : 2", 5, "conditional expressions are not supported"),
    ("1 if true else 2", 2, "'if' is not supported in expressions"),
    ("input is null", 6, "'is' is not supported in expressions; use '==' or '!='"),
    ("[x for x in input.items]", 3, "'for' is not supported"),
    ("lambda: 1", 0, "'lambda' is not supported"),
    ("import os", 0, "'import' is not supported"),
    ("(1, 2)", 0, "tuples are not supported in expressions; use a list"),
    ("1, 2", 0, "tuples are not supported"),
    ("{1, 2}", 0, "sets are not supported"),
    ("input.items[0:2]", 12, "slices are not supported"),
    ("[*input.items]", 1, "unpacking with '*' is not supported"),
    ("len(*input.items)", 0, "len() takes plain arguments only"),
    ("'a' 'b'", 4, "two strings in a row"),
    ("'abc", 0, "unterminated string literal"),
    ("'a\\qb'", 2, "invalid escape sequence '\\q'"),
    ("'\\u12'", 1, "invalid escape sequence '\\u'"),
    ("007", 0, "leading zeros"),
    ("1_000", 0, "invalid number"),
    ("0x1f", 0, "invalid number"),
    ("1j", 0, "invalid number"),
    ("input.", 5, "expected a key name after '.'"),
    ("input . email", 6, "expected a key name after '.'"),
    ("input.0", 5, "write [0] to index a list"),
    (".5", 0, "0.5 for a number"),
    ("input.x +", 9, "incomplete expression"),
    ("(1 + 2", 0, "'(' was never closed"),
    ("1 + 2)", 5, "unmatched ')'"),
    ("[1, 2)", 5, "syntax error"),
    ("1 2", 2, "syntax error: invalid syntax"),
    ("input == !input", 9, "syntax error"),
    ("", 0, "empty expression"),
    ("   \n ", 0, "empty expression"),
    ("input.x # comment", 8, "unexpected character '#'"),
    ("input;1", 5, "unexpected character ';'"),
    ("${input}", 0, "expressions cannot be nested"),
    ("`x`", 0, "unexpected character '`'"),
    ("1 ＋ 2", 2, "unexpected character '＋'"),
    ("٣", 0, "unexpected character"),
    ("f'{input}'", 1, "syntax error"),
    ("b'x'", 1, "syntax error"),
    ("input.__class__", 6, "keys starting with '__' are not allowed"),
    ("__import__('os')", 0, "names starting with '__' are not allowed"),
]


@pytest.mark.parametrize(("source", "column", "fragment"), COMPILE_ERRORS)
def test_compile_errors(source: str, column: int, fragment: str) -> None:
    error = compile_error(source)
    assert fragment in error.message
    assert error.column == column
    assert str(error) == error.message
    assert isinstance(error, ValueError)
    assert isinstance(error, MagicFlowError)


def test_did_you_mean_uses_the_known_step_ids() -> None:
    with pytest.raises(ExpressionError, match="did you mean 'charge-items'"):
        compile_expression("steps.charge-item.output", ["charge-items", "kyc"])
    with pytest.raises(ExpressionError, match=r"\(known steps: none\)"):
        compile_expression("steps.x.output", [])


SECURITY = [
    "__import__('os').system('true')",
    "().__class__",
    "().__class__.__bases__[0].__subclasses__()",
    "[].__class__",
    "''.__class__.__mro__",
    "input.__dict__",
    "input.items.__self__",
    "len.__globals__",
    "lower.__code__",
    "input.keys()",
    "input.items()",
    "input.get('email')",
    "'{0.__class__}'.format(input)",
    "input.format_map",  # fine as a key lookup; the call form is what must fail
    "open('/etc/passwd')",
    "eval('1')",
    "exec('1')",
    "getattr(input, 'items')",
    "type(input)",
    "globals()",
    "__builtins__",
    "(lambda: 1)()",
    "[c for c in ''.__class__.__mro__]",
    "{**input}",
    "[*input]",
    "input.x := 1",
    "input[1:2:3]",
    "import os",
    "yield 1",
    "await input",
    "f'{input.__class__}'",
    "input if true else input",
    "1 ** 100000000",
]


@pytest.mark.parametrize("source", SECURITY)
def test_security_rejects_python_escapes(source: str) -> None:
    if source == "input.format_map":
        assert ev("default(input.format_map, 'data key')") == "data key"
        return
    with pytest.raises(ExpressionError):
        compile_expression(source, IDS)


def test_data_that_looks_like_code_is_only_data() -> None:
    scope = make_scope()
    scope["input"]["code"] = "__import__('os').system('false')"
    assert ev("input.code", scope) == "__import__('os').system('false')"
    assert ev("len(input.code) > 0", scope) is True


def test_nesting_and_length_limits_are_compile_errors() -> None:
    deep = "(" * 60 + "1" + ")" * 60
    assert "nested brackets" in compile_error(deep).message
    long_sum = " + ".join(["1"] * 1000)
    assert "nested more than" in compile_error(long_sum).message
    nots = "not " * 2400 + "true"
    assert compile_error(nots).message
    huge = "1" + " + 1" * 5000
    assert "longer than" in compile_error(huge).message
    chained = "input" + "[0]" * 3000
    assert compile_error(chained).message
    fine = " + ".join(["input.n"] * 90)
    assert ev(fine) == 270


def test_deep_expressions_compile_quickly() -> None:
    started = time.perf_counter()
    for source in ["[" * 51 + "]" * 51, "-" * 9999 + "1", "!" * 9999 + "x", "'" + "a" * 9998]:
        with pytest.raises(ExpressionError):
            compile_expression(source, IDS)
    assert time.perf_counter() - started < 5


# Run-time errors ---------------------------------------------------------------------------

RUNTIME_ERRORS = [
    ("input.plan2", "input has no key 'plan2'", True),
    ("input.user.nick", "input.user has no key 'nick'", True),
    ("input.user['first-name'].x", "cannot read 'x' of string (input.user['first-name'])", False),
    (
        "steps.create-account.output",
        "steps.create-account is not available: the step has not run",
        True,
    ),
    ("steps.b.output.email", "cannot read 'email' of null (steps.b.output)", True),
    ("input.none[0]", "cannot read 0 of null (input.none)", True),
    ("input.items[3]", "index 3 is out of range for input.items (length 3)", True),
    ("input.items[-4]", "index -4 is out of range for input.items (length 3)", True),
    ("input.items.first", "cannot read 'first' of list (input.items); index it with [n]", False),
    ("input.items[1.5]", "a list index must be an integer, not 1.5 (input.items)", False),
    ("input.items[true]", "a list index must be an integer, not True (input.items)", False),
    ("input.items[input.n]", "index 3 is out of range for input.items (length 3)", True),
    ("input[input.items]", "a map key must be a string, not list (input)", False),
    ("input.n.x", "cannot read 'x' of number (input.n)", False),
    ("lower(input.plan)[0]", "cannot read 0 of string (lower(...))", False),
    ("[1, 2][5]", "index 5 is out of range for [...] (length 2)", True),
    ("1 + 'a'", "cannot apply '+' to number and string", False),
    ("'a' + 1", "cannot apply '+' to string and number", False),
    ("'a' * 3", "cannot apply '*' to string and number", False),
    ("[1] - [1]", "cannot apply '-' to list and list", False),
    ("true + 1", "cannot apply '+' to boolean and number", False),
    ("null + 1", "cannot apply '+' to null and number", False),
    ("-'a'", "cannot apply unary '-' to string", False),
    ("1 / 0", "division by zero", False),
    ("1.0 / 0", "division by zero", False),
    ("1 < 'a'", "cannot compare number and string with '<'", False),
    ("null >= 1", "cannot compare null and number with '>='", False),
    ("[1] < [2]", "cannot compare list and list with '<'", False),
    ("1 in 5", "'in': expected a string, list or map, not number", False),
    ("1 in 'abc'", "'in': cannot look for number in a string", False),
    ("1 not in null", "'not in': expected a string, list or map, not null", False),
    ("len(3)", "len() expects a string, list or map, not number", False),
    ("len(null)", "len() expects a string, list or map, not null", False),
    ("contains(3, 1)", "contains(): expected a string, list or map, not number", False),
    ("starts_with(1, 'a')", "starts_with() expects strings, got number, string", False),
    ("ends_with('a', null)", "ends_with() expects strings, got string, null", False),
    ("lower(1)", "lower() expects strings, got number", False),
    ("upper(['a'])", "upper() expects strings, got list", False),
    ("{1: 2}", "map keys must be strings, not number", False),
]


@pytest.mark.parametrize(("source", "message", "missing"), RUNTIME_ERRORS)
def test_runtime_errors(source: str, message: str, missing: bool) -> None:
    error = eval_error(source)
    assert str(error) == message
    assert error.expression == source
    assert isinstance(error, MagicFlowError)
    assert "\n" not in str(error)
    # default() tolerates what is missing, and only that
    guarded = compile_expression(f"default({source}, 'fallback')", IDS)
    if missing:
        assert guarded.evaluate(SCOPE) == "fallback"
    else:
        with pytest.raises(EvaluationError):
            guarded.evaluate(SCOPE)


@pytest.mark.parametrize(
    ("scope", "message"),
    [
        ({}, "input is not available here"),
        ({"input": None}, "cannot read 'email' of null (input)"),
        ({"input": [1]}, "cannot read 'email' of list (input); index it with [n]"),
    ],
)
def test_runtime_errors_on_odd_scopes(scope: dict[str, Any], message: str) -> None:
    for source in ("input.email", "input.email == 1"):  # the fast path and the evaluator agree
        with pytest.raises(EvaluationError) as info:
            compile_expression(source, IDS).evaluate(scope)
        assert str(info.value) == message


def test_item_outside_for_each_is_a_clear_runtime_error() -> None:
    for source in ("item.sku", "index + 1"):
        with pytest.raises(EvaluationError, match="only available in a for_each step"):
            compile_expression(source, IDS).evaluate({"input": {}})


def test_steps_missing_from_the_scope() -> None:
    with pytest.raises(EvaluationError, match="steps is not available here"):
        compile_expression("steps.a.output", IDS).evaluate({"input": {}})


def test_scope_may_hold_any_mapping_and_sequence_types() -> None:
    from types import MappingProxyType

    scope = {"input": MappingProxyType({"xs": (1, 2), "m": MappingProxyType({"k": "v"})})}
    assert compile_expression("input.xs[1] + len(input.m)", IDS).evaluate(scope) == 3
    assert compile_template("${input}", IDS).render(scope) == {"xs": [1, 2], "m": {"k": "v"}}


# compile_condition -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${input.plan == 'pro'}", True),
        ("  ${ input.n > 5 }  ", False),
        ("${input.items}", [10, 20, 30]),
        ("input.plan == 'pro'", True),
        ("  input.n  ", 3),
        ("${ {'a': 1}['a'] }", 1),
        ("${ '}' + '{' }", "}{"),
        (True, True),
        (False, False),
    ],
)
def test_compile_condition(text: str | bool, expected: Any) -> None:
    assert compile_condition(text, IDS).evaluate(SCOPE) == expected


@pytest.mark.parametrize(
    ("text", "column", "fragment"),
    [
        ("${input.x} and more", 11, "unexpected text after '}'"),
        ("${a} ${b}", 2, "unknown name 'a'"),
        ("${input.n} ${input.n}", 11, "unexpected text after '}'"),
        ("is ${input.x}", 0, "a condition must be a single ${...} expression"),
        ("${input.plan == 'pro'", 0, "unclosed '${'"),
        ("  ${input.x + }", 13, "incomplete expression"),
        ("${}", 0, "empty expression"),
        ("inpt == 1", 0, "did you mean 'input'?"),
    ],
)
def test_compile_condition_errors(text: str, column: int, fragment: str) -> None:
    with pytest.raises(ExpressionError) as info:
        compile_condition(text, IDS)
    assert fragment in info.value.message
    assert info.value.column == column


# Templates ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("${input.items}", [10, 20, 30]),
        ("${input.n}", 3),
        ("${input.flag}", True),
        ("${input.none}", None),
        ("${ input.user }", SCOPE["input"]["user"]),
        (" ${input.n}", " 3"),
        ("n=${input.n}", "n=3"),
        ("${input.n}${input.n}", "33"),
        ("${input.ratio} ${input.flag} ${false} ${input.none}", "0.5 true false null"),
        ("items: ${input.items}", "items: [10, 20, 30]"),
        ("user: ${input.user.tags}, ${ {'k': 'é'} }", 'user: ["x", "y"], {"k": "é"}'),
        ("Hi ${input.user.name}!", "Hi Ada!"),
        ("${'${'}", "${"),
        ("cost: $${input.n}", "cost: ${input.n}"),
        ("$${input.n} is ${input.n}", "${input.n} is 3"),
        ("$ {input.n} $x }", "$ {input.n} $x }"),
        ("no expressions", "no expressions"),
        ("", ""),
        ("${steps.a-b.output.v}-${steps.a.output}", "ab-5"),
        ("${item.sku}#${index}", "s-1#1"),
        ("${ {'a': {'b': 1}} }", {"a": {"b": 1}}),
        ("${ '}' }", "}"),
        ("ends with ${'}'}}", "ends with }}"),
        (42, 42),
        (1.5, 1.5),
        (True, True),
        (None, None),
    ],
)
def test_template_strings(value: Any, expected: Any) -> None:
    result = compile_template(value, IDS).render(SCOPE)
    assert result == expected
    assert type(result) is type(expected)


def test_template_nested_values() -> None:
    value = {
        "email": "${input.email}",
        "list": ["${input.n}", "x${index}", 7, {"deep": ["${item}"]}],
        "const": {"k": [1, 2]},
        "${not a key}": "key strings are never templates",
    }
    template = compile_template(value, IDS)
    assert template.render(SCOPE) == {
        "email": "Ada@Example.com",
        "list": [3, "x1", 7, {"deep": [{"sku": "s-1", "qty": 2}]}],
        "const": {"k": [1, 2]},
        "${not a key}": "key strings are never templates",
    }
    assert template.uses_item is True
    assert template.is_constant is False
    assert template.source is value


def test_template_step_refs_and_flags() -> None:
    template = compile_template(
        {"a": "${steps.a.output}", "b": ["x ${steps.validate-user.status} ${input.n}"]}, IDS
    )
    assert template.step_refs == frozenset({"a", "validate-user"})
    assert template.uses_item is False
    assert template.is_constant is False
    constant = compile_template({"a": [1, {"b": "no expression: $${x}"}]}, IDS)
    assert constant.is_constant is True
    assert constant.step_refs == frozenset()
    assert constant.render({}) == {"a": [1, {"b": "no expression: ${x}"}]}


def test_constant_templates_render_fresh_containers() -> None:
    value = {"a": [1, {"b": 2}]}
    template = compile_template(value, IDS)
    assert template.is_constant
    first = template.render({})
    first["a"][1]["b"] = 99
    first["a"].append(3)
    assert template.render({}) == {"a": [1, {"b": 2}]}
    assert value == {"a": [1, {"b": 2}]}
    assert compile_template("text", IDS).render({}) == "text"


def test_typed_values_are_copies_of_the_scope() -> None:
    scope = make_scope()
    rendered = compile_template({"u": "${input.user}", "i": "${input.items}"}, IDS).render(scope)
    rendered["u"]["tags"].append("z")
    rendered["i"].clear()
    assert scope == make_scope()
    assert compile_expression("input.user", IDS).evaluate(scope) is scope["input"]["user"]


def test_template_errors_list_every_bad_string() -> None:
    value = {
        "a": "${inpt.x}",
        "b": ["fine ${input.n}", "x ${steps.zz.output} y"],
        "c": "${input.x",
        "d": {"e": "${1 +}", "f": "ok"},
        "g": "${input.n} and ${ 1 ** 2 }",
    }
    with pytest.raises(TemplateError) as info:
        compile_template(value, IDS)
    assert info.value.errors == [
        (("a",), 2, "unknown name 'inpt'; did you mean 'input'?"),
        (
            ("b", 1),
            10,
            "unknown step id 'zz' (known steps: a, a-b, b, create-account, fan, validate-user)",
        ),
        (("c",), 0, "unclosed '${': missing '}'"),
        (("d", "e"), 5, "incomplete expression"),
        (("g",), 20, "'**' is not supported"),
    ]
    assert info.value.path == ("a",)
    assert info.value.column == 2
    assert isinstance(info.value, ExpressionError)


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ({"when": date(2024, 1, 1)}, (("when",), 0, "unsupported value of type date")),
        ({1: "x"}, ((), 0, "map keys must be strings, not 1")),
        ([b"x"], ((0,), 0, "unsupported value of type bytes")),
    ],
)
def test_template_rejects_non_json_values(value: Any, error: tuple[Any, ...]) -> None:
    with pytest.raises(TemplateError) as info:
        compile_template(value, IDS)
    assert info.value.errors == [error]


def test_template_render_errors_are_evaluation_errors() -> None:
    template = compile_template({"x": ["ok", "${input.missing}"]}, IDS)
    with pytest.raises(EvaluationError, match="input has no key 'missing'"):
        template.render(SCOPE)
    with pytest.raises(EvaluationError, match="cannot apply"):
        compile_template("total: ${input.n + 'a'}", IDS).render(SCOPE)


def test_tuples_render_as_lists() -> None:
    assert compile_template(("${input.n}", 2), IDS).render(SCOPE) == [3, 2]


# Immutability, equality, threads -----------------------------------------------------------


def test_compiled_objects_are_frozen_and_comparable() -> None:
    expr = compile_expression("input.n > 1", IDS)
    with pytest.raises(dataclasses.FrozenInstanceError):
        expr.source = "x"  # type: ignore[misc]
    assert expr == compile_expression("input.n > 1", ["other", *IDS])
    assert hash(expr) == hash(compile_expression("input.n > 1", IDS))
    assert expr != compile_expression("input.n > 2", IDS)
    template = compile_template({"a": "${input.n}", "b": [1]}, IDS)
    with pytest.raises(dataclasses.FrozenInstanceError):
        template.is_constant = True  # type: ignore[misc]
    assert template == compile_template({"b": [1], "a": "${input.n}"}, IDS)
    assert len({template, compile_template({"a": "${input.n}", "b": [1]}, IDS)}) == 1
    assert isinstance(expr, Expression)
    assert isinstance(template, Template)
    assert copy.deepcopy(expr).evaluate(SCOPE) is True
    assert "input.n > 1" in repr(expr)


def test_compiled_objects_pickle() -> None:
    expr = compile_expression("steps.a-b.output.v + '!'", IDS)
    template = compile_template({"x": ["${steps.a-b.output.v}", "n=${input.n}"]}, IDS)
    for obj in (expr, template):
        clone = pickle.loads(pickle.dumps(obj))
        assert clone == obj
    assert pickle.loads(pickle.dumps(expr)).evaluate(SCOPE) == "ab!"
    assert pickle.loads(pickle.dumps(template)).render(SCOPE) == {"x": ["ab", "n=3"]}


def test_shared_across_threads() -> None:
    condition = compile_expression("default(input.k, 0) * 2 + len(input.s) == input.want", IDS)
    template = compile_template({"k": "${input.k}", "s": "s=${input.s}"}, IDS)
    failures: list[str] = []

    def work(k: int) -> None:
        for i in range(300):
            scope = {"input": {"k": k + i, "s": "x" * k, "want": (k + i) * 2 + k}}
            if condition.evaluate(scope) is not True:
                failures.append(f"condition {k} {i}")
            if template.render(scope) != {"k": k + i, "s": "s=" + "x" * k}:
                failures.append(f"template {k} {i}")

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


# Properties --------------------------------------------------------------------------------

ALPHABET = st.sampled_from(
    [
        *"abcdefghijklmnopqrstuvwxyz_-.[](){}'\",:!=<>+-*/%&|$?#@\\ \n01239eE",
        "input", "steps", "steps.a-b.output", "steps.a.", "item", "index", "execution.id",
        "workflow.name", "true", "false", "null", "and", "or", "not", "in", "len(", "default(",
        "contains(", "lower(", "${", "}", "__", "lambda", "if", "for", ".output", ".status",
        "'x'", "1.5", "==", "&&", "||", "[0]", " ", "__class__",
    ]
)  # fmt: skip
TOKENS = st.lists(ALPHABET, max_size=40).map("".join)


def _compile(source: str) -> Expression | ExpressionError:
    try:
        return compile_expression(source, IDS)
    except ExpressionError as exc:
        return exc


def _check_compile(source: str) -> Expression | None:
    result = _compile(source)
    if isinstance(result, Expression):
        return result
    assert isinstance(result.column, int)
    assert 0 <= result.column <= len(source)
    assert result.message
    return None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200))
def test_random_text_only_raises_expression_error(source: str) -> None:
    _check_compile(source)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TOKENS)
def test_random_token_soup_compiles_or_fails_cleanly_and_evaluates_cleanly(source: str) -> None:
    expr = _check_compile(source)
    if expr is None:
        return
    message = ""
    try:
        expr.evaluate(SCOPE)
    except EvaluationError as exc:
        message = str(exc) or "empty message"
    assert "\n" not in message


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(TOKENS, st.text(max_size=20)), max_size=5).map("".join))
def test_random_templates_only_raise_template_error(text: str) -> None:
    errors: list[tuple[tuple[str | int, ...], int, str]] = []
    try:
        template = compile_template({"k": [text]}, IDS)
    except TemplateError as exc:
        errors = exc.errors
    else:
        with contextlib.suppress(EvaluationError):
            template.render(SCOPE)
    for path, column, message in errors:
        assert path == ("k", 0)
        assert 0 <= column <= len(text)
        assert message
