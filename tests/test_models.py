import json

import pytest
import torch

from llmzero.models.base import SFTSettings, build_base, check_model_dir
from llmzero.models.generate import greedy_generate
from llmzero.models.tiny import ModelError, preset
from llmzero.models.tokenizer import char_tokenizer, load_tokenizer
from llmzero.tasks import get_task


@pytest.mark.parametrize("text", ["<56 25 75=25 56 75", "Email plans would", "7:10 5 2=10+2-5", " ~!@#$%^&*()"])
def test_tokenizer_round_trip(text, tmp_path):
    tok = char_tokenizer()
    ids = tok(text)["input_ids"]
    assert len(ids) == len(text) and tok.decode(ids) == text
    tok.save_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen2"}))  # as in a model directory
    again = load_tokenizer(str(tmp_path))
    assert again(text)["input_ids"] == ids and again.padding_side == "left"
    assert again.decode(ids + [again.eos_token_id], skip_special_tokens=True) == text


@pytest.mark.slow
def test_base_model_is_warm_started_cached_and_deterministic(tmp_path, small_sizes):
    task = get_task("number_sorting", sizes=small_sizes)
    sft = SFTSettings(target_accuracy=0.05, max_steps=150, eval_every=25, eval_size=50)
    a = build_base(task, "xs", seed=3, sft=sft, root=tmp_path / "a")
    assert not a.cached and a.sft_steps <= 150 and 0.0 <= a.test_accuracy <= 1.0
    assert check_model_dir(a.path)
    again = build_base(task, "xs", seed=3, sft=sft, root=tmp_path / "a")
    assert again.cached and again.path == a.path
    b = build_base(task, "xs", seed=3, sft=sft, root=tmp_path / "b")
    from safetensors.torch import load_file

    wa, wb = load_file(f"{a.path}/model.safetensors"), load_file(f"{b.path}/model.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)  # same seed, same weights, bit for bit
    # The SFT base learned the format: greedy completions look like sorted numbers.
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(a.path)
    outs = greedy_generate(model, load_tokenizer(a.path), [e.prompt for e in task.split("val")[:10]], 18)
    assert sum(all(w.isdigit() for w in o.split(" ") if w) for o in outs) >= 5


def test_unknown_preset_and_bad_model_dir(tmp_path):
    with pytest.raises(ModelError, match="model='huge'"):
        preset("huge")
    with pytest.raises(ModelError, match="does not exist"):
        check_model_dir(tmp_path / "none")
    with pytest.raises(ModelError, match="no config.json"):
        check_model_dir(tmp_path)
