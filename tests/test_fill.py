"""Schema-guided filling: fixed JSON text is written, only free parts are sampled (scripted samplers)."""

import json
import re

import pytest

from llmzero.agents.llm import answer_schema, menu_schema
from llmzero.llm.fill import Unsupported, check_supported, clean_string, fill_schema
from llmzero.llm.parse import parse_reply
from llmzero.space import DEFAULT_SPACE


class Sampler:
    """Answers each free part the way a grammar-obeying model could: the last alternative of an
    enum (or the one the test asks for), ``words`` for free text, a number for numbers."""

    def __init__(self, stop_after=None, words="ok"):
        self.text, self.grammars, self.stop_after, self.words, self.limits = "", [], stop_after, words, []
        self.number = "0.01"

    def lit(self, s):
        self.text += s

    def gen(self, grammar, limit, stop):
        self.grammars.append(grammar)
        self.limits.append(limit)
        self.stops = getattr(self, "stops", []) + [stop]
        if grammar is None:  # free text, sampled without a grammar; the walker cleans it
            return self.words
        alts = re.findall(r'"((?:[^"\\]|\\.)*)"', grammar.split("\n")[0].removeprefix("root ::= "))
        if grammar.startswith('root ::= "," | "]"'):
            n = self.text.count('{"option"') + self.text.count('{"changes"')
            out = "]" if self.stop_after is not None and n >= self.stop_after else ","
        elif "[0-9]" in grammar:
            out = self.number
        else:
            out = json.loads('"' + alts[-1] + '"').removesuffix(stop or "")  # the last alternative
        return out


def test_menu_answer_has_exactly_k_picks_and_only_free_parts_are_sampled():
    schema = menu_schema(6, 2, ["entropy_collapse", "reward_plateau"])
    s = Sampler()
    fill_schema(schema, s.gen, s.lit)
    parsed, error = parse_reply(s.text, schema)
    assert error is None, error
    assert [p["option"] for p in parsed["proposals"]] == [6, 6] and parsed["decision"] == "backup"
    assert parsed["diagnosis"] == "reward_plateau" and parsed["proposals"][0]["rationale"] == "ok"
    # one diagnosis, two (option, rationale, effect), one decision; no key, brace or list choice sampled
    assert len(s.grammars) == 1 + 2 * 3 + 1
    # the diagnosis is a choice among the findings' names; its opening quote is fixed text
    assert s.grammars[0] == 'root ::= "entropy_collapse\\"" | "reward_plateau\\""'
    # free text (rationale, effect) has no grammar and a limit in characters: the caps
    assert [n for g, n in zip(s.grammars, s.limits) if g is None] == [20, 12, 20, 12]
    assert s.text.startswith('{"diagnosis":"reward_plateau","proposals":[{"option":6,"rationale":"ok"')
    assert s.stops == ['"', None, '"', '"', None, '"', '"', '"']  # strings and the decision end at a quote
    assert s.grammars[-1] == 'root ::= "expand\\"" | "stop\\"" | "backup\\""'  # the opening quote is fixed


def test_a_menu_answer_diagnoses_only_what_the_detectors_found():
    """The diagnosis is one of the node's findings, or "none" without one, written as fixed text: the
    embedded model, free to write it, named pathologies no detector had found."""
    s = Sampler()
    schema = menu_schema(6, 2)
    fill_schema(schema, s.gen, s.lit)
    assert s.text.startswith('{"diagnosis":"none","proposals":[{"option":')  # nothing sampled before the pick
    assert len(s.grammars) == 2 * 3 + 1
    assert parse_reply(s.text, schema)[1] is None
    one = menu_schema(6, 2, ["truncation"])
    assert one["properties"]["diagnosis"] == {"type": "string", "enum": ["truncation"]}
    text = s.text.replace('"diagnosis":"none"', '"diagnosis":"entropy blow-up"')
    parsed, error = parse_reply(text, one)  # a diagnosis outside the findings is not an answer
    assert parsed is None and "diagnosis" in error


def test_free_answer_lists_end_where_the_model_says():
    schema = answer_schema(DEFAULT_SPACE, 3)  # 1..3 proposals, each 1..3 {name, value} changes
    s = Sampler(stop_after=1)
    fill_schema(schema, s.gen, s.lit)
    parsed, error = parse_reply(s.text, schema)
    assert error is None, error
    assert len(parsed["proposals"]) == 1
    assert parsed["proposals"][0]["changes"][0] == {"name": DEFAULT_SPACE.names[-1], "value": 0.01}


def test_lists_stop_at_max_items_without_asking():
    schema = {"type": "object", "properties": {"xs": {"type": "array", "minItems": 1, "maxItems": 2,
                                                      "items": {"type": "integer", "enum": [1, 2]}}},
              "required": ["xs"]}
    s = Sampler()
    fill_schema(schema, s.gen, s.lit)
    assert json.loads(s.text) == {"xs": [2, 2]}
    assert sum(g.startswith('root ::= "," | "]"') for g in s.grammars) == 1  # asked after the first only


@pytest.mark.parametrize("schema", [
    {"type": "object", "properties": {"a": {"type": "string"}}},  # a property that is not required
    {"type": "array", "minItems": 0, "items": {"type": "string"}},  # possibly empty list
    {"type": "boolean"},
    {"type": "number", "minimum": 0},  # a bound the walk would not enforce
    {"type": "string", "pattern": "^a"},
    {"type": "object", "properties": {"c": {"type": "object", "properties": {}, "additionalProperties": True}},
     "required": ["c"]},
])
def test_unsupported_schemas_are_refused_before_sampling(schema):
    with pytest.raises(Unsupported):
        check_supported(schema)


def test_the_agents_schemas_are_supported():
    check_supported(menu_schema(6, 2))
    check_supported(answer_schema(DEFAULT_SPACE, 2))


def test_grammars_compile_in_llama_cpp():
    llama_grammar = pytest.importorskip("llama_cpp.llama_grammar")
    s = Sampler(stop_after=1)
    fill_schema(answer_schema(DEFAULT_SPACE, 2), s.gen, s.lit)
    for g in set(s.grammars) - {None}:
        llama_grammar.LlamaGrammar.from_string(g, verbose=False)


def test_free_text_is_cleaned_into_a_valid_string_within_its_cap():
    schema = answer_schema(DEFAULT_SPACE, 2)
    s = Sampler(words=' say "hi"\\ then\tgo on and on and on and on ', stop_after=1)
    fill_schema(schema, s.gen, s.lit)
    parsed, error = parse_reply(s.text, schema)
    assert error is None, error
    assert parsed["diagnosis"] == "say hi thengo on and on and on and on"  # within its 80 characters
    schema = menu_schema(6, 2)
    s = Sampler(words=' say "hi"\\ then\tgo on and on and on and on ')
    fill_schema(schema, s.gen, s.lit)
    parsed, error = parse_reply(s.text, schema)
    assert error is None, error
    assert parsed["proposals"][0]["rationale"] == "say hi thengo on and"  # the whole words within 20
    assert parsed["proposals"][0]["expected_effect"] == "say hi"  # 12: "say hi thengo" is 13
    assert clean_string("\x00a\"b\\c\x7f", 10) == "abc"
    assert clean_string("abcdefghijkl", 10) == "abcdefghij"  # one word longer than the cap is cut
    assert clean_string("ab cdefghi jk", 10) == "ab cdefghi"  # the cap falls on a word's end


def test_a_long_choice_gets_the_steps_to_be_written_whole():
    """The walker gives a choice's sampler enough steps for the longest alternative (a token holds at
    least one character): with a fixed 16, llama.cpp cut a longer choice and the answer was invalid."""
    long = "max_completion_length 6->10, num_generations 8->16"
    for kind, vals in (("string", [long, "keep going"]), ("integer", [7, 123456789012345678])):
        schema = {"type": "object", "properties": {"option": {"type": kind, "enum": vals}},
                  "required": ["option"], "additionalProperties": False}
        s = Sampler()
        fill_schema(schema, s.gen, s.lit)
        longest = max(len(json.dumps(v)) for v in vals)
        assert s.limits[0] >= longest - 2  # the quotes of a string choice are fixed text
        assert json.loads(s.text)["option"] == vals[-1]


@pytest.mark.parametrize("written", ["0.0025", "0.0025}"])
def test_a_number_ends_at_the_character_that_follows_it(written):
    """A number's grammar ends at a character that may follow it (`,`, `}` or `]`), and the sampler
    stops there: with a grammar for the number alone, the embedded 0.5B model could not close the
    object after "0.0025" and wrote 0.0025000000000000e-200. The walker writes the character itself,
    whether or not the sampler's text still holds it."""
    s = Sampler(stop_after=1)
    s.number = written
    schema = answer_schema(DEFAULT_SPACE, 2)
    fill_schema(schema, s.gen, s.lit)
    parsed, error = parse_reply(s.text, schema)
    assert error is None, error
    assert parsed["proposals"][0]["changes"][0]["value"] == 0.0025
    i = next(i for i, g in enumerate(s.grammars) if g and "[0-9]" in g)
    assert s.grammars[i].endswith('("," | "}" | "]")') and s.stops[i] == (",", "}", "]")
    assert '"value":0.0025}' in s.text
