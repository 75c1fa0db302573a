"""OpenVINO backend: Optimum-Intel export + NNCF weight compression, run by OpenVINO GenAI on the device.

    plan  ->  quantization_config(plan)  ->  child process (backends/openvino_export.py)  ->  IR checks

The plan's precision maps onto NNCF's options: INT4 symmetric or asymmetric in
groups of `block_size` (-1: channel-wise); embeddings and lm_head either with
all other layers (`all_layers`) or at the backup precision; `ratio`, AWQ and
scale estimation from the recipe's [nncf] section, with calibration text from
the corpus the project ships.

The NPU runs only part of what NNCF can produce, so NPU plans are checked
against what is known to compile and run there before anything is exported.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from tqdm import tqdm

from edgeqwen.backends import ir_checks
from edgeqwen.backends.child import run_logged, tail
from edgeqwen.cache import source_sha256
from edgeqwen.calibration import calibration_text
from edgeqwen.errors import BuildError, PlanError
from edgeqwen.plan import BuildPlan
from edgeqwen.schema import to_dict
from edgeqwen.targets import CHANNEL_WISE

ENGINE = "openvino"
OPENVINO_DEVICES = {"cpu": "CPU", "gpu": "GPU", "npu": "NPU"}
MODEL_FILE = "openvino_model.xml"
PIPELINE_CONFIG = "pipeline_config.json"
NPU_GROUP_SIZES = (128, CHANNEL_WISE)  # Intel's documented NPU LLM configurations
EXPORT_STAGES = ("export", "compress", "done")
CODE_FILES = ("openvino.py", "openvino_export.py", "ir_checks.py", "child.py")  # what makes the converted bytes


def check_supported(plan: BuildPlan) -> None:
    q = plan.quantization
    if plan.device not in OPENVINO_DEVICES:
        raise PlanError(f"target {plan.target!r}: device {plan.device!r} is not an OpenVINO device")
    if q.weights not in ("int4", "int8"):
        raise PlanError(
            f"weights = {q.weights!r}: OpenVINO targets are built with NNCF weight compression; choose int4 or int8"
        )
    if q.embeddings != q.lm_head and plan.model.tied_embeddings:
        raise PlanError(
            f"embeddings = {q.embeddings!r}, lm_head = {q.lm_head!r}: {plan.model.id} ties them to one matrix, "
            "which OpenVINO stores once; give both the same precision"
        )
    if q.embeddings == "int4" and q.weights != "int4":
        raise PlanError("embeddings = 'int4' needs weights = 'int4' (NNCF's all_layers)")
    if q.algorithm != "rtn":
        raise PlanError(
            f"algorithm = {q.algorithm!r} is an ONNX Runtime GenAI option; OpenVINO targets are compressed by NNCF, "
            "whose data-aware methods are the recipe's [nncf] options (awq, scale_estimation, gptq)"
        )
    if q.embeddings == "float" and plan.nncf.ratio < 1.0:
        raise PlanError("embeddings = 'float' keeps the backup precision at float, so [nncf] ratio must be 1.0")
    if plan.nncf.ratio < 1.0 and plan.nncf.backup_precision == "none" and q.embeddings != "float":
        raise PlanError("[nncf] backup_precision = 'none' stores embeddings and lm_head in float; "
                        "set embeddings = lm_head = 'float' to say so")
    if plan.device == "npu":
        check_npu(plan)


def check_npu(plan: BuildPlan) -> None:
    """Refuse what the NPU cannot run, with the reason, before the export starts."""
    q = plan.quantization
    if q.weights == "int8":
        raise PlanError(
            "INT8 weight-only models are refused for the NPU: OpenVINO GenAI's LLMPipeline accepts them and then "
            "crashes at generate() (openvinotoolkit/openvino issue 35641). Use int4 (symmetric) for the NPU"
        )
    if not q.symmetric:
        raise PlanError(
            "asymmetric INT4 does not compile for the NPU (openvinotoolkit/openvino issue 34450; Intel's NPU recipe "
            "uses --sym); set symmetric = true"
        )
    if q.block_size not in NPU_GROUP_SIZES:
        raise PlanError(
            f"block_size = {q.block_size}: the NPU takes symmetric INT4 in groups of 128 or channel-wise (-1)"
        )


def backup_precision(plan: BuildPlan) -> str:
    """Where embeddings, lm_head and the (1 - ratio) share of layers go."""
    q = plan.quantization
    if q.embeddings == "float":
        return "none"
    return plan.nncf.backup_precision


def quantization_config(plan: BuildPlan, calibration: list[str] | None = None) -> dict:
    """Keyword arguments for Optimum-Intel's OVWeightQuantizationConfig (JSON-safe; shown by --dry-run)."""
    check_supported(plan)
    q, nncf = plan.quantization, plan.nncf
    if q.weights == "int8":  # NNCF compresses INT8 per output channel
        return {"bits": 8, "sym": q.symmetric}
    config = {
        "bits": 4,
        "sym": q.symmetric,
        "group_size": q.block_size,
        "ratio": nncf.ratio,
        "all_layers": q.embeddings == "int4",
        "backup_precision": backup_precision(plan),
    }
    if nncf.data_aware:
        config.update(
            quant_method="awq" if nncf.awq else "default",
            scale_estimation=nncf.scale_estimation,
            gptq=nncf.gptq,
            num_samples=nncf.calibration_samples,
            dataset=calibration if calibration is not None else f"<{nncf.calibration_samples} calibration texts>",
        )
    return config


def engine_config(plan: BuildPlan, model_dir: Path, work_dir: Path) -> dict:
    return {
        "optimum_intel": {
            "export": {"task": "text-generation-with-past", "stateful": True, "convert_tokenizer": True},
            "OVWeightQuantizationConfig": quantization_config(plan),
        },
        "pipeline_config": pipeline_config(plan),
    }


def calibration_for(plan: BuildPlan):
    if plan.calibration is None:
        return None
    return calibration_text(plan.nncf.calibration_samples, plan.calibration.path)


def conversion_key_parts(plan: BuildPlan) -> dict:
    m = plan.model
    return {
        "engine": ENGINE,
        "code_sha256": source_sha256(*(Path(__file__).with_name(name) for name in CODE_FILES)),
        "device": plan.device,
        "quantization": to_dict(plan.quantization),
        "nncf": to_dict(plan.nncf),
        "calibration_sha256": plan.calibration.sha256 if plan.calibration else None,
        "model": {"weights_sha256": m.weights_sha256, "model_type": m.model_type, "tied": m.tied_embeddings},
    }


def run_export(spec: dict, work_dir: Path) -> None:
    spec_path = work_dir / "openvino_export.json"
    spec_path.write_text(json.dumps(spec, indent=2))
    log_path = work_dir / "openvino_export.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, "-m", "edgeqwen.backends.openvino_export", str(spec_path)]
    with tqdm(total=len(EXPORT_STAGES) - 1, desc="  openvino", unit="step", leave=False) as bar:

        def progress(line: str) -> None:
            if line.startswith("edgeqwen-stage: "):
                name = line.split(":", 1)[1].strip()
                bar.update(EXPORT_STAGES.index(name) - bar.n)
                bar.set_postfix_str(name)

        returncode = run_logged(command, log_path, env, progress)
    if returncode != 0:
        raise BuildError(
            f"the OpenVINO export failed (exit {returncode}); last lines of {log_path}:\n{tail(log_path)}"
        )


def convert(plan: BuildPlan, model_dir: Path, work_dir: Path, out_dir: Path) -> dict:
    """Export and compress into `out_dir`; check the IR against the plan; return facts for the manifest."""
    calibration = calibration_for(plan)
    config = quantization_config(plan, list(calibration.samples) if calibration else None)
    if calibration:
        config["tokenizer"] = str(model_dir)
    spec = {"model_dir": str(model_dir), "fp_dir": str(work_dir / "fp-export"), "out_dir": str(out_dir),
            "quantization_config": config}
    run_export(spec, work_dir)
    if not (out_dir / MODEL_FILE).is_file():
        raise BuildError(f"the OpenVINO export finished but wrote no {MODEL_FILE}; see {work_dir}/openvino_export.log")
    facts = check_ir(plan, out_dir)
    shown = {k: v for k, v in config.items() if k not in ("dataset", "tokenizer")}
    facts["nncf_config"] = shown
    if calibration:
        facts["calibration"] = {"source": calibration.source, "sha256": calibration.sha256,
                                "samples": len(calibration.samples)}
    return facts


def check_ir(plan: BuildPlan, bundle_dir: Path) -> dict:
    """The IR's weight formats and shapes, checked against the plan (and the NPU's needs)."""
    import openvino as ov

    model = ov.Core().read_model(bundle_dir / MODEL_FILE)
    precisions = ir_checks.weight_precisions(model)
    q = plan.quantization
    expected = f"{q.weights}_{'sym' if q.symmetric else 'asym'}"
    if expected not in precisions:
        raise BuildError(f"the IR holds no {expected} weights (found: {', '.join(precisions) or 'none'})")
    unexpected_float = [k for k in precisions if k.startswith("float")] if q.embeddings != "float" else []
    if unexpected_float and plan.nncf.ratio == 1.0:
        raise BuildError(f"the plan compresses every weight, but the IR keeps {unexpected_float} weights")
    unbounded = ir_checks.unbounded_dimensions(model)
    if plan.device == "npu" and unbounded:
        raise BuildError("the IR has dynamic dimensions the NPU cannot make static: " + "; ".join(unbounded))
    return {
        "ir_weight_precisions": precisions,
        "ir_io": ir_checks.describe_io(model),
        "ir_unbounded_dimensions": unbounded,
    }


def npu_lengths(context_length: int) -> tuple[int, int]:
    """(MAX_PROMPT_LEN, MIN_RESPONSE_LEN): a quarter of the context kept for the answer, in steps of 64.

    The NPU compiles its prefill for exactly MAX_PROMPT_LEN tokens and its KV cache for the sum of both.
    """
    response = max(128, (context_length // 4) // 64 * 64)
    return context_length - response, response


def pipeline_config(plan: BuildPlan) -> dict:
    """What the shim passes to openvino_genai.LLMPipeline, per device it may run on."""
    max_prompt, min_response = npu_lengths(plan.context_length)
    return {
        "device": OPENVINO_DEVICES[plan.device],
        "context_length": plan.context_length,
        "max_prompt_tokens": max_prompt if plan.device == "npu" else plan.context_length - 1,
        "properties": {
            "NPU": {"MAX_PROMPT_LEN": max_prompt, "MIN_RESPONSE_LEN": min_response},
            "CPU": {"INFERENCE_NUM_THREADS": plan.threads},
            "GPU": {},
        },
    }


def finalize(plan: BuildPlan, bundle_dir: Path) -> None:
    (bundle_dir / PIPELINE_CONFIG).write_text(json.dumps(pipeline_config(plan), indent=2) + "\n")
