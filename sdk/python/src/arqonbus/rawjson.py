"""Exact JSON text of a frame's fields, without a second JSON library.

The server passes payloads through as they were published. Once parsed into Python, big
integers survive but `1.0`, escapes like `\\u00e9` and key layout may not: these functions give
the exact text of a value as it was received, and build frames around a payload text as given.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

_decoder = json.JSONDecoder()
_scanstring: Callable[[str, int], tuple[str, int]] = getattr(json.decoder, "scanstring")
_ws = re.compile(r"[ \t\n\r]*")


def _skip_ws(text: str, idx: int) -> int:
    match = _ws.match(text, idx)
    return match.end() if match else idx


def object_fields(text: str, start: int = 0) -> dict[str, tuple[int, int]]:
    """Spans `(start, end)` of each top-level value of the JSON object that begins at `start`."""
    spans, _ = _walk(text, start, None)
    return spans


def locate(text: str, path: tuple[str, ...]) -> int | None:
    """Where the value at `path` (keys of nested objects) begins in `text`, or None.

    Values beside the path are skipped; the ones on it are not parsed, so finding the events
    array of a large `history` reply costs one pass over its small neighbours only.
    """
    idx: int | None = 0
    for key in path:
        if idx is None or text[_skip_ws(text, idx) : _skip_ws(text, idx) + 1] != "{":
            return None
        _, idx = _walk(text, idx, key)
    return idx


def _walk(text: str, start: int, wanted: str | None) -> tuple[dict[str, tuple[int, int]], int | None]:
    """Walks the object at `start`: the spans of its values, or where `wanted`'s value begins."""
    idx = _skip_ws(text, start)
    if text[idx : idx + 1] != "{":
        raise ValueError("not a JSON object")
    spans: dict[str, tuple[int, int]] = {}
    idx = _skip_ws(text, idx + 1)
    if text[idx : idx + 1] == "}":
        return spans, None
    while True:
        if text[idx : idx + 1] != '"':
            raise ValueError(f"expected a key at {idx}")
        key, idx = _scanstring(text, idx + 1)
        idx = _skip_ws(text, idx)
        if text[idx : idx + 1] != ":":
            raise ValueError(f"expected ':' at {idx}")
        idx = _skip_ws(text, idx + 1)
        if key == wanted:
            return spans, idx
        _, end = _decoder.raw_decode(text, idx)
        spans[key] = (idx, end)
        idx = _skip_ws(text, end)
        sep = text[idx : idx + 1]
        if sep == "}":
            return spans, None
        if sep != ",":
            raise ValueError(f"expected ',' or '}}' at {idx}")
        idx = _skip_ws(text, idx + 1)


def field_text(text: str, key: str) -> str | None:
    """The exact text of the top-level field `key` of the JSON object `text`, or None."""
    span = object_fields(text).get(key)
    return None if span is None else text[span[0] : span[1]]


def array_items(text: str, start: int) -> list[tuple[Any, str]]:
    """Each element of the JSON array at `start`, parsed and as its exact text."""
    idx = _skip_ws(text, start)
    if text[idx : idx + 1] != "[":
        raise ValueError("not a JSON array")
    items: list[tuple[Any, str]] = []
    idx = _skip_ws(text, idx + 1)
    if text[idx : idx + 1] == "]":
        return items
    while True:
        value, end = _decoder.raw_decode(text, idx)
        items.append((value, text[idx:end]))
        idx = _skip_ws(text, end)
        sep = text[idx : idx + 1]
        if sep == "]":
            return items
        if sep != ",":
            raise ValueError(f"expected ',' or ']' at {idx}")
        idx = _skip_ws(text, idx + 1)


def dumps(value: Any) -> str:
    """Compact JSON as the SDK sends it (UTF-8 kept as is, big integers exact)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def check_raw(raw: str) -> str:
    """Validates a caller's raw JSON text (one value, nothing after it) and returns it unchanged."""
    try:
        _, end = _decoder.raw_decode(raw, _skip_ws(raw, 0))
    except json.JSONDecodeError as exc:
        raise ValueError(f"raw_payload is not JSON: {exc}") from exc
    if _skip_ws(raw, end) != len(raw):
        raise ValueError("raw_payload has text after its JSON value")
    return raw
