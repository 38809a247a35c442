"""Schema-guided filling: an answer's fixed JSON text is fed to the model, only its free parts are sampled.

Grammar-constrained decoding (llama.cpp's GBNF) still spends one decoding step per token of the
answer, including the tokens the schema leaves no choice about: keys, quotes, braces. In the agent's
menu answers these were more than half of the answer, and a decoding step on one CPU thread costs
as much as reading several prompt tokens. ``fill_schema`` walks the schema instead: the forced text
(``{"diagnosis":"``) is appended to the prompt and read in one batch, and the model is sampled only
for the free parts (a string, a number, one of an enum, "another item or the end of a list"). Choices
and numbers get a small grammar of their own. Free text is sampled without one, because checking
every token of the vocabulary against a grammar made each decoding step half again as slow: it ends
at the closing quote, a newline or ``maxLength`` characters, and ``clean_string`` removes what a JSON
string cannot hold unescaped (quotes, backslashes, control characters). The result is the same
compact JSON a full-schema grammar admits.

Supported schemas are the ones the agent sends: objects whose properties are all required, arrays
of such items with ``minItems`` >= 1, strings (optionally ``maxLength``), enums of strings or
integers, and numbers. Anything else raises ``Unsupported`` and the caller decodes with the
full-schema grammar.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

# What a JSON string cannot hold unescaped.
_UNSAFE = re.compile(r'["\\\x00-\x1F\x7F]')
# A number ends at the character that may follow it in JSON: without one, a small model that wanted to
# close the object after "0.0025" could only go on writing digits (the 0.5B wrote 0.0025000000000000e-200,
# about zero, and 18.0020000000000020e+002 for 18). The sampler stops at that character and leaves it out.
_NUMBER_END = (",", "}", "]")
_INT = '"-"? ([0-9] | [1-9] [0-9]{0,15})'
_END = "(" + " | ".join(json.dumps(c) for c in _NUMBER_END) + ")"
_NUMBER = f'root ::= {_INT} ("." [0-9]{{1,16}})? ([eE] [-+]? [0-9]{{1,3}})? {_END}'
_INTEGER = f"root ::= {_INT} {_END}"
_MAX_STRING = 400  # characters of a string without maxLength


class Unsupported(ValueError):
    """The schema uses a construct ``fill_schema`` does not walk."""


def _alternatives(texts: list[str]) -> str:
    return "root ::= " + " | ".join(json.dumps(t) for t in texts)


def clean_string(text: str, max_length: int) -> str:
    """Free text as a JSON string's content: without quotes, backslashes and control characters,
    surrounding spaces stripped, at most ``max_length`` characters. Longer text is cut after its
    last whole word that fits (the sampler reads one character past the cap to tell)."""
    text = _UNSAFE.sub("", text).strip()
    if len(text) > max_length:
        head = text[:max_length + 1]
        text = head[:head.rindex(" ")] if " " in head else head[:max_length]
    return text.rstrip()


# ``gen(grammar, limit, stop)`` samples text with the text so far as context and returns it; the walker
# then writes it through ``lit``. With a GBNF ``grammar``, ``limit`` is in tokens; with ``grammar=None``
# it is free text, which may stop once it is longer than ``limit`` characters. With ``stop`` (a
# closing quote) sampling ends as soon as the model writes it, and the returned text leaves it out:
# the walker writes the quote as fixed text, so the model never spends a decoding step on it or on
# the end-of-text token after it.
# A number's sampler stops at any of several characters (``stop`` is then a tuple).
Gen = Callable[["str | None", int, "str | tuple[str, ...] | None"], str]


# Keywords a walked schema may use; any other (minimum, pattern, anyOf, ...) would go unenforced.
_KNOWN = {"type", "properties", "required", "additionalProperties", "items", "minItems", "maxItems", "enum",
          "maxLength", "title", "description"}


def fill_schema(schema: dict[str, Any], gen: Gen, lit: Callable[[str], None]) -> None:
    """Write one JSON value of ``schema``: fixed text through ``lit``, free parts through ``gen``
    (whose result is already part of the text so far)."""
    if unknown := set(schema) - _KNOWN:
        raise Unsupported(f"keywords {sorted(unknown)}")
    t = schema.get("type")
    if "enum" in schema:
        vals = schema["enum"]
        if not vals or not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in vals):
            raise Unsupported(f"enum {vals!r}: only strings and integers are walked")
        texts = [json.dumps(v) for v in vals]
        if len(texts) == 1:
            lit(texts[0])
        elif all(isinstance(v, str) for v in vals):  # "expand" | "stop": the quotes are fixed text
            lit('"')
            # a token holds at least one character: the longest choice bounds the steps
            lit(gen(_alternatives([t[1:] for t in texts]), max(len(t) for t in texts), '"'))
            lit('"')
        else:
            lit(gen(_alternatives(texts), max(len(t) for t in texts), None))
    elif t == "object":
        props = schema.get("properties", {})
        if set(schema.get("required", [])) != set(props) or not props:
            raise Unsupported("objects must list every property as required")
        for i, (name, sub) in enumerate(props.items()):
            lit(("{" if i == 0 else ",") + json.dumps(name) + ":")
            fill_schema(sub, gen, lit)
        lit("}")
    elif t == "array":
        lo, hi = int(schema.get("minItems", 0)), int(schema.get("maxItems", 1 << 30))
        if lo < 1 or hi < lo:
            raise Unsupported("arrays must have 1 <= minItems <= maxItems")
        lit("[")
        n = 0
        while True:
            fill_schema(schema["items"], gen, lit)
            n += 1
            if n == hi:
                lit("]")
                return
            if n < lo:
                lit(",")
            else:
                sep = gen(_alternatives([",", "]"]), 1, None)
                lit(sep)
                if sep == "]":
                    return
    elif t == "string":
        n = int(schema.get("maxLength", _MAX_STRING))
        lit('"')
        lit(clean_string(gen(None, n, '"'), n))
        lit('"')
    elif t in ("number", "integer"):
        lit(gen(_NUMBER if t == "number" else _INTEGER, 24, _NUMBER_END).rstrip("".join(_NUMBER_END)))
    else:
        raise Unsupported(f"type {t!r}")


def check_supported(schema: dict[str, Any]) -> None:
    """Raise ``Unsupported`` unless ``fill_schema`` can walk ``schema`` (a dry walk, nothing sampled)."""
    def gen(grammar: str | None, limit: int, stop: str | None) -> str:
        return "]" if grammar and '"]"' in grammar else ""

    fill_schema(schema, gen, lambda s: None)
