"""Durations as workflows write them: ``250ms``, ``5s``, ``1m30s``, ``2h``, ``1d`` or seconds.

Units come largest first, each at most once (``1h30m``, not ``30m1h``); every part may have
a fraction (``1.5h``). A bare number, or a string holding one, counts seconds. Zero,
negative and absurdly long durations are errors.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache

from magicflow.dsl.text import describe

__all__ = [
    "DURATION_PATTERN",
    "MAX_DURATION",
    "DurationError",
    "format_duration",
    "parse_duration",
]

#: The longest duration accepted (ten years, in seconds): timers further out are mistakes.
MAX_DURATION = 3650 * 86400.0

_NUM = r"\d+(?:\.\d+)?"
#: The textual form, shared with the JSON Schema (ECMA 262 compatible).
DURATION_PATTERN = (
    rf"^(?:{_NUM}|(?=\d)(?:{_NUM}d)?(?:{_NUM}h)?(?:{_NUM}m)?(?:{_NUM}s)?(?:{_NUM}ms)?)$"
)
_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_PARTS = re.compile(
    rf"(?=\d)(?:(?P<d>{_NUM})d)?(?:(?P<h>{_NUM})h)?(?:(?P<m>{_NUM})m)?"
    rf"(?:(?P<s>{_NUM})s)?(?:(?P<ms>{_NUM})ms)?"
)
_NUMBER = re.compile(r"[+-]?\d+(?:\.\d+)?")
_HELP = "use a number of seconds or a value like 250ms, 5s, 1m30s, 2h or 1d"


class DurationError(ValueError):
    """A value that is not a valid duration; ``str()`` is a complete sentence for users."""


def parse_duration(value: object) -> float:
    """Return ``value`` in seconds, or raise :class:`DurationError`."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise DurationError(f"expected a duration ({_HELP}), got {describe(value)}")
    seconds = _parse_text(value.strip()) if isinstance(value, str) else float(value)
    if math.isnan(seconds) or seconds <= 0:
        raise DurationError(f"a duration must be positive, got {value!r}")
    if seconds > MAX_DURATION:
        raise DurationError(f"duration {value!r} is too long (the maximum is 3650d)")
    return seconds


@lru_cache(maxsize=512)
def _parse_text(text: str) -> float:
    if _NUMBER.fullmatch(text):
        return float(text)
    match = _PARTS.fullmatch(text)
    if match is None:
        raise DurationError(f"invalid duration {text!r}: {_HELP}")
    return sum(float(part) * _UNITS[unit] for unit, part in match.groupdict().items() if part)


def format_duration(seconds: float) -> str:
    """The shortest text that :func:`parse_duration` reads back as ``seconds``."""
    millis = round(seconds * 1000)
    if millis <= 0:
        return "0s"
    parts: list[str] = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        count, millis = divmod(millis, size)
        if count:
            parts.append(f"{count}{unit}")
    if millis:
        parts.append(f"{millis}ms")
    return "".join(parts)
