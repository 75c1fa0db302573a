"""Make the golden bundle's source model: a tiny random Qwen3 with a 1,024-token cut of Qwen's tokenizer.

    python tests/golden/make_source.py tests/golden/source

The golden bundle (tests/golden/bundle-v1) was built from this folder by edgeqwen 0.1.0 at bundle
format_version 1 (see tests/golden/README.md). The tokenizer keeps Qwen's byte-level BPE, pre-tokenizer,
chat template and special tokens, but only the first 998 vocabulary entries and the merges among them,
with the 26 special tokens renumbered after them: the bundle stays a few hundred kilobytes, yet every
engine loads it the way it loads a real Qwen.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

BASE_TOKENS = 998  # + 26 special tokens = a vocabulary of 1,024


def cut_tokenizer(source: Path, out: Path) -> dict[str, int]:
    full = json.loads((source / "tokenizer.json").read_text())
    vocab = {token: i for token, i in full["model"]["vocab"].items() if i < BASE_TOKENS}
    merges = [m for m in full["model"]["merges"] if "".join(m) in vocab and m[0] in vocab and m[1] in vocab]
    renumbered = {}
    for offset, added in enumerate(full["added_tokens"]):
        renumbered[added["id"]] = BASE_TOKENS + offset
        added["id"] = BASE_TOKENS + offset
    full["model"]["vocab"], full["model"]["merges"] = vocab, merges
    (out / "tokenizer.json").write_text(json.dumps(full, ensure_ascii=False))
    config = json.loads((source / "tokenizer_config.json").read_text())
    config["added_tokens_decoder"] = {str(renumbered[int(k)]): v for k, v in config["added_tokens_decoder"].items()}
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False))
    return {added["content"]: added["id"] for added in full["added_tokens"]}


def main(out: Path) -> None:
    import torch
    from transformers import GenerationConfig, Qwen3Config, Qwen3ForCausalLM

    from edgeqwen.demo.assets import tokenizer_source_dir

    out.mkdir(parents=True, exist_ok=True)
    special = cut_tokenizer(tokenizer_source_dir(), out)
    torch.manual_seed(0)
    config = Qwen3Config(vocab_size=BASE_TOKENS + len(special), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1, head_dim=32,
                         max_position_embeddings=1024, tie_word_embeddings=True,
                         bos_token_id=special["<|endoftext|>"], eos_token_id=special["<|im_end|>"])
    model = Qwen3ForCausalLM(config)
    model.to(torch.bfloat16).save_pretrained(out)
    GenerationConfig(bos_token_id=special["<|endoftext|>"], eos_token_id=[special["<|im_end|>"],
                     special["<|endoftext|>"]], pad_token_id=special["<|endoftext|>"]).save_pretrained(out)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
