"""OpenVINO backend: Optimum-Intel export + NNCF weight compression, run by OpenVINO GenAI on the device.

    plan  ->  quantization_config(plan)  ->  child process (backends/openvino_export.py)  ->  IR checks

The plan's precision maps onto NNCF's options: INT4 symmetric or asymmetric in
groups of `block_size` (-1: channel-wise); embeddings and lm_head either with
all other layers (`all_layers`) or at the backup precision; `ratio`, AWQ and
scale estimation from the recipe's [nncf] section, with calibration text from
the corpus the project ships.

The NPU runs only part of what NNCF can produce, so NPU plans are checked
against what is known to compile and run there before anything is exported.

The plan's engine_options (OpenVinoOptions) are NNCF's options beyond the precision.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from edgeqwen.backends import ir_checks, runtime_version
from edgeqwen.backends.base import DECODER, INT8_TABLES_TIP, Backend
from edgeqwen.backends.child import run_logged, tail
from edgeqwen.calibration import calibration_text
from edgeqwen.errors import BuildError, PlanError
from edgeqwen.recipes import BackupPrecision
from edgeqwen.targets import CHANNEL_WISE

if TYPE_CHECKING:
    from edgeqwen.plan import BuildPlan

ENGINE = "openvino"
OPENVINO_DEVICES = {"cpu": "CPU", "gpu": "GPU", "npu": "NPU"}
MODEL_FILE = "openvino_model.xml"
PIPELINE_CONFIG = "pipeline_config.json"
NPU_GROUP_SIZES = (128, CHANNEL_WISE)  # Intel's documented NPU LLM configurations
EXPORT_STAGES = ("export", "compress", "done")
MODEL_WEIGHTS = "openvino_model.bin"
OV_PASS_THROUGH = {"Convert", "Subtract", "Multiply", "Reshape", "Unsqueeze", "Squeeze", "Transpose"}


# What was and was not verified for an NPU bundle (no NPU exists where bundles are built), for its README.
NPU_README = """
## On the NPU

The NPU needs Intel's NPU driver besides the Python package: it comes with Windows 11 on Core Ultra
laptops (update it from Intel's site), and on Linux from github.com/intel/linux-npu-driver.
`pipeline_config.json` holds the settings the shim passes to `openvino_genai.LLMPipeline` on the
NPU: `MAX_PROMPT_LEN` (the longest prompt the NPU's static prefill is compiled for) and
`MIN_RESPONSE_LEN` (room kept for the answer). The shim refuses a longer prompt before the
runtime sees it. The first start on the NPU compiles the model (tens of seconds); OpenVINO
caches it if you pass a `CACHE_DIR` in `pipeline_config.json`.

What was verified when this bundle was built, on a machine without an NPU:
- the same IR generated text through OpenVINO GenAI on the CPU device, and its drift against the
  full-precision model was measured there (drift.md);
- the IR's weights are symmetric INT4 (embeddings/lm_head at the stated precision), the format
  Intel documents for the NPU; the manifest lists the IR's weight formats (`engine.ir_weight_precisions`);
- the only dynamic dimensions in the IR are the batch and token axes, which OpenVINO GenAI's NPU
  pipeline makes static from `MAX_PROMPT_LEN`/`MIN_RESPONSE_LEN`.

Not verified: compiling and running on an NPU itself (driver, compiler version and speed there).
`python shim.py --device cpu "..."` runs the same bundle on the CPU.
"""


@dataclass(frozen=True)
class OpenVinoOptions:
    """The plan's engine_options for OpenVINO targets: NNCF weight compression beyond the precision itself."""

    ratio: float = 1.0
    backup_precision: BackupPrecision = "int8_asym"  # NNCF's own default
    awq: bool = False
    scale_estimation: bool = False
    gptq: bool = False
    calibration_samples: int = 64

    @property
    def data_aware(self) -> bool:
        return self.awq or self.scale_estimation or self.gptq or self.ratio < 1.0

    @property
    def needs_calibration(self) -> bool:
        return self.data_aware


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
    return plan.engine_options.backup_precision


def quantization_config(plan: BuildPlan, calibration: list[str] | None = None) -> dict:
    """Keyword arguments for Optimum-Intel's OVWeightQuantizationConfig (JSON-safe; shown by --dry-run)."""
    q, nncf = plan.quantization, plan.engine_options
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


def calibration_for(plan: BuildPlan):
    if plan.calibration is None:
        return None
    return calibration_text(plan.engine_options.calibration_samples, plan.calibration.path)


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
    if unexpected_float and plan.engine_options.ratio == 1.0:
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


class OpenVinoBackend(Backend):
    engine = ENGINE
    devices = tuple(OPENVINO_DEVICES)
    options_type = OpenVinoOptions
    folder_description = "an OpenVINO IR folder (openvino_model.xml)"
    code_files = ("openvino.py", "openvino_export.py", "ir_checks.py", "child.py")
    tool_distributions = ("optimum-intel", "nncf", "openvino", "openvino-genai", "openvino-tokenizers")

    def resolve_options(self, target, recipe) -> OpenVinoOptions:
        for source, q in ((f"target {target.name}", target.quantization), (f"recipe {recipe.name}", recipe.quantization)):
            if q.algorithm not in (None, "rtn"):
                raise PlanError(
                    f"{source}: algorithm = {q.algorithm!r} is an ONNX Runtime GenAI option; OpenVINO targets are "
                    "compressed by NNCF, whose data-aware methods are the recipe's [nncf] options (awq, "
                    "scale_estimation, gptq)"
                )
            if q.accuracy_level not in (None, 0):
                raise PlanError(
                    f"{source}: accuracy_level = {q.accuracy_level} is an ONNX Runtime GenAI option (MatMulNBits); "
                    "OpenVINO picks its own inference precision per device: set accuracy_level = 0"
                )
        return OpenVinoOptions(**{k: v for k, v in dataclasses.asdict(recipe.nncf).items() if v is not None})

    def upgrade_v1_options(self, plan: dict) -> dict:
        return plan["nncf"]

    def block_size_cap(self, device: str, cap: int | None) -> int | None:
        # The NPU compiles only the documented groupings (128 or channel-wise); there the recipe's accuracy
        # help comes from its [nncf] calibration options instead of finer groups.
        return None if device == "npu" else cap

    def check_supported(self, plan: BuildPlan) -> None:
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
        if q.embeddings == "float" and plan.engine_options.ratio < 1.0:
            raise PlanError("embeddings = 'float' keeps the backup precision at float, so [nncf] ratio must be 1.0")
        if plan.engine_options.ratio < 1.0 and plan.engine_options.backup_precision == "none" and q.embeddings != "float":
            raise PlanError("[nncf] backup_precision = 'none' stores embeddings and lm_head in float; "
                            "set embeddings = lm_head = 'float' to say so")
        if plan.device == "npu":
            check_npu(plan)

    def estimate_memory(self, plan: BuildPlan):
        from edgeqwen.fit import bits_per_weight, estimate_memory

        float_bytes = 2 if plan.device in ("gpu", "npu") else 4  # scales, activations and KV cache on the device
        options = plan.engine_options
        layer_bits = None
        if plan.quantization.weights == "int4" and options.ratio < 1.0:  # the rest at the backup precision
            backup = "float" if options.backup_precision == "none" else "int8"
            layer_bits = (options.ratio * bits_per_weight("int4", plan, float_bytes)
                          + (1 - options.ratio) * bits_per_weight(backup, plan, float_bytes))
        return estimate_memory(plan, float_bytes, layer_bits)

    def runtime_requirement(self, plan: BuildPlan, device: str | None = None) -> str:
        # openvino-genai brings the matching openvino and openvino-tokenizers (the IR tokenizer's operations).
        return f"openvino-genai=={runtime_version('openvino-genai')}"

    def accuracy_suggestions(self, plan: BuildPlan) -> list[str]:
        q, options, int4 = plan.quantization, plan.engine_options, plan.quantization.weights == "int4"
        tips = []
        if q.lm_head == "int4":
            tips.append(INT8_TABLES_TIP)
        if int4 and not (options.awq and options.scale_estimation):
            tips.append("fit the INT4 scales on calibration text (recipe [nncf] awq = true, scale_estimation = true)")
        if int4 and not 0 < q.block_size <= 32:
            tips.append("use smaller quantization groups (block_size = 32)")
        if int4 and options.ratio == 1.0:
            tips.append("keep the most sensitive fifth of the layers at INT8 (recipe [nncf] ratio = 0.8)")
        if int4 and plan.device != "npu":  # an INT8 weight-only IR crashes the NPU pipeline (check_npu)
            tips.append("build INT8 weights (--precision int8)")
        return tips

    def options_summary(self, plan: BuildPlan) -> str:
        n = plan.engine_options
        methods = [name for name, on in (("AWQ", n.awq), ("scale estimation", n.scale_estimation)) if on]
        text = f", NNCF ratio {n.ratio} (backup {n.backup_precision})"
        if methods:
            text += f", {' and '.join(methods)} fitted on {n.calibration_samples} calibration texts"
        return text

    def readme_notes(self, plan: BuildPlan) -> str:
        return NPU_README if plan.device == "npu" else ""

    def engine_config(self, plan: BuildPlan, model_dir: Path, work_dir: Path) -> dict:
        return {
            "optimum_intel": {
                "export": {"task": "text-generation-with-past", "stateful": True, "convert_tokenizer": True},
                "OVWeightQuantizationConfig": quantization_config(plan),
            },
            "pipeline_config": pipeline_config(plan),
        }

    def convert(self, plan: BuildPlan, model_dir: Path, work_dir: Path, out_dir: Path) -> dict:
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

    def finalize(self, plan: BuildPlan, bundle_dir: Path) -> None:
        (bundle_dir / PIPELINE_CONFIG).write_text(json.dumps(pipeline_config(plan), indent=2) + "\n")

    def recognizes(self, folder: Path) -> bool:
        return (folder / MODEL_FILE).is_file()

    def model_files(self, folder: Path) -> dict[str, tuple[str, ...]]:
        return {DECODER: (MODEL_FILE, MODEL_WEIGHTS)}

    def bytes_per_token(self, folder: Path) -> int:
        import openvino as ov

        model = ov.Core().read_model(folder / MODEL_FILE)
        total = 0
        for op in model.get_ordered_ops():
            if op.get_type_name() != "Constant":
                continue
            users = final_consumers(op)
            if users and set(users) <= {"Gather"}:
                continue  # only gathered from: one row per token
            total += op.get_byte_size()
        return total


def final_consumers(op) -> list[str]:
    """The op types that finally use a constant, looking through weight decompression."""
    found, pending, seen = [], [op], set()
    while pending:
        node = pending.pop()
        for target in node.output(0).get_target_inputs():
            user = target.get_node()
            if user.get_friendly_name() in seen:
                continue
            seen.add(user.get_friendly_name())
            if user.get_type_name() in OV_PASS_THROUGH:
                pending.append(user)
            else:
                found.append(user.get_type_name())
    return found
