"""Greedy decoding for held-out evaluation."""

from __future__ import annotations

from collections.abc import Sequence


def greedy_generate(model, tokenizer, prompts: Sequence[str], max_new_tokens: int,
                    batch_size: int = 256) -> list[str]:
    """Greedy completions (special tokens stripped), batched with left padding. Leaves the model's
    train/eval mode as it found it."""
    import torch

    was_training = model.training
    model.eval()
    out: list[str] = []
    try:
        with torch.no_grad():
            for i in range(0, len(prompts), batch_size):
                enc = tokenizer(list(prompts[i:i + batch_size]), return_tensors="pt", padding=True,
                                padding_side="left", add_special_tokens=False).to(model.device)
                gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                     pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                                     temperature=None, top_p=None, top_k=None)
                out.extend(tokenizer.batch_decode(gen[:, enc["input_ids"].shape[1]:], skip_special_tokens=True))
    finally:
        if was_training:
            model.train()
    return out
