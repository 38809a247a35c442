import pytest

from llmzero.space import DEFAULT_SPACE
from llmzero.strategy import Soup, Stage, StageMode, Strategy, StrategyError, load_schedule

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
    ("stages:\n  - steps: 10\n    draws: 0\n", "stages[0].draws=0 is not allowed: expected an integer in"),
    ("stages:\n  - steps: 10\n    draws: two\n", "stages[0].draws='two'"),
    ("stages:\n  - steps: 10\n    merge: {seed: 1}\n", "stages[0].merge={'seed': 1} is not allowed"),
    ("stages:\n  - steps: 10\n    merge: [{steps: 3}]\n", "stages[0].merge[0]={'steps': 3} is not allowed"),
    ("stages:\n  - steps: 10\n    merge: [{seed: -2}]\n", "stages[0].merge[0].seed=-2"),
    ("stages:\n  - steps: 10\n    merge: [{params: {beta: 9}}]\n", "stages[0].merge[0].params.beta=9"),
    ("stages:\n  - steps: 10\n    scale: 0\n", "stages[0].scale=0 is not allowed: expected a number in"),
    ("stages:\n  - steps: 10\n    scale: .nan\n", "stages[0].scale=nan"),
    ("stages:\n  - steps: 10\n    scale: true\n", "stages[0].scale=True"),
    ("stages:\n  - steps: 10\n    scale: 9\n", "stages[0].scale=9"),
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
    assert Stage.from_dict(st.to_dict()) == st and "draws" not in st.to_dict()  # one draw: the default
    st = Stage(DEFAULT_SPACE.defaults(), 7, seed=11, draws=4)
    assert st.to_dict()["draws"] == 4 and Stage.from_dict(st.to_dict()) == st
    assert "merge" not in st.to_dict()


def test_a_merged_stage_inherits_from_the_stage_before_and_round_trips():
    text = ("stages:\n  - {steps: 10, params: {learning_rate: 2e-4}}\n"
            "  - steps: 5\n    seed: 3\n    params: {beta: 0.01}\n"
            "    merge: [{params: {entropy_coef: 0.01}, seed: 8}, {params: {beta: 0.02}}]\n")
    s = Strategy.from_yaml(text)
    first, second = s.stages[1].members()[1:]
    assert first.params["learning_rate"] == 2e-4 and first.params["entropy_coef"] == 0.01  # the parent's
    assert first.params["beta"] == DEFAULT_SPACE["beta"].default  # siblings: not the merged stage's beta
    assert (first.seed, second.seed, second.params["beta"]) == (8, None, 0.02)
    assert all(m.steps == 5 and not m.merge for m in s.stages[1].members())
    assert s.stages[1].members()[0] == Stage(s.stages[1].params, 5, seed=3)
    assert Strategy.from_yaml(s.to_yaml()) == s


def test_a_scaled_stage_round_trips_and_its_members_are_unscaled():
    s = Strategy.from_yaml("stages:\n  - {steps: 10}\n  - steps: 5\n    scale: 1.5\n"
                           "    merge: [{params: {beta: 0.02}}]\n")
    assert "scale" not in s.stages[0].to_dict() and s.stages[1].to_dict()["scale"] == 1.5
    assert Strategy.from_yaml(s.to_yaml()) == s
    assert all(m.scale == 1.0 for m in s.stages[1].members())  # the scale applies to the average


SOUP = """
val_score: 0.41
soup:
  - node: n5
    stages:
      - {steps: 10, seed: 3}
      - {steps: 5, seed: 4, params: {learning_rate: 2e-4}}
  - node: n3
    stages:
      - {steps: 10, seed: 3}
"""


def test_a_soup_schedule_loads_its_members_and_round_trips(tmp_path):
    (tmp_path / "soup.yaml").write_text(SOUP)
    soup = load_schedule(tmp_path / "soup.yaml")
    assert isinstance(soup, Soup) and soup.meta == {"val_score": 0.41}
    assert [m.meta["node"] for m in soup.members] == ["n5", "n3"]
    assert soup.members[0].stages[0] == soup.members[1].stages[0]  # the shared first stage
    assert soup.members[0].stages[1].params["learning_rate"] == 2e-4
    soup.save(tmp_path / "again.yaml")
    assert load_schedule(tmp_path / "again.yaml") == soup and not list(tmp_path.glob("*.tmp"))
    (tmp_path / "one.yaml").write_text(YAML)
    assert load_schedule(tmp_path / "one.yaml") == Strategy.from_yaml(YAML)


@pytest.mark.parametrize("text, words", [
    ("soup: []", "soup=[] is not allowed: expected a list of at least 2 strategies"),
    ("soup:\n  - stages: [{steps: 3}]\n", "expected a list of at least 2 strategies"),
    ("soup:\n  - stages: [{steps: 3}]\n  - stages: [{steps: 0}]\n", "soup[1].stages[0].steps=0"),
    ("soup:\n  - stages: []\n  - stages: [{steps: 3}]\n", "soup[0]: expected a mapping with a non-empty"),
    ("steps: 3\n", "'stages' (one strategy) or 'soup'"),
])
def test_bad_soup_schedules_name_the_problem(tmp_path, text, words):
    (tmp_path / "s.yaml").write_text(text)
    with pytest.raises(StrategyError) as e:
        load_schedule(tmp_path / "s.yaml")
    assert str(e.value).startswith("s.yaml: ") and words in str(e.value) and "\n" not in str(e.value)
