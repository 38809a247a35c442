import random

import pytest

from llmzero.agents import (PROPOSERS, DrawsProposer, NodeView, ProposalContext, RandomProposer,
                            SkillProposer, fallback_proposals, get_proposer)
from llmzero.space import DEFAULT_SPACE, SpaceError
from llmzero.strategy import StageMode

SPACE = DEFAULT_SPACE
HEALTHY = {"reward": (0.22, 0.40), "frac_reward_zero_std": 0.4, "entropy": (0.41, 0.30), "grad_norm": 0.5,
           "completions/mean_length": 12.0, "completions/clipped_ratio": 0.0}


def curve(n=20, **keys):
    rows = []
    for i in range(n):
        t = i / (n - 1)
        rows.append({k: (v[0] + (v[1] - v[0]) * t) if isinstance(v, tuple) else v for k, v in keys.items()})
    return tuple(rows)


ROOT = NodeView(id="root", depth=0, params=SPACE.defaults(), state="complete", val_score=0.36)


def ctx_for(history=None, val=0.45, siblings=(), **params):
    if history is None:
        return ProposalContext(space=SPACE, node=ROOT, path=(ROOT,), siblings=tuple(siblings))
    node = NodeView(id="n", depth=1, params={**SPACE.defaults(), **params}, state="complete",
                    val_score=val, history=history)
    return ProposalContext(space=SPACE, node=node, path=(ROOT, node), siblings=tuple(siblings))


def sibling(i, params):
    return NodeView(id=f"s{i}", depth=1, params=dict(params), state="complete")


COLLAPSE = curve(**{**HEALTHY, "entropy": (0.43, 0.04)})
HEALTHY_ROW = curve(**HEALTHY)[-1]
TRUNCATED = curve(**{**HEALTHY, "completions/clipped_ratio": 0.97})
SPIKE = tuple({**r, "grad_norm": 40.0 if i == 15 else 0.5} for i, r in enumerate(curve(**HEALTHY)))

CONTEXTS = {
    "root": ctx_for(),
    "healthy": ctx_for(curve(**HEALTHY)),
    "collapse": ctx_for(COLLAPSE),
    "truncated": ctx_for(TRUNCATED, max_completion_length=6),
    "with_siblings": ctx_for(COLLAPSE, siblings=[
        sibling(0, {**SPACE.defaults(), "entropy_coef": 0.005}),
        sibling(1, SPACE.defaults()),
    ]),
    "at_bounds": ctx_for(SPIKE, learning_rate=1e-7, temperature=3.0, max_completion_length=4096),
}


def key(params):
    return tuple(sorted(params.items()))


# --- conformance: every proposer -----------------------------------------------------------------

@pytest.fixture(params=sorted(PROPOSERS))
def proposer(request):
    return get_proposer(request.param)


@pytest.mark.parametrize("where", sorted(CONTEXTS))
@pytest.mark.parametrize("k", [1, 4])
def test_conformance(proposer, where, k):
    ctx = CONTEXTS[where]
    out = proposer.propose(ctx, k, random.Random(0))
    assert 1 <= len(out) <= k
    seen = {key(s.params) for s in ctx.siblings}
    for p in out:
        assert SPACE.validate(p.params) == p.params and list(p.params) == SPACE.names
        assert p.proposed_by == proposer.name and p.reason and "\n" not in p.reason
        assert isinstance(p.mode, StageMode)
        if not getattr(proposer, "repeats", False):  # the draws control repeats its node by design
            assert key(p.params) not in seen, f"duplicate proposal {p.params}"
        seen.add(key(p.params))
    assert out == proposer.propose(ctx, k, random.Random(0)), "not deterministic for a fixed seed"


def test_no_proposals_for_k_zero(proposer):
    assert proposer.propose(CONTEXTS["collapse"], 0, random.Random(0)) == []


def test_registry():
    assert isinstance(get_proposer("skill"), SkillProposer)
    assert get_proposer("random", params=["learning_rate"]).params == ("learning_rate",)
    allowed = r"expected one of skill, random, draws"
    with pytest.raises(ValueError, match=rf"proposer='nope' is not allowed: {allowed}"):
        get_proposer("nope")


# --- draws ----------------------------------------------------------------------------------------

def test_draws_repeat_the_node_and_count_the_siblings():
    ctx = CONTEXTS["with_siblings"]  # a collapsed node: the control still changes nothing
    out = DrawsProposer().propose(ctx, 3, random.Random(0))
    assert [p.params for p in out] == [ctx.node.params] * 3
    assert [p.reason.split("(")[-1] for p in out] == ["draw 3)", "draw 4)", "draw 5)"]
    assert all(p.mode is StageMode.CONTINUE and p.repairs == () and p.findings == () for p in out)
    root = DrawsProposer().propose(CONTEXTS["root"], 2, random.Random(0))
    assert [p.params for p in root] == [SPACE.defaults()] * 2


# --- random ---------------------------------------------------------------------------------------

def test_random_differs_between_seeds():
    ctx = CONTEXTS["healthy"]
    a = RandomProposer().propose(ctx, 4, random.Random(0))
    b = RandomProposer().propose(ctx, 4, random.Random(1))
    assert [p.params for p in a] != [p.params for p in b]


def test_random_keeps_difficulty_and_length_near_the_node():
    ctx = ctx_for(curve(**HEALTHY), difficulty=3, max_completion_length=32)
    for p in RandomProposer().propose(ctx, 50, random.Random(3)):
        assert p.params["difficulty"] == 3 and 16 <= p.params["max_completion_length"] <= 64
        assert p.findings == () and p.reason.startswith("random sample")


def test_random_samples_only_the_named_params():
    ctx = CONTEXTS["healthy"]
    out = RandomProposer(params=["learning_rate", "temperature"]).propose(ctx, 5, random.Random(0))
    for p in out:
        changed = {n for n in SPACE.names if p.params[n] != ctx.node.params[n]}
        assert changed <= {"learning_rate", "temperature"}
    with pytest.raises(SpaceError, match="unknown parameter 'lr'"):
        RandomProposer(params=["lr"]).propose(ctx, 1, random.Random(0))


def test_random_samples_the_search_ranges_log_uniformly():
    from llmzero.space import SEARCH_RANGES

    out = RandomProposer().propose(CONTEXTS["root"], 40, random.Random(0))
    lrs = [p.params["learning_rate"] for p in out]
    lo, hi = SEARCH_RANGES["learning_rate"]
    assert lo <= min(lrs) and max(lrs) <= hi and max(lrs) / min(lrs) > 5
    # log-uniform: about half the draws fall below the geometric mid-point
    mid = (lo * hi) ** 0.5
    assert 10 <= sum(lr < mid for lr in lrs) <= 30
    for name, (lo, hi) in SEARCH_RANGES.items():
        assert all(lo <= p.params[name] <= hi for p in out), name


# --- skill ----------------------------------------------------------------------------------------

def skill(ctx, k=4, seed=0):
    return SkillProposer().propose(ctx, k, random.Random(seed))


def test_entropy_collapse_gets_more_entropy():
    ctx = CONTEXTS["collapse"]
    first = skill(ctx)[0]
    assert first.findings == ("entropy_collapse",) and "entropy" in first.reason and "0.0" in first.reason
    assert (first.params["entropy_coef"] > ctx.node.params["entropy_coef"]
            or first.params["temperature"] > ctx.node.params["temperature"])
    answers = [p for p in skill(ctx) if p.findings == ("entropy_collapse",)]
    assert {"entropy_coef", "temperature"} <= {n for p in answers for n in SPACE.names
                                                if p.params[n] > ctx.node.params[n]}


def test_entropy_collapse_of_cold_rollouts_warms_them_first():
    cold = [p for p in skill(ctx_for(COLLAPSE, temperature=0.5)) if p.findings == ("entropy_collapse",)]
    assert cold[0].params["temperature"] == pytest.approx(0.7) and cold[0].params["entropy_coef"] == 0.0
    assert cold[1].params["entropy_coef"] > 0.0 and cold[1].params["temperature"] == 0.5
    warm = [p for p in skill(ctx_for(COLLAPSE, temperature=0.8)) if p.findings == ("entropy_collapse",)]
    assert warm[0].params["entropy_coef"] > 0.0 and warm[0].params["temperature"] == 0.8


def test_entropy_coef_is_never_raised_into_the_destructive_range():
    ctx = ctx_for(COLLAPSE, entropy_coef=0.04)
    assert all(p.params["entropy_coef"] <= 0.05 for p in skill(ctx, 8))


def test_truncation_gets_longer_completions():
    first = skill(CONTEXTS["truncated"])[0]
    assert first.findings == ("truncation",) and first.params["max_completion_length"] >= 6 + 4
    assert "97%" in first.reason


def test_grad_norm_spike_gets_lower_learning_rate():
    first = skill(ctx_for(SPIKE))[0]
    assert first.findings == ("grad_norm_spike",) and first.params["learning_rate"] == pytest.approx(5e-5)


def test_zero_std_groups_get_the_equal_cost_move_before_larger_groups():
    groups = curve(**{**HEALTHY, "frac_reward_zero_std": 0.8, "reward": (0.1, 0.2)})
    low = [p for p in skill(ctx_for(groups, val=0.36)) if p.findings == ("zero_std_groups",)]
    # a hotter rollout costs what a stage costs; twice the group costs twice the tokens, so it comes second
    assert [p.params["temperature"] for p in low] == [1.2, 1.0]
    assert [p.params["num_generations"] for p in low] == [8, 16]
    hot = [p for p in skill(ctx_for(groups, val=0.36, temperature=1.5)) if p.findings == ("zero_std_groups",)]
    assert hot[0].params["num_generations"] == 16  # at the temperature cap only the larger group is left
    high = skill(ctx_for(curve(**{**HEALTHY, "frac_reward_zero_std": 0.9, "reward": (0.85, 0.95)}), val=0.9))
    assert high[0].params["difficulty"] == 3
    assert skill(ctx_for(groups))[0].reason.startswith("fallback: keep going")  # val still rises (0.36 -> 0.45)
    # ... unless the rollouts are cold: then the sampler empties the groups, and the first child warms them
    cold = skill(ctx_for(groups, temperature=0.5))
    assert cold[0].findings == ("zero_std_groups",) and cold[0].params["temperature"] == pytest.approx(0.7)


def test_plateau_moves_learning_rate_both_ways_or_raises_difficulty():
    low = skill(ctx_for(curve(**{**HEALTHY, "reward": 0.3}), val=0.36))
    lrs = {p.params["learning_rate"] for p in low if p.findings == ("reward_plateau",)}
    assert sorted(lrs) == [5e-5, 1.5e-4]  # proposals are rounded, so 1e-4 * 1.5 reads 0.00015
    high = skill(ctx_for(curve(**{**HEALTHY, "reward": 0.8}), val=0.36, difficulty=1))
    assert high[0].findings == ("reward_plateau",) and high[0].params["difficulty"] == 2


def test_kl_blowup_lowers_learning_rate_and_may_restart():
    out = skill(ctx_for(curve(**{**HEALTHY, "kl": (0.01, 0.4)}), beta=0.04))
    kl = [p for p in out if p.findings == ("kl_blowup",)]
    assert kl[0].params["learning_rate"] == 5e-5 and kl[0].params["beta"] == 0.08
    assert any(p.mode is StageMode.RESTART for p in kl)


def test_clamping_is_recorded_as_repairs():
    near = skill(ctx_for(TRUNCATED, max_completion_length=4000))[0]
    assert near.params["max_completion_length"] == 4096
    assert [(r.param, r.before, r.after) for r in near.repairs] == [("max_completion_length", 6000, 4096)]
    at_bound = skill(ctx_for(curve(**{**HEALTHY, "kl": (0.01, 0.4)}), beta=1.0))[0]
    assert at_bound.params["beta"] == 1.0 and at_bound.params["learning_rate"] == pytest.approx(5e-5)
    assert [(r.param, r.after) for r in at_bound.repairs] == [("beta", 1.0)]
    assert "clamped" in at_bound.repairs[0].reason


def test_remedies_that_clamp_to_nothing_are_dropped():
    # learning_rate already at its lower bound: halving it changes nothing, so no such "remedy"
    spike = [p for p in skill(ctx_for(SPIKE, learning_rate=1e-7)) if p.findings == ("grad_norm_spike",)]
    assert len(spike) == 1 and spike[0].params["beta"] == 0.01 and spike[0].params["learning_rate"] == 1e-7
    assert [(r.param, r.before, r.after) for r in spike[0].repairs] == [("learning_rate", 5e-8, 1e-7)]


def test_siblings_are_not_repeated():
    ctx = CONTEXTS["with_siblings"]
    out = skill(ctx, 6)
    assert all(p.params["entropy_coef"] != 0.005 or p.params["temperature"] != 1.0 for p in out)
    assert out[0].findings == ("entropy_collapse",) and out[0].params["temperature"] == pytest.approx(1.2)


def test_root_gets_diverse_fallbacks_starting_with_keep_going():
    out = skill(CONTEXTS["root"], 8)
    assert len(out) == 8 and "keep going" in out[0].reason and out[0].params == SPACE.defaults()
    assert all(p.findings == () and p.reason.startswith("fallback") for p in out)
    assert skill(CONTEXTS["root"], 8, seed=1) != out  # order of the moves depends on the seed


def test_fallback_proposals_honour_exclude_and_name():
    ctx = CONTEXTS["root"]
    out = fallback_proposals(ctx, 3, random.Random(0), exclude=[SPACE.defaults()], proposed_by="llm")
    assert len(out) == 3 and all(p.proposed_by == "llm" for p in out)
    assert SPACE.defaults() not in [p.params for p in out]
    assert fallback_proposals(ctx, 0, random.Random(0)) == []


def test_many_fallbacks_still_unique():
    out = skill(CONTEXTS["root"], 30)
    assert len(out) == 30 and len({key(p.params) for p in out}) == 30


def test_longer_completions_is_no_fallback_when_nothing_was_clipped():
    cap = SPACE.defaults()["max_completion_length"]

    def moves(history):
        out = fallback_proposals(ctx_for(history), 8, random.Random(3))
        return [p.reason.split(";")[0] for p in out], [p.params["max_completion_length"] for p in out]

    unclipped, caps = moves(curve(**HEALTHY))  # clipped_ratio 0.0 on every step
    assert "fallback: longer completions" not in unclipped and set(caps) == {cap}
    one_clipped = curve(**HEALTHY)[:-1] + ({**HEALTHY_ROW, "completions/clipped_ratio": 0.05},)
    clipped, caps = moves(one_clipped)
    assert "fallback: longer completions" in clipped and max(caps) > cap
    # the same draws order the other moves: only the skipped one is missing
    assert unclipped[:len(unclipped) - 1] == [r for r in clipped if r != "fallback: longer completions"][
        :len(unclipped) - 1]
    root = [p.reason for p in fallback_proposals(CONTEXTS["root"], 8, random.Random(3))]
    assert any(r.startswith("fallback: longer completions") for r in root)  # no stage yet: not known


def test_a_lead_finding_is_answered_first_and_the_rest_by_severity():
    hot = curve(**{**HEALTHY, "completions/clipped_ratio": 0.97, "entropy": (0.43, 0.04)})
    ctx = ctx_for(hot, max_completion_length=6)
    by_severity = SkillProposer().propose(ctx, 4, random.Random(0))
    firsts = [p.findings[0] for p in by_severity if p.findings]
    assert {"truncation", "entropy_collapse"} <= set(firsts)
    last = firsts[-1]
    led = SkillProposer().propose(ctx, 4, random.Random(0), lead=last)
    assert led[0].findings[0] == last and led[1].findings == (last,)  # the coordinated move, then its own
    assert {str(p.params) for p in led} == {str(p.params) for p in by_severity}
    assert SkillProposer().propose(ctx, 4, random.Random(0), lead="kl_blowup") == by_severity  # not found


def test_two_findings_get_one_coordinated_move_first():
    # completions cut and cold rollouts' groups all-same: the first child raises the cap and warms at once
    cut_cold = curve(**{**HEALTHY, "completions/clipped_ratio": 0.3, "frac_reward_zero_std": 0.8,
                        "reward": (0.1, 0.2)})
    props = skill(ctx_for(cut_cold, max_completion_length=26, temperature=0.5))
    first = props[0]
    assert set(first.findings) == {"truncation", "zero_std_groups"}
    assert first.reason.startswith("coordinated:")
    assert first.params["max_completion_length"] == 39 and first.params["temperature"] == pytest.approx(0.7)
    alone = {p.findings: p.params for p in props[1:] if len(p.findings) == 1}
    assert alone[("truncation",)]["temperature"] == 0.5
    assert alone[("zero_std_groups",)]["max_completion_length"] == 26
    # one finding: no coordinated move
    assert not any(p.reason.startswith("coordinated") for p in skill(CONTEXTS["truncated"]))


def test_findings_whose_first_remedies_agree_or_clash_are_not_combined():
    from llmzero.agents.diagnosis import Finding
    from llmzero.agents.skill import Remedy, coordinated

    base = {"learning_rate": 1e-4, "beta": 0.0, "max_completion_length": 26}
    names = ("grad_norm_spike", "clip_saturation", "kl_blowup", "truncation")
    spike, clip, kl, cut = (Finding(n, 0.5) for n in names)
    halve = [Remedy({"learning_rate": 5e-5})]
    # the same halving twice is one change, not a coordinated move
    assert coordinated([(spike, halve), (clip, halve)], base) is None
    # a clash on the learning rate leaves the second out; the cap, on its own parameter, joins
    joint = coordinated([(spike, halve), (kl, [Remedy({"learning_rate": 2.5e-5, "beta": 0.01})]),
                         (cut, [Remedy({"max_completion_length": 39})])], base)
    assert joint is not None
    remedy, answered = joint
    assert remedy.updates == {"learning_rate": 5e-5, "max_completion_length": 39}
    assert answered == ("grad_norm_spike", "truncation")
    # two findings at most: a third on a parameter of its own waits for its own child
    wider = [Remedy({"beta": 0.01})]
    assert coordinated([(spike, halve), (cut, [Remedy({"max_completion_length": 39})]), (kl, wider)],
                       base)[0].updates == {"learning_rate": 5e-5, "max_completion_length": 39}
    # one finding moving a parameter the way another's remedies move it back is left out
    cooler = [Remedy({"learning_rate": 5e-5}), Remedy({"max_completion_length": 20})]
    assert coordinated([(cut, [Remedy({"max_completion_length": 39})]), (spike, cooler)], base) is None
    # a remedy that restarts the stage does not join one that continues it
    restart = [Remedy({"max_completion_length": 39}, StageMode.RESTART)]
    assert coordinated([(spike, halve), (cut, restart)], base) is None
