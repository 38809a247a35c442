import pytest

from llmzero.space import DEFAULT_SPACE
from llmzero.strategy import Stage, StageMode, Strategy, StrategyError

YAML = """
stages:
  - steps: 50
    params: {learning_rate: 1e-4, max_completion_length: 16}
  - steps: 30
    mode: restart
    params: {entropy_coef: 0.01}
"""


def test_yaml_round_trip_and_inheritance():
    s = Strategy.from_yaml(YAML)
    assert [st.steps for st in s.stages] == [50, 30] and s.total_steps == 80
    assert s.stages[0].params["learning_rate"] == 1e-4  # "1e-4" read as a float
    assert s.stages[1].params["max_completion_length"] == 16  # carried over
    assert s.stages[1].params["entropy_coef"] == 0.01 and s.stages[1].mode is StageMode.RESTART
    assert s.stages[0].params["temperature"] == DEFAULT_SPACE["temperature"].default
    again = Strategy.from_yaml(s.to_yaml())
    assert again == s


def test_save_and_load(tmp_path):
    s = Strategy.from_yaml(YAML)
    s.save(tmp_path / "s.yaml")
    assert Strategy.load(tmp_path / "s.yaml") == s
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("text, words", [
    ("stages: [\n", "does not parse as YAML at line 2"),
    ("stages: []", "non-empty list 'stages'"),
    ("stages:\n  - steps: 0\n", "stages[0].steps=0"),
    ("stages:\n  - steps: 10\n    mode: sideways\n", "stages[0].mode='sideways'"),
    ("stages:\n  - steps: 10\n    params: {lr: 1}\n", "unknown parameter 'lr'"),
    ("stages:\n  - steps: 10\n  - steps: 5\n    params: {beta: 2}\n", "stages[1].params.beta=2"),
    ("stages:\n  - steps: 10\n    extra: 1\n", "unknown field 'extra'"),
    ("stages:\n  - steps: 10\n    seed: -1\n", "stages[0].seed=-1"),
])
def test_bad_schedules_name_the_problem(text, words):
    with pytest.raises(StrategyError) as e:
        Strategy.from_yaml(text)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(StrategyError, match="does not exist"):
        Strategy.load(tmp_path / "none.yaml")


def test_stage_dict_round_trip():
    st = Stage(DEFAULT_SPACE.defaults(), 7, StageMode.RESTART, seed=11)
    assert Stage.from_dict(st.to_dict()) == st
