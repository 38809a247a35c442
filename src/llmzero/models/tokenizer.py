"""A character-level tokenizer built with `tokenizers`: one token per printable ASCII character."""

from __future__ import annotations

import string

from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

SPECIALS = ("<pad>", "<eos>", "<bos>", "<unk>")
CHARS = tuple(c for c in string.printable if c not in "\t\n\r\x0b\x0c")


def char_tokenizer() -> PreTrainedTokenizerFast:
    """Pad/eos/bos/unk plus the 95 printable ASCII characters. Left padding, as GRPO generation needs."""
    vocab = {tok: i for i, tok in enumerate(SPECIALS + CHARS)}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    tk.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="<eos>",
                                   bos_token="<bos>", unk_token="<unk>", padding_side="left")


def is_encodable(text: str) -> bool:
    """True when every character of ``text`` has its own token (no ``<unk>``)."""
    return all(c in CHARS for c in text)


def load_tokenizer(path: str):
    """Load a model directory's tokenizer, left-padded, with a pad token.

    A plain ``tokenizers`` tokenizer (our character tokenizer) is loaded as such: AutoTokenizer would
    pick the architecture's own class (Qwen2Tokenizer), which re-tokenizes and drops spaces.
    """
    import json
    from pathlib import Path

    from transformers import AutoTokenizer

    cfg_path = Path(path) / "tokenizer_config.json"
    cls = json.loads(cfg_path.read_text()).get("tokenizer_class") if cfg_path.is_file() else None
    if cls in ("TokenizersBackend", "PreTrainedTokenizerFast"):
        tok = PreTrainedTokenizerFast.from_pretrained(path)
    else:
        tok = AutoTokenizer.from_pretrained(path)
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


class NoChatTemplate(ValueError):
    """A chat task given a model whose tokenizer has no chat template; one line."""


def render_chat(tokenizer, system: str, user: str) -> str:
    """``system`` and ``user`` as the model's chat template renders them, the assistant's turn opened
    (the text a chat model is prompted with)."""
    if not getattr(tokenizer, "chat_template", None):
        raise NoChatTemplate(f"task.chat=true is not allowed with this model: its tokenizer "
                             f"({tokenizer.name_or_path or 'unnamed'}) has no chat template")
    return tokenizer.apply_chat_template([{"role": "system", "content": system}, {"role": "user", "content": user}],
                                         tokenize=False, add_generation_prompt=True)
