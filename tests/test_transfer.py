"""Transfer: moves as ratios, the prior in the search and the prompt, and `llmzero transfer` end to end."""

import json
import random
import subprocess
import sys

import pytest

from llmzero.agents._base import NodeView, Proposal, ProposalContext
from llmzero.agents.llm import render_system
from llmzero.space import DEFAULT_SPACE
from llmzero.strategy import Strategy
from llmzero.transfer import Move, Prior, apply_move, default_strategy, fixed_config, map_strategy, target_config

SPACE = DEFAULT_SPACE.with_defaults(max_completion_length=40)
PRIOR = Prior(source="runs/src", task="number_sorting", val_score=0.5, pattern="monotone: max_completion_length",
              moves=(Move({"max_completion_length": (18, 27), "learning_rate": (1e-4, 5e-5)}, steps=30),
                     Move({"entropy_coef": (0.0, 0.01), "learning_rate": (5e-5, 1e-4)}, steps=20),
                     Move({"temperature": (1.0, 9.0)}, steps=10)))


def test_moves_transfer_as_ratios_or_values_and_are_made_legal():
    p, repairs = apply_move(SPACE, SPACE.defaults(), PRIOR.moves[0])
    assert p["max_completion_length"] == 60  # 40 x 27/18: the target's own length grows by the same ratio
    assert p["learning_rate"] == pytest.approx(SPACE.defaults()["learning_rate"] / 2)
    assert not repairs
    p, _ = apply_move(SPACE, p, PRIOR.moves[1])
    assert p["entropy_coef"] == 0.01  # from 0 there is no ratio: the value itself
    p, repairs = apply_move(SPACE, p, PRIOR.moves[2])
    assert p["temperature"] == SPACE["temperature"].high and repairs  # clamped, and the repair is recorded
    assert repairs[0].param == "temperature"
    p, _ = apply_move(SPACE, SPACE.defaults(), Move({"not_a_param": (1, 2)}, steps=5))
    assert p == SPACE.defaults()  # a parameter the target does not have is dropped


@pytest.mark.parametrize("start, replayed", [
    (1.0, [1.0, 1.0]),  # at the default there is nothing to warm: not 1.4, then 1.8
    (0.5, [0.7, 0.9]),  # the same cold start: the same warming
    (0.6, [0.84, 1.0]),  # 0.84 x 9/7 would pass the default: it stops there
    (1.2, [1.2, 1.2]),  # a departure on the other side is not this move's to undo
])
def test_a_move_back_toward_the_default_undoes_only_the_targets_own_departure(start, replayed):
    # a search started cold (temperature 0.5) warmed its rollouts: moves back toward the default of 1.0
    cold = Prior(source="runs/cold", task="word_sorting", val_score=0.4, pattern="monotone: temperature",
                 moves=(Move({"temperature": (0.5, 0.7)}, steps=40), Move({"temperature": (0.7, 0.9)}, steps=40)))
    strategy, _ = map_strategy(cold, SPACE, {**SPACE.defaults(), "temperature": start})
    assert [s.params["temperature"] for s in strategy.stages] == pytest.approx(replayed)


def test_which_moves_go_back_toward_the_default():
    from llmzero.transfer import returns

    assert returns("learning_rate", 5e-5, 1e-4, 1e-4) and returns("entropy_coef", 0.02, 0.01, 0.0)
    assert not returns("learning_rate", 1e-4, 5e-5, 1e-4)  # away from it
    assert not returns("temperature", 0.5, 1.5, 1.0)  # past it: a move of its own
    assert not returns("max_completion_length", 40, 27, 18)  # each task sets its own length: no shared default
    p, _ = apply_move(SPACE, SPACE.defaults(), Move({"learning_rate": (5e-5, 1e-4)}, steps=5))
    assert p == SPACE.defaults()  # a lone return to the default learning rate does not double the target's


def test_map_strategy_chains_the_moves_from_the_target_defaults():
    strategy, repairs = map_strategy(PRIOR, SPACE)
    assert [s.steps for s in strategy.stages] == [30, 20, 10]
    assert strategy.stages[0].params["max_completion_length"] == 60
    assert strategy.stages[1].params["learning_rate"] == pytest.approx(SPACE.defaults()["learning_rate"])
    assert strategy.stages[2].params["entropy_coef"] == 0.01  # unchanged parameters carry over
    assert len(repairs) == 1 and strategy.meta["source_task"] == "number_sorting"
    Strategy.from_dict(strategy.to_dict(), space=SPACE)  # every stage is legal in the target space


def test_the_replays_control_keeps_the_target_start_over_the_same_stages():
    strategy, _ = map_strategy(PRIOR, SPACE)
    start = {**SPACE.defaults(), "learning_rate": 3e-4}
    control = default_strategy(strategy, start)
    assert [s.params for s in control.stages] == [start] * 3
    assert [(s.steps, s.mode) for s in control.stages] == [(s.steps, s.mode) for s in strategy.stages]
    assert control.meta["control_of"] == "replay"


def test_the_searchs_control_is_the_same_search_without_the_prior():
    import dataclasses

    from llmzero.transfer import noprior_config

    cfg = target_config(dataclasses.replace(PRIOR, config={"task": {"name": "number_sorting"}, "seed": 3,
                                                           "budget": {"compute": 5000}}), "countdown")
    bare = noprior_config(cfg)
    assert cfg.search.prior == "runs/src" and bare.search.prior is None
    assert bare.model_copy(update={"search": cfg.search}) == cfg


def test_a_chat_source_keeps_chat_prompts_on_a_reasoning_gym_target():
    import dataclasses

    prior = dataclasses.replace(PRIOR, config={"task": {"name": "rg:leg_counting", "chat": True},
                                               "model": "models/chat", "budget": {"compute": 1000}})
    assert target_config(prior, "rg:basic_arithmetic").task.chat
    assert not target_config(prior, "countdown").task.chat  # the built-in tasks' prompts are compact text
    assert not target_config(dataclasses.replace(PRIOR, config={"task": {"name": "rg:leg_counting"},
                                                                "budget": {"compute": 1000}}),
                             "rg:basic_arithmetic").task.chat


def test_a_lineage_source_transfers_and_its_reference_is_chains_as_deep_as_its_strategy():
    import dataclasses

    # the benchmark's own search: two lineages that start as grid's runs, one stage deep and deepened
    source = {"task": {"name": "arithmetic"}, "budget": {"compute": 250000}, "search": {
        "method": "mcts", "depth": 1, "lineages": 2, "lineage_start": "grid", "soup": 5}}
    prior = dataclasses.replace(PRIOR, config=source)
    cfg = target_config(prior, "number_sorting")  # lineage_start grid and a prior cannot go together
    assert (cfg.search.lineages, cfg.search.lineage_start, cfg.search.prior) == (2, "start", "runs/src")
    ref = fixed_config(cfg, prior)
    assert (ref.search.method, ref.search.lineages, ref.search.prior) == ("fixed", 1, None)
    assert ref.search.depth == len(PRIOR.moves) == 3 and ref.search.soup == 5  # not 1-stage chains
    assert ref.task == cfg.task and ref.budget == cfg.budget
    deeper = fixed_config(target_config(dataclasses.replace(PRIOR, config={**source, "search": {"depth": 5}}),
                                        "number_sorting"), prior)
    assert deeper.search.depth == 5


def test_prior_is_in_the_prompt_and_first_child_follows_it():
    from llmzero.search.methods._base import SearchContext, propose_specs
    from llmzero.search.tree import Tree

    root = NodeView("root", 0, SPACE.defaults(), "complete", val_score=0.3)
    ctx = ProposalContext(space=SPACE, node=root, path=(root,), extra={"prior": PRIOR, "task": "arithmetic"})
    text = render_system(ctx)
    assert "Prior from a search on number_sorting (val 0.500)" in text
    assert "stage 1: max_completion_length 18->27" in text

    class Echo:
        name = "echo"
        closed: set = set()

        def __init__(self):
            self.asked = []

        def propose(self, pctx, k, rng):
            self.asked.append(k)
            params = {**pctx.node.params, "beta": 0.05}
            return [Proposal(params, "echo", "echo")][:k]

    tree = Tree()
    tree.apply("root", "root", {"params": SPACE.defaults(), "val_score": 0.3})

    class Cfg:
        seed = 0

        class search:
            depth, lineages = 3, 1

    sctx = SearchContext(cfg=Cfg, space=SPACE, extra={"prior": PRIOR})
    echo = Echo()
    specs = propose_specs(sctx, tree, "root", 2, echo, random.Random(0))
    assert echo.asked == [1]  # the prior takes one slot, the proposer the rest
    assert [s.proposed_by for s in specs] == ["prior", "echo"]
    assert specs[0].params == apply_move(SPACE, SPACE.defaults(), PRIOR.moves[0])[0]
    # a node whose prior move is already among its children gets none again
    tree.apply("node_created", "n1", {"parent_id": "root", "depth": 1, "params": specs[0].params, "steps": 5})
    specs = propose_specs(sctx, tree, "root", 2, echo, random.Random(0))
    assert echo.asked[-1] == 2 and all(s.proposed_by == "echo" for s in specs)


# -- end to end ---------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_transfer_cli_replays_searches_and_compares_with_fixed(xs_base, small_sizes, tmp_path):
    from llmzero.models.base import SFTSettings, build_base
    from llmzero.search import SearchRun
    from llmzero.tasks import get_task
    from llmzero.transfer import load_prior

    from conftest import XS_SFT
    from test_search import BUDGET, config

    cfg = config(xs_base, BUDGET // 2, method="mcts")  # the transfer's searches spend the same budget
    cfg["task"]["sizes"] = small_sizes.__dict__
    src = tmp_path / "src"
    from llmzero.config import parse_config

    r = SearchRun(parse_config(cfg), src)
    r.run()
    r.close()
    target_base = build_base(get_task("arithmetic", sizes=small_sizes), "xs", seed=0, sft=SFTSettings(**XS_SFT))
    out = tmp_path / "tr"
    cmd = [sys.executable, "-m", "llmzero.cli", "transfer", "--from", str(src), "--task", "arithmetic",
           "--model", target_base.path, "--out", str(out), "--json"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-2000:]
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert report["source_task"] == "number_sorting" and report["task"] == "arithmetic"
    results = report["results"]
    assert set(results) == {"replay", "default", "search", "fixed"}
    for part, r in results.items():
        assert 0 <= r["test_score"] <= 1, part
        assert r["vs_fixed"] == pytest.approx(r["test_score"] / results["fixed"]["test_score"] - 1)
    # the replayed strategy is the source's moves mapped onto arithmetic's space
    from llmzero.tasks import task_space

    prior = load_prior(src)
    target_space = task_space(get_task("arithmetic", sizes=small_sizes))
    expected, _ = map_strategy(prior, target_space)
    replayed = Strategy.load(out / "replay" / "strategy.yaml")
    assert [s.params for s in replayed.stages] == [s.params for s in expected.stages]
    # the search started from the prior: the root's first child follows the prior's first move, unless
    # that move changes nothing here (the source's best path may begin by keeping the defaults), when
    # the prior proposes nothing at the root and the proposer's own options come first
    from llmzero.search import Journal

    tree = Journal(out / "search" / "journal.sqlite").replay()
    first = tree.nodes[tree.root.children[0]]
    moved = apply_move(target_space, tree.root.params, prior.moves[0])[0]
    if moved != tree.root.params:
        assert first.transition["proposed_by"] == "prior"
        assert first.params == moved
    else:
        assert all(tree.nodes[c].transition["proposed_by"] != "prior" for c in tree.root.children)
    assert Journal(out / "fixed" / "journal.sqlite").replay().meta["config"]["search"]["method"] == "fixed"
    # running it again resumes: nothing is trained twice
    parts = ("replay", "search", "fixed") + (() if results["default"].get("same_as") else ("default",))
    before = {p: (out / p / "summary.json").stat().st_mtime for p in parts}
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and json.loads(again.stdout.strip().splitlines()[-1])["results"] == results
    assert before == {p: (out / p / "summary.json").stat().st_mtime for p in parts}
    # another start for the target (--param) is another transfer: this one's paths are not reused for it
    other = subprocess.run([*cmd[:-1], "--param", "temperature=0.5", "--only", "replay"], capture_output=True,
                           text=True, timeout=300)
    assert other.returncode == 2 and "trained other stages" in other.stderr, other.stderr
    # the search's control on request: the same search without the prior, the other parts kept
    res = subprocess.run([*cmd[:-1], "--only", "noprior", "--json"], capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-2000:]
    both = json.loads(res.stdout.strip().splitlines()[-1])["results"]
    assert set(both) == {"replay", "default", "search", "noprior", "fixed"}
    assert both["search"]["vs_noprior"] == pytest.approx(both["search"]["test_score"] / both["noprior"]["test_score"] - 1)
    primed, bare = (Journal(out / p / "journal.sqlite").replay().meta["config"] for p in ("search", "noprior"))
    assert primed["search"].pop("prior") == str(src) and bare["search"].pop("prior") is None
    assert primed == bare  # all else the same: seed, budget, search
    # llmzero show prints the table of a transfer directory; report and analyze point at its searches
    shown = subprocess.run([sys.executable, "-m", "llmzero.cli", "show", str(out)], capture_output=True, text=True,
                           timeout=120)
    assert shown.returncode == 0, shown.stderr
    table = shown.stdout[:shown.stdout.index("compute: generated tokens.")]  # the table, not its caption
    rows = {cells[0]: cells[1:] for line in table.splitlines() if (cells := line.split())}
    refs = [ref for ref in ("default", "noprior", "fixed") if ref in both]  # after test and vs base
    for part in ("replay", "search", "noprior", "fixed"):  # every cell whole in 80 columns (a pipe's width)
        assert len(rows[part]) == 4 + len(refs), (part, shown.stdout)
        assert rows[part][0] == f"{both[part]['test_score']:.3f}", (part, shown.stdout)
        assert rows[part][-1] == f"{both[part]['compute']:,}", (part, shown.stdout)
    assert rows["search"][2 + refs.index("noprior")] == f"{100 * both['search']['vs_noprior']:+.1f}%"
    for command in ("report", "analyze"):
        r = subprocess.run([sys.executable, "-m", "llmzero.cli", command, str(out)], capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 2 and "it is a transfer directory" in r.stderr, r.stderr
        assert str(out / "search") in r.stderr and str(out / "noprior") in r.stderr


@pytest.mark.parametrize("args, words", [
    (["--from", "/nonexistent/run", "--task", "countdown"], ["from=", "journal.sqlite"]),
    (["--from", ".", "--task", "countdown", "--only", "everything"], ["only='everything'", "replay"]),
    (["--from", ".", "--task", "countdown", "--param", "temperature"], ["param='temperature'", "NAME=VALUE"]),
])
def test_transfer_bad_input_is_one_line_and_exit_2(args, words, tmp_path):
    res = subprocess.run([sys.executable, "-m", "llmzero.cli", "transfer", *args], capture_output=True, text=True,
                         cwd=tmp_path, timeout=120)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and all(w in lines[0] for w in words), lines


@pytest.mark.slow
def test_the_replays_control_trains_its_stages_with_the_target_defaults_paired_by_seed(xs_base, small_sizes,
                                                                                      tmp_path, monkeypatch):
    import dataclasses

    from typer.testing import CliRunner

    import llmzero.transfer as transfer
    from llmzero.cli import app

    from test_search import config

    raw = config(xs_base, soup=3)  # a source with a final soup: each path ends in the soup of its stages
    raw["task"]["sizes"] = small_sizes.__dict__
    prior = Prior(source="runs/src", task="number_sorting", val_score=0.5, pattern="-", config=raw,
                  moves=(Move({}, steps=3), Move({"entropy_coef": (0.0, 0.05), "learning_rate": (1e-4, 5e-4)}, steps=3)))
    monkeypatch.setattr(transfer, "load_prior", lambda source: prior)
    out = tmp_path / "tr"
    args = ["transfer", "--from", "runs/src", "--task", "number_sorting", "--only", "replay", "--only", "default",
            "--out", str(out), "--json"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output[-2000:]
    results = json.loads(res.output.strip().splitlines()[-1])["results"]
    assert set(results) == {"replay", "default"} and "same_as" not in results["default"]
    replay = json.loads((out / "replay" / "stages.json").read_text())
    default = json.loads((out / "default" / "stages.json").read_text())
    start = {**DEFAULT_SPACE.defaults(), **json.loads(json.dumps(replay[0]["stage"]["params"]))}
    assert [s["stage"]["params"] for s in default] == [start, start]  # the target's starting parameters throughout
    assert [s["stage"]["steps"] for s in default] == [s["stage"]["steps"] for s in replay] == [3, 3]
    assert replay[1]["stage"]["params"]["entropy_coef"] == 0.05
    # the first stage changed nothing on either path: the same stage, bit for bit (same base, seed and data)
    def curves(stage):  # the training metrics, without the clock's
        return [{k: v for k, v in h.items() if "time" not in k and "per_second" not in k} for h in stage["history"]]

    assert curves(default[0]) == curves(replay[0]) and default[0]["val_score"] == replay[0]["val_score"]
    assert curves(default[1]) != curves(replay[1])  # the moved stage trained otherwise
    assert results["replay"]["vs_default"] == pytest.approx(
        results["replay"]["test_score"] / results["default"]["test_score"] - 1)
    assert results["default"]["vs_default"] == 0
    for part, stages in (("replay", replay), ("default", default)):
        r, summary = results[part], json.loads((out / part / "summary.json").read_text())
        best = max(range(2), key=lambda i: (stages[i]["val_score"], -i))
        assert r["path_test_score"] == summary["test_score"]  # the last stage's; the final model is the soup
        assert r["soup"]["stages"][0] == f"stage-{best}" and r["test_score"] == r["soup"]["test_score"]
        assert r["soup"]["val_score"] >= stages[best]["val_score"]  # greedy: never below its first member
        assert (out / part / "soup").is_dir() == (len(r["soup"]["stages"]) > 1)
    made = (out / "replay" / "soup.json").stat().st_mtime
    again = CliRunner().invoke(app, args)  # resumed: nothing trained or souped twice
    assert again.exit_code == 0 and json.loads(again.output.strip().splitlines()[-1])["results"] == results
    assert (out / "replay" / "soup.json").stat().st_mtime == made
    # --only runs some parts; the report keeps every part done before
    again = CliRunner().invoke(app, ["transfer", "--from", "runs/src", "--task", "number_sorting", "--only", "replay",
                                     "--out", str(out), "--json"])
    assert again.exit_code == 0 and json.loads(again.output.strip().splitlines()[-1])["results"] == results
    assert json.loads((out / "transfer.json").read_text())["results"] == results

    # a strategy that keeps the starting parameters is its own control: nothing is trained twice
    kept = dataclasses.replace(prior, moves=(Move({}, steps=3), Move({}, steps=3)))
    monkeypatch.setattr(transfer, "load_prior", lambda source: kept)
    res = CliRunner().invoke(app, [*args[:-2], str(tmp_path / "kept"), "--json"])
    assert res.exit_code == 0, res.output[-2000:]
    results = json.loads(res.output.strip().splitlines()[-1])["results"]
    assert results["default"]["same_as"] == "replay" and results["default"]["soup"] == results["replay"]["soup"]
    assert not (tmp_path / "kept" / "default").exists()
