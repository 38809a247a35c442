"""Chat tasks (``task.chat``): reasoning-gym questions as user messages under its default system prompt,
rendered by the model's chat template, answers read from ``<answer>`` tags; a model without a template,
or a tiny preset, is a one-line error."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from llmzero.config import ConfigError, parse_config
from llmzero.models.tokenizer import NoChatTemplate, load_tokenizer, render_chat
from llmzero.strategy import Stage, StageMode
from llmzero.tasks import Sizes, get_task, model_prompts, task_space
from llmzero.training import grpo
from llmzero.training.evaluate import evaluate_checkpoint
from llmzero.training.grpo import GRPOStageRunner, TrainingSettings

TEMPLATE = ("{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }} {% endfor %}"
            "{% if add_generation_prompt %}[assistant] {% endif %}")
SIZES = Sizes(train=200, val=12, test=12)


@pytest.fixture(scope="module")
def chat_model(xs_base, tmp_path_factory):
    """The tiny test model with a chat template, and room for a system prompt's length of positions."""
    d = tmp_path_factory.mktemp("chat") / "model"
    shutil.copytree(xs_base.path, d)
    tok = load_tokenizer(str(d))
    tok.chat_template = TEMPLATE
    tok.save_pretrained(d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["max_position_embeddings"] = 2048
    (d / "config.json").write_text(json.dumps(cfg))
    return str(d)


def test_a_chat_task_reads_the_answer_from_its_tags():
    task = get_task("rg:leg_counting", chat=True, sizes=SIZES)
    e = task.split("val")[0]
    answer = str(e.entry["answer"])
    assert e.prompt == e.entry["question"] and e.gold == f"<answer>{answer}</answer>"
    assert task.score(e, f"two legs each... <answer>0</answer> so <answer>{answer}</answer>") == 1.0  # the last
    assert task.score(e, f"<answer> {answer} </answer>") == 1.0
    assert task.score(e, answer) == 0.0  # no tags: no answer
    assert "<answer>" in task.system
    plain = get_task("rg:leg_counting", sizes=SIZES)
    assert plain.system is None and plain.score(plain.split("val")[0], str(plain.split("val")[0].entry["answer"])) == 1
    assert task.identity() == {**plain.identity(), "chat": True}  # other prompts: other cached splits
    # room for a chat model's reasoning before its answer; a text task's answer alone
    assert (task.default_max_completion_length, plain.default_max_completion_length) == (512, 64)


def test_chat_prompts_are_rendered_by_the_models_template(chat_model, xs_base):
    task = get_task("rg:leg_counting", chat=True, sizes=SIZES)
    tok = load_tokenizer(chat_model)
    (shown,) = model_prompts(task, tok, ["How many legs?"])
    assert shown == f"[system] {task.system} [user] How many legs? [assistant] "
    plain = get_task("rg:leg_counting", sizes=SIZES)
    assert model_prompts(plain, tok, ["q\nAnswer: "]) == ["q\nAnswer: "]  # a text task: as it is
    with pytest.raises(NoChatTemplate, match="task.chat=true is not allowed with this model"):
        render_chat(load_tokenizer(xs_base.path), task.system, "q")


@pytest.mark.parametrize(("raw", "words"), [
    ({"task": {"name": "countdown", "chat": True}}, "chat=true is not allowed for built-in task 'countdown'"),
    ({"task": {"name": "rg:leg_counting", "chat": True}, "model": "s"},
     "task.chat=true is not allowed with model='s': the tiny presets have no chat template"),
])
def test_chat_where_it_cannot_be_is_one_line(raw, words):
    with pytest.raises(ConfigError) as e:
        parse_config({"budget": {"compute": 1000}, **raw})
    assert words in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_a_stage_on_a_chat_task_trains_and_scores_on_templated_prompts(chat_model, tmp_path, monkeypatch):
    task = get_task("rg:leg_counting", chat=True, sizes=SIZES, max_completion_length=8)
    seen = []

    def spy(t, tok, prompts):
        out = model_prompts(t, tok, prompts)
        seen.append(out)
        return out

    monkeypatch.setattr(grpo, "model_prompts", spy)
    runner = GRPOStageRunner(task, chat_model, TrainingSettings(prompts_per_step=2))
    st = Stage({**task_space(task).defaults(), "num_generations": 2}, 2, StageMode.CONTINUE)
    res = runner.run_stage(None, st, str(tmp_path / "o"), 0)
    assert res.ok, res.error
    assert len(seen) == 2 and len(seen[0]) == len(task.split("train", 2))  # the dataset, then validation
    train, val = seen
    assert all(p.startswith(f"[system] {task.system} [user] ") and p.endswith(" [assistant] ") for p in train + val)
    assert [p.split(" [user] ", 1)[1][: -len(" [assistant] ")] for p in val] == [e.prompt for e in task.split("val")]
    assert res.val_score is not None and res.cost.generated_tokens > 0
    # the search's own scoring renders them too: the same greedy completions, the same score
    assert evaluate_checkpoint(task, res.checkpoint, "val", 8) == res.val_score


def test_a_chat_task_with_a_model_without_a_template_is_exit_2_and_leaves_nothing(xs_base, tmp_path):
    cfg = {"task": {"name": "rg:leg_counting", "chat": True, "sizes": {"train": 200, "val": 12, "test": 12}},
           "model": xs_base.path, "budget": {"compute": 1000}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    r = subprocess.run([sys.executable, "-m", "llmzero.cli", "search", "c.yaml", "--out", "run"], cwd=tmp_path,
                       capture_output=True, text=True, env=dict(os.environ), timeout=300)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().count("\n") == 0 and "has no chat template" in r.stderr, r.stderr
    assert not (tmp_path / "run").exists()
