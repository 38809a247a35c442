"""Turn a backend's raw answer text into a schema-valid JSON object, or say why not.

Shared by every backend that receives free text (the HTTP backend, replayed transcripts), so that
a recorded answer is judged exactly as it was judged live. Models that were not grammar-constrained
often wrap their JSON in a Markdown ```json fence; that wrapper is removed, nothing else is
repaired: an answer that is not one strict JSON object valid against the schema is rejected, and
the caller retries or falls back.
"""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema
import jsonschema.exceptions

# The first fenced block, with or without a language tag (```json, ```JSON, ```). Its closing
# fence may be missing when the answer was cut by ``max_tokens``; the JSON inside is then most
# likely incomplete and is rejected by the parser, not repaired.
_FENCE = re.compile(r"```[ \t]*[\w+-]*[ \t]*\r?\n?(.*?)(?:```|\Z)", re.DOTALL)


def strip_fences(text: str) -> str:
    """The content of the first Markdown code fence in ``text``, or ``text`` itself, stripped."""
    m = _FENCE.search(text)
    return (m.group(1) if m else text).strip()


def _reject_constant(name: str) -> Any:
    # json.loads accepts NaN and Infinity by default; they are not JSON and no schema allows them.
    raise ValueError(f"{name} is not valid JSON")


def schema_error(obj: Any, schema: dict[str, Any]) -> str | None:
    """None when ``obj`` is valid against ``schema``, else one readable violation.

    The most relevant violation (jsonschema's ``best_match``) is reported, with its JSON path,
    because the message goes to the journal and must point at the offending field.
    """
    try:
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
        error = jsonschema.exceptions.best_match(cls(schema).iter_errors(obj))
    except jsonschema.exceptions.SchemaError as e:
        return f"the schema itself is invalid: {e.message}"
    if error is None:
        return None
    return f"schema violation at {error.json_path}: {error.message}"


def parse_reply(text: str, schema: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """``(obj, None)`` when ``text`` holds one JSON object valid against ``schema``, else
    ``(None, reason)``. Never raises."""
    body = strip_fences(text)
    if not body:
        return None, "empty answer"
    try:
        obj = json.loads(body, strict=True, parse_constant=_reject_constant)
    except ValueError as e:  # json.JSONDecodeError is a ValueError, and so is _reject_constant's
        return None, f"invalid JSON: {e}"
    if not isinstance(obj, dict):
        return None, f"expected a JSON object, got {type(obj).__name__}"
    err = schema_error(obj, schema)
    return (obj, None) if err is None else (None, err)
