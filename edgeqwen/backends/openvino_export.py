"""The OpenVINO conversion itself, run as a child process by backends/openvino.py:

    python -m edgeqwen.backends.openvino_export SPEC.json

1. Optimum-Intel exports the Hugging Face checkpoint to a stateful OpenVINO IR
   (weights as in the checkpoint) and converts the tokenizer to OpenVINO
   tokenizer/detokenizer IRs, as `optimum-cli export openvino` does.
2. NNCF compresses the IR's weights with the plan's settings, through
   Optimum-Intel's OVWeightQuantizationConfig (the same two steps optimum-cli
   takes when it is given a quantization config).

It prints one `edgeqwen-stage: NAME` line as each step starts, for the parent's
progress bar; everything else (NNCF's tables, warnings) goes to the log.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

# What the bundle needs from the export besides the compressed model itself.
TOKENIZER_FILES = (
    "openvino_tokenizer.xml",
    "openvino_tokenizer.bin",
    "openvino_detokenizer.xml",
    "openvino_detokenizer.bin",
    "chat_template.jinja",
    "generation_config.json",
)


def stage(name: str) -> None:
    print(f"edgeqwen-stage: {name}", flush=True)


def export(model_dir: str, fp_dir: Path) -> None:
    from optimum.exporters.openvino import main_export

    main_export(
        model_dir,
        fp_dir,
        task="text-generation-with-past",
        library_name="transformers",
        stateful=True,  # OpenVINO GenAI's LLMPipeline needs the KV cache inside the model
        convert_tokenizer=True,
    )


def compress(fp_dir: Path, out_dir: Path, config: dict) -> None:
    from optimum.intel import OVModelForCausalLM, OVWeightQuantizationConfig

    model = OVModelForCausalLM.from_pretrained(
        fp_dir, compile=False, quantization_config=OVWeightQuantizationConfig(**config)
    )
    model.save_pretrained(out_dir)
    drop_build_paths(out_dir / "openvino_config.json")


def drop_build_paths(config_path: Path) -> None:
    """Optimum-Intel records the folder it read the tokenizer from (this build's scratch folder) in
    openvino_config.json's quantization_config: a machine path that would make every bundle differ.
    No runtime reads it; it is written as null."""
    if not config_path.is_file():
        return
    config = json.loads(config_path.read_text())
    quantization = config.get("quantization_config") or {}
    if isinstance(quantization.get("tokenizer"), str) and Path(quantization["tokenizer"]).is_absolute():
        quantization["tokenizer"] = None
        config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    fp_dir, out_dir = Path(spec["fp_dir"]), Path(spec["out_dir"])
    stage("export")
    export(spec["model_dir"], fp_dir)
    stage("compress")
    compress(fp_dir, out_dir, spec["quantization_config"])
    for name in TOKENIZER_FILES:
        if (fp_dir / name).is_file():
            shutil.copyfile(fp_dir / name, out_dir / name)
    stage("done")


if __name__ == "__main__":
    main(sys.argv[1])
