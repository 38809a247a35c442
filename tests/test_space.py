import pytest

from llmzero.space import DEFAULT_SPACE, Role, SpaceError, Transition


def test_required_parameters_with_roles():
    capacity = {p.name for p in DEFAULT_SPACE.by_role(Role.CAPACITY)}
    regularization = {p.name for p in DEFAULT_SPACE.by_role(Role.REGULARIZATION)}
    assert {"max_completion_length", "num_generations", "difficulty"} <= capacity
    assert {"learning_rate", "beta", "entropy_coef", "epsilon", "epsilon_high", "temperature"} <= regularization
    for p in DEFAULT_SPACE:
        assert p.low <= p.default <= p.high, p.name


def test_validate_names_field_value_and_allowed():
    with pytest.raises(SpaceError) as e:
        DEFAULT_SPACE.validate({"learning_rate": 5.0})
    msg = str(e.value)
    assert "learning_rate" in msg and "5" in msg and "[1e-07, 0.01]" in msg and "\n" not in msg


@pytest.mark.parametrize("values, word", [
    ({"nope": 1}, "unknown parameter 'nope'"),
    ({"num_generations": 2.5}, "num_generations"),
    ({"num_generations": True}, "num_generations"),
    ({"beta": "a lot"}, "beta"),
    ({"temperature": float("nan")}, "temperature"),
    ({"max_completion_length": 0}, "max_completion_length"),
])
def test_validate_rejects(values, word):
    with pytest.raises(SpaceError, match=word):
        DEFAULT_SPACE.validate(values)


def test_validate_never_rewrites():
    values = {"learning_rate": 3e-4, "num_generations": 4.0, "beta": 0}
    out = DEFAULT_SPACE.validate(values)
    assert out["learning_rate"] == 3e-4 and out["num_generations"] == 4 and out["beta"] == 0.0
    assert values == {"learning_rate": 3e-4, "num_generations": 4.0, "beta": 0}  # input untouched
    assert out["temperature"] == DEFAULT_SPACE["temperature"].default  # missing keys take defaults


def test_repair_clamps_and_records():
    fixed, repairs = DEFAULT_SPACE.repair({"learning_rate": 1.0, "num_generations": 5.4, "bogus": 3, "beta": 0.1})
    assert fixed == {"learning_rate": 1e-2, "num_generations": 5, "beta": 0.1}
    by_param = {r.param: r for r in repairs}
    assert by_param["learning_rate"].before == 1.0 and by_param["learning_rate"].after == 1e-2
    assert "clamped" in by_param["learning_rate"].reason
    assert "rounded" in by_param["num_generations"].reason
    assert by_param["bogus"].after is None and "dropped" in by_param["bogus"].reason
    assert "beta" not in by_param


def test_with_defaults_checks_and_keeps_bounds():
    sp = DEFAULT_SPACE.with_defaults(max_completion_length=18)
    assert sp["max_completion_length"].default == 18 and sp["max_completion_length"].high == 4096
    with pytest.raises(SpaceError):
        DEFAULT_SPACE.with_defaults(max_completion_length=-1)
    with pytest.raises(SpaceError, match="unknown"):
        DEFAULT_SPACE.with_defaults(nope=1)


def test_transition_records_from_to_and_reason():
    parent = DEFAULT_SPACE.defaults()
    child = {**parent, "learning_rate": 5e-5, "max_completion_length": 48}
    t = Transition.between(parent, child, reason="truncation", proposed_by="skill")
    assert t.changes == {"learning_rate": (1e-4, 5e-5), "max_completion_length": (32, 48)}
    assert t.apply(parent) == child
    d = t.to_dict()
    assert d["changes"]["learning_rate"] == {"from": 1e-4, "to": 5e-5} and d["proposed_by"] == "skill"
