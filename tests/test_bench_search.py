"""The search benchmark (bench/search.py) at CI size, through its command line: one method first, then
the rest with a kill -9 in the middle, a resume that trains only what was lost, a re-run that trains
nothing, and the table with its targets and dynamics."""

import importlib.util
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench" / "search.py"
CI = ROOT / "bench" / "configs" / "ci.yaml"
spec = importlib.util.spec_from_file_location("bench_search", BENCH)
search_mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(search_mod)
METHODS = ["base", "fixed", "grid", "llmzero-noLLM", "llmzero"]
REQUIRED = ("task", "method", "seed", "test_score", "base_test_score", "best_val", "base_val", "budget_spent",
            "budget_total", "llm_tokens", "llm_calls", "llm_seconds", "wall_seconds", "nodes",
            "compute_to_grid_best", "run")


def bench(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, str(BENCH), *args], cwd=ROOT, capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return r


def events(run: Path, kind: str | None = None) -> list[tuple]:
    db = sqlite3.connect(run / "journal.sqlite")
    q = "SELECT seq, kind, node_id FROM events" + (" WHERE kind=?" if kind else "") + " ORDER BY seq"
    rows = db.execute(q, (kind,) if kind else ()).fetchall()
    db.close()
    return rows


def count(run: Path, kind: str) -> int:
    try:
        return len(events(run, kind)) if (run / "journal.sqlite").is_file() else 0
    except sqlite3.OperationalError:  # the journal's file exists but its tables do not yet
        return 0


@pytest.mark.slow
def test_ci_benchmark_runs_resumes_and_tabulates(tmp_path):
    out, results = tmp_path / "runs", tmp_path / "r.json"
    common = ["--out", str(out), "--results", str(results)]
    cell = {m: out / "number_sorting" / m / "seed0" for m in METHODS}

    # 1. one method alone
    r = bench("run", str(CI), *common, "--only-method", "grid")
    assert "grid" in r.stdout and "(new)" in r.stdout
    grid_events = len(events(cell["grid"]))
    assert count(cell["grid"], "run_finished") == 1
    first = json.loads(results.read_text())
    assert [x["method"] for x in first["records"]] == ["grid"]

    # 2. the whole config, killed (-9, with its workers) once the fixed cell has finished two stages
    log = (tmp_path / "bench.log").open("w")
    p = subprocess.Popen([sys.executable, str(BENCH), "run", str(CI), *common], cwd=ROOT, stdout=log,
                         stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 400
    while time.time() < deadline and p.poll() is None:
        time.sleep(0.3)
        if count(cell["fixed"], "stage_finished") >= 2:
            break
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    assert count(cell["fixed"], "stage_finished") >= 2, (tmp_path / "bench.log").read_text()[-3000:]
    assert count(cell["fixed"], "run_finished") == 0, "the kill came too late to test a resume"
    finished_before = {n for _, _, n in events(cell["fixed"], "stage_finished")}
    killed = json.loads(results.read_text())  # rewritten atomically after every cell: still whole
    assert {x["method"] for x in killed["records"]} == {"grid", "base"}

    status = bench("status", str(CI), "--out", str(out)).stdout
    assert re.search(r"fixed +seed 0: started", status)
    assert "2 done, 1 started (will resume), 2 left" in status and "running now" not in status  # killed

    # 3. run again: the fixed cell resumes, the others start; grid is only collected
    t0 = time.time()
    r = bench("run", str(CI), *common)
    print(r.stdout, f"resume run: {time.time() - t0:.1f} s")
    assert re.search(r"fixed +seed 0: .*\(resumed\)", r.stdout), r.stdout
    assert len(events(cell["grid"])) == grid_events  # grid was not trained again
    starts: dict[str, int] = {}
    for _, _, n in events(cell["fixed"], "stage_started"):
        starts[n] = starts.get(n, 0) + 1
    assert all(starts[n] == 1 for n in finished_before)  # finished stages were not trained again

    res = json.loads(results.read_text())
    recs = {x["method"]: x for x in res["records"]}
    assert list(recs) == METHODS and len(res["records"]) == len(METHODS)
    for k in ("platform", "processor", "cpu_count", "cpu_model", "cpu_capability", "python", "torch",
              "llmzero_commit", "date"):
        assert k in res["machine"]
    assert res["machine"]["packages"]["trl"] and res["machine"]["packages"]["reasoning-gym"]
    assert res["config"]["tasks"] == ["number_sorting"]
    base_test = recs["base"]["test_score"]
    for m, x in recs.items():
        assert all(k in x for k in REQUIRED), (m, x)
        assert x["task"] == "number_sorting" and x["seed"] == 0 and x["run"] == f"number_sorting/{m}/seed0"
        for k in ("test_score", "base_test_score", "best_val", "base_val"):
            assert 0 <= x[k] <= 1, (m, k, x[k])
        assert x["base_test_score"] == base_test  # paired: one base model, one test set for every method
        assert x["base_val"] == recs["base"]["base_val"]
        assert x["budget_spent"] <= x["budget_total"]
        if m == "llmzero":
            assert x["llm_tokens"] > 0 and x["llm_calls"] > 0
            # what the agent chose, counted from the journal: one decision per answer, at least one pick each
            answers = sum(x["llm_decisions"].values())
            assert 1 <= answers <= x["llm_calls"] and sum(x["llm_picks"].values()) >= answers
            assert set(x["llm_decisions"]) <= {"expand", "stop", "backup"}
            assert all(1 <= int(o) <= 5 for o in x["llm_picks"])  # menu options, numbered from 1
            assert 0 <= x["llm_own_picks"] <= answers
        else:
            assert x["llm_tokens"] == 0 and x["llm_calls"] == 0 and "llm_picks" not in x
        if m != "base":
            assert x["budget_spent"] >= 0.8 * x["budget_total"] and x["nodes"] >= 2
            assert x["best_val"] >= 0  # the best node by validation
    assert recs["base"]["budget_spent"] == 0 and recs["base"]["test_score"] == recs["base"]["base_test_score"]
    g = recs["grid"]
    assert g["compute_to_grid_best"] is not None and 0 < g["compute_to_grid_best"] <= g["budget_spent"]
    for m, x in recs.items():
        c = x["compute_to_grid_best"]
        assert c is None or 0 <= c <= x["budget_spent"]
        # the validation curve kept in the record gives the same compute to grid's best as the journal
        assert (x["val_curve"] == []) == (m == "base"), (m, x["val_curve"])
        assert [c for c, _ in x["val_curve"]] == sorted(c for c, _ in x["val_curve"])
        assert search_mod.reach_share(x, g) == (None if c is None else c / g["budget_spent"]), m
    dyn = res["dynamics"]
    assert dyn["runs"] == ["number_sorting/llmzero/seed0"] and dyn["paths"] >= 1
    assert {p["name"] for p in dyn["parameters"]} >= {"learning_rate", "max_completion_length"}
    # what a stage adds: every scored stage of the searched cells counted once, one best node a cell
    gains = res["stage_gains"]
    scored = sum(count(cell[m], "stage_finished") for m in METHODS if m != "base")
    assert 0 < sum(g["stages"] for g in gains) <= scored
    assert sum(g["best_of"] for g in gains) == len(METHODS) - 1
    assert {g["depth"] for g in gains} >= {1, 2}

    # 4. once more: a no-op that trains nothing
    before = {m: len(events(cell[m])) for m in METHODS if m != "base"}
    t0 = time.time()
    r = bench("run", str(CI), *common)
    assert r.stdout.count("(done before)") == len(METHODS)
    assert {m: len(events(cell[m])) for m in before} == before
    assert time.time() - t0 < 60
    again = json.loads(results.read_text())
    assert again["records"] == res["records"]

    # 5. the table: one row per method, the targets (met or not, never hidden), the dynamics
    t = bench("table", "--results", str(results)).stdout
    print(t)
    assert "### number_sorting" in t and "### Targets" in t and "Parameter dynamics" in t
    for m in METHODS:
        assert f"| {m} | " in t
    targets = t.split("### Targets")[1].split("### Parameter dynamics")[0]
    assert targets.count("- **") == 5
    # one task cannot be above the ablation on three: reported as missed, not left out
    assert "**NOT met**: LLMZero above its no-LLM ablation" in targets
    assert "**n/a**: LLMZero above random, pbt and skill" in targets  # not run at CI size
    assert "verdict:" in t
    assert "### What a stage adds" in t and "### Selection" in t
    chose = t.split("### What the agent chose")[1].split("### Parameter dynamics")[0]
    assert "| llmzero | " in chose and "| llmzero-noLLM |" not in chose  # LLM methods only
    # headroom: the searched cell with the best validation score, reported on its test score
    room = t.split("### Headroom")[1].split("### What the agent chose")[0]
    searched = [x for m, x in recs.items() if m != "base"]
    pick = max(searched, key=lambda x: x["best_val"])
    assert f"| number_sorting | {recs['grid']['test_score']:.3f} | {pick['test_score']:.3f} |" in room
    assert f"seed 0: {pick['test_score']:.3f} ({pick['method']})" in room

    # 5b. grid's configurations by stage, read off its journal; the first row is the starting parameters
    from llmzero.search.journal import Journal

    tree = Journal(cell["grid"] / "journal.sqlite").replay()
    chains = {n.chain for n in tree.nodes.values() if n.chain is not None and n.val_score is not None}
    c = bench("configs", str(CI), "--out", str(out)).stdout
    print(c)
    rows = [x for x in c.splitlines() if x.startswith("| ") and not x.startswith("| configuration")]
    assert len(rows) == len(chains) >= 2 and rows[0].startswith("| the starting parameters | 1 | ")
    first = next(n for n in tree.nodes.values() if n.chain == 0 and n.depth == 1)
    assert rows[0].split(" | ")[2] == f"{first.val_score:.3f} (1)"
    assert all(r.split(" | ")[1] == "1" for r in rows) and "learning_rate" in c
    best = {k: max(n.val_score for n in tree.nodes.values() if n.chain == k and n.val_score is not None)
            for k in chains}
    assert sorted(r.split(" | ")[-2] for r in rows[1:]) == sorted(
        f"{best[k] - best[0]:+.3f} (1)" for k in chains if k != 0)  # each chain's best against the default's
    bad = subprocess.run([sys.executable, str(BENCH), "configs", str(CI), "--out", str(out), "--method", "llmzero"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "'llmzero'" in bad.stderr, bad.stderr

    # 6. a run dir of another experiment is never mixed into these results
    r = subprocess.run([sys.executable, str(BENCH), "run", str(CI), *common, "--set", "budget.compute=7000"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "differs in budget" in r.stderr, r.stderr
    assert json.loads(results.read_text())["records"] == res["records"]


def status_of(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCH), "status", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def test_bad_benchmark_config_is_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    head = "experiment: examples/{task}.yaml\ntasks: [countdown]\nseeds: [0]\n"
    bad.write_text(head + "methods: [grid, annealing]\n")
    r = status_of(str(bad))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "annealing" in r.stderr
    bad.write_text(head + "methods: [grid]\noverrides: {search.depth: 0}\n")
    r = status_of(str(bad))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "search.depth=0" in r.stderr
    r = status_of(str(CI), "--out", str(tmp_path), "--set", "search.steps_per_stage=-1")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "search.steps_per_stage=-1" in r.stderr
    bad.write_text(head + "methods: [grid]\noverrides:\n  search.depth: 1: a note\n")  # not YAML
    r = status_of(str(bad))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    assert "bad.yaml: does not parse as YAML at line 6, column" in r.stderr, r.stderr
    r = status_of(str(CI), "--out", str(tmp_path), "--set", "search.depth=[1")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--set 'search.depth=[1'" in r.stderr, r.stderr
    r = status_of(str(CI), "--out", str(tmp_path), "--set", "search.depth=3")
    assert r.returncode == 0 and "0 done, 0 started (will resume), 5 left of 5 cells" in r.stdout


def bench_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_search", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_agent_choices_count_the_answers_that_leave_the_ablations_picks(tmp_path):
    from llmzero.search import JOURNAL, Journal

    j = Journal(tmp_path / JOURNAL, create=True)
    for options, decision in (([1, 2], "backup"), ([2, 1], "backup"), ([2], "expand"), ([1, 3], "stop"),
                              ([1], "backup")):
        answer = {"diagnosis": "d", "proposals": [{"option": o} for o in options], "decision": decision}
        j.append("proposal", "root", {"proposer": "llm", "agent": {"answer": json.dumps(answer)}})
    j.append("proposal", "n1", {"proposer": "llm", "agent": {"answer": "not json"}})  # fell back: left out
    j.append("proposal", "n2", {"proposer": "skill"})
    j.close()
    got = bench_module().agent_choices(tmp_path)
    assert got["llm_picks"] == {"1": 4, "2": 3, "3": 1}
    assert got["llm_decisions"] == {"backup": 3, "expand": 1, "stop": 1}
    assert got["llm_own_picks"] == 2  # [2] and [1, 3]; the order of the picks does not matter


def test_seed_offset_moves_the_search_seed_and_keeps_the_base_model():
    mod = bench_module()
    cfg = mod.load_bench(CI)
    assert cfg["seed_offset"] == 0
    plain = mod.cell_config(cfg, "countdown", "llmzero-noLLM", 2)
    moved = mod.cell_config({**cfg, "seed_offset": 100}, "countdown", "llmzero-noLLM", 2)
    assert (plain.seed, plain.base_seed) == (2, 2) and (moved.seed, moved.base_seed) == (102, 2)
    assert moved.task == plain.task  # the same splits and evaluation problems


def test_bad_seed_offset_is_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("experiment: examples/{task}.yaml\ntasks: [countdown]\nseeds: [0]\nmethods: [grid]\n"
                   "seed_offset: -3\n")
    r = status_of(str(bad))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "seed_offset=-3" in r.stderr


def test_status_marks_a_cell_that_holds_its_lock_before_its_first_event(tmp_path):
    from llmzero.search.journal import RunLock

    d = search_mod.run_dir(tmp_path, "number_sorting", "grid", 0)  # a cell that is building its base model
    d.mkdir(parents=True)
    lock = RunLock(d)
    try:
        r = status_of(str(CI), "--out", str(tmp_path))
        assert r.returncode == 0, r.stderr
        assert f"grid           seed 0: started (running now, pid {os.getpid()})" in r.stdout, r.stdout
        assert "0 done, 1 started (1 running now), 4 left of 5 cells" in r.stdout, r.stdout
    finally:
        lock.release()
    r = status_of(str(CI), "--out", str(tmp_path))
    assert "grid           seed 0: new" in r.stdout and "0 done, 0 started (will resume), 5 left" in r.stdout


def test_a_closed_pipe_ends_a_table_quietly():
    # `bench/search.py table | head`: the reader closes the pipe before the table is written
    p = subprocess.Popen([sys.executable, str(BENCH), "table", "--results",
                          str(ROOT / "bench" / "results" / "gridsoup-epyc.json")],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait(timeout=300) == 1 and "Traceback" not in err, err
