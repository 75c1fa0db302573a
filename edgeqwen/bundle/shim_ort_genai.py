#!/usr/bin/env python3
"""Run this bundle: answer a prompt with the quantized Qwen model next to this file.

    python shim.py "What is the with statement?"
    python shim.py --system "Answer briefly." --max-new-tokens 200 "Explain pathlib"
    echo "a prompt from a file" | python shim.py -

Needs only ONNX Runtime GenAI (see README.md in this folder for the exact package):
no edgeqwen, PyTorch or transformers. Written by edgeqwen; one file on purpose.
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


def read_manifest():
    path = os.path.join(BUNDLE_DIR, "manifest.json")
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, ValueError) as e:
        fail(f"cannot read {path}: {e}")
    if manifest.get("format_version") not in SUPPORTED_FORMAT_VERSIONS:
        fail(f"{path}: bundle format_version {manifest.get('format_version')!r} is not one this shim knows "
             f"({', '.join(map(str, SUPPORTED_FORMAT_VERSIONS))}); use the shim that came with the bundle")
    return manifest


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("prompt", help="the user message; '-' reads it from standard input")
    parser.add_argument("--system", help="a system prompt")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--top-k", type=int, default=50)
    parser.add_argument("--think", action="store_true", help="let a Qwen3 model think before answering")
    parser.add_argument("--raw", action="store_true", help="continue the prompt as plain text, no chat template")
    parser.add_argument("--cpu", action="store_true", help="run on the CPU even if the bundle targets a GPU")
    return parser.parse_args(argv)


def build_prompt(tokenizer, args):
    if args.raw:
        return args.prompt
    messages = ([{"role": "system", "content": args.system}] if args.system else []) + [
        {"role": "user", "content": args.prompt}
    ]
    template_path = os.path.join(BUNDLE_DIR, "chat_template.jinja")
    template = open(template_path, encoding="utf-8").read() if os.path.exists(template_path) else None
    text = tokenizer.apply_chat_template(json.dumps(messages), template_str=template, add_generation_prompt=True)
    if template and "enable_thinking" in template and not args.think and not text.endswith(EMPTY_THINKING):
        text += EMPTY_THINKING
    return text


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.prompt == "-":
        args.prompt = sys.stdin.read()
    manifest = read_manifest()
    context_length = manifest["plan"]["context_length"]

    import onnxruntime_genai as og

    config = og.Config(BUNDLE_DIR)
    if args.cpu:
        config.clear_providers()
    model = og.Model(config)
    tokenizer = og.Tokenizer(model)
    tokens = tokenizer.encode(build_prompt(tokenizer, args))
    if len(tokens) >= context_length:
        fail(f"the prompt is {len(tokens)} tokens; this bundle's context is {context_length} tokens")

    params = og.GeneratorParams(model)
    params.set_search_options(
        max_length=min(context_length, len(tokens) + args.max_new_tokens),
        do_sample=args.temperature > 0,
        temperature=args.temperature if args.temperature > 0 else 1.0,
        top_p=args.top_p,
        top_k=args.top_k,
    )
    generator = og.Generator(model, params)
    generator.append_tokens(tokens)
    stream = tokenizer.create_stream()
    while not generator.is_done():
        generator.generate_next_token()
        token = generator.get_next_tokens()[0]
        if token in tokenizer.eos_token_ids:
            break
        print(stream.decode(token), end="", flush=True)
    print()


if __name__ == "__main__":
    main()
