"""Small helpers for messages: what a value is, and "did you mean" suggestions."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["clip", "describe", "did_you_mean", "one_of", "suggest"]


def describe(value: object) -> str:
    """What kind of YAML value this is, for messages: ``a list``, ``a number``, ``null``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def suggest(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate closest to ``word``, if one is close enough to be a likely typo."""
    options = [c for c in candidates if c != word]
    matches = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if matches:
        return matches[0]
    lowered = word.lower().replace("_", "-")
    for candidate in options:
        if candidate.lower().replace("_", "-") == lowered:
            return candidate
    return None


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` or the empty string."""
    match = suggest(word, candidates)
    return f" (did you mean {match!r}?)" if match else ""


def clip(text: str, limit: int = 40) -> str:
    """``text`` shortened for a message: ``'abcdef…'``."""
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def one_of(words: Iterable[str], conjunction: str = "or") -> str:
    """``'a', 'b' or 'c'``."""
    quoted = [repr(w) for w in words]
    if len(quoted) <= 1:
        return "".join(quoted)
    return f"{', '.join(quoted[:-1])} {conjunction} {quoted[-1]}"
