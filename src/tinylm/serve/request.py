"""Reading a request's JSON body: every field checked for type and bounds, once.

The page is not the only possible client (anyone on the machine can send a
request), so nothing in a body is trusted: a wrong type, a missing field or a
value out of range is an :class:`ApiError` with a message the page can show,
answered as HTTP 400 — never an exception deeper down.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection
from typing import Any

from tinylm.chat.conversations import Message

#: The roles a chat request's messages may have (the system prompt is a field apart).
CHAT_ROLES = ("user", "assistant")

#: The deepest nesting of arrays and objects a body may have. The API's bodies are
#: two levels deep; Python's ``json`` recurses once per level and fails with a
#: ``RecursionError`` near a thousand, which a 64 KB body of brackets reaches.
MAX_JSON_DEPTH = 32


class ApiError(Exception):
    """A request the server refuses: an HTTP status and a one-line message for the user."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def parse_body(raw: bytes) -> dict[str, Any]:
    """The JSON object in a request body."""
    if not raw.strip():
        raise ApiError(400, "the request body is empty; send a JSON object")
    depth = json_depth(raw)
    if depth > MAX_JSON_DEPTH:
        raise ApiError(
            400,
            f"the request body nests {depth:,} arrays or objects deep; "
            f"the limit is {MAX_JSON_DEPTH}",
        )
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the request body is not valid JSON ({exc})") from None
    if not isinstance(body, dict):
        raise ApiError(400, f"the request body must be a JSON object, not {_kind(body)}")
    return body


def json_depth(raw: bytes) -> int:
    """How deep arrays and objects nest in ``raw``, counted without parsing it.

    Brackets inside strings do not count (a string ends at a quote no backslash
    escapes). Malformed text gets some number; ``json.loads`` then reports it.
    """
    depth = deepest = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return deepest


class Fields:
    """Typed, bounded access to a body's fields; each reader names the field it rejects."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body

    def text(self, key: str, max_chars: int, *, allow_empty: bool = True) -> str:
        value = self.body.get(key, "")
        if not isinstance(value, str):
            raise ApiError(400, f"{key} must be a string, not {_kind(value)}")
        if not value and not allow_empty:
            raise ApiError(400, f"{key} is empty; type some text")
        if len(value) > max_chars:
            raise ApiError(400, f"{key} has {len(value):,} characters; the limit is {max_chars:,}")
        return value

    def choice(self, key: str, allowed: Collection[str], default: str | None = None) -> str:
        value = self.body.get(key, default)
        if value is None:
            raise ApiError(400, f"{key} is missing; one of: {', '.join(allowed)}")
        if not isinstance(value, str):
            raise ApiError(400, f"{key} must be a string, not {_kind(value)}")
        if value not in allowed:
            raise ApiError(404, f"unknown {key} {value!r}; one of: {', '.join(allowed)}")
        return value

    def choices(self, key: str, allowed: Collection[str]) -> list[str]:
        value = self.body.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ApiError(400, f"{key} must be a list of names")
        unknown = [v for v in value if v not in allowed]
        if unknown:
            raise ApiError(
                404, f"unknown {key} {unknown[0]!r}; one of: {', '.join(allowed) or '(none)'}"
            )
        return value

    def number(self, key: str, default: float, low: float, high: float) -> float:
        value = self.body.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ApiError(400, f"{key} must be a number, not {_kind(value)}")
        if not math.isfinite(value) or not low <= value <= high:
            raise ApiError(400, f"{key} must be between {low} and {high}, got {value}")
        return float(value)

    def integer(self, key: str, default: int | None, low: int, high: int) -> int | None:
        """An integer in ``[low, high]``; absent or null gives ``default``."""
        value = self.body.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise ApiError(400, f"{key} must be a whole number, not {_kind(value)}")
        if not low <= value <= high:
            raise ApiError(400, f"{key} must be between {low:,} and {high:,}, got {value:,}")
        return value

    def messages(self, key: str, max_chars: int, max_count: int) -> list[Message]:
        """A conversation: ``[{"role": "user"|"assistant", "content": str}, ...]``, ending
        with the user's message (the one to reply to)."""
        value = self.body.get(key)
        if not isinstance(value, list) or not value:
            raise ApiError(400, f"{key} must be a non-empty list of messages, not {_kind(value)}")
        if len(value) > max_count:
            raise ApiError(400, f"{key} has {len(value):,} messages; the limit is {max_count:,}")
        out = []
        for n, item in enumerate(value):
            where = f"{key}[{n}]"
            if not isinstance(item, dict):
                raise ApiError(400, f"{where} must be an object, not {_kind(item)}")
            role, content = item.get("role"), item.get("content")
            if role not in CHAT_ROLES:
                raise ApiError(
                    400, f"{where}.role must be one of {', '.join(CHAT_ROLES)}, got {role!r}"
                )
            if not isinstance(content, str):
                raise ApiError(400, f"{where}.content must be a string, not {_kind(content)}")
            if len(content) > max_chars:
                raise ApiError(
                    400,
                    f"{where}.content has {len(content):,} characters; the limit is {max_chars:,}",
                )
            out.append(Message(role, content))
        if out[-1].role != "user" or not out[-1].content:
            raise ApiError(400, f"the last of {key} must be the user's message, and not empty")
        return out


def _kind(value: Any) -> str:
    """A JSON reader's word for a value's type."""
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string"}.get(
        type(value), "a list" if isinstance(value, list) else "an object"
    )
