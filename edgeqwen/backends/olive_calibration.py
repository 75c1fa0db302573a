"""Olive data component: GPTQ calibration blocks from a JSONL file of texts, with no `datasets` package.

Loaded by Olive (as the workflow's `user_script`) inside the Olive child process, never imported by
edgeqwen itself. The ONNX Runtime backend writes the calibration texts (see edgeqwen.calibration) to
one JSONL file of {"text": ...}; this joins them, tokenizes with the model's own tokenizer, and cuts
the tokens into `max_samples` blocks of `max_seq_len`, the (inputs, label) pairs Olive's GPTQ pass
reads (it keeps the inputs: input_ids and attention_mask).
"""

import json

import torch
from olive.data.registry import Registry


class TokenBlocks(torch.utils.data.Dataset):
    def __init__(self, blocks):
        self.blocks = blocks

    def __len__(self):
        return len(self.blocks)

    def __getitem__(self, index):
        ids = self.blocks[index]
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, ids


@Registry.register_dataset()
def edgeqwen_calibration(data_files, model_name, max_seq_len=512, max_samples=32, **kwargs):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_name)
    separator = tokenizer.encode("\n\n", add_special_tokens=False)
    ids = []
    with open(data_files, encoding="utf-8") as texts:
        for line in texts:
            ids += tokenizer.encode(json.loads(line)["text"], add_special_tokens=False) + separator
            if len(ids) >= max_seq_len * max_samples:
                break
    blocks = min(max_samples, len(ids) // max_seq_len)
    if blocks == 0:
        raise ValueError(f"{data_files}: fewer than {max_seq_len} tokens of calibration text; give a longer file")
    return TokenBlocks([torch.tensor(ids[i * max_seq_len : (i + 1) * max_seq_len]) for i in range(blocks)])
