"""Real searches with a tiny model: every method, one budget, determinism, resume after kill -9,
checkpoint garbage collection and replay of the exported strategy."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from llmzero.config import METHODS, ConfigError, load_config, parse_config
from llmzero.search import JOURNAL, Journal, NodeState, SearchRun

pytestmark = pytest.mark.slow

BUDGET = 6000  # generated tokens: about ten 4-step stages of the xs model


def config(xs_base, budget: int = BUDGET, **search) -> dict:
    return {
        "task": {"name": "number_sorting"},
        "model": xs_base.path,
        "seed": 1,
        "params": {"num_generations": 4},
        "training": {"prompts_per_step": 4},
        "search": {"depth": 2, "steps_per_stage": 4, "branching": 2, "max_children": 3, "proposer": "skill",
                   "grid": {"learning_rate": [1e-4, 3e-4, 1e-3], "entropy_coef": [0.0, 0.01]},
                   "pbt": {"population": 3}, **search},
        "budget": {"compute": budget},
        "executor": {"workers": 1},
    }


def run(cfg: dict | None, out: Path, workers=None, resume: bool = False) -> tuple[dict, SearchRun]:
    r = SearchRun(None if resume else parse_config(cfg), out, workers=workers, resume=resume)
    summary = r.run()
    r.close()
    return summary, r


def assert_spends(summary: dict, r: SearchRun, budget: int = BUDGET) -> None:
    """Never more than the budget, since a stage stops before a step could cross its cap, and not much
    less: what is left pays for neither one more stage nor the cap's margin (one step of every draw whose
    completions all run to the length cap). A fixed share such as 90% would hold on one CPU and not on
    another, whose kernels make other completions."""
    assert summary["budget_spent"] <= budget, summary
    done = [n for n in r.tree.stages() if n.state is NodeState.COMPLETE]
    margin = max(n.compute for n in done) + max(r.worst_step(n.params) * max(1, n.draws) for n in done)
    assert budget - summary["budget_spent"] < margin, summary


@pytest.mark.parametrize("method", METHODS)
def test_every_method_spends_the_same_budget(method, xs_base, tmp_path):
    summary, r = run(config(xs_base, method=method), tmp_path / method)
    assert_spends(summary, r)
    assert summary["nodes"] >= 4 and summary["best_node"] is not None
    for key in ("run", "method", "best_node", "best_val", "test_score", "base_test_score", "budget_spent",
                "budget_total", "nodes", "failed", "pruned", "wall_seconds", "strategy"):
        assert key in summary
    assert 0 <= summary["test_score"] <= 1 and summary["strategy"]
    tree = Journal(tmp_path / method / JOURNAL).replay()
    assert tree.signature() == r.tree.signature()  # the journal replays to the live tree
    events = [k for _, _, k, _, _ in Journal(tmp_path / method / JOURNAL).events()]
    assert events.count("test_scored") == 1
    if method in ("mcts", "skill"):
        assert "proposal" in events
        assert all(n.transition.get("proposed_by") == "skill" for n in tree.stages())
    if method == "grid":  # static configurations: a child never changes its parent's parameters
        for n in tree.stages():
            if n.depth == 2:
                assert n.params == tree.nodes[n.parent_id].params
    # garbage collection kept every checkpoint the search still needs, and deleted the rest
    for n in tree.stages():
        if n.checkpoint:
            assert Path(n.checkpoint).exists() != n.deleted, n.id
    for node_id in r.needed_checkpoints():
        assert Path(tree.nodes[node_id].checkpoint).exists()
    assert all(Path(n.checkpoint).exists() for n in tree.path(summary["best_node"])[1:])


def test_same_config_and_seed_give_the_same_tree(xs_base, tmp_path):
    cfg = config(xs_base, BUDGET // 2, method="mcts")  # half the budget: three or four stages, three times
    a, ra = run(cfg, tmp_path / "a", workers=2)
    b, rb = run(cfg, tmp_path / "b", workers=2)
    # the root's two children and at least one grown from them (a stage whose share of what is left could
    # not pay for one step at the length cap is not started: before, a fourth one-step stage was)
    assert len(ra.tree.stages()) >= 3 and max(n.depth for n in ra.tree.stages()) == 2
    assert ra.tree.signature() == rb.tree.signature()
    assert a["test_score"] == b["test_score"]
    c, rc = run({**cfg, "seed": 2}, tmp_path / "c", workers=2)
    assert rc.tree.signature() != ra.tree.signature()


def test_pruning_saves_budget_and_is_reported(xs_base, tmp_path):
    cfg = config(xs_base, method="random", early_stop={"enabled": True, "margin": 0.0, "min_depth": 1})
    summary, r = run(cfg, tmp_path / "p")
    assert summary["pruned"] >= 1 and summary["pruned_savings"] > 0
    for n in r.tree.in_state(NodeState.PRUNED):
        assert not n.children  # a pruned branch is never expanded


class _Checked(SearchRun):
    """Garbage collection that proves, after each pass, that nothing needed was deleted."""

    def _collect_garbage(self):
        super()._collect_garbage()
        for n in self.tree.in_state(NodeState.PENDING, NodeState.RUNNING):
            parent = self.tree.nodes[n.parent_id]
            assert parent.checkpoint is None or Path(parent.checkpoint).exists()
        for node_id in self.method.expandable(self.tree, self.ctx):
            assert Path(self.tree.nodes[node_id].checkpoint).exists()


def test_gc_never_deletes_a_needed_checkpoint(xs_base, tmp_path):
    cfg = {**config(xs_base, method="mcts", depth=2, max_children=2), "storage": {"keep_top_k": 1}}
    r = _Checked(parse_config(cfg), tmp_path / "gc")
    summary = r.run()
    deleted = [n for n in r.tree.stages() if n.deleted]
    assert deleted, "the test needs a tree where something could be deleted"
    assert summary["disk_bytes"] > 0


def test_resume_after_kill_loses_only_in_flight_stages(xs_base, tmp_path):
    cfg = config(xs_base, method="mcts")
    cfg["executor"]["workers"] = 2
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "llmzero.cli", "search", "c.yaml", "--out", "run", "--json"]
    log = (tmp_path / "search.log").open("w")
    p = subprocess.Popen(cmd, cwd=tmp_path, start_new_session=True, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 300
    finished_before = 0
    while time.time() < deadline and p.poll() is None:
        time.sleep(0.5)
        if (run_dir / JOURNAL).exists():
            db = sqlite3.connect(run_dir / JOURNAL)
            try:
                finished_before = db.execute("SELECT COUNT(*) FROM events WHERE kind='stage_finished'").fetchone()[0]
                running = db.execute("SELECT COUNT(*) FROM events WHERE kind='stage_started'").fetchone()[0]
            except sqlite3.OperationalError:  # the file exists, its table not yet: look again
                continue
            finally:
                db.close()
            if finished_before >= 2 and running > finished_before:
                break
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    assert finished_before >= 2, (tmp_path / "search.log").read_text()[-2000:]
    before = Journal(run_dir / JOURNAL).replay()
    done_before = {n.id for n in before.stages() if n.state in (NodeState.COMPLETE, NodeState.FAILED, NodeState.PRUNED)}
    in_flight = {n.id for n in before.in_state(NodeState.RUNNING)}
    assert in_flight and before.finished is None

    r = subprocess.run([sys.executable, "-m", "llmzero.cli", "search", "--resume", "run", "--json"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    resumed = SearchRun(None, run_dir, resume=True)
    assert_spends(summary, resumed)
    resumed.close()
    starts: dict[str, int] = {}
    limits: dict[str, set[int]] = {}
    for _, _, kind, node_id, payload in Journal(run_dir / JOURNAL).events("stage_started"):
        starts[node_id] = starts.get(node_id, 0) + 1
        limits.setdefault(node_id, set()).add(payload["token_limit"])
    assert all(starts[n] == 1 for n in done_before)  # finished stages were not trained again
    assert all(starts[n] == 2 for n in in_flight)  # in-flight ones were, once
    assert all(len(limits[n]) == 1 for n in in_flight)  # with the token cap they started with
    assert all(c == 1 for n, c in starts.items() if n not in in_flight)
    shown = subprocess.run([sys.executable, "-m", "llmzero.cli", "show", "run"], cwd=tmp_path, capture_output=True,
                           text=True, timeout=120)  # the tree, every stage in it, and the best path's end
    assert shown.returncode == 0, shown.stderr
    assert all(f" {n.id} [" in shown.stdout for n in resumed.tree.stages())
    assert f"best {summary['best_node']}: val {summary['best_val']:.3f}" in shown.stdout


def test_a_moved_run_resumes_from_another_directory(xs_base, tmp_path):
    """Stages record their checkpoints and KL references by path; a run directory moved after a kill and
    resumed from elsewhere finds them again by node name, trains on and finishes."""
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config(xs_base, method="mcts")))
    run_dir = tmp_path / "run"
    p = subprocess.Popen([sys.executable, "-m", "llmzero.cli", "search", "c.yaml", "--out", "run", "--json"],
                         cwd=tmp_path, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, finished = time.time() + 300, 0
    while time.time() < deadline and p.poll() is None and finished < 2:
        time.sleep(0.3)
        if (run_dir / JOURNAL).exists():
            db = sqlite3.connect(run_dir / JOURNAL)
            try:
                finished = db.execute("SELECT COUNT(*) FROM events WHERE kind='stage_finished'").fetchone()[0]
            except sqlite3.OperationalError:  # the file exists, its table not yet: look again
                continue
            finally:
                db.close()
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    assert finished >= 2 and Journal(run_dir / JOURNAL).replay().finished is None
    (tmp_path / "moved").mkdir()
    run_dir.rename(tmp_path / "moved" / "run2")
    (tmp_path / "elsewhere").mkdir()
    r = subprocess.run([sys.executable, "-m", "llmzero.cli", "search", "--resume", "../moved/run2", "--json"],
                       cwd=tmp_path / "elsewhere", capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout)
    assert summary["test_score"] is not None
    journal = Journal(tmp_path / "moved" / "run2" / JOURNAL)
    assert list(journal.events("stage_failed")) == []  # every child found its parent's checkpoint
    resumed = SearchRun(None, tmp_path / "moved" / "run2", resume=True)
    assert_spends(summary, resumed)
    assert all(Path(n.checkpoint).is_dir() for n in resumed.tree.stages() if n.checkpoint and not n.deleted)
    resumed.close()


def test_locate_checkpoint_finds_a_node_by_name_in_its_run(tmp_path):
    from llmzero.training import locate_checkpoint

    (tmp_path / "new" / "nodes" / "n3").mkdir(parents=True)
    nodes = tmp_path / "new" / "nodes"
    assert locate_checkpoint(str(tmp_path / "old" / "nodes" / "n3"), nodes) == str(nodes / "n3")  # moved
    assert locate_checkpoint("old/nodes/n3", nodes) == str(nodes / "n3")  # recorded relative to elsewhere
    assert locate_checkpoint(str(nodes / "n3"), nodes) == str(nodes / "n3")
    assert locate_checkpoint(str(tmp_path / "old" / "nodes" / "n4"), nodes) == str(tmp_path / "old" / "nodes" / "n4")
    assert locate_checkpoint(str(tmp_path / "cache" / "n3"), nodes) == str(tmp_path / "cache" / "n3")  # not a node


def test_locate_soup_finds_a_moved_runs_soup(tmp_path):
    from llmzero.training import locate_soup

    (tmp_path / "new" / "soup").mkdir(parents=True)
    run = tmp_path / "new"
    assert locate_soup(str(tmp_path / "old" / "soup"), run) == str(run / "soup")  # the run moved
    assert locate_soup(str(run / "soup"), run) == str(run / "soup")
    assert locate_soup(None, run) is None  # no soup was made
    assert locate_soup(str(tmp_path / "old" / "other"), run) == str(tmp_path / "old" / "other")  # not a soup
    assert locate_soup(str(tmp_path / "old" / "soup"), tmp_path / "empty") == str(tmp_path / "old" / "soup")


def test_ctrl_c_stops_the_search_and_its_workers_in_one_line_and_resume_finishes_it(xs_base, tmp_path):
    """Ctrl-C reaches the whole process group: the search says how to continue (exit 130), no process
    prints a traceback, no worker outlives it, and the resumed run finishes with the whole budget."""
    import psutil

    cfg = config(xs_base, method="mcts")
    cfg["executor"]["workers"] = 2
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    run_dir = tmp_path / "run"
    p = subprocess.Popen([sys.executable, "-m", "llmzero.cli", "search", "c.yaml", "--out", "run"], cwd=tmp_path,
                         start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline, workers = time.time() + 300, []
    while time.time() < deadline and p.poll() is None:
        time.sleep(0.5)
        workers = [c for c in psutil.Process(p.pid).children() if "spawn_main" in " ".join(c.cmdline())]
        if len(workers) == 2 and (run_dir / JOURNAL).exists() and Journal(run_dir / JOURNAL).replay().in_state(
                NodeState.RUNNING):
            break
    assert len(workers) == 2 and p.poll() is None, "the search ended before two workers trained a stage"
    os.killpg(p.pid, signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "stopped: continue with `llmzero search --resume run`" in err
    psutil.wait_procs(workers, timeout=10)
    assert not any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers)

    r = subprocess.run([sys.executable, "-m", "llmzero.cli", "search", "--resume", "run", "--json"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    resumed = SearchRun(None, run_dir, resume=True)
    assert_spends(json.loads(r.stdout), resumed)
    resumed.close()


class _Killed(BaseException):
    """Stands for a kill -9: the journal keeps what was recorded before it."""


class _DiesOnce(SearchRun):
    """A search that dies at ``at``: 'mid-batch' once its third stage is told (the fourth still training),
    'after-batch' once its second batch has trained, before the nodes built from it."""

    def __init__(self, *args, at: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.at, self.told, self.batches = at, 0, 0

    def _tell(self, n, res):
        super()._tell(n, res)
        self.told += 1
        if self.at == "mid-batch" and self.told == 3:
            raise _Killed

    def _after_batch(self, carried, batch, say):
        self.batches += 1
        if self.at == "after-batch" and self.batches == 2:
            raise _Killed
        super()._after_batch(carried, batch, say)


def test_a_resumed_search_builds_the_nodes_an_uninterrupted_one_builds(xs_base, tmp_path):
    """Killed between a batch's stages, or after its stages and before the scaled updates and sibling soups
    built from them, a resumed search retrains what was in flight as that batch, builds the same nodes from
    the whole batch, and grows the same tree as an uninterrupted search."""
    cfg = config(xs_base, BUDGET // 2, method="mcts", sibling_soup=True, scale_updates=True)
    _, whole = run(cfg, tmp_path / "whole", workers=2)
    for at in ("mid-batch", "after-batch"):
        out = tmp_path / at
        killed = _DiesOnce(parse_config(cfg), out, workers=2, at=at)
        with pytest.raises(_Killed):
            killed.run()
        killed.close()
        before = Journal(out / JOURNAL).replay()
        untried = {n.id for n in before.stages() if n.state is NodeState.COMPLETE and not n.free} - {
            p["node"] for *_, p in Journal(out / JOURNAL).events("update_scale_tried")}
        assert untried, f"{at}: the kill left no finished stage without its scaled updates tried"
        _, resumed = run(None, out, resume=True, workers=2)
        tried = [p["node"] for *_, p in Journal(out / JOURNAL).events("update_scale_tried")]
        assert untried <= set(tried) and len(tried) == len(set(tried)), at  # each stage tried once
        assert resumed.tree.signature() == whole.tree.signature(), at


@pytest.mark.parametrize("override, words", [
    ({"search": {"method": "annealing"}}, "search.method='annealing'"),
    ({"search": {"depth": 0}}, "search.depth=0"),
    ({"budget": {}}, "budget.compute=missing"),
    ({"params": {"learning_rate": 1.0}}, "params.learning_rate=1"),
    ({"search": {"grid": {"lr": [1]}}}, "unknown parameter 'lr'"),
    ({"task": {"name": "nope"}}, "unknown task 'nope'"),
    ({"surprise": 1}, "surprise=1 is not allowed: Extra inputs are not permitted"),
    ({"serach": {"depth": 2}}, "serach={'depth': 2} is not allowed: Extra inputs are not permitted; did you "
                               "mean 'search'?"),
    ({"search": {"dpeth": 2}}, "search.dpeth=2 is not allowed: Extra inputs are not permitted; did you mean "
                               "'depth'?"),
    ({"task": {"name": "countdown", "sizes": {"trian": 5}}},
     "task.sizes.trian=5 is not allowed: Extra inputs are not permitted; did you mean 'train'?"),
    ({"search": {"soup": -1}}, "search.soup=-1"),
    ({"search": {"draws": 17}}, "search.draws=17"),
    ({"search": {"draws_min_gain": -0.1}}, "search.draws_min_gain=-0.1"),
    ({"search": {"method": "grid", "sibling_soup": True}},
     "search.sibling_soup=true is not allowed with search.method='grid'"),
    ({"llm": {"curves": True}}, "llm.curves=true is not allowed with llm.backend='llama'"),
])
def test_bad_config_names_field_value_and_allowed(override, words):
    raw = {"task": {"name": "countdown"}, "budget": {"compute": 1000}}
    raw.update(override)
    with pytest.raises(ConfigError) as e:
        parse_config(raw)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_a_misspelled_required_key_is_named_as_the_misspelling_not_as_the_key_missing():
    with pytest.raises(ConfigError) as e:
        parse_config({"task": {"name": "countdown"}, "budgett": {"compute": 1000}})
    assert str(e.value) == ("budgett={'compute': 1000} is not allowed: Extra inputs are not permitted; "
                            "did you mean 'budget'?")
    with pytest.raises(ConfigError) as e:  # a key like no field: no guess, and the missing key first
        parse_config({"task": {"name": "countdown"}, "zzz": 1})
    assert str(e.value) == "budget=missing is not allowed: Field required"


def test_cli_bad_search_input_exits_2(tmp_path):
    (tmp_path / "c.yaml").write_text("task: {name: countdown}\nbudget: {compute: -5}\n")
    r = subprocess.run([sys.executable, "-m", "llmzero.cli", "search", "c.yaml", "--out", "r"], cwd=tmp_path,
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "budget.compute=-5" in r.stderr
    assert not (tmp_path / "r").exists()
    (tmp_path / "d.yaml").write_text("task: {name: countdown}\nbudget: {compute: 1000}\n")
    r = subprocess.run([sys.executable, "-m", "llmzero.cli", "search", "d.yaml", "--out", "r", "--draws", "2",
                        "--draws-min-gain", "-1"], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "search.draws_min_gain=-1" in r.stderr
    assert not (tmp_path / "r").exists()
    r = subprocess.run([sys.executable, "-m", "llmzero.cli", "search", "--resume", "nowhere"], cwd=tmp_path,
                       capture_output=True, text=True)
    assert r.returncode == 2 and "no journal.sqlite" in r.stderr


def test_cli_search_prints_the_strategy_and_writes_the_report(xs_base, tmp_path):
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config(xs_base, method="skill")))
    cmd = [sys.executable, "-m", "llmzero.cli", "search", "c.yaml", "--out", "run", "--soup", "3",
           "--sibling-soup"]
    r = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    tree = Journal(tmp_path / "run" / JOURNAL).replay()
    assert tree.meta["config"]["search"]["sibling_soup"] is True
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    merged = any(s.get("merge") for s in summary["strategy"])
    assert merged == ("averaged" in r.stdout)  # the printed strategy names a merged stage
    assert "discovered strategy" in r.stdout and "test" in r.stdout and "vs base" in r.stdout
    assert "weight soup" in r.stdout  # what the soup made of the run: a soup, or the best node alone
    made = (tmp_path / "run" / "soup.yaml").is_file()  # the soup's recipe, when the soup is the model
    assert made == bool(json.loads((tmp_path / "run" / "summary.json").read_text())["soup"]["path"])
    assert made == ("soup.yaml" in r.stdout.replace("\n", ""))
    assert f"report: {Path('run') / 'report.html'}" in r.stdout.replace("\n", " ")
    html = (tmp_path / "run" / "report.html").read_text()
    assert 'id="tree"' in html and (tmp_path / "run" / "report.md").is_file()


def test_the_draws_control_trains_new_draws_of_the_default_schedule(xs_base, tmp_path):
    summary, r = run(config(xs_base, method="mcts", proposer="draws"), tmp_path / "draws")
    assert_spends(summary, r)
    stages = r.tree.stages()
    assert stages and all(n.params == r.tree.root.params for n in stages)  # no parameter ever moves
    assert all(n.transition.get("proposed_by") == "draws" for n in stages)
    by_parent: dict[str, list[int]] = {}
    for n in stages:
        by_parent.setdefault(n.parent_id, []).append(n.seed)
    assert max(len(s) for s in by_parent.values()) >= 2  # siblings exist: several draws of one stage
    assert all(len(set(s)) == len(s) for s in by_parent.values())  # each its own draw


def test_a_soup_is_the_final_model_when_it_scores_at_least_the_best_node(xs_base, tmp_path):
    import torch
    from safetensors.torch import load_file

    from llmzero.training.evaluate import evaluate_checkpoint

    summary, r = run(config(xs_base, method="mcts", soup=4), tmp_path / "soup")
    soup, best = summary["soup"], r.tree.nodes[summary["best_node"]]
    assert soup["candidates"][0] == best.id and 2 <= len(soup["candidates"]) <= 4
    assert soup["nodes"][0] == best.id and set(soup["nodes"]) <= set(soup["candidates"])
    assert soup["val_score"] >= best.val_score  # chosen on validation: never below the best node there
    length = int(best.params["max_completion_length"])
    assert summary["best_node_test_score"] == evaluate_checkpoint(r.task, best.checkpoint, "test", length)
    if len(soup["nodes"]) > 1:  # the soup was written whole and the test split scored it
        assert summary["final_model"] == soup["path"] == str(tmp_path / "soup" / "soup")
        assert summary["test_score"] == evaluate_checkpoint(r.task, soup["path"], "test", length)
        # soup.yaml rebuilds it: the members' paths trained again (shared stages once), then averaged
        cmd = ["train", "--task", "number_sorting", "--schedule", str(tmp_path / "soup" / "soup.yaml"),
               "--model", xs_base.path, "--out", "replay", "--json"]
        res = subprocess.run([sys.executable, "-m", "llmzero.cli", *cmd], cwd=tmp_path, capture_output=True,
                             text=True, timeout=600)
        assert res.returncode == 0, res.stderr
        replay = json.loads(res.stdout)
        paths = {n.id for i in soup["nodes"] for n in r.tree.path(i)[1:]}
        assert replay["members"] == len(soup["nodes"]) and not replay["failed"]
        assert replay["stages"] == len(paths)  # a stage that two members share is trained once
        assert replay["val_scores"] == [r.tree.nodes[i].val_score for i in soup["nodes"]]  # bit for bit
        assert replay["soup_val_score"] == soup["val_score"] and replay["test_score"] == summary["test_score"]
        rebuilt, found = (load_file(str(Path(d) / "model.safetensors"))
                          for d in (tmp_path / "replay" / "soup", soup["path"]))
        assert rebuilt.keys() == found.keys() and all(torch.equal(rebuilt[k], found[k]) for k in found)
    else:
        assert soup["path"] is None and summary["final_model"] == best.checkpoint
        assert summary["test_score"] == summary["best_node_test_score"]
        assert not (tmp_path / "soup" / "soup.yaml").exists()  # strategy.yaml is the final model's recipe
    for n in soup["candidates"]:  # the garbage collector kept every candidate
        assert Path(r.tree.nodes[n].checkpoint).is_dir()
    again = SearchRun(None, tmp_path / "soup", resume=True)  # a finished run resumed: built and scored once
    assert again.run()["test_score"] == summary["test_score"]
    again.close()
    kinds = [k for _, _, k, _, _ in Journal(tmp_path / "soup" / JOURNAL).events()]
    assert kinds.count("soup_built") == 1 and kinds.count("test_scored") == 1
    (tmp_path / "soup").rename(tmp_path / "moved")  # a run directory moved or copied: its soup found again
    moved = SearchRun(None, tmp_path / "moved", resume=True)
    after = moved.run()
    moved.close()
    assert after["test_score"] == summary["test_score"]
    kinds = [k for _, _, k, _, _ in Journal(tmp_path / "moved" / JOURNAL).events()]
    assert kinds.count("soup_built") == 1 and kinds.count("test_scored") == 1  # not built nor scored again
    shown = subprocess.run([sys.executable, "-m", "llmzero.cli", "show", str(tmp_path / "moved")],
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    if soup["path"]:
        assert after["final_model"] == str(tmp_path / "moved" / "soup")
        assert str(tmp_path / "moved" / "soup") in shown.stdout.replace("\n", "")


def test_exported_strategy_of_averaged_draws_spends_the_budget_and_replays(xs_base, tmp_path):
    # a strategy of plain stages replays bit for bit too: the soup test rebuilds its members' paths
    summary, r = run(config(xs_base, method="skill", draws=2), tmp_path / "draws")
    done = [n for n in r.tree.stages() if n.state is NodeState.COMPLETE]
    # a stage now costs about a quarter of this budget: it stops with less than one stage's cost left
    assert summary["stop_reason"] == "budget spent" and summary["budget_spent"] <= BUDGET
    assert BUDGET - summary["budget_spent"] < max(n.compute for n in done)
    assert len(done) >= 2 and all(n.draws == 2 for n in r.tree.stages())
    for n in done:  # the path counts a stage's steps once; its cost counts both draws
        draws = _draws(r, n.id)
        assert n.cost["steps"] == 2 * n.steps and n.compute == sum(d["generated_tokens"] for d in draws)
        assert len(draws) == 2 and n.val_score >= max(d["val_score"] for d in draws)
    assert all(s["draws"] == 2 for s in summary["strategy"])
    cmd = ["train", "--task", "number_sorting", "--schedule", str(tmp_path / "draws" / "strategy.yaml"),
           "--model", xs_base.path, "--out", "replay", "--json"]
    res = subprocess.run([sys.executable, "-m", "llmzero.cli", *cmd], cwd=tmp_path, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    replay = json.loads(res.stdout)  # same base, parameters, seeds, draws and soups: bit for bit
    assert replay["val_scores"][-1] == summary["best_val"] and replay["test_score"] == summary["test_score"]


def test_an_exported_strategy_replays_with_its_whole_task_model_and_seed_by_default(xs_base, tmp_path):
    # a reasoning-gym task with its own config, sizes and data seed: `llmzero train` reads them off the export
    task = {"name": "rg:basic_arithmetic", "config": {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1},
            "sizes": {"train": 300, "val": 30, "test": 30}, "data_seed": 3}
    summary, r = run({**config(xs_base, method="fixed"), "task": task, "params": {"num_generations": 4,
                                                                               "max_completion_length": 8}},
                     tmp_path / "rg")
    assert summary["failed"] == 0 and summary["best_val"] is not None
    res = subprocess.run([sys.executable, "-m", "llmzero.cli", "train", "--schedule",
                          str(tmp_path / "rg" / "strategy.yaml"), "--out", "replay", "--json"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    replay = json.loads(res.stdout)
    assert replay["task"] == "rg:basic_arithmetic" and replay["base"] == str(Path(xs_base.path))
    assert replay["val_scores"][-1] == summary["best_val"] and replay["test_score"] == summary["test_score"]


@pytest.mark.parametrize("min_gain, kept", [(1.0, 1), (0.0, 2)])
def test_draws_that_average_to_no_gain_give_way_to_single_draws(min_gain, kept, xs_base, tmp_path):
    out = tmp_path / "run"
    summary, r = run(config(xs_base, 2 * BUDGET, method="mcts", draws=2, draws_min_gain=min_gain), out)
    decided = [(node_id, p) for _, _, _, node_id, p in Journal(out / JOURNAL).events("draws_decided")]
    assert len(decided) == 1 and decided[0][1]["draws"] == kept  # decided once
    probe = decided[0][1]["nodes"]
    several = sorted((n for n in r.tree.stages() if n.draw_scores), key=lambda n: int(n.id[1:]))
    assert probe == [n.id for n in several[:3]] and len(several) >= 3  # the first three stages of draws
    for n in several:
        assert len(n.draw_scores) == 2 and n.draw_scores == [d["val_score"] for d in _draws(r, n.id)]
    gain = sum(n.val_score - max(n.draw_scores) for n in several[:3]) / 3
    assert decided[0][1]["gain"] == pytest.approx(gain, abs=1e-4) and gain >= 0  # a soup keeps the best draw
    # the stages created after the decision have its draws; those before it, search.draws
    seq = {node_id: seq for seq, _, _, node_id, _ in Journal(out / JOURNAL).events("node_created")}
    at = next(seq for seq, *_ in Journal(out / JOURNAL).events("draws_decided"))
    after = [n for n in r.tree.stages() if not n.free and seq[n.id] > at]
    assert after and all(n.draws == kept for n in after)
    assert all(n.draws == 2 for n in r.tree.stages() if seq[n.id] < at)
    assert_spends(summary, r, 2 * BUDGET)
    tree = Journal(out / JOURNAL).replay()
    assert tree.draws == kept and tree.signature() == r.tree.signature()


def test_sibling_soups_and_scaled_updates_are_free_children_that_the_search_grows_and_replays(xs_base,
                                                                                          tmp_path):
    import torch
    from safetensors.torch import load_file

    from llmzero.search.loop import UPDATE_SCALES

    cfg = config(xs_base, method="mcts", sibling_soup=True, scale_updates=True, max_children=4)
    summary, r = run(cfg, tmp_path / "sib", workers=2)
    journal = Journal(r.out / JOURNAL)
    assert_spends(summary, r)  # built nodes cost no budget
    assert journal.replay().signature() == r.tree.signature()
    # sibling soups: greedy soups of a parent's best trained children
    soups = [n for n in r.tree.stages() if n.merge]
    tried = [p for *_, p in journal.events("sibling_soup_tried")]
    made = {tuple(sorted(p["nodes"])) for p in tried if len(p["nodes"]) >= 2}
    assert tried and len(soups) == len(made)  # each set of siblings that a soup took makes one node
    assert soups, "no greedy soup of siblings took two of them: nothing to check"
    for s in soups:
        members = [r.tree.nodes[i] for i in s.transition["soup_of"]]
        best = members[0]
        assert s.compute == 0 and s.parent_id == best.parent_id and s.params == best.params
        assert s.val_score >= max(m.val_score for m in members)  # greedy: never below the best sibling
        assert [m["node"] for m in s.merge] == [m.id for m in members[1:]]
        assert len({m.id for m in members}) == len(members) >= 2
    # scaled updates: every trained stage tried once; kept only above the stage, as its sibling
    scaled = [n for n in r.tree.stages() if n.scale != 1.0]
    tried = {p["node"]: p for *_, p in journal.events("update_scale_tried")}
    assert sorted(tried) == sorted(n.id for n in r.tree.stages() if not n.free and n.val_score is not None)
    assert scaled, "no scaled update scored above its stage: nothing to check"
    for n in scaled:
        stage = r.tree.nodes[n.transition["scale_of"]]
        assert n.compute == 0 and n.parent_id == stage.parent_id and n.params == stage.params
        assert n.scale in UPDATE_SCALES and n.val_score > stage.val_score
        assert n.val_score == max(tried[stage.id]["val_scores"])
        parent = r.base_dir if n.parent_id == "root" else r.tree.nodes[n.parent_id].checkpoint
        if not (n.deleted or stage.deleted or r.tree.nodes[n.parent_id].deleted):  # still on disk
            w, a, b = (load_file(str(Path(d) / "model.safetensors")) for d in (n.checkpoint, stage.checkpoint,
                                                                               parent))
            assert all(torch.allclose(w[k], b[k] + n.scale * (a[k] - b[k]), atol=1e-6) for k in w)
    for n in r.tree.stages():  # built nodes do not take the room of trained children
        assert len(r.tree.trained_children(n.id)) <= 4
    # the search grows from built nodes like from any node, and their paths replay bit for bit
    built, replayed = [n for n in r.tree.stages() if n.free], False
    for kind in ("merge", "scale"):
        on_path = [n for n in built if any(getattr(p, kind) not in ([], 1.0) for p in r.tree.path(n.id)[1:])]
        s = max(on_path, key=lambda n: (sum(p.free for p in r.tree.path(n.id)), bool(n.children),
                                        n.val_score))
        if kind == "scale" and any(p.merge for p in r.tree.path(s.id)[1:]) and replayed:
            continue  # the soup's replay already went through a scaled update
        r.strategy(s.id).save(tmp_path / f"{kind}-path.yaml")
        cmd = ["train", "--task", "number_sorting", "--schedule", str(tmp_path / f"{kind}-path.yaml"),
               "--model", xs_base.path, "--out", f"replay-{kind}", "--json"]
        res = subprocess.run([sys.executable, "-m", "llmzero.cli", *cmd], cwd=tmp_path, capture_output=True,
                             text=True, timeout=600)
        assert res.returncode == 0, res.stderr
        assert json.loads(res.stdout)["val_scores"][-1] == s.val_score
        replayed = any(p.scale != 1.0 for p in r.tree.path(s.id)[1:])
    # a node published but not journaled (killed in between) is removed on resume; journaled nodes stay
    stale = [r.out / "nodes" / f"n{len(r.tree.nodes)}", r.out / "nodes" / f"n{len(r.tree.nodes)}.tmp-soup"]
    for d in stale:
        d.mkdir()
    again = SearchRun(None, r.out, resume=True)
    again._requeue_in_flight()
    again.close()
    kept = [n for n in r.tree.stages() if n.checkpoint and not n.deleted]
    assert not any(d.exists() for d in stale) and kept and all(Path(n.checkpoint).is_dir() for n in kept)


def _draws(r: SearchRun, node_id: str) -> list[dict]:
    """The draws a stage_finished event recorded for ``node_id``."""
    events = Journal(r.out / JOURNAL).events("stage_finished")
    return [p["draws"] for _, _, _, n, p in events if n == node_id][-1]


def test_example_configs_are_valid():
    for path in Path(__file__).parent.parent.glob("examples/*.yaml"):
        cfg = load_config(path)
        assert cfg.budget.compute > 0


def test_mcts_with_the_llm_agent_records_its_cost(xs_base, tmp_path):
    answers = [
        {"diagnosis": "entropy is falling", "decision": "expand", "proposals": [
            {"changes": [{"name": "entropy_coef", "value": 0.01}], "rationale": "explore more",
             "expected_effect": "entropy up"}]},
        {"diagnosis": "bad", "decision": "expand", "proposals": [
            {"changes": [{"name": "learning_rate", "value": 1.0}], "rationale": "much faster", "expected_effect": "?"}]},
        "not json at all",
    ]
    path = tmp_path / "transcript.jsonl"
    path.write_text("".join(json.dumps({"messages": [], "text": a if isinstance(a, str) else json.dumps(a),
                                        "prompt_tokens": 900, "completion_tokens": 80, "seconds": 1.5}) + "\n"
                            for a in answers))
    cfg = config(xs_base, method="mcts", proposer="llm")
    cfg["llm"] = {"backend": "replay", "path": str(path), "answer": "free"}  # the answers write their changes
    summary, r = run(cfg, tmp_path / "llm")
    assert summary["llm_calls"] >= 3 and summary["llm_prompt_tokens"] == 900 * summary["llm_calls"]
    assert summary["llm_failures"] >= 1 and summary["proposals_repaired"] >= 1
    by = {n.transition.get("proposed_by") for n in r.tree.stages()}
    assert "llm" in by and "skill" in by  # skill fallbacks fill in for the garbage answer
    records = [p for _, _, _, _, p in Journal(tmp_path / "llm" / JOURNAL).events("proposal")]
    assert all(rec["agent"]["system"].count("Task: number_sorting") == 1 for rec in records)
    assert all(rec["agent"]["prompt"].startswith("Now: ") for rec in records)
    # TensorBoard: one run per node, nested along its path, with TRL's metrics and the val score
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for n in r.tree.in_state(NodeState.COMPLETE, NodeState.PRUNED):
        logdir = tmp_path / "llm" / "tensorboard" / "/".join(x.id for x in r.tree.path(n.id)[1:])
        acc = EventAccumulator(str(logdir))
        acc.Reload()
        tags = acc.Tags()["scalars"]
        assert {"reward", "entropy", "frac_reward_zero_std", "val_score"} <= set(tags), (n.id, tags)
        assert [e.step for e in acc.Scalars("reward")] == [int(h["step"]) for h in n.history]
        assert acc.Scalars("val_score")[-1].value == pytest.approx(n.val_score)
    lr = [n.params["learning_rate"] for n in r.tree.stages() if "much faster" in n.transition.get("reason", "")]
    assert lr and all(v <= 1e-3 for v in lr)  # clamped to x10 of the current value, and recorded


def test_an_agent_that_closes_branches_leaves_no_budget_unspent(xs_base, tmp_path):
    """Every answer says "stop": the branches that did not improve are closed (journaled, their calls
    counted), and once nothing else is left the search reopens them instead of stopping early."""
    answer = {"diagnosis": "no progress", "decision": "stop", "proposals": [
        {"changes": [{"name": "learning_rate", "value": 2e-4}], "rationale": "try faster",
         "expected_effect": "?"}]}
    path = tmp_path / "transcript.jsonl"
    path.write_text(json.dumps({"messages": [], "text": json.dumps(answer), "prompt_tokens": 900,
                                "completion_tokens": 80, "seconds": 1.5}) + "\n")
    cfg = config(xs_base, method="mcts", proposer="llm", early_stop={"enabled": False}, deepen=False)
    cfg["llm"] = {"backend": "replay", "path": str(path), "answer": "free"}
    cfg["budget"] = {"compute": 3 * BUDGET}  # more than the whole tree (3 + 9 stages) costs
    summary, r = run(cfg, tmp_path / "stop")
    j = Journal(tmp_path / "stop" / JOURNAL)
    proposals = [(node_id, p) for _, _, _, node_id, p in j.events("proposal")]
    reopened = [p for _, _, _, _, p in j.events("branches_reopened")]
    closed = {node_id for node_id, p in proposals if p.get("closed")}
    assert closed, "the test needs a branch that did not improve on its parent"
    assert summary["llm_calls"] == len(proposals)  # the closing calls count too
    assert summary["llm_prompt_tokens"] == 900 * len(proposals)
    assert len(reopened) == 1 and set(reopened[0]["nodes"]) == closed
    assert summary["nodes"] == 12 and summary["stop_reason"] == "nothing left to expand"
    assert all(len(r.tree.nodes[i].children) == 3 for i in closed)  # each closed branch was grown after all
    assert j.replay().closed == closed == r.tree.closed


@pytest.mark.parametrize("method", ["mcts"])  # skill deepens by the same code (TreeSearch.ask)
def test_a_budget_larger_than_the_tree_deepens_it_instead_of_going_unspent(method, xs_base, tmp_path):
    """The depth-2 tree of 3 + 9 stages costs about 2 x BUDGET; given 3 x BUDGET the search deepens
    (journaled), grows the kept leaves and spends the budget. The journal replays to the same tree."""
    cfg = config(xs_base, method=method, early_stop={"enabled": False})
    cfg["budget"] = {"compute": 3 * BUDGET}
    summary, r = run(cfg, tmp_path / method)
    j = Journal(tmp_path / method / JOURNAL)
    deepened = [p for _, _, _, _, p in j.events("depth_extended")]
    assert deepened and deepened[0]["depth"] == 3, summary
    assert [p["depth"] for p in deepened] == list(range(3, 3 + len(deepened)))
    assert_spends(summary, r, 3 * BUDGET)
    assert summary["stop_reason"] == "budget spent"
    deep = [n for n in r.tree.stages() if n.depth > 2]
    assert deep and all(r.tree.nodes[n.parent_id].depth == n.depth - 1 for n in deep)
    first = [n for n in deep if n.depth == 3]
    assert first[0].parent_id == deepened[0]["nodes"][0]  # the best kept leaf grows first
    assert j.replay().signature() == r.tree.signature() and j.replay().depth_limit == r.tree.depth_limit


def test_grid_that_has_run_its_whole_grid_deepens_its_best_runs_and_spends_the_budget(xs_base, tmp_path):
    """Two configurations of two stages cost about half of BUDGET: grid then trains its best runs on past
    the configured depth (journaled) until the budget is spent; with ``deepen: off`` it stops there."""
    grid2 = {"learning_rate": [1e-4, 3e-4]}
    cfg = config(xs_base, method="grid", grid=grid2, early_stop={"enabled": False})
    summary, r = run(cfg, tmp_path / "grid")
    j = Journal(tmp_path / "grid" / JOURNAL)
    deepened = [p for _, _, _, _, p in j.events("depth_extended")]
    assert [p["depth"] for p in deepened] == list(range(3, 3 + len(deepened))) and deepened, summary
    assert_spends(summary, r)
    assert summary["stop_reason"] == "budget spent"
    deep = [n for n in r.tree.stages() if n.depth > 2]
    assert deep and all(n.params == r.tree.nodes[n.parent_id].params for n in deep)  # static configurations
    assert {r.tree.nodes[n.parent_id].chain for n in deep} <= {0, 1} and all(n.chain is not None for n in deep)
    at3 = [r.tree.nodes[n.parent_id] for n in deep if n.depth == 3]
    assert at3[0].id == deepened[0]["nodes"][0] == max(at3, key=lambda n: n.val_score).id  # the best run first
    assert j.replay().signature() == r.tree.signature() and j.replay().depth_limit == r.tree.depth_limit
    off, r_off = run(config(xs_base, method="grid", grid=grid2, early_stop={"enabled": False}, deepen="off"),
                     tmp_path / "off")
    assert off["nodes"] == 4 and off["stop_reason"] == "nothing left to expand"
    assert BUDGET - off["budget_spent"] > 2 * max(n.compute for n in r_off.tree.stages())  # stages left unpaid


def test_lineages_grow_side_by_side_and_spend_the_budget(xs_base, tmp_path):
    """``search.lineages: 2``: two paths from the base model, one stage at a time each and no branching
    below the root, until the budget is spent; the journal replays to the same tree."""
    cfg = config(xs_base, method="mcts", lineages=2, depth=1, early_stop={"enabled": False})
    summary, r = run(cfg, tmp_path / "lineages", workers=2)
    assert_spends(summary, r)
    assert summary["stop_reason"] == "budget spent"
    tree = r.tree
    firsts = tree.trained_children("root")
    assert len(firsts) == 2
    assert all(len(n.children) <= 1 for n in tree.stages())  # a chain below each first stage
    ends = [n for n in tree.stages() if not n.children]
    assert len(ends) == 2 and min(n.depth for n in ends) >= 2  # both grew past the configured depth of 1
    assert abs(ends[0].depth - ends[1].depth) <= 1  # the shorter lineage grows first
    assert Journal(tmp_path / "lineages" / JOURNAL).replay().signature() == tree.signature()
