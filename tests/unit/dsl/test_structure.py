"""Keys, types, enum values, patterns and ranges: the checks derived from dsl.schema."""

import pytest

from tests.unit.dsl.support import MINIMAL, check, located, messages, only, with_steps


def test_minimal_workflow_is_valid() -> None:
    assert check(MINIMAL).valid


@pytest.mark.parametrize("key", ["name", "version", "steps"])
def test_required_top_level_keys(key: str) -> None:
    text = "\n".join(line for line in MINIMAL.splitlines() if not line.startswith(key))
    if key == "steps":
        text = 'name: demo\nversion: "1.0"\n'
    assert f"missing required key {key!r}" in messages(text)


def test_unknown_key_did_you_mean_at_the_key() -> None:
    diagnostic = only(with_steps("- id: a\n  function: f\n  depend_on: [b]\n"))
    assert diagnostic.message == "unknown key 'depend_on' (did you mean 'depends_on'?)"
    assert (diagnostic.line, diagnostic.col) == (6, 5)


def test_unknown_key_without_a_close_match() -> None:
    assert messages(MINIMAL + "colour: red\n") == ["unknown key 'colour'"]


def test_unknown_key_that_belongs_in_a_nested_record() -> None:
    text = with_steps("- id: a\n  function: f\n  max_attempts: 3\n")
    assert messages(text) == ["unknown key 'max_attempts' (it belongs under 'retry_config')"]


def test_unknown_top_level_key_did_you_mean() -> None:
    assert messages(MINIMAL + "timout: 5s\n") == ["unknown key 'timout' (did you mean 'timeout'?)"]


@pytest.mark.parametrize(
    ("head", "message"),
    [
        (
            "timeout_action: fial\n",
            "invalid 'timeout_action' 'fial': expected 'fail' or 'cancel' (did you mean 'fail'?)",
        ),
        ("timeout_action: 3\n", "'timeout_action' must be 'fail' or 'cancel', not a number"),
    ],
)
def test_workflow_enum(head: str, message: str) -> None:
    assert messages(MINIMAL + head) == [message]


def test_step_enum_did_you_mean() -> None:
    text = with_steps("- id: a\n  function: f\n  timeout: 1s\n  timeout_action: skp\n")
    assert messages(text) == [
        "invalid 'timeout_action' 'skp': expected 'fail', 'skip', 'retry' or 'fallback' "
        "(did you mean 'skip'?)"
    ]


def test_retry_strategy_did_you_mean() -> None:
    text = with_steps("- id: a\n  function: f\n  retry_config: {strategy: exponentail}\n")
    assert "(did you mean 'exponential'?)" in messages(text)[0]


@pytest.mark.parametrize("version", ["1.0", "2", "1.10"])
def test_bare_number_version_hints_to_quote_it(version: str) -> None:
    text = MINIMAL.replace('version: "1.0"', f"version: {version}")
    diagnostic = only(text)
    assert diagnostic.message == (
        f"'version' must be a string, not a number; quote it: version: \"{version}\""
    )
    assert (diagnostic.line, diagnostic.col) == (2, 10)


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("user-onboarding", True),
        ("a", True),
        ("User", False),
        ("9lives", False),
        ("a_b", False),
        ("a" * 64, False),
    ],
)
def test_workflow_name_pattern(name: str, ok: bool) -> None:
    result = check(MINIMAL.replace("name: demo", f"name: {name}"))
    assert result.valid is ok
    if not ok:
        assert result.diagnostics[0].message.startswith(f"invalid 'name' '{name[:39]}")


@pytest.mark.parametrize(
    ("step_id", "ok"),
    [
        ("validate-user", True),
        ("a1-b2", True),
        ("Validate", False),
        ("a--b", False),
        ("a-", False),
        ("-a", False),
        ("a_b", False),
    ],
)
def test_step_id_pattern(step_id: str, ok: bool) -> None:
    assert check(with_steps(f"- id: {step_id!r}\n  function: f\n")).valid is ok


def test_step_kind_is_required() -> None:
    diagnostic = only(with_steps("- id: a\n"))
    assert diagnostic.message == "a step needs one of 'function', 'workflow', 'wait_for' or 'sleep'"
    assert diagnostic.line == 4


def test_step_has_exactly_one_kind() -> None:
    diagnostic = only(with_steps("- id: a\n  function: f\n  sleep: 5s\n"))
    assert diagnostic.message.startswith("'sleep' cannot be combined with 'function'")
    assert (diagnostic.line, diagnostic.col) == (6, 5)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("retry_config", "{max_attempts: 0}", "'max_attempts' must be at least 1, got 0"),
        (
            "retry_config",
            "{max_attempts: 2.5}",
            "'max_attempts' must be a whole number, not a number",
        ),
        (
            "retry_config",
            "{max_attempts: true}",
            "'max_attempts' must be a whole number, not a boolean",
        ),
        ("retry_config", "{multiplier: 0.5}", "'multiplier' must be at least 1, got 0.5"),
        ("retry_config", "{jitter: maybe}", "'jitter' must be true or false, not a string"),
        (
            "retry_config",
            "{initial_interval: 0s}",
            "'initial_interval': a duration must be positive, got '0s'",
        ),
        (
            "retry_config",
            "{non_retryable_errors: [1]}",
            "'non_retryable_errors' entries must be a string, not a number",
        ),
        ("retry_config", "5", "'retry_config' must be a mapping, not a number"),
        (
            "circuit_breaker",
            "{failure_threshold: 0}",
            "'failure_threshold' must be at least 1, got 0",
        ),
        (
            "circuit_breaker",
            "{half_open_max_calls: 0}",
            "'half_open_max_calls' must be at least 1, got 0",
        ),
        ("circuit_breaker", "{timeout: -1}", "'timeout': a duration must be positive, got -1"),
        (
            "timeout",
            "soon",
            "'timeout': invalid duration 'soon': use a number of seconds or a value like "
            "250ms, 5s, 1m30s, 2h or 1d",
        ),
        (
            "timeout",
            "[1]",
            "'timeout': expected a duration (use a number of seconds or a value like "
            "250ms, 5s, 1m30s, 2h or 1d), got a list",
        ),
        (
            "continue_on_failure",
            "'yes'",
            "'continue_on_failure' must be true or false, not a string",
        ),
        (
            "queue",
            "'bad queue'",
            "invalid 'queue' 'bad queue': use letters, digits, '_', '.' or '-'",
        ),
        ("depends_on", "a", "'depends_on' must be a list, not a string (write [a])"),
        ("condition", "[1]", "'condition' must be a boolean or a string, not a list"),
        ("fallback", "nope", "'fallback' must be a list or a mapping, not a string"),
        ("fallback", "[]", "'fallback' must not be empty"),
        ("fallback", "{}", "a fallback needs one of 'output' or 'function'"),
        (
            "fallback",
            "{output: 1, function: g}",
            "'function' cannot be combined with 'output': "
            "a fallback has exactly one of 'output' or 'function'",
        ),
        ("fallback", "{output: 1, input: {}}", "'input' needs 'function'"),
        ("compensation", "{input: {}}", "missing required key 'function'"),
        ("max_parallel", "2", "'max_parallel' needs 'for_each'"),
    ],
)
def test_field_rules(field: str, value: str, message: str) -> None:
    assert messages(with_steps(f"- id: a\n  function: f\n  {field}: {value}\n")) == [message]


def test_max_parallel_at_least_one() -> None:
    text = with_steps("- id: a\n  function: f\n  for_each: ${input.xs}\n  max_parallel: 0\n")
    assert messages(text) == ["'max_parallel' must be at least 1, got 0"]


def test_multiplier_only_for_exponential() -> None:
    text = with_steps("- id: a\n  function: f\n  retry_config: {strategy: fixed, multiplier: 2}\n")
    assert messages(text) == ["'multiplier' applies only to the exponential strategy, not 'fixed'"]


def test_metadata_is_a_map_of_scalars() -> None:
    assert check(MINIMAL + "metadata: {owner: me, n: 1, ok: true, none: null}\n").valid
    assert messages(MINIMAL + "metadata: {tags: [a]}\n") == [
        "'metadata' values must be strings, numbers, booleans or null, not a list"
    ]


def test_steps_must_be_a_non_empty_list() -> None:
    assert messages('name: demo\nversion: "1"\nsteps: []\n') == ["'steps' must not be empty"]
    assert messages('name: demo\nversion: "1"\nsteps: {a: 1}\n') == [
        "'steps' must be a list, not a mapping"
    ]
    assert messages('name: demo\nversion: "1"\nsteps: [1]\n') == [
        "'steps' entries must be a mapping, not a number"
    ]


def test_duplicate_depends_on_entries() -> None:
    text = with_steps("- id: a\n  function: f\n- id: b\n  function: f\n  depends_on: [a, a]\n")
    assert located(text) == [(8, 21, "duplicate entry 'a' in 'depends_on'")]


def test_every_problem_in_one_pass() -> None:
    text = with_steps(
        """\
        - id: a
          function: f
          timeout: 0
          retry_config: {max_attempts: 0}
          colour: red
        - id: B
          sleep: forever
        """,
        head="timeout_action: nope\n",
    )
    assert len(messages(text)) == 6


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ("function: 'my fn'", "invalid 'function' 'my fn': use a registered function name"),
        ("workflow: Kyc@1", "invalid 'workflow' 'Kyc@1': use a workflow name, or name@version"),
        ("workflow: kyc@", "invalid 'workflow' 'kyc@': use a workflow name, or name@version"),
        ("wait_for: 'two words'", "invalid 'wait_for' 'two words': use letters, digits"),
        ("sleep: 0", "'sleep': a duration must be positive, got 0"),
        ("function: ''", "'function' must not be empty"),
    ],
)
def test_kind_values(step: str, message: str) -> None:
    [found] = messages(with_steps(f"- id: a\n  {step}\n"))
    assert found.startswith(message)


def test_error_type_names() -> None:
    text = with_steps("- id: a\n  function: f\n  retry_config: {non_retryable_errors: [a b]}\n")
    assert messages(text) == [
        "invalid 'non_retryable_errors' entries 'a b': "
        "use an exception class name, like ValidationError"
    ]


def test_kind_values_accepted() -> None:
    text = with_steps(
        """\
        - {id: a, function: billing.charge_card}
        - {id: b, workflow: kyc-check@1.0.0-rc.1}
        - {id: c, wait_for: order.approved}
        - {id: d, sleep: 1.5}
        """
    )
    assert check(text).valid


def test_a_misspelt_kind_is_one_problem_not_two() -> None:
    assert messages(with_steps("- id: a\n  functon: f\n")) == [
        "unknown key 'functon' (did you mean 'function'?)"
    ]
