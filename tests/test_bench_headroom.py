"""The benchmark's analysis sections: headroom (per seed, the searched cell with the best validation
score is picked across methods and reported on test, never by its test score), what a stage adds by
depth, and the picked node's validation score against its test score."""

import importlib.util
import json
from pathlib import Path

import pytest

spec = importlib.util.spec_from_file_location("bench_search", Path(__file__).parent.parent / "bench" / "search.py")
search = importlib.util.module_from_spec(spec)
spec.loader.exec_module(search)


def rec(task, method, seed, val, test, spent=1000):
    return {"task": task, "method": method, "seed": seed, "best_val": val, "test_score": test,
            "budget_spent": spent}


def test_pooled_pick_is_chosen_on_validation_and_reported_on_test():
    records = [
        rec("t", "base", 0, 0.9, 0.9, 0),          # base is no search: never pooled
        rec("t", "grid", 0, 0.40, 0.40),
        rec("t", "skill", 0, 0.45, 0.38),          # best val: picked although its test is lower
        rec("t", "random", 0, 0.41, 0.50),         # best test, but not picked
        rec("t", "grid", 1, 0.50, 0.40, 2000),
        rec("t", "llmzero", 1, 0.49, 0.44),
        rec("u", "llmzero", 0, 0.6, 0.6),          # no grid cell for (u, 0): no headroom row
    ]
    h = search.headroom(records)
    assert set(h) == {"t"}
    t = h["t"]
    assert t["seeds"] == [0, 1] and t["methods"] == ["skill", "grid"]
    assert t["pooled"] == [0.38, 0.40] and t["grid"] == [0.40, 0.40]
    assert t["rel"] == pytest.approx(0.39 / 0.40 - 1)
    assert t["compute"] == [3.0, 1.5]  # the pooled cells' spend over grid's


def test_headroom_section_in_the_table():
    records = [rec("t", "grid", 0, 0.40, 0.40), rec("t", "llmzero", 0, 0.45, 0.44)]
    lines = search.headroom_table({"records": records, "config": {"tasks": ["t"]}})
    row = next(x for x in lines if x.startswith("| t |"))
    assert "| 0.400 | 0.440 | +10.0% | 2.0x | seed 0: 0.440 (llmzero) |" in row
    assert search.headroom_table({"records": records[1:], "config": {"tasks": ["t"]}}) == []  # no grid: none


def tree(*stages):
    """A tree from (id, parent, depth, params, val, tokens, failed) rows; the root scores 0.30."""
    from llmzero.search.tree import Tree

    t = Tree()
    t.apply("root", None, {"params": {"num_generations": 8, "learning_rate": 1e-4}, "val_score": 0.30})
    for node_id, parent, depth, params, val, tokens, failed in stages:
        t.apply("node_created", node_id, {"parent_id": parent, "depth": depth, "params": params})
        t.apply("stage_failed" if failed else "stage_finished", node_id,
                {"val_score": None if failed else val, "cost": {"generated_tokens": tokens}})
    return t


def test_stage_gains_by_depth_and_capacity():
    same, more = {"num_generations": 8, "learning_rate": 1e-4}, {"num_generations": 16, "learning_rate": 1e-4}
    a = tree(("n1", "root", 1, same, 0.40, 100, False),
             ("n2", "root", 1, more, 0.36, 200, False),   # raised num_generations: capacity
             ("n3", "n1", 2, dict(same, learning_rate=5e-5), 0.44, 100, False),  # regularization only
             ("n4", "n1", 2, more, 0.38, 300, False),
             ("n5", "n3", 3, same, None, 50, True))        # failed: left out
    b = tree(("n1", "root", 1, same, 0.50, 120, False))
    rows = search.stage_gains([a, b], {"num_generations", "max_completion_length", "difficulty"})
    by = {(r["depth"], r["capacity_raised"]): r for r in rows}
    assert list(by) == [(1, False), (1, True), (2, False), (2, True)]
    assert by[1, False]["stages"] == 2 and by[1, False]["mean_gain"] == pytest.approx((0.10 + 0.20) / 2)
    assert by[1, False]["mean_tokens"] == 110 and by[1, False]["best_of"] == 1  # tree b's best
    assert by[1, True]["mean_gain"] == pytest.approx(0.06) and by[1, True]["best_of"] == 0
    assert by[2, False]["mean_gain"] == pytest.approx(0.04) and by[2, False]["best_of"] == 1  # tree a's best
    # n4 raised num_generations over its parent n1's 8: compared with the parent, not the root
    assert by[2, True]["mean_gain"] == pytest.approx(-0.02) and by[2, True]["mean_tokens"] == 300
    lines = search.gains_table({"stage_gains": rows})
    assert "| 2 | yes | 1 | -0.020 | 300 | 0 |" in lines
    assert any("of the 2 cells" in x for x in lines)


def test_selection_section_compares_validation_and_test():
    records = [rec("t", "base", 0, 0.30, 0.30, 0) | {"nodes": 0},
               rec("t", "grid", 0, 0.42, 0.40) | {"nodes": 9}, rec("t", "grid", 1, 0.40, 0.41) | {"nodes": 7}]
    lines = search.selection_table({"records": records, "config": {"methods": ["base", "grid"]}})
    assert "| grid | 2 | +0.005 | 0.021 | 8.0 |" in lines  # gaps +0.02 and -0.01
    assert not any(x.startswith("| base |") for x in lines)  # base picks nothing


def test_compare_pairs_two_results_files_by_seed_and_refuses_cells_of_other_base_models():
    def r(method, seed, test, base=0.3, task="t"):
        return {**rec(task, method, seed, test, test), "base_test_score": base}

    deeper = [r("llmzero", 0, 0.50), r("llmzero", 1, 0.40), r("llmzero", 2, 0.45), r("llmzero", 0, 0.2, task="u")]
    full = [r("grid", 0, 0.40), r("grid", 1, 0.40), r("llmzero", 0, 0.1)]  # seed 2 has no grid cell
    out = search.compare([("deep", deeper, "llmzero"), ("full", full, "grid")])
    row = next(line for line in out.splitlines() if line.startswith("| t "))
    # seeds 0 and 1 only: means 0.45 and 0.40, +12.5%, paired differences +0.10 and 0.00
    assert row.startswith("| t | 2 | 0.450 | 0.400 | +12.5% | +0.050 [")
    assert "| u " not in out  # no grid cell for task u
    with pytest.raises(search.BenchError, match="do not share the base model"):
        search.compare([("deep", deeper, "llmzero"), ("other", [r("grid", 0, 0.4, base=0.31)], "grid")])


def test_compare_measures_the_compute_to_the_other_sides_best_val_from_the_kept_curves():
    def r(method, seed, curve, val, spent=1000, own=None):
        return {**rec("t", method, seed, val, val, spent), "base_test_score": 0.3, "base_val": 0.2,
                "val_curve": curve, "compute_to_grid_best": own}

    grid = [r("grid", s, [], 0.40, own=c) for s, c in ((0, 500), (1, 700), (2, 900))]
    a = [r("llmzero", 0, [[200, 0.35], [300, None], [400, 0.41]], 0.41),   # 0.40 reached at 400: 0.40
         r("llmzero", 1, [[100, 0.2], [600, 0.40]], 0.40),                 # at 600: 0.60
         r("llmzero", 2, [[500, 0.39]], 0.39)]                             # never
    assert [search.reach_share(x, y) for x, y in zip(a, grid)] == [0.4, 0.6, None]
    row = next(x for x in search.compare([("a", a, "llmzero"), ("g", grid, "grid")]).splitlines()
               if x.startswith("| t "))
    assert row.endswith("| median 0.60; at most 0.40 in 1 of 3; never in 1 (grid's own: 0.70) |")
    # two of three never: the median is never; a B that is not grid has no own share to show
    skill = [x | {"method": "skill"} for x in grid]
    out = search.compare([("a", a[1:] + [a[2] | {"seed": 0}], "llmzero"), ("b", skill, "skill")])
    row = next(x for x in out.splitlines() if x.startswith("| t "))
    assert row.endswith("| median never; at most 0.40 in 0 of 3; never in 2 |")
    # records written before the curves were kept: no column to guess
    old = [{k: v for k, v in x.items() if k != "val_curve"} for x in a]
    row = next(x for x in search.compare([("o", old, "llmzero"), ("g", grid, "grid")]).splitlines()
               if x.startswith("| t "))
    assert row.endswith("| - |")


def test_a_side_joins_results_files_with_plus_and_refuses_a_cell_in_two_of_them(tmp_path, capsys):
    def r(method, seed, test):
        return {**rec("t", method, seed, test, test), "base_test_score": 0.3}

    for name, records in (("a", [r("grid", 0, 0.40), r("grid", 1, 0.30), r("llmzero", 0, 0.9)]),
                          ("b", [r("grid", 2, 0.50)]), ("c", [r("grid", 1, 0.35)])):
        (tmp_path / f"{name}.json").write_text(json.dumps({"records": records}))
    label, records, method = search._side(f"{tmp_path / 'a.json'}+{tmp_path / 'b.json'}:grid")
    assert (label, method) == ("a+b:grid", "grid")
    assert sorted((x["seed"], x["test_score"]) for x in records) == [(0, 0.40), (1, 0.30), (2, 0.50)]
    # seed 1 of grid is in a.json and c.json: which one counts is not for compare to guess
    assert search.main(["compare", f"{tmp_path / 'a.json'}+{tmp_path / 'c.json'}:grid",
                        f"{tmp_path / 'b.json'}:grid"]) == 2
    assert search.main(["compare", f"{tmp_path / 'a.json'}+:grid", f"{tmp_path / 'b.json'}:grid"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and "t seed 1 of 'grid' is in both" in err[0] and "joined with +" in err[1]


def test_a_side_at_node_takes_the_best_node_without_its_final_soup(tmp_path, capsys):
    soup = {**rec("t", "llmzero", 0, 0.5, 0.45), "base_test_score": 0.3, "best_node_test_score": 0.41}
    plain = {**rec("t", "grid", 0, 0.4, 0.40), "base_test_score": 0.3}
    (tmp_path / "a.json").write_text(json.dumps({"records": [soup, plain]}))
    label, records, method = search._side(f"{tmp_path / 'a.json'}:llmzero@node")
    assert (label, method) == ("a:llmzero@node", "llmzero")
    assert [x["test_score"] for x in records] == [0.41]
    assert search._side(f"{tmp_path / 'a.json'}:llmzero")[1][0]["test_score"] == 0.45
    assert search.main(["compare", f"{tmp_path / 'a.json'}:grid@node", f"{tmp_path / 'a.json'}:grid"]) == 2
    assert search.main(["compare", f"{tmp_path / 'a.json'}:llmzero@soup", f"{tmp_path / 'a.json'}:grid"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert "without a final soup" in err[0] and "RESULTS:METHOD@node" in err[1]


def test_continue_unspent_takes_only_finished_tree_searches_that_left_budget():
    bench = search.load_bench(Path(__file__).parent.parent / "bench" / "configs" / "ci.yaml")
    left = {"budget_spent": 5000, "budget_total": 6000}
    spent = {"budget_spent": 5800, "budget_total": 6000}
    assert search.unspent(bench, "number_sorting", "llmzero-noLLM", 0, left)
    assert search.unspent(bench, "number_sorting", "llmzero", 0, left)
    assert not search.unspent(bench, "number_sorting", "llmzero", 0, spent)  # within 5% of the budget
    assert not search.unspent(bench, "number_sorting", "grid", 0, left)  # a chain method: nothing to grow
    assert not search.unspent(bench, "number_sorting", "base", 0, left)
    assert not search.unspent(bench, "number_sorting", "llmzero", 0, None)  # not finished


def test_compare_needs_two_sides_and_a_results_file(tmp_path, capsys):
    assert search.main(["compare", "bench/results/search.json:grid"]) == 2
    (tmp_path / "x.json").write_text("[]")
    assert search.main(["compare", f"{tmp_path / 'x.json'}:grid", "bench/results/search.json:grid"]) == 2
    assert search.main(["compare", "bench/results/search.json:nope", "bench/results/search.json:grid"]) == 2
    err = capsys.readouterr().err
    assert "needs two" in err and "not a results file" in err and "method 'nope'" in err


def test_records_carry_the_soup_only_when_the_search_made_one():
    assert search._soup_fields({"test_score": 0.4}) == {}  # search.soup off: the records stay as they were
    soup = {"nodes": ["n5", "n3"], "path": "run/soup", "val_score": 0.5}
    assert search._soup_fields({"soup": soup, "best_node_test_score": 0.41}) == {
        "best_node_test_score": 0.41, "soup": ["n5", "n3"]}
    alone = {**soup, "nodes": ["n5"], "path": None}  # no other checkpoint helped: the best node alone
    assert search._soup_fields({"soup": alone, "best_node_test_score": 0.41})["soup"] is None


def test_the_results_file_being_written_does_not_make_the_tree_dirty(tmp_path, monkeypatch):
    import subprocess

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    for name in ("results.json", "code.py"):
        (tmp_path / name).write_text("1\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
    monkeypatch.setattr(search, "REPO", tmp_path)
    (tmp_path / "results.json").write_text("2\n")  # a committed results file that a run extends
    assert search.machine(tmp_path / "results.json")["llmzero_dirty"] is False
    assert search.machine()["llmzero_dirty"] is True
    (tmp_path / "code.py").write_text("2\n")  # a change to anything else still counts
    assert search.machine(tmp_path / "results.json")["llmzero_dirty"] is True


def test_compute_to_reach_counts_a_built_node_as_a_free_stage(tmp_path):
    from llmzero.search import JOURNAL, Journal

    j = Journal(tmp_path / JOURNAL, create=True)
    for kind, node, payload in [
        ("stage_finished", "n1", {"val_score": 0.30, "cost": {"generated_tokens": 100}}),
        ("stage_failed", "n2", {"val_score": None, "cost": {"generated_tokens": 40}}),
        ("stage_finished", "n3", {"val_score": 0.32, "cost": {"generated_tokens": 100}}),
        ("sibling_soup", "n4", {"val_score": 0.36, "cost": {"generated_tokens": 0}}),
        ("stage_finished", "n5", {"val_score": 0.37, "cost": {"generated_tokens": 100}}),
        ("scaled_update", "n6", {"val_score": 0.41, "cost": {"generated_tokens": 0}}),
    ]:
        j.append(kind, node, payload)
    j.close()
    want = [(100, 0.30), (140, None), (240, 0.32), (240, 0.36), (340, 0.37), (340, 0.41)]
    assert search.stage_progress(tmp_path) == want
    assert search.compute_to_reach(tmp_path, "llmzero", 0.2, 0.35) == 240  # reached by the soup
    assert search.compute_to_reach(tmp_path, "llmzero", 0.2, 0.40) == 340  # by the scaled update
    assert search.compute_to_reach(tmp_path, "llmzero", 0.2, 0.42) is None


def write(path, records):
    path.write_text(json.dumps({"records": [{"base_test_score": 0.3, **r} for r in records]}))
    return str(path)


def test_headroom_pools_the_cells_of_several_results_files(tmp_path, capsys):
    a = write(tmp_path / "a.json", [rec("t", "grid", 0, 0.40, 0.40), rec("t", "llmzero", 0, 0.42, 0.41)])
    b = write(tmp_path / "b.json", [rec("t", "llmzero", 0, 0.45, 0.43), rec("t", "skill", 0, 0.41, 0.50)])
    h = search.headroom(search.pooled_records([a, b]))["t"]
    assert h["cells"] == [4] and h["pooled"] == [0.43]  # grid too; b's llmzero has the best validation score
    assert h["oracle"] == [0.50] and h["oracle_rel"] == pytest.approx(0.25)  # chosen on test: the bound
    assert search.main(["headroom", a, b]) == 0
    row = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("| t |"))
    assert row == "| t | 1 | 4 | 0.400 | 0.430 (+7.5%) | 0.500 (+25.0%) | 4.0x |"


def test_headroom_refuses_other_base_models_and_two_grids(tmp_path, capsys):
    a = write(tmp_path / "a.json", [rec("t", "grid", 0, 0.40, 0.40)])
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"records": [{**rec("t", "llmzero", 0, 0.4, 0.4), "base_test_score": 0.2}]}))
    assert search.main(["headroom", a, str(other)]) == 2
    assert "do not share the base model" in capsys.readouterr().err
    b = write(tmp_path / "b.json", [rec("t", "grid", 0, 0.41, 0.41)])
    assert search.main(["headroom", a, b]) == 2
    assert "has a grid cell in both" in capsys.readouterr().err
    assert search.main(["headroom", str(tmp_path / "missing.json")]) == 2
    assert "does not exist" in capsys.readouterr().err


def full(task, method, seed, val, test, curve=None, spent=1000, own=None):
    """A record as `collect` writes it (``curve``: None for files older than the kept curves)."""
    r = {**rec(task, method, seed, val, test, spent), "base_test_score": 0.30 + seed / 100, "base_val": 0.25,
         "budget_total": 1000, "llm_tokens": 0, "llm_calls": 0, "llm_seconds": 0.0, "wall_seconds": 10.0,
         "nodes": 3, "compute_to_grid_best": own}
    return r if curve is None else r | {"val_curve": curve}


def results_file(path, records, *, cpu="CPU A", dynamics=None, gains=()):
    machine = {"processor": "x86_64", "cpu_count": 2, "platform": "p", "python": "3.11", "torch": "2",
               "cpu_model": cpu, "cpu_capability": "AVX2", "cpu_flags": ["avx2"], "llmzero_commit": "abc",
               "date": "2026-12-04"}
    tasks = list(dict.fromkeys(r["task"] for r in records))
    path.write_text(json.dumps({"machine": machine, "config": {"tasks": tasks, "methods": []},
                                "records": records, "dynamics": dynamics, "stage_gains": list(gains)}))
    return str(path)


def test_table_joins_the_results_files_of_one_setting_and_measures_compute_across_them(tmp_path, capsys):
    dyn = {"runs": ["t/llmzero/seed0"], "top_k": 3, "paths": 2,
           "parameters": [{"name": "learning_rate", "role": "regularization", "monotonicity": 0.5,
                           "oscillation": 1.0, "changed": 2, "paths": 2, "class": "oscillating",
                           "expected": "oscillating", "verdict": "match"}],
           "summary": {"matched": 1, "mismatched": 0, "unchanged": 0, "holds": True}}
    grid = results_file(tmp_path / "grid.json", [
        full("t", "grid", 0, 0.40, 0.40, [[500, 0.40], [1000, 0.38]], own=500),
        full("t", "grid", 1, 0.50, 0.45, [[800, 0.50]], own=800)],
        gains=[{"depth": 1, "capacity_raised": False, "stages": 2, "mean_gain": 0.10, "mean_tokens": 100,
                "best_of": 1}])
    ours = results_file(tmp_path / "ours.json", [
        full("t", "llmzero", 0, 0.42, 0.44, [[300, 0.41], [600, 0.42]]),  # reaches grid's 0.40 at 300
        full("t", "llmzero", 1, 0.49, 0.47, [[300, 0.45], [900, 0.49]])],  # never reaches grid's 0.50
        dynamics=dyn, gains=[{"depth": 1, "capacity_raised": False, "stages": 1, "mean_gain": 0.04,
                              "mean_tokens": 400, "best_of": 1}])
    old = results_file(tmp_path / "old.json", [full("t", "skill", 0, 0.41, 0.39), full("t", "skill", 1, 0.5, 0.5)])
    res = search.merged_results([grid, ours, old])
    assert res["config"] == {"tasks": ["t"], "methods": ["base", "grid", "skill", "llmzero"]}
    by = {(r["method"], r["seed"]): r for r in res["records"]}
    assert by["llmzero", 0]["compute_to_grid_best"] == 300 and by["llmzero", 1]["compute_to_grid_best"] is None
    assert by["grid", 0]["compute_to_grid_best"] == 500  # its own curve: grid's own
    assert by["skill", 0].get("to_grid_unknown") and by["skill", 0]["compute_to_grid_best"] is None
    # the base cell from the base scores the cells record: 0.30 + seed / 100
    assert by["base", 1]["test_score"] == 0.31 and by["base", 1]["budget_spent"] == 0
    assert res["stage_gains"] == [{"depth": 1, "capacity_raised": False, "stages": 3, "mean_gain": pytest.approx(0.08),
                                   "mean_tokens": 200, "best_of": 2}]
    assert search.main(["table", "--results", f"{grid}+{ours}+{old}"]) == 0
    out = capsys.readouterr().out
    rows = {}
    for x in out.split("### Targets")[0].splitlines():  # the method table's rows
        rows.setdefault(x.split(" | ")[0], x)
    assert rows["| llmzero"].startswith("| llmzero | 0.455 ± 0.021 (2) |")
    assert "| 300 (0.30; 1/2 seeds) |" in rows["| llmzero"]
    assert "| 650 (0.65; 2/2 seeds) |" in rows["| grid"]
    assert rows["| skill"].split(" | ")[5] == "-"  # not measured, not "never"
    assert rows["| base"].startswith("| base | 0.305 ± 0.007 (2) | +0.0% |") and rows["| base"].endswith("| - |")
    assert "results files joined: " in out and f"From {ours}:" in out and "| learning_rate |" in out
    assert "reached on 1 of 2 seed(s)" in out  # the 40% target reads the measured shares


def test_table_refuses_joined_files_that_are_not_one_setting(tmp_path, capsys):
    a = results_file(tmp_path / "a.json", [full("t", "grid", 0, 0.4, 0.4)])
    same = results_file(tmp_path / "same.json", [full("t", "llmzero", 0, 0.4, 0.4), full("t", "llmzero", 0, 0.5, 0.5)])
    other_cpu = results_file(tmp_path / "cpu.json", [full("t", "llmzero", 0, 0.4, 0.4)], cpu="CPU B")
    other_base = results_file(tmp_path / "base.json", [{**full("t", "llmzero", 0, 0.4, 0.4), "base_test_score": 0.2}])
    for joined, says in ((f"{a}+{same}", "'llmzero' is in both"), (f"{a}+{other_cpu}", "ran on 2 CPUs"),
                         (f"{a}+{other_base}", "do not share the base model"), (f"{a}+", "is not allowed"),
                         (f"{a}+{tmp_path / 'missing.json'}", "does not exist")):
        assert search.main(["table", "--results", joined]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and says in err[0], (joined, err)


def test_compare_and_table_say_when_one_side_has_a_final_soup_and_the_other_not(tmp_path, capsys):
    def r(method, seed, test, **kw):
        return {**rec("t", method, seed, test, test), "base_test_score": 0.3, **kw}

    soups = [r("llmzero", s, 0.45, best_node_test_score=0.42, soup=["n3", "n4"]) for s in (0, 1)]
    plain = [r("grid", s, 0.40) for s in (0, 1)]
    grid_soup = [r("grid", s, 0.44, best_node_test_score=0.40, soup=None) for s in (0, 1)]
    warn = search.compare([("a:llmzero", soups, "llmzero"), ("b:grid", plain, "grid")])
    assert "Not like for like: a:llmzero's final model is a weight soup" in warn and "run b:grid with" in warn
    assert "Not like for like" not in search.compare([("a:llmzero", soups, "llmzero"), ("c:grid", grid_soup, "grid")])
    (tmp_path / "a.json").write_text(json.dumps({"records": soups + plain}))
    assert search.main(["compare", f"{tmp_path / 'a.json'}:llmzero@node", f"{tmp_path / 'a.json'}:grid"]) == 0
    assert "Not like for like" not in capsys.readouterr().out  # @node: the best node against the best node
    assert search.main(["compare", f"{tmp_path / 'a.json'}:grid", f"{tmp_path / 'a.json'}:llmzero"]) == 0
    assert "run" in (out := capsys.readouterr().out) and "a:grid's its best node" in out
    unfair = {"config": {"tasks": ["t"], "methods": ["grid", "llmzero"]}, "records": soups + plain}
    fair = {"config": {"tasks": ["t"], "methods": ["grid", "llmzero"]}, "records": soups + grid_soup}
    for x in unfair["records"] + fair["records"]:
        x.setdefault("compute_to_grid_best", None)
    assert any(line.startswith("- **Not like for like: llmzero's") for line in search.targets(unfair))
    assert not any("Not like for like" in line for line in search.targets(fair))
    fair["records"] += [r("skill", s, 0.41, compute_to_grid_best=None) for s in (0, 1)]
    assert "  - not like for like: llmzero's final model is a weight soup (search.soup); that of skill is the best " \
        "node" in search.targets(fair)
