"""The full-precision reference one decoder layer at a time: it holds a layer in float32, not the model.

The drift gate compares a bundle with its source checkpoint in float32, 4 bytes a parameter: 30 GB for
Qwen2.5-7B, more than the build itself needs. This runs transformers' own modules of that model (its
decoder layers, rotary embedding, causal mask, final norm and lm_head), called exactly as the model's
forward and `generate` call them, but layer-major: every eval window goes through decoder layer 0, the
layer is freed, then layer 1 is read from the safetensors files, and so on. Each window keeps its own
hidden states and KV cache between layers, so every window sees the same operations on the same shapes
as in the whole model, and the logits are the same bit for bit (tests/test_layerwise_reference.py).

Greedy generation runs one pass over the layers per generated token, every prompt in the same pass,
each with its own KV cache and the model's own logits processors (a checkpoint's repetition penalty).

Held at once: one decoder layer in float32, the lm_head in float32 (the tied table), the eval windows'
hidden states and KV caches, and the logits handed back.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from tqdm import tqdm

from edgeqwen.backends.streamed_rtn import read_tensor, tensor_files

EMBEDDING = "model.embed_tokens.weight"
LM_HEAD = "lm_head.weight"
LAYER_INDEX = re.compile(r"\.\d+\.")
TABLE_ROWS_AT_ONCE = 8192  # 58 MB of a 7B model's bfloat16 table per read


class LayerwiseReference:
    """The source checkpoint in float32, run one decoder layer at a time over every sequence at once."""

    def __init__(self, model_dir: Path):
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

        self.torch = torch
        self.model_dir = Path(model_dir)
        config = AutoConfig.from_pretrained(model_dir)
        with torch.device("meta"):  # the modules without their weights; each is read when it runs
            self.model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
        inner = self.model.model
        inner.rotary_emb = type(inner.rotary_emb)(config=inner.config)  # computed, not stored: build it on the CPU
        try:
            self.generation_config = GenerationConfig.from_pretrained(model_dir)
        except OSError:
            self.generation_config = GenerationConfig.from_model_config(config)
        self.files = tensor_files(self.model_dir)
        self.lm_head = None
        self.slots = {}  # one float32 tensor per parameter of a decoder layer, refilled for each layer

    # The checkpoint's tensors, as from_pretrained(dtype=float32) would hold them.

    def _load(self, module, prefix: str) -> None:
        """The module's weights from the checkpoint, cast into this reference's float32 slots for its kind of
        module: every decoder layer reuses the same memory (new tensors each layer left glibc's heap holding
        freed layers, 1 GB more for a 0.5B model's greedy pass)."""
        kind = LAYER_INDEX.sub(".*.", prefix)
        weights = {}
        for key in module.state_dict():
            stored = read_tensor(self.files[prefix + key], prefix + key)
            slot = self.slots.get(kind + key)
            if slot is None or slot.shape != stored.shape:
                slot = self.slots[kind + key] = self.torch.empty(stored.shape, dtype=self.torch.float32)
            weights[key] = slot.copy_(stored)  # the same values as .to(float32)
        module.load_state_dict(weights, assign=True)

    def _free(self, module) -> None:
        module.to("meta")

    def _lm_head_weight(self):
        """The lm_head's matrix, kept while this reference lives (a tied model's is its table). Cast into place
        a slice of rows at a time: the stored copy and the mapped file are never held whole beside it."""
        if self.lm_head is None:
            from safetensors import safe_open

            tied = LM_HEAD not in self.files or self.model.config.tie_word_embeddings
            name = EMBEDDING if tied else LM_HEAD
            with safe_open(str(self.files[name]), framework="pt") as f:
                rows, columns = f.get_slice(name).get_shape()
            weight = self.torch.empty(rows, columns, dtype=self.torch.float32)
            for start in range(0, rows, TABLE_ROWS_AT_ONCE):
                with safe_open(str(self.files[name]), framework="pt") as f:  # unmapped after each slice
                    weight[start:start + TABLE_ROWS_AT_ONCE] = f.get_slice(name)[start:start + TABLE_ROWS_AT_ONCE]
            self.lm_head = weight
        return self.lm_head

    def _embed(self, ids: list[int]):
        """Rows of the table: gathered from the stored dtype and cast, which is what a float32 lookup returns."""
        from safetensors import safe_open

        with safe_open(str(self.files[EMBEDDING]), framework="pt") as f:
            table = f.get_slice(EMBEDDING)
            rows = [table[i:i + 1] for i in ids]
        return self.torch.cat(rows).to(self.torch.float32).unsqueeze(0)

    # The model's forward, split where the layers are.

    def _start(self, ids: list[int], cache, with_mask: bool):
        """A sequence's state before layer 0: its embeddings and the per-forward inputs every layer gets."""
        from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask

        torch = self.torch
        inner = self.model.model
        hidden = self._embed(ids)
        past = cache.get_seq_length()
        position_ids = (torch.arange(hidden.shape[1]) + past).unsqueeze(0)
        attention_mask = torch.ones(1, past + hidden.shape[1], dtype=torch.long) if with_mask else None
        mask_kwargs = {"config": inner.config, "inputs_embeds": hidden, "attention_mask": attention_mask,
                       "past_key_values": cache, "position_ids": position_ids}
        masks = {"full_attention": create_causal_mask(**mask_kwargs)}
        if inner.has_sliding_layers:
            masks["sliding_attention"] = create_sliding_window_causal_mask(**mask_kwargs)
        return {"hidden": hidden, "masks": masks, "position_ids": position_ids, "cache": cache,
                "position_embeddings": inner.rotary_emb(hidden, position_ids)}

    def _through_layers(self, states: list[dict], desc: str | None = None) -> None:
        inner = self.model.model
        layers = range(self.model.config.num_hidden_layers)
        for i in (tqdm(layers, desc=desc, unit="layer", leave=False) if desc else layers):
            layer = inner.layers[i]
            self._load(layer, f"model.layers.{i}.")
            with self.torch.no_grad():
                for state in states:
                    state["hidden"] = layer(state["hidden"], attention_mask=state["masks"][inner.config.layer_types[i]],
                                            position_embeddings=state["position_embeddings"],
                                            position_ids=state["position_ids"], past_key_values=state["cache"],
                                            use_cache=True)
            self._free(layer)

    def _logits(self, hidden, last_only: bool):
        import torch.nn.functional as F

        with self.torch.no_grad():
            hidden = self.model.model.norm(hidden)
            return F.linear(hidden[:, -1:, :] if last_only else hidden, self._lm_head_weight())

    @contextmanager
    def _final_norm(self):
        """The final norm's weights, held while the logits are computed."""
        self._load(self.model.model.norm, "model.norm.")
        try:
            yield
        finally:
            self._free(self.model.model.norm)

    # The two calls the drift measurement makes (the whole model's forward and `generate`, layer by layer).

    def windows_logits(self, windows: list[list[int]]) -> list[np.ndarray]:
        """Each window teacher-forced: [len(window) - 1, vocab] float32, row i predicting window[i + 1]."""
        from transformers import DynamicCache

        config = self.model.config
        states = [self._start(tokens, DynamicCache(config=config), with_mask=False) for tokens in windows]
        self._through_layers(states, desc="  reference (layer by layer)")
        with self._final_norm():
            return [self._logits(s["hidden"], last_only=False)[0, :-1].numpy() for s in states]

    def greedy(self, prompts: list[list[int]], new_tokens: list[int]) -> list[list[int]]:
        """Each prompt's greedy answer of up to its `new_tokens`, stopping after the model's end token."""
        from transformers import DynamicCache, LogitsProcessorList

        torch = self.torch
        config = self.generation_config
        eos = config.eos_token_id
        stops = set(eos if isinstance(eos, list) else [] if eos is None else [eos])
        processors = [self.model._get_logits_processor(generation_config=config, input_ids_seq_length=len(ids),
                                                       encoder_input_ids=torch.tensor([ids]),
                                                       logits_processor=LogitsProcessorList(), device="cpu")
                      for ids in prompts]
        caches = [DynamicCache(config=self.model.config) for _ in prompts]
        answers = [[] for _ in prompts]
        pending = [ids for ids, limit in zip(prompts, new_tokens) if limit > 0]
        live = [i for i, limit in enumerate(new_tokens) if limit > 0]
        with self._final_norm():
            while live:
                states = [self._start(ids, caches[i], with_mask=True) for i, ids in zip(live, pending)]
                self._through_layers(states)
                still, pending = [], []
                for i, state in zip(live, states):
                    so_far = torch.tensor([prompts[i] + answers[i]])
                    scores = processors[i](so_far, self._logits(state["hidden"], last_only=True)[:, -1, :])
                    token = int(torch.argmax(scores, dim=-1))
                    answers[i].append(token)
                    if token not in stops and len(answers[i]) < new_tokens[i]:
                        still.append(i)
                        pending.append([token])
                live = still
        return answers


class CachedReference:
    """The reference's answers for one model and eval text, kept in `memo` when the caller gives one (every
    target of `edgeqwen build --target all` reuses them). The layers are read only for what is not in it, and
    nothing of the model is held between calls: the bundle's runtime then has the memory to itself."""

    def __init__(self, model_dir: Path, weights_sha256: str, eval_sha256: str, memo: dict | None):
        self.model_dir = model_dir
        self.prefix = (weights_sha256, eval_sha256)
        self.memo = memo if memo is not None else {}

    def _key(self, kind: str, tokens: list[int]) -> tuple:
        return (*self.prefix, kind, tuple(tokens))

    def windows_logits(self, windows: list[list[int]]) -> list[np.ndarray]:
        missing = list({self._key("logits", w): w for w in windows if self._key("logits", w) not in self.memo}.values())
        if missing:
            for tokens, logits in zip(missing, LayerwiseReference(self.model_dir).windows_logits(missing)):
                self.memo[self._key("logits", tokens)] = logits
            return_freed_memory()
        return [self.memo[self._key("logits", w)] for w in windows]

    def greedy(self, prompts: list[list[int]], new_tokens: list[int]) -> list[list[int]]:
        keys = [self._key(f"greedy{n}", ids) for ids, n in zip(prompts, new_tokens)]
        missing = [i for i, key in enumerate(keys) if key not in self.memo]
        if missing:
            answers = LayerwiseReference(self.model_dir).greedy([prompts[i] for i in missing],
                                                                [new_tokens[i] for i in missing])
            for i, answer in zip(missing, answers):
                self.memo[keys[i]] = answer
            return_freed_memory()
        return [self.memo[key] for key in keys]


def return_freed_memory() -> None:
    """Hand the freed heap back to the system before the bundle's runtime starts. glibc keeps freed tensors of up
    to 32 MB in its heap (its mmap threshold rises as large blocks are freed), 0.7 GB after a 0.5B model's
    reference, which the process would otherwise go on holding beside the runtime."""
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    libc = ctypes.util.find_library("c")
    try:
        ctypes.CDLL(libc).malloc_trim(0)
    except (OSError, AttributeError, TypeError):  # not glibc (musl, macOS): nothing to hand back this way
        pass
