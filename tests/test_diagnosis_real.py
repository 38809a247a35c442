"""The pathology detectors on real stage histories of a built-in task (recorded by
bench/record_histories.py): each known pathology is found, and the healthy stage is not called sick."""

import json
from pathlib import Path

import pytest

from llmzero.agents._base import NodeView
from llmzero.agents.diagnosis import diagnose

DATA = json.loads((Path(__file__).parent / "fixtures" / "real_histories.json").read_text())


def path_for(case: dict) -> list[NodeView]:
    root = NodeView("root", 0, DATA["base_params"], "complete", val_score=DATA["base_val"])
    node = NodeView("n1", 1, case["params"], "complete", val_score=case["val_score"], history=tuple(case["history"]))
    return [root, node]


@pytest.mark.parametrize("name", [n for n, c in DATA["cases"].items() if c["expected"]])
def test_known_pathology_is_found(name):
    case = DATA["cases"][name]
    found = {f.name for f in diagnose(path_for(case))}
    assert case["expected"] in found, (name, found)


@pytest.mark.parametrize("name", ["healthy", "temperature_0.5"])
def test_healthy_stage_has_no_severe_finding(name):
    findings = diagnose(path_for(DATA["cases"][name]))
    assert all(f.severity < 0.5 for f in findings), [(f.name, f.severity) for f in findings]
    bad = {"entropy_blowup", "truncation", "reward_collapse", "length_explosion"}
    assert not bad & {f.name for f in findings}
