#!/usr/bin/env python3
"""Run this bundle: answer a prompt with the quantized Qwen model next to this file.

    python shim.py "What is the with statement?"
    python shim.py --system "Answer briefly." --max-new-tokens 200 "Explain pathlib"
    echo "a prompt from a file" | python shim.py -

Needs only the bundle's runtime (README.md in this folder names the package):
ONNX Runtime GenAI or OpenVINO GenAI; no edgeqwen, PyTorch or transformers.
Written by edgeqwen; one file on purpose. Only the runtime this bundle was
built for is imported.
"""

import argparse
import json
import os
import sys

BUNDLE_DIR = os.path.dirname(os.path.abspath(__file__))
SUPPORTED_FORMAT_VERSIONS = (1,)
EMPTY_THINKING = "<think>\n\n</think>\n\n"  # what Qwen3's template emits when enable_thinking is false


def fail(message):
    print(f"shim.py: error: {message}", file=sys.stderr)
    sys.exit(2)


def read_json(name):
    path = os.path.join(BUNDLE_DIR, name)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        fail(f"cannot read {path}: {e}")


def read_manifest():
    manifest = read_json("manifest.json")
    if manifest.get("format_version") not in SUPPORTED_FORMAT_VERSIONS:
        fail(f"manifest.json: bundle format_version {manifest.get('format_version')!r} is not one this shim knows "
             f"({', '.join(map(str, SUPPORTED_FORMAT_VERSIONS))}); use the shim that came with the bundle")
    return manifest


def chat_template():
    path = os.path.join(BUNDLE_DIR, "chat_template.jinja")
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return f.read()


class OrtGenaiRuntime:
    """ONNX Runtime GenAI: the model, tokenizer and search settings come from genai_config.json."""

    def __init__(self, manifest, device):
        import onnxruntime_genai as og

        self.og = og
        config = og.Config(BUNDLE_DIR)
        if device == "cpu":
            config.clear_providers()
        self.model = og.Model(config)
        self.tokenizer = og.Tokenizer(self.model)
        self.max_prompt_tokens = manifest["plan"]["context_length"] - 1
        self.context_length = manifest["plan"]["context_length"]

    def render(self, messages, think):
        template = chat_template()
        text = self.tokenizer.apply_chat_template(
            json.dumps(messages), template_str=template, add_generation_prompt=True
        )
        if template and "enable_thinking" in template and not think and not text.endswith(EMPTY_THINKING):
            text += EMPTY_THINKING
        return text

    def count_tokens(self, text):
        return len(self.tokenizer.encode(text))

    def generate(self, text, options, on_text):
        og = self.og
        tokens = self.tokenizer.encode(text)
        params = og.GeneratorParams(self.model)
        params.set_search_options(
            max_length=min(self.context_length, len(tokens) + options.max_new_tokens),
            do_sample=options.temperature > 0,
            temperature=options.temperature if options.temperature > 0 else 1.0,
            top_p=options.top_p,
            top_k=options.top_k,
        )
        generator = og.Generator(self.model, params)
        generator.append_tokens(tokens)
        stream = self.tokenizer.create_stream()
        while not generator.is_done():
            generator.generate_next_token()
            token = generator.get_next_tokens()[0]
            if token in self.tokenizer.eos_token_ids:
                break
            on_text(stream.decode(token))


class OpenVinoRuntime:
    """OpenVINO GenAI: the IR model and tokenizer; device settings from pipeline_config.json."""

    def __init__(self, manifest, device):
        import openvino_genai as ov_genai

        config = read_json("pipeline_config.json")
        device = (device or config["device"]).upper()
        # Properties are per device: the NPU's static-shape lengths are unknown to the CPU plugin.
        properties = config["properties"].get(device, {})
        try:
            self.pipeline = ov_genai.LLMPipeline(BUNDLE_DIR, device, **properties)
        except RuntimeError as e:
            reason = [line for line in str(e).splitlines() if line.strip()][-1:]
            hint = " Is an Intel NPU and its driver present?" if device == "NPU" else ""
            fail(f"OpenVINO could not load this bundle on {device}: {' '.join(reason)}.{hint} "
                 "`--device cpu` runs it on the CPU")
        self.tokenizer = self.pipeline.get_tokenizer()
        self.max_prompt_tokens = config["max_prompt_tokens"]

    def render(self, messages, think):
        return self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, chat_template=chat_template() or "",
            extra_context={"enable_thinking": think},
        )

    def count_tokens(self, text):
        return int(self.tokenizer.encode(text).input_ids.get_shape()[-1])

    def generate(self, text, options, on_text):
        config = self.pipeline.get_generation_config()
        config.apply_chat_template = False  # `text` is already rendered
        config.max_new_tokens = options.max_new_tokens
        config.do_sample = options.temperature > 0
        if config.do_sample:
            config.temperature, config.top_p, config.top_k = options.temperature, options.top_p, options.top_k
        if options.seed is not None:
            config.rng_seed = options.seed
        self.pipeline.generate(text, config, lambda piece: on_text(piece))


RUNTIMES = {"onnxruntime-genai": OrtGenaiRuntime, "openvino": OpenVinoRuntime}


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("prompt", help="the user message; '-' reads it from standard input")
    parser.add_argument("--system", help="a system prompt")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--top-k", type=int, default=50)
    parser.add_argument("--seed", type=int, help="sampling seed (OpenVINO bundles)")
    parser.add_argument("--think", action="store_true", help="let a Qwen3 model think before answering")
    parser.add_argument("--raw", action="store_true", help="continue the prompt as plain text, no chat template")
    parser.add_argument("--device", help="run on another device than the bundle's own: cpu (any bundle), "
                                         "npu/gpu (OpenVINO bundles)")
    parser.add_argument("--cpu", action="store_true", help="same as --device cpu")
    args = parser.parse_args(argv)
    if args.cpu:
        args.device = "cpu"
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.prompt == "-":
        args.prompt = sys.stdin.read()
    manifest = read_manifest()
    engine = manifest["runtime"]["engine"]
    if engine not in RUNTIMES:
        fail(f"manifest.json: runtime engine {engine!r} is not one this shim runs ({', '.join(RUNTIMES)})")
    runtime = RUNTIMES[engine](manifest, args.device)

    if args.raw:
        text = args.prompt
    else:
        messages = ([{"role": "system", "content": args.system}] if args.system else []) + [
            {"role": "user", "content": args.prompt}
        ]
        text = runtime.render(messages, args.think)
    prompt_tokens = runtime.count_tokens(text)
    if prompt_tokens > runtime.max_prompt_tokens:
        fail(f"the prompt is {prompt_tokens} tokens; this bundle takes at most {runtime.max_prompt_tokens} "
             f"(context {manifest['plan']['context_length']} tokens)")
    runtime.generate(text, args, lambda piece: print(piece, end="", flush=True))
    print()


if __name__ == "__main__":
    main()
