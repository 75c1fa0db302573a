"""The drift gate's reference, run one decoder layer at a time, gives the whole model's logits and greedy answers
bit for bit, and holds no more than one decoder layer at a time.

The other side is transformers itself: the checkpoint loaded whole in float32, its forward for the logits and
`generate` for the greedy answers, called as the drift gate called them before it streamed.
"""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeqwen.demo.assets import demo_model_dir
from edgeqwen.drift.reference import CachedReference, LayerwiseReference
from tests.conftest import make_tiny_qwen

ROOT = Path(__file__).resolve().parent.parent


class WholeModel:
    def __init__(self, model_dir: Path):
        import torch
        from transformers import AutoModelForCausalLM

        self.torch = torch
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()

    def logits(self, tokens: list[int]) -> np.ndarray:
        with self.torch.no_grad():
            return self.model(self.torch.tensor([tokens])).logits[0, :-1].numpy()

    def greedy(self, ids: list[int], new_tokens: int) -> list[int]:
        prompt = self.torch.tensor([ids])
        eos = self.model.generation_config.eos_token_id
        with self.torch.no_grad():
            out = self.model.generate(prompt, attention_mask=self.torch.ones_like(prompt),
                                      pad_token_id=eos[0] if isinstance(eos, list) else eos,
                                      max_new_tokens=new_tokens, do_sample=False, top_k=None, top_p=None)
        return out[0, len(ids):].tolist()


def sequences(vocab: int, seed: int = 0) -> tuple[list[list[int]], list[list[int]]]:
    """Two eval windows (a full one and a short last one) and two prompts of other lengths."""
    rng = np.random.default_rng(seed)
    windows = [rng.integers(0, vocab, n).tolist() for n in (256, 77)]
    prompts = [rng.integers(0, vocab, n).tolist() for n in (19, 6)]
    return windows, prompts


def assert_same_as_whole_model(model_dir: Path, vocab: int) -> None:
    windows, prompts = sequences(vocab)
    whole = WholeModel(model_dir)
    expected_logits = [whole.logits(w) for w in windows]
    expected_answers = [whole.greedy(p, 24) for p in prompts]
    del whole
    layerwise = LayerwiseReference(model_dir)
    for got, expected in zip(layerwise.windows_logits(windows), expected_logits):
        assert got.dtype == np.float32 and got.shape == expected.shape
        assert np.array_equal(got, expected), f"largest difference {np.abs(got - expected).max()}"
    assert layerwise.greedy(prompts, [24, 24]) == expected_answers


@pytest.mark.parametrize("family,tied", [("qwen2", True), ("qwen3", True), ("qwen2", False)])
def test_tiny_models_give_the_whole_models_logits_and_answers(tmp_path, family, tied):
    assert_same_as_whole_model(make_tiny_qwen(tmp_path / "model", family, tied=tied), vocab=151_000)


def test_the_demo_model_gives_the_whole_models_logits_and_answers():
    assert_same_as_whole_model(demo_model_dir(), vocab=1000)


def test_a_checkpoints_repetition_penalty_applies_as_in_generate(tmp_path):
    # Qwen's instruct checkpoints ship one (Qwen2.5-Instruct: 1.05), and `generate` applies it in greedy mode too.
    # The demo model, because it repeats itself where a penalty shows (a tiny random model's margins are too wide).
    model_dir = tmp_path / "model"
    shutil.copytree(demo_model_dir(), model_dir)
    _, prompts = sequences(1000, seed=3)
    without_penalty = LayerwiseReference(model_dir).greedy(prompts, [24, 24])
    config = json.loads((model_dir / "generation_config.json").read_text())
    (model_dir / "generation_config.json").write_text(json.dumps({**config, "repetition_penalty": 1.3}))
    whole = WholeModel(model_dir)
    with_penalty = LayerwiseReference(model_dir).greedy(prompts, [24, 24])
    assert with_penalty == [whole.greedy(p, 24) for p in prompts]
    assert with_penalty != without_penalty  # the penalty was applied, not ignored by both


def test_one_decoder_layer_holds_weights_at_a_time(tmp_path):
    import torch

    reference = LayerwiseReference(make_tiny_qwen(tmp_path / "model", "qwen3"))
    layers = reference.model.model.layers
    held = []

    def count(*_):
        held.append(sum(any(p.device != torch.device("meta") for p in layer.parameters()) for layer in layers))

    for layer in layers:
        layer.register_forward_pre_hook(count)
    windows, prompts = sequences(151_000)
    reference.windows_logits(windows)
    reference.greedy(prompts, [3, 3])
    assert held and max(held) == 1
    assert all(p.device == torch.device("meta") for p in layers.parameters())  # nothing kept afterwards


def test_cached_reference_reads_the_layers_only_for_what_it_has_not_kept(tmp_path, monkeypatch):
    model_dir = make_tiny_qwen(tmp_path / "model", "qwen2")
    windows, prompts = sequences(151_000)
    memo = {}
    first = CachedReference(model_dir, "weights", "text", memo)
    logits = first.windows_logits(windows)
    answers = first.greedy(prompts, [5, 5])

    def refuse(*_):
        raise AssertionError("the reference was run again for answers the memo holds")

    monkeypatch.setattr(LayerwiseReference, "windows_logits", refuse)
    monkeypatch.setattr(LayerwiseReference, "greedy", refuse)
    again = CachedReference(model_dir, "weights", "text", memo)
    assert all(np.array_equal(a, b) for a, b in zip(again.windows_logits(windows), logits))
    assert again.greedy(prompts, [5, 5]) == answers


@pytest.mark.slow
def test_a_qwen25_05b_shaped_checkpoint_gives_the_whole_models_logits_and_answers(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from random_checkpoint import write_random_checkpoint

    write_random_checkpoint("Qwen2.5-0.5B", tmp_path / "model")
    assert_same_as_whole_model(tmp_path / "model", vocab=151_000)
