"""The HTML report and its Markdown summary: on a hand-written journal (failed, pruned and pending
stages, an unfinished run), and on real tiny searches (MCTS with a replayed LLM agent, and grid
search for the comparison), rendered in headless Chromium."""

import json
import math
import re
import shutil
import sqlite3
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from llmzero.config import ConfigError, parse_config
from llmzero.report import write_report
from llmzero.report.compare import RunResult, compare, sample_std
from llmzero.report.content import changes_text, repairs_text, value
from llmzero.search import JOURNAL, Journal, SearchRun

# make test spreads tests over processes (pytest-xdist, --dist loadgroup): one build of the runs.
pytestmark = pytest.mark.xdist_group("report")

LLMZERO = Path(sys.executable).parent / "llmzero"
BUDGET = 6000  # generated tokens: about ten 4-step stages of the xs model (as in test_search.py)
SECTIONS = ("overview", "tree", "schedule", "curves", "trajectories", "proposals", "cost")


# -- helpers ---------------------------------------------------------------------------------------------


class _Tables(HTMLParser):
    """Every <table id=...> of a page as rows of cell texts (line breaks as newlines)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table" and a.get("id"):
            self._table = a["id"]
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table:
            self._cell = []
        elif tag == "br" and self._cell is not None:
            self._cell.append("\n")

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None
        elif tag in ("td", "th") and self._cell is not None and self._table:
            self.tables[self._table][-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def tables(html: str) -> dict[str, list[list[str]]]:
    p = _Tables()
    p.feed(html)
    return p.tables


def column(table: list[list[str]], name: str) -> list[str]:
    i = table[0].index(name)
    return [row[i] for row in table[1:]]


def figure(html: str, fig_id: str) -> str:
    start = html.index(f'<figure id="{fig_id}">')
    return html[start:html.index("</figure>", start)]


def assert_self_contained(html: str) -> None:
    url = r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//[^"'\s>]*"""  # http(s) or protocol-relative
    external = re.findall(url, html, flags=re.IGNORECASE)
    assert not external, external[:5]
    assert "<script" not in html.lower()
    assert "<link" not in html.lower()


def chromium() -> str:
    exe = shutil.which("chromium")
    if exe is None:
        pytest.fail("chromium is not on PATH: run `make test`, which installs Debian's chromium package "
                    "(scripts/install-chromium.sh)")
    return exe


def run_chromium(page: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--disable-background-networking", "--no-first-run", "--hide-scrollbars",
           "--window-size=1280,2400", f"--user-data-dir={tmp_path / 'chromium-profile'}", *args,
           page.resolve().as_uri()]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    return r


# -- pure parts ------------------------------------------------------------------------------------------


def test_comparison_statistics():
    rs = [RunResult("t", "mcts (llm)", 0, 0.5, 0.4, 0.25), RunResult("t", "mcts (llm)", 1, 0.6, 0.4, 0.5),
          RunResult("t", "grid", 0, 0.44, 0.4, 0.1), RunResult("t", "grid", 1, None, None, None),
          RunResult("u", "skill", 0, 0.3, 0.2, 0.5)]
    table = compare(rs)
    assert list(table) == ["t", "u"]
    llm, grid = table["t"]
    assert (llm.method, llm.runs, llm.seeds, llm.scored) == ("mcts (llm)", 2, (0, 1), 2)
    assert llm.test_mean == pytest.approx(0.55) and llm.test_std == pytest.approx(math.sqrt(0.005))
    assert llm.vs_base == pytest.approx(0.375)
    assert llm.vs_grid == pytest.approx(0.55 / 0.44 - 1)
    assert grid.scored == 1 and grid.test_std is None and grid.vs_grid == pytest.approx(0.0)
    assert table["u"][0].vs_grid is None  # no grid run on task u
    assert sample_std([1.0]) is None


def _fake_config(task: str = "number_sorting") -> dict:
    return {"task": {"name": task}, "model": "xs", "seed": 3, "budget": {"compute": 1000},
            "search": {"method": "mcts", "proposer": "skill", "depth": 2, "steps_per_stage": 2}}


def _fake_run(run_dir: Path, task: str = "number_sorting") -> None:
    """A journal written by hand: complete, failed, pruned and pending stages, not finished."""
    run_dir.mkdir()
    cfg = parse_config(_fake_config(task))
    params = {"learning_rate": 1e-4, "temperature": 1.0}
    hist = [{"step": s, "reward": 0.1 * s, "entropy": 0.5, "kl": 0.01, "completions/mean_length": 10.0,
             "completions/clipped_ratio": 0.0, "frac_reward_zero_std": 0.2} for s in (1, 2)]
    j = Journal(run_dir / JOURNAL, create=True)
    j.append("run_started", None, {"config": cfg.model_dump(mode="json"), "base_dir": "/nowhere"})
    j.append("root", None, {"params": params, "val_score": 0.3})

    def child(node_id, parent, depth, lr, why):
        repair = {"param": "learning_rate", "before": 1.0, "after": lr, "reason": "clamped"}
        transition = {"changes": {"learning_rate": {"from": 1e-4, "to": lr}}, "reason": why,
                      "proposed_by": "skill", "repairs": [repair], "findings": ["kl_blowup"]}
        j.append("node_created", node_id, {"parent_id": parent, "depth": depth, "steps": 2,
                                           "mode": "continue", "params": {**params, "learning_rate": lr},
                                           "seed": 0, "chain": None, "transition": transition})

    output = [{"params": {}, "reason": "", "findings": [], "repairs": []}] * 3
    j.append("proposal", "root", {"proposer": "skill", "node": "root", "k": 3, "input": {}, "agent": None,
                                  "output": output})
    child("n1", "root", 1, 2e-4, "higher learning rate")
    child("n2", "root", 1, 5e-5, "lower <b>learning</b> rate")  # must come out escaped
    child("n3", "root", 1, 3e-4, "much higher")
    j.append("stage_finished", "n1", {"history": hist, "val_score": 0.5, "cost": {"generated_tokens": 300},
                                      "checkpoint": None, "error": None, "steps": 2})
    j.append("stage_failed", "n2", {"history": hist[:1], "val_score": None, "cost": {"generated_tokens": 100},
                                    "checkpoint": None, "error": "loss is NaN", "steps": 1})
    j.append("stage_finished", "n3", {"history": hist, "val_score": 0.2, "cost": {"generated_tokens": 300},
                                      "checkpoint": None, "error": None, "steps": 2})
    j.append("node_pruned", "n3", {"saved_compute": 300})
    llm = {"backend": "replay", "model": "m", "prompt_tokens": 50, "completion_tokens": 5, "seconds": 0.5}
    j.append("proposal", "n1", {"proposer": "llm", "node": "n1", "k": 2, "input": {}, "output": output[:2],
                                "agent": {"decision": "backup", "overruled": "backup overruled: ...",
                                          "llm": llm}})
    j.append("proposal", "n3", {"proposer": "llm", "node": "n3", "k": 2, "input": {}, "output": [],
                                "agent": {"decision": "stop", "llm": llm}, "closed": True})
    child("n4", "n1", 2, 1e-4, "back down")
    j.append("best_changed", "n1", {})
    j.close()


def test_report_of_a_handwritten_unfinished_run(tmp_path):
    _fake_run(tmp_path / "run")
    html_path, md_path = write_report([tmp_path / "run"], None)
    assert (html_path, md_path) == (tmp_path / "run" / "report.html", tmp_path / "run" / "report.md")
    html, md = html_path.read_text(), md_path.read_text()
    assert_self_contained(html)
    for key in SECTIONS:
        assert f'id="{key}"' in html, key
    assert 'id="comparison"' not in html  # one run: nothing to compare
    svg = figure(html, "tree-plot")
    assert "<svg" in svg
    for label in ("root", "n1", "n2", "n3", "n4", "failed", "0.200 (pruned)", "pending"):
        assert f">{label}</text>" in svg, label
    t = tables(html)
    assert column(t["schedule-table"], "node") == ["n1"]
    assert column(t["proposals-table"], "node") == ["n1", "n2", "n3", "n4"]
    assert "lower &lt;b&gt;learning&lt;/b&gt; rate" in html and "<b>learning" not in html
    vals = column(t["proposals-table"], "val")
    assert vals[1] == "failed: loss is NaN" and vals[2] == "0.200 (pruned)" and vals[3] == "pending"
    assert column(t["proposals-table"], "repairs")[0] == "learning_rate 1 -> 0.0002: clamped"
    calls = t["agent-calls"]  # the call that closed n3's branch is shown, with its cost
    assert column(calls, "decision") == ["backup (overruled)", "stop (closed the branch)"]
    assert column(calls, "children") == ["n4", "-"] and column(calls, "prompt tokens") == ["50", "50"]
    assert "has not finished" in html and "unfinished" in md
    assert "| 1 | n1 | 2 | continue | learning_rate 0.0001 -> 0.0002 |" in md
    # the paths are returned, and rewriting replaces the files whole
    write_report([tmp_path / "run"], tmp_path / "out" / "nested")
    assert (tmp_path / "out" / "nested" / "report.html").read_text() == html
    assert not list((tmp_path / "run").glob(".report*"))


def test_runs_on_two_tasks_get_one_comparison_table_each(tmp_path):
    _fake_run(tmp_path / "a")
    _fake_run(tmp_path / "b", task="countdown")
    html = write_report([tmp_path / "a", tmp_path / "b"], tmp_path / "out")[0].read_text()
    t = tables(html)
    for task in ("number-sorting", "countdown"):
        (method, runs, seeds, test, _spread, _base, vs_base, vs_grid), = t[f"comparison-{task}"][1:]
        assert (method, runs, seeds, test, vs_base, vs_grid) == ("mcts (skill)", "1", "3", "-", "n/a", "n/a")
    assert html.count("No finished grid run on") == 2
    assert 'id="tree-2"' in html and 'id="run-2"' in html


def test_bad_input_is_one_config_error(tmp_path):
    with pytest.raises(ConfigError, match="nonexistent.*expected a search run directory"):
        write_report([tmp_path / "nonexistent"], None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=f"empty.*holding {JOURNAL}"):
        write_report([tmp_path / "empty"], None)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / JOURNAL).write_text("not sqlite")
    with pytest.raises(ConfigError, match="junk"):
        write_report([tmp_path / "junk"], None)
    with pytest.raises(ConfigError, match="expected one or more"):
        write_report([], None)


def test_cli_bad_input_is_one_line_and_exit_2():
    r = subprocess.run([str(LLMZERO), "report", "/nonexistent"], capture_output=True, text=True, timeout=120,
                       check=False)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "/nonexistent" in lines[0], r.stderr
    assert r.stdout == ""


# -- real runs -------------------------------------------------------------------------------------------


def _config(xs_base, **search) -> dict:
    return {
        "task": {"name": "number_sorting"}, "model": xs_base.path, "seed": 1,
        "params": {"num_generations": 4}, "training": {"prompts_per_step": 4},
        "search": {"depth": 2, "steps_per_stage": 4, "branching": 2, "max_children": 3,
                   "grid": {"learning_rate": [1e-4, 3e-4, 1e-3], "entropy_coef": [0.0, 0.01]}, **search},
        "budget": {"compute": BUDGET}, "executor": {"workers": 1},
    }


# Recorded LLM answers (free-form: the agent is asked to write its changes), replayed in order, then
# cycled; the garbage one falls back to the skill agent. What these tests check is the report.
ANSWERS = [
    json.dumps({"diagnosis": "entropy is falling", "decision": "expand", "proposals": [
        {"changes": [{"name": "entropy_coef", "value": 0.01}], "rationale": "explore more",
         "expected_effect": "entropy up"}]}),
    json.dumps({"diagnosis": "reward is flat", "decision": "expand", "proposals": [
        {"changes": [{"name": "learning_rate", "value": 1.0}], "rationale": "much faster",
         "expected_effect": "val up"}]}),
    "not json at all",
]


@pytest.fixture(scope="module")
def runs(xs_base, tmp_path_factory) -> dict[str, Path]:
    """MCTS with the LLM agent (replayed answers, so diagnoses and rationales exist) and grid search,
    on one task: the comparison table has both and a grid baseline."""
    base = tmp_path_factory.mktemp("report-runs")
    transcript = base / "transcript.jsonl"
    records = [{"messages": [], "text": text, "prompt_tokens": 900, "completion_tokens": 80, "seconds": 1.5}
               for text in ANSWERS]
    transcript.write_text("".join(json.dumps(r) + "\n" for r in records))
    llm = _config(xs_base, method="mcts", proposer="llm")
    llm["llm"] = {"backend": "replay", "path": str(transcript), "answer": "free"}
    out = {"llm": base / "mcts-llm", "grid": base / "grid"}
    for name, cfg in (("llm", llm), ("grid", _config(xs_base, method="grid", soup=3))):
        r = SearchRun(parse_config(cfg), out[name])
        r.run()
        r.close()
    return out


@pytest.fixture(scope="module")
def report(runs) -> tuple[Path, Path]:
    return write_report([runs["llm"], runs["grid"]], None)


def _summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


@pytest.mark.slow
def test_report_has_every_section_node_and_schedule_value(runs, report):
    html_path, md_path = report
    assert (html_path, md_path) == (runs["llm"] / "report.html", runs["llm"] / "report.md")
    html = html_path.read_text()
    assert_self_contained(html)
    for key in SECTIONS + ("comparison",):
        assert f'id="{key}"' in html, key
    for key in SECTIONS[1:]:
        assert f'id="{key}-2"' in html, key  # the second run's sections
    t = tables(html)
    for i, name in enumerate(("llm", "grid")):
        suffix = "" if i == 0 else f"-{i + 1}"
        s = _summary(runs[name])
        journal = Journal(runs[name] / JOURNAL)
        tree = journal.replay()
        journal.close()
        svg = figure(html, f"tree-plot{suffix}")
        for node_id in tree.nodes:
            assert f">{node_id}</text>" in svg, (name, node_id)
        assert column(t[f"proposals-table{suffix}"], "node") == [n.id for n in tree.stages()]
        best_path = [n.id for n in tree.path(s["best_node"])[1:]]
        schedule = t[f"schedule-table{suffix}"]
        assert column(schedule, "node") == best_path
        assert len(schedule) - 1 == len(s["strategy"])
        for row, stage in zip(schedule[1:], s["strategy"]):
            assert row[2] == str(stage["steps"]) and row[3] == stage["mode"]
            assert row[5] == ", ".join(f"{k}={value(v)}" for k, v in stage["params"].items())
        assert column(schedule, "val")[-1] == f"{s['best_val']:.3f}"
        cost = dict(t[f"cost-table{suffix}"][1:])
        assert cost["LLM calls"] == str(s["llm_calls"])
        assert cost["compute"].startswith(f"{s['budget_spent']:,} of {s['budget_total']:,}")


@pytest.mark.slow
def test_the_report_says_when_the_final_model_is_a_soup(runs, report):
    html = report[0].read_text()
    soup, llm_run = _summary(runs["grid"])["soup"], _summary(runs["llm"])
    assert soup is not None and llm_run["soup"] is None  # search.soup on the grid run only
    said = "The final model is a weight soup of"
    if soup["path"]:
        assert f"{said} {', '.join(soup['nodes'])}" in html and html.count(said) == 1
        assert html.count("/soup.yaml") == 1 and (Path(runs["grid"]) / "soup.yaml").is_file()
    else:
        assert said not in html and "soup.yaml" not in html


def test_comparison_numbers_come_from_the_summaries(runs, report):
    html, md = report[0].read_text(), report[1].read_text()
    llm, grid = _summary(runs["llm"]), _summary(runs["grid"])
    rows = {r[0]: r for r in tables(html)["comparison-number-sorting"][1:]}
    assert set(rows) == {"mcts (llm)", "grid"}
    for method, s in (("mcts (llm)", llm), ("grid", grid)):
        row = rows[method]
        assert row[3] == f"{s['test_score']:.3f}"
        assert row[4] == "-"  # one seed: no spread
        assert row[6] == f"{100 * s['relative_improvement']:+.1f}%"
        assert row[7] == f"{100 * (s['test_score'] / grid['test_score'] - 1):+.1f}%"
        assert "| " + " | ".join(row) + " |" in md  # the same row in the Markdown
    assert rows["grid"][7] == "+0.0%"
    overview = {r[1]: r for r in tables(html)["runs"][1:]}
    assert overview[str(runs["llm"])][-1] == f"{100 * llm['relative_improvement']:+.1f}%"


@pytest.mark.slow
def test_markdown_has_the_schedule_and_comparison(runs, report):
    md = report[1].read_text()
    assert "## Comparison of methods" in md and "| method | runs | seeds | test (mean) |" in md
    for name in ("llm", "grid"):
        s = _summary(runs[name])
        for k, stage in enumerate(s["strategy"]):
            params = ", ".join(f"{p}={value(v)}" for p, v in stage["params"].items())
            assert f"| {k + 1} | " in md and params in md


@pytest.mark.slow
def test_proposals_show_each_stage_with_the_agents_diagnosis(runs, report):
    t = tables(report[0].read_text())
    journal = Journal(runs["llm"] / JOURNAL)
    tree = journal.replay()
    journal.close()
    header, *rows = t["proposals-table"]
    shown = {row[0]: dict(zip(header, row)) for row in rows}
    assert list(shown) == [n.id for n in tree.stages()]
    for n in tree.stages():  # every stage: who proposed it, what changed, why, and what was repaired
        row = shown[n.id]
        assert row["parent"] == n.parent_id and row["proposed by"] == n.transition["proposed_by"]
        assert row["change"] == changes_text(n) and row["rationale / reason"] == n.transition["reason"]
        assert row["repairs"] == repairs_text(n.transition["repairs"])
        assert row["val"].startswith(f"{n.val_score:.3f}" if n.val_score is not None else n.state.value)
    diagnoses = " ".join(row["diagnosis / decision"] for row in shown.values())
    assert "entropy is falling" in diagnoses and "decision: " in diagnoses  # from the LLM's raw answer
    assert "fell back to skills" in diagnoses  # the answer that was not JSON
    calls = t["agent-calls"]
    assert len(calls) - 1 == _summary(runs["llm"])["llm_calls"] >= len(ANSWERS)
    assert set(column(calls, "prompt tokens")) == {"900"}


@pytest.mark.slow
def test_cli_writes_the_report_where_asked(runs, tmp_path):
    cmd = [str(LLMZERO), "report", str(runs["llm"]), str(runs["grid"]), "--out", str(tmp_path / "rep")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(tmp_path / "rep" / "report.html"), str(tmp_path / "rep" / "report.md")]


@pytest.mark.slow
def test_an_unfinished_run_is_reported_as_such(runs, tmp_path):
    run = tmp_path / "cut"
    run.mkdir()
    shutil.copy(runs["llm"] / JOURNAL, run / JOURNAL)
    db = sqlite3.connect(run / JOURNAL)
    db.execute("DELETE FROM events WHERE kind IN ('run_finished', 'test_scored')")
    db.commit()
    db.close()
    html = write_report([run, runs["grid"]], tmp_path / "out")[0].read_text()
    assert "has not finished" in html
    overview = {r[1]: r for r in tables(html)["runs"][1:]}
    assert overview[str(run)][5] == "unfinished" and overview[str(run)][9] == "-"


@pytest.mark.slow
def test_chromium_renders_the_report(report, tmp_path):
    import matplotlib.image

    shot = tmp_path / "report.png"
    run_chromium(report[0], tmp_path, f"--screenshot={shot}")
    pixels = matplotlib.image.imread(shot)[..., :3]
    assert pixels.shape[:2] == (2400, 1280)
    assert pixels.std() > 0.05, "the screenshot is blank"
    not_white = (pixels < 0.95).any(axis=-1).mean()
    assert not_white > 0.03, f"only {not_white:.1%} of the pixels are not white"
    dom = run_chromium(report[0], tmp_path, "--dump-dom").stdout
    tree = figure(dom, "tree-plot")
    assert "<svg" in tree and ">root</text>" in tree
    for table in ("runs", "comparison-number-sorting", "schedule-table", "proposals-table", "cost-table"):
        assert f'<table id="{table}">' in dom, table
