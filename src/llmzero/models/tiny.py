"""Tiny Qwen2-architecture causal LMs built from a config, saved as normal Hugging Face directories."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from llmzero.models.tokenizer import char_tokenizer


class ModelError(ValueError):
    """A model that cannot be built or loaded; one line naming the problem."""


@dataclass(frozen=True)
class TinyModelConfig:
    hidden_size: int = 128
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 4
    intermediate_size: int = 384
    max_position_embeddings: int = 256

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


# "s" is the default: ~0.87M parameters, learns every built-in task on a CPU. "xs" is for tests.
PRESETS: dict[str, TinyModelConfig] = {
    "xs": TinyModelConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                          intermediate_size=128),
    "s": TinyModelConfig(),
    "m": TinyModelConfig(hidden_size=256, num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=4,
                         intermediate_size=768),
}


def preset(name: str) -> TinyModelConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise ModelError(f"model={name!r} is not a tiny-model preset: expected one of "
                         f"{', '.join(PRESETS)} or a Hugging Face model directory") from None


def build_tiny(cfg: TinyModelConfig, seed: int, out_dir: str | Path):
    """Random-init tiny model plus the character tokenizer, saved to ``out_dir``; returns (model, tok).

    Saving matters: TRL rebuilds a KL reference model from ``config._name_or_path``.
    """
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tok = char_tokenizer()
    torch.manual_seed(seed)
    config = Qwen2Config(vocab_size=len(tok), tie_word_embeddings=True, pad_token_id=tok.pad_token_id,
                         eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id, **cfg.to_dict())
    model = Qwen2ForCausalLM(config)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return model, tok
