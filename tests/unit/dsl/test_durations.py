import pytest

from magicflow.dsl import DurationError, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25),
        ("5s", 5),
        ("1m30s", 90),
        ("2h", 7200),
        ("1d", 86400),
        ("1.5h", 5400),
        ("1h30m", 5400),
        ("1d2h3m4s5ms", 93784.005),
        (30, 30),
        (0.5, 0.5),
        ("45", 45),
        (" 10s ", 10),
    ],
)
def test_valid_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text", ["abc", "5x", "1s1m", "s", "", "1 m", "m5", "1.s", "5ss", "1h1h", "--5s"]
)
def test_garbage_is_an_error(text: str) -> None:
    with pytest.raises(DurationError, match="invalid duration"):
        parse_duration(text)


@pytest.mark.parametrize("value", [0, "0s", "0", -1, "-5", 0.0, "0ms"])
def test_zero_and_negative_are_errors(value: object) -> None:
    with pytest.raises(DurationError, match="must be positive"):
        parse_duration(value)


@pytest.mark.parametrize("value", [True, None, [1], {"s": 1}])
def test_wrong_types_are_errors(value: object) -> None:
    with pytest.raises(DurationError, match="expected a duration"):
        parse_duration(value)


def test_absurdly_long_is_an_error() -> None:
    with pytest.raises(DurationError, match="too long"):
        parse_duration("99999d")


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.25, "250ms"), (90, "1m30s"), (86400, "1d"), (3661.5, "1h1m1s500ms")]
)
def test_format_round_trips(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == pytest.approx(seconds)
