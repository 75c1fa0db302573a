"""Train the demo model the project ships: a small Qwen3 on the demo corpus.

    python -m edgeqwen.demo.train --minutes 12 --out edgeqwen/assets/demo_model

The model is transformers' own Qwen3ForCausalLM with Qwen's full 151,936-row
vocabulary, so every tool in the pipeline sees exactly what it sees on a real
Qwen3. Hidden size 128 keeps the committed bf16 weights near 40 MB while
group sizes 32..128 divide every layer, as on real Qwen.

Training cost is dominated by the 151,936-way softmax, so training uses an
exactly equivalent smaller problem: the embedding rows of tokens that occur in
the training text are trained individually, and all other rows share one
trained vector `v`. Because those rows are identical, the full-vocabulary
log-sum-exp over them is `h.v + log(count)`, one extra logit. The exported
model writes `v` into every unused row, so its full-vocabulary perplexity is
the one optimised here (checked after export, on the held-out split).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import torch
from transformers import AutoTokenizer, Qwen3Config, Qwen3ForCausalLM

from edgeqwen.demo.assets import CORPUS_DIR, DEMO_MODEL_DIR, tokenizer_source_dir

SEQ_LEN = 256
VOCAB_SIZE = 151936  # Qwen2.5 / Qwen3 embedding rows (the tokenizer uses 151,669 of them)


def demo_config(vocab_size: int = VOCAB_SIZE) -> Qwen3Config:
    return Qwen3Config(
        vocab_size=vocab_size,
        hidden_size=128,
        intermediate_size=512,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=32,
        max_position_embeddings=4096,
        rope_theta=1_000_000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        bos_token_id=151643,
        eos_token_id=151645,
    )


def read_records(split: str) -> list[dict]:
    with open(CORPUS_DIR / f"{split}.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def tokenize_records(tokenizer, records: list[dict]) -> list[int]:
    """One token stream: documents end with <|endoftext|>, chats are rendered by Qwen's template."""
    stream: list[int] = []
    for record in records:
        if record["kind"] == "chat":
            text = tokenizer.apply_chat_template(record["messages"], tokenize=False, enable_thinking=False)
        else:
            text = record["text"] + "<|endoftext|>"
        stream.extend(tokenizer(text)["input_ids"])
    return stream


def chunk(stream: list[int], remap: dict[int, int], rest_id: int) -> torch.Tensor:
    ids = [remap.get(t, rest_id) for t in stream]
    n = len(ids) // SEQ_LEN
    return torch.tensor(ids[: n * SEQ_LEN]).view(n, SEQ_LEN)


def compact_loss(model, batch: torch.Tensor, log_rest_count: float) -> torch.Tensor:
    logits = model(input_ids=batch).logits[:, :-1].float()
    logits[..., -1] += log_rest_count  # the shared row stands for every unused token
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))


@torch.no_grad()
def evaluate(model, data: torch.Tensor, log_rest_count: float) -> float:
    model.eval()
    losses = [compact_loss(model, data[i : i + 16], log_rest_count).item() for i in range(0, len(data), 16)]
    model.train()
    return math.exp(sum(losses) / len(losses))


@torch.no_grad()
def full_vocabulary_perplexity(model_dir: Path, data: list[int]) -> float:
    """Perplexity of the exported checkpoint, as any user of transformers would load it."""
    model = Qwen3ForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    ids = torch.tensor(data[: len(data) // SEQ_LEN * SEQ_LEN]).view(-1, SEQ_LEN)
    nll, count = 0.0, 0
    for i in range(0, len(ids), 8):
        batch = ids[i : i + 8]
        logits = model(input_ids=batch).logits[:, :-1].double()
        nll += torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1), reduction="sum"
        ).item()
        count += batch[:, 1:].numel()
    return math.exp(nll / count)


def export(model: Qwen3ForCausalLM, used_ids: list[int], out_dir: Path) -> None:
    compact = model.model.embed_tokens.weight.detach()
    full = Qwen3ForCausalLM(demo_config())
    state = {k: v for k, v in model.state_dict().items() if "embed_tokens" not in k and "lm_head" not in k}
    full.load_state_dict(state, strict=False)
    embedding = compact[-1].expand(VOCAB_SIZE, -1).clone()
    embedding[torch.tensor(used_ids)] = compact[:-1]
    full.model.embed_tokens.weight.data.copy_(embedding)
    full.tie_weights()
    # As in Qwen3's own generation_config: a turn ends at <|im_end|>, a document at <|endoftext|>.
    full.generation_config.eos_token_id = [151645, 151643]
    full.to(torch.bfloat16).save_pretrained(out_dir)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=12.0, help="training time budget")
    parser.add_argument("--out", type=Path, default=DEMO_MODEL_DIR)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    random.seed(args.seed)
    torch.set_num_threads(2)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source_dir())
    train_stream = tokenize_records(tokenizer, read_records("train"))
    heldout_stream = tokenize_records(tokenizer, read_records("heldout"))
    special = tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"])
    used_ids = sorted(set(train_stream) | set(special))
    remap = {token: i for i, token in enumerate(used_ids)}
    rest_id = len(used_ids)
    log_rest_count = math.log(VOCAB_SIZE - len(used_ids))
    train, heldout = chunk(train_stream, remap, rest_id), chunk(heldout_stream, remap, rest_id)
    print(f"train {len(train_stream)} tokens, held-out {len(heldout_stream)}, {len(used_ids)} distinct tokens")

    model = Qwen3ForCausalLM(demo_config(vocab_size=rest_id + 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.05, betas=(0.9, 0.95))
    batch_size = 8
    deadline = time.monotonic() + args.minutes * 60
    start = time.monotonic()
    step, seen, best = 0, 0, float("inf")
    while time.monotonic() < deadline:
        order = torch.randperm(len(train))
        for i in range(0, len(order) - batch_size + 1, batch_size):
            progress = min(1.0, (time.monotonic() - start) / (args.minutes * 60))
            lr = 3e-3 * min(1.0, step / 100) * 0.5 * (1 + math.cos(math.pi * progress))
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss = compact_loss(model, train[order[i : i + batch_size]], log_rest_count)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            step += 1
            seen += batch_size * SEQ_LEN
            if step % 50 == 0:
                rate = seen / (time.monotonic() - start)
                print(f"step {step} loss {loss.item():.3f} lr {lr:.2e} {rate:.0f} tok/s", flush=True)
            if time.monotonic() >= deadline:
                break
        ppl = evaluate(model, heldout, log_rest_count)
        print(f"epoch done at step {step}: held-out perplexity {ppl:.2f}", flush=True)
        if ppl < best:
            best = ppl
            best_state = {k: v.clone() for k, v in model.state_dict().items()}

    model.load_state_dict(best_state)
    args.out.mkdir(parents=True, exist_ok=True)
    export(model, used_ids, args.out)
    exported_ppl = full_vocabulary_perplexity(args.out, heldout_stream)
    train_ppl = full_vocabulary_perplexity(args.out, train_stream[: len(heldout_stream)])
    facts = {
        "heldout_perplexity": round(exported_ppl, 2),
        "train_perplexity_sample": round(train_ppl, 2),
        "train_tokens": len(train_stream),
        "heldout_tokens": len(heldout_stream),
        "steps": step,
        "tokens_seen": seen,
        "minutes": args.minutes,
        "seed": args.seed,
    }
    (args.out / "training.json").write_text(json.dumps(facts, indent=2) + "\n")
    print(json.dumps(facts, indent=2))


if __name__ == "__main__":
    main()
