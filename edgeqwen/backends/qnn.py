"""Qualcomm NPU backend (Hexagon HTP): Olive's QNN passes, generated from the plan, in two Olive runs.

    plan -> qdq_workflow -> `olive run` -> QDQ pipeline (embeddings, context, iterator, lm_head), runs on any CPU
         -> compile_workflow -> `olive run` -> EPContext binaries of the context and iterator models for the SoC

The QDQ run is the olive-recipes QNN chain for Qwen: (QuaRot,) GPTQ on the PyTorch checkpoint (one scale per
output channel, symmetric: what the HTP takes), CaptureSplitInfo, ModelBuilder (INT4 embedding and lm_head
tables in blocks), MatMulNBitsToQDQ (the decoder's INT4 weights as QDQ, the lm_head left as MatMulNBits),
GraphSurgeries (the rewrites the HTP needs), OnnxStaticQuantization (16-bit activations, calibrated on the
CPU), SplitModel and StaticLLM (a `window`-token prompt model and a one-token model, batch 1). The compile
run is EPContextBinaryGenerator: QNN compiles each transformer graph for the plan's `soc_model` into a
context binary, as the device would at load time.

Two runs instead of one workflow, because the bundle keeps the QDQ models (in cpu/) beside the compiled
ones: they run the same numerics on a CPU (the shim's `--device cpu`, and the drift gate's CPU figures),
and Olive keeps only its last pass's output. `weight_sharing` is off: Olive 0.13 unregisters the QNN
library between the two graphs, so with it on the second graph names a binary that is never written.

The embedding and lm_head models and GroupQueryAttention (the KV cache) run on the CPU, by the recipe's
design; `convert` counts every node outside the compiled binaries and the manifest records them.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edgeqwen.backends import onnx_files, runtime_version
from edgeqwen.backends.base import DECODER, INT8_TABLES_TIP, Backend
from edgeqwen.backends.ort_genai import (RUNTIME_FILES, add_generation_end_tokens, calibration_data_config,
                                         run_olive, write_calibration)
from edgeqwen.errors import BuildError, PlanError

if TYPE_CHECKING:
    from edgeqwen.plan import BuildPlan

ENGINE = "onnxruntime-qnn"
PROVIDER = "QNNExecutionProvider"
LM_HEAD_MATMUL = "/lm_head/MatMul_Q4"  # the builder's INT4 lm_head node: kept as MatMulNBits, on the CPU
CPU_FOLDER = "cpu"  # the QDQ context and iterator models, for a CPU
# Activation calibration for the 16-bit static quantization: blocks of one window's length are what the
# context model sees on the device.
ACTIVATION_BLOCKS = 32
# Models the static pipeline can take: Olive's StaticLLM handles GroupQueryAttention decoders only, which
# the builder writes for Qwen2 and Qwen3.
MODEL_TYPES = ("qwen2", "qwen3")
# HTP compile options (olive-recipes): burst performance mode, the strongest graph finalization.
HTP_OPTIONS = {"htp_performance_mode": "burst", "htp_graph_finalization_optimization_mode": "3"}


@dataclass(frozen=True)
class QnnOptions:
    """The plan's engine_options for Qualcomm NPU targets."""

    soc_model: int  # QNN's SoC number, which the context binaries are compiled for
    window: int  # prompt tokens per HTP run (the static prompt model's sequence length)
    rotate: bool = False  # QuaRot (Hadamard rotations) before GPTQ: spreads outliers, for 4-bit weights

    @property
    def needs_calibration(self) -> bool:
        return True  # GPTQ and the activation ranges are both fitted on calibration text


def qdq_workflow(plan: BuildPlan, model_dir: Path, work_dir: Path) -> dict:
    """The first Olive run: checkpoint -> QDQ static pipeline (also shown by `--dry-run`)."""
    q, options = plan.quantization, plan.engine_options
    passes: dict = {}
    if options.rotate:
        passes["rotate"] = {"type": "QuaRot"}
    passes["gptq"] = {"type": "Gptq", "bits": 4, "sym": True, "group_size": -1, "lm_head": False,
                      "data_config": "calibration"}
    passes["split_info"] = {"type": "CaptureSplitInfo", "num_splits": 1, "unique_embeds_lm_head_splits": True}
    builder = {"type": "ModelBuilder", "precision": "int4", "int4_block_size": q.block_size,
               "int4_accuracy_level": 4, "int4_op_types_to_quantize": ["MatMul", "Gather"]}
    if q.lm_head == "int8":
        builder["extra_options"] = {"int4_algo_config": "rtn_last"}
    passes["builder"] = builder
    passes["to_qdq"] = {"type": "MatMulNBitsToQDQ", "use_int4": True, "add_zero_point": True,
                        "nodes_to_exclude": [LM_HEAD_MATMUL], "save_as_external_data": True}
    passes["surgeries"] = {"type": "GraphSurgeries", "save_as_external_data": True, "surgeries": [
        {"surgeon": "RemoveRopeMultiCache"}, {"surgeon": "AttentionMaskToSequenceLengths"},
        {"surgeon": "SimplifiedLayerNormToL2Norm"}]}
    passes["activations"] = {"type": "OnnxStaticQuantization", "data_config": "activations",
                             "activation_type": "uint16", "precision": "uint8",
                             "calibration_providers": ["CPUExecutionProvider"], "quant_preprocess": True,
                             "op_types_to_exclude": ["GatherBlockQuantized", "GroupQueryAttention", "MatMulNBits"],
                             "save_as_external_data": True}
    passes["split"] = {"type": "SplitModel"}
    passes["static"] = {"type": "StaticLLM", "batch_size": 1, "context_length": options.window}
    return {
        "input_model": {"type": "HfModel", "model_path": str(model_dir)},
        "data_configs": [calibration_data_config("calibration", model_dir, work_dir),
                         calibration_data_config("activations", model_dir, work_dir, block_tokens=options.window,
                                                 blocks=ACTIVATION_BLOCKS)],
        **olive_system(work_dir, "qdq"),
        "passes": passes,
    }


def compile_workflow(plan: BuildPlan, qdq_model: dict | str, work_dir: Path) -> dict:
    """The second Olive run: the QDQ pipeline's context and iterator models compiled into context binaries."""
    provider_options = {**HTP_OPTIONS, "soc_model": str(plan.engine_options.soc_model)}
    return {
        "input_model": qdq_model,
        **olive_system(work_dir, "compiled"),
        "passes": {"compile": {"type": "EPContextBinaryGenerator", "provider_options": provider_options,
                               "weight_sharing": False}},
    }


def olive_system(work_dir: Path, output: str) -> dict:
    """Olive's systems for the QNN passes. The target, whose accelerator the passes are configured for, is
    this Python as a PythonEnvironment: the one kind of system whose provider probe registers onnxruntime-qnn's
    plugin library (a LocalSystem reports no QNN provider and Olive stops). The host, where the passes run,
    is Olive's own process: a PythonEnvironment host starts a new Python for every pass (14 s each here)."""
    return {
        "systems": {"local": {"type": "LocalSystem"},
                    "qnn": {"type": "PythonEnvironment", "python_environment_path": str(Path(sys.executable).parent),
                            "accelerators": [{"device": "npu", "execution_providers": [PROVIDER]}]}},
        "host": "local",
        "target": "qnn",
        "cache_dir": str(work_dir / "olive-cache"),
        "output_dir": str(work_dir / f"olive-{output}"),
        "evaluate_input_model": False,
        "log_severity_level": 1,
    }


def qnn_library() -> str:
    """The onnxruntime-qnn package's provider library; BuildError naming what to install when it is absent."""
    try:
        import onnxruntime_qnn
    except ImportError:
        raise BuildError("Qualcomm NPU targets need onnxruntime-qnn (the QNN execution provider and the HTP "
                         f"simulator): pip install onnxruntime-qnn=={QNN_VERSION}") from None
    library = Path(onnxruntime_qnn.get_library_path())
    if not (library.parent / "libQnnHtp.so").is_file():
        raise BuildError(f"{library.parent} has no libQnnHtp.so: this onnxruntime-qnn cannot compile for the HTP "
                         "here (the x86-64 Linux wheel carries the HTP simulator)")
    return str(library)


QNN_VERSION = "2.7.0"


def off_npu_nodes(folder: Path, graphs: list[str]) -> dict[str, int]:
    """Nodes of the compiled graphs that are not in a context binary (they run on the CPU), by op type."""
    import onnx

    counts: dict[str, int] = {}
    for name in graphs:
        for node in onnx.load(folder / name, load_external_data=False).graph.node:
            if node.op_type != "EPContext":
                counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items()))


def pipeline_entries(config: dict) -> dict:
    return config["model"]["decoder"]["pipeline"][0]


def copy_graph(source: Path, name: str, out_dir: Path) -> None:
    """A graph and every file it refers to (external data, context binaries)."""
    data, binaries = onnx_files.graph_files(source, name)
    for file in (name, *data, *binaries):
        (out_dir / file).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / file, out_dir / file)


class QnnBackend(Backend):
    engine = ENGINE
    devices = ("npu",)
    options_type = QnnOptions
    folder_description = "an ONNX Runtime GenAI decoder-pipeline folder with QNN context binaries"
    code_files = ("qnn.py", "ort_genai.py", "builder_int4.py", "olive_child.py", "onnx_files.py", "child.py",
                  "olive_calibration.py")
    tool_distributions = ("olive-ai", "onnxruntime-genai", "onnxruntime", "onnxruntime-qnn", "onnx", "onnx-ir")

    def resolve_options(self, target, recipe) -> QnnOptions:
        if not (target.npu.soc_model and target.npu.window):
            raise PlanError(f"{target.path}: an {ENGINE} target needs [npu] soc_model and window")
        rotate = recipe.qnn.rotate if recipe.qnn.rotate is not None else False
        return QnnOptions(soc_model=target.npu.soc_model, window=target.npu.window, rotate=rotate)

    def check_supported(self, plan: BuildPlan) -> None:
        q, m, window = plan.quantization, plan.model, plan.engine_options.window
        if m.model_type not in MODEL_TYPES:
            raise PlanError(f"{m.id} is a {m.model_type!r} model; the static NPU pipeline (Olive's StaticLLM) takes "
                            f"{', '.join(MODEL_TYPES)} decoders only")
        if q.weights != "int4":
            raise PlanError(f"weights = {q.weights!r} on {plan.target}: the HTP runs quantized weights, and edgeqwen "
                            "builds W4A16 for it (W8A16 is not built: the model builder has no INT8 embedding "
                            "table); choose int4 (W4A16)")
        if not q.symmetric:
            raise PlanError("symmetric = false: the HTP takes symmetric weights (one scale per channel, no zero "
                            "point); use symmetric = true")
        if q.embeddings != "int4" or q.lm_head not in ("int4", "int8"):
            raise PlanError(f"embeddings = {q.embeddings!r}, lm_head = {q.lm_head!r}: the QNN pipeline keeps the "
                            "embedding table INT4 (a CPU gather) and the lm_head INT4 or INT8 on the CPU")
        if plan.context_length % window:
            raise PlanError(f"context length {plan.context_length}: the NPU takes the prompt in windows of "
                            f"{window} tokens; give a multiple of {window} (--context-length)")
        if (m.num_attention_heads * m.head_dim) % 32 or m.hidden_size % 32:
            raise PlanError(f"{m.id}: hidden size {m.hidden_size} is not a whole number of 32-wide HTP blocks")

    def estimate_memory(self, plan: BuildPlan):
        import dataclasses

        from edgeqwen.fit import bits_per_weight, estimate_memory

        # The KV cache is fp32 (GroupQueryAttention on the CPU); activations 16-bit on the HTP.
        estimate = estimate_memory(plan, float_bytes=4)
        m = plan.model
        if m.tied_embeddings:  # the pipeline's embedding and lm_head models each hold their own table
            table = int(m.vocab_size * m.hidden_size * bits_per_weight(plan.quantization.embeddings, plan, 4) / 8)
            estimate = dataclasses.replace(estimate, weights_bytes=estimate.weights_bytes + table,
                                           gathered_only_bytes=table)
        return estimate

    def runtime_requirement(self, plan: BuildPlan, device: str | None = None) -> str:
        genai = f"onnxruntime-genai=={runtime_version('onnxruntime-genai')}"
        if (device or plan.device) == "cpu":
            return genai  # the QDQ models in cpu/ run on plain ONNX Runtime GenAI
        return f"{genai} onnxruntime-qnn=={runtime_version('onnxruntime-qnn')}"

    def accuracy_suggestions(self, plan: BuildPlan) -> list[str]:
        q, tips = plan.quantization, []
        if q.weights == "int4" and not plan.engine_options.rotate:
            tips.append("rotate the weights before GPTQ (the qnn-quarot rung: recipe [qnn] rotate = true)")
        if q.lm_head == "int4":
            tips.append(INT8_TABLES_TIP.split(" and embedding")[0] + ")")
        return tips

    def drift_devices(self, plan: BuildPlan) -> tuple[str, ...]:
        # The HTP simulator gates (the NPU's numerics, and the proof that the compiled graphs run on the
        # HTP: the QNN provider refuses to load them otherwise); the QDQ models on the CPU beside it.
        return ("npu", "cpu")

    def options_summary(self, plan: BuildPlan) -> str:
        o = plan.engine_options
        rotated = ", QuaRot rotations" if o.rotate else ""
        return (f", GPTQ per-channel weights, 16-bit activations{rotated}; prompt windows of {o.window} tokens, "
                f"context binaries for QNN SoC {o.soc_model}")

    def readme_notes(self, plan: BuildPlan) -> str:
        o = plan.engine_options
        return "\n".join([
            "## On the NPU",
            "",
            f"The transformer layers are compiled context binaries (`*_qnn.bin`, QNN {qnn_sdk_version()}, SoC "
            f"{o.soc_model}); the embedding and lm_head models and the attention over the KV cache "
            "(GroupQueryAttention) run on the CPU. The prompt goes through the NPU in windows of "
            f"{o.window} tokens, each new token through the one-token model.",
            "",
            "What was verified before shipping: the numerics on the Hexagon HTP simulator that onnxruntime-qnn "
            f"{runtime_version('onnxruntime-qnn')} bundles for x86-64 Linux (the drift report), and the same QDQ "
            "models on the CPU execution provider (`cpu/`). What was not: a real NPU, its speed, and its driver: "
            "the binaries need a QNN runtime that loads QNN "
            f"{qnn_sdk_version()} context binaries. `python shim.py --device cpu` runs the QDQ models on the CPU "
            "when the NPU cannot load them.",
        ])

    def engine_config(self, plan: BuildPlan, model_dir: Path, work_dir: Path) -> dict:
        return {"olive_workflows": {"qdq": qdq_workflow(plan, model_dir, work_dir),
                                    "compile": compile_workflow(plan, "<the qdq run's model>", work_dir)}}

    def convert(self, plan: BuildPlan, model_dir: Path, work_dir: Path, out_dir: Path) -> dict:
        qnn_library()
        qdq_config = qdq_workflow(plan, model_dir, work_dir)
        calibration = write_calibration(plan, work_dir)
        qdq = run_olive(qdq_config, work_dir, name="olive-qdq")
        qdq_model = json.loads((qdq / "model_config.json").read_text())
        compile_config = compile_workflow(plan, qdq_model, work_dir)
        compiled = run_olive(compile_config, work_dir, name="olive-compile")

        config = onnx_files.read_genai_config(compiled)
        entries = pipeline_entries(config)
        npu_graphs = [entry["filename"] for entry in entries.values() if "session_options" in entry]
        for entry in entries.values():
            copy_graph(compiled, entry["filename"], out_dir)
        for name, entry in pipeline_entries(onnx_files.read_genai_config(qdq)).items():
            if "session_options" in entries.get(f"{name}_ctx", {}):
                copy_graph(qdq, entry["filename"], out_dir / CPU_FOLDER)
        for name in RUNTIME_FILES:
            if (compiled / name).is_file():
                shutil.copyfile(compiled / name, out_dir / name)
        add_generation_end_tokens(model_dir, out_dir)
        facts = {
            "olive_passes": [*qdq_config["passes"].values(), *compile_config["passes"].values()],
            "qnn": {"soc_model": plan.engine_options.soc_model, "window": plan.engine_options.window,
                    "qnn_sdk": qnn_sdk_version(), "npu_graphs": npu_graphs,
                    "off_npu_nodes": off_npu_nodes(out_dir, npu_graphs),
                    "cpu_graphs": [e["filename"] for e in entries.values() if "session_options" not in e]},
        }
        if calibration:
            facts["calibration"] = calibration
        return facts

    def finalize(self, plan: BuildPlan, bundle_dir: Path) -> None:
        """Context, threads, and the HTP backend named for the QNN provider (its plugin library finds no
        default backend on Linux)."""
        config = onnx_files.read_genai_config(bundle_dir)
        model = config["model"]
        model["context_length"] = plan.context_length
        model["decoder"].setdefault("session_options", {})["intra_op_num_threads"] = plan.threads
        for entry in pipeline_entries(config).values():
            for options in entry.get("session_options", {}).get("provider_options", []):
                options.get("qnn", {})["backend_type"] = "htp"
        config["search"]["max_length"] = plan.context_length
        model["pad_token_id"] = padding_token(bundle_dir, model["vocab_size"], model["pad_token_id"])
        (bundle_dir / onnx_files.GENAI_CONFIG).write_text(json.dumps(config, indent=4) + "\n")

    def recognizes(self, folder: Path) -> bool:
        return (folder / onnx_files.GENAI_CONFIG).is_file() and onnx_files.names_qnn(folder)

    def model_files(self, folder: Path) -> dict[str, tuple[str, ...]]:
        files = onnx_files.model_files(folder)
        cpu = folder / CPU_FOLDER
        if cpu.is_dir():
            extra = tuple(sorted(str(p.relative_to(folder)) for p in cpu.iterdir() if p.is_file()))
            files = {**files, DECODER: files.get(DECODER, ()) + extra}
        return files

    def bytes_per_token(self, folder: Path) -> int:
        return onnx_files.bytes_per_token(folder)


def padding_token(bundle_dir: Path, vocab_size: int, builder_choice: int) -> int:
    """A pad id no prompt can hold: the largest row of the model's vocabulary the tokenizer never writes.

    onnxruntime-genai's windowed pipeline takes every prompt token equal to pad_token_id for padding, and
    the builder sets it to the end token when the checkpoint names no pad (the demo and many fine-tunes), so
    the `<|im_end|>` that closes each chat turn was dropped from the one-token model's positions: its
    greedy answers left the path the drift gate measured (measured on the demo: logits off by up to 8 after
    a chat prompt, exact after plain text). Qwen's tables have spare rows (151,936 vs 151,669 tokens); a
    model without one keeps the builder's choice, and the shim refuses prompts that hold it.
    """
    tokenizer = json.loads((bundle_dir / "tokenizer.json").read_text(encoding="utf-8"))
    vocab = tokenizer["model"]["vocab"]  # BPE: {token: id}; Unigram: [[token, score], ...]
    ids = vocab.values() if isinstance(vocab, dict) else range(len(vocab))
    highest = max([*ids, *(token["id"] for token in tokenizer.get("added_tokens", []))], default=-1)
    return vocab_size - 1 if highest < vocab_size - 1 else builder_choice


def qnn_sdk_version() -> str:
    """The QNN SDK onnxruntime-qnn was built with (its package metadata), or 'unknown'."""
    try:
        from onnxruntime_qnn import build_and_package_info as info
    except ImportError:
        return "unknown"
    return str(getattr(info, "qnn_version", "unknown"))
