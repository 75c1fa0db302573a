"""ONNX Runtime GenAI backend: an Olive workflow (ModelBuilder pass) generated from the plan.

    plan  ->  olive_workflow(plan)  ->  `python -m olive run`  ->  graph repairs  ->  runtime files

INT4 decoder layers are quantized on the PyTorch checkpoint first, by RTN
(round to nearest: Olive's quantizer, streamed one tensor at a time by
streamed_rtn.py so the model is never in memory) or by Olive's Gptq pass
(fitted on calibration text), and ModelBuilder takes those INT4 weights as they
are, quantizing only the lm_head itself (by RTN). Leaving the layers to the
builder's own RTN would hold the model in FP32 three times over while it
quantizes the whole graph at the end. k-quant is the
builder's own algorithm and goes straight through ModelBuilder. INT8 exports
fp32 with ModelBuilder and quantizes with Olive's block-wise RTN pass at 8 bits,
because the builder has no INT8 mode. fp32 (CPU) and fp16 (CUDA) are plain
ModelBuilder exports. In every case the lm_head is pruned to the last token
during prefill (`prune_lm_head`), so a long prompt never materialises
prompt-length x 151,936 logits on the device.

Olive runs in a child process: its log goes to a file in the work folder, its
module patches stay out of this process, and an interrupted build kills it.

The plan's engine_options (OrtGenaiOptions) carry what only this engine has: the
MatMulNBits accuracy level and the INT4 algorithm.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from tqdm import tqdm

from edgeqwen.backends import onnx_files, runtime_version
from edgeqwen.backends.base import INT8_TABLES_TIP, Backend
from edgeqwen.backends.child import run_logged, tail
from edgeqwen.calibration import calibration_text
from edgeqwen.errors import BuildError, PlanError
from edgeqwen.targets import BLOCK_SIZES, CHANNEL_WISE

if TYPE_CHECKING:
    from edgeqwen.plan import BuildPlan

ENGINE = "onnxruntime-genai"
EXECUTION_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}
EMBEDDING_GATHER = "/model/embed_tokens/Gather"
LM_HEAD_MATMUL = "/lm_head/MatMul"
# What a bundle needs from Olive's output folder; everything else there is Olive's bookkeeping.
RUNTIME_FILES = ("genai_config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja")
MODEL_FILE, MODEL_DATA_FILE = "model.onnx", "model.onnx.data"
CALIBRATION_FILE = "calibration.jsonl"
RTN_CHECKPOINT = "rtn-checkpoint"  # the streamed RTN's Olive-quantized checkpoint, in the work folder
# GPTQ calibration: 32 blocks of 512 tokens (16k tokens) from the calibration text. Enough for a stable
# per-layer Hessian on 0.5B-1.7B models while keeping the pass to minutes on a laptop CPU.
GPTQ_BLOCKS, GPTQ_BLOCK_TOKENS, GPTQ_TEXTS = 32, 512, 512
# The conversion's memory (conversion_memory), fitted with benchmarks/build_memory.py to the Qwen2.5-0.5B, 1.5B
# and 3B shapes (raspberry-pi-5, --skip-drift, Dec 2026; benchmarks/RESULTS.md), within 1 % of each.
OLIVE_PROCESS_BYTES = 1600 << 20  # the Olive child with torch, transformers and onnxruntime imported, and edgeqwen
QUANTIZE_BYTES_PER_LAYER_WEIGHT, QUANTIZE_BYTES_PER_TABLE_ENTRY = 2.0, 26.0  # the table: untied, copied, quantized
# The streamed RTN (streamed_rtn.py, in the edgeqwen process) holds one shard: a decoder layer's weights, or the
# vocabulary table(s) copied as they are, plus Olive's quantizer's temporaries over the largest matrix.
STREAMED_BYTES_PER_WEIGHT, STREAMED_WORK_BYTES_PER_WEIGHT = 2.0, 8.0
# The builder (INT4 step per MatMul, builder_int4.py): the INT4 layers once; the bf16 table, its float32 cast
# saved as the embedding and the lm_head's float32 slices; a model with its own lm_head holds a second bf16 table.
BUILDER_BYTES_PER_LAYER_WEIGHT, BUILDER_BYTES_PER_TABLE_ENTRY, BUILDER_BYTES_PER_UNTIED_ENTRY = 0.44, 16.2, 2.0


@dataclass(frozen=True)
class OrtGenaiOptions:
    """The plan's engine_options for ONNX Runtime GenAI targets."""

    # MatMulNBits accuracy_level: 0 = the provider's default, 1 = fp32, 2 = fp16, 3 = bf16, 4 = int8 activations.
    accuracy_level: int
    # rtn / k_quant: the builder's own; gptq: Olive's GPTQ pass on the checkpoint, fitted on calibration text.
    algorithm: Literal["rtn", "k_quant", "gptq"] = "rtn"

    @property
    def needs_calibration(self) -> bool:
        return self.algorithm == "gptq"


def int4_algorithm(plan: BuildPlan) -> str:
    """The builder's `int4_algo_config`: RTN or k-quant, with an INT8 lm_head when the plan asks for one."""
    q, algorithm = plan.quantization, plan.engine_options.algorithm
    base = "rtn" if algorithm == "gptq" else algorithm  # after GPTQ only the lm_head is left, for RTN
    if q.lm_head == "int8":
        return f"{base}_last"
    return base


def olive_workflow(plan: BuildPlan, model_dir: Path, work_dir: Path) -> dict:
    """The Olive run configuration for this plan (also shown by `--dry-run`)."""
    q, options = plan.quantization, plan.engine_options
    builder: dict = {"type": "ModelBuilder", "extra_options": {"prune_lm_head": True}}
    passes: dict = {}
    extra: dict = {}
    # Passes run in the order written: the decoder layers quantized on the PyTorch checkpoint first, then
    # the builder, which keeps those INT4 weights and quantizes only what is left (the lm_head).
    if q.weights == "int4" and options.algorithm == "gptq":
        passes["gptq"] = {"type": "Gptq", "bits": 4, "group_size": q.block_size, "sym": q.symmetric,
                          "data_config": "calibration"}
        extra["data_configs"] = [calibration_data_config("calibration", model_dir, work_dir)]
        if rtn_quantizes_embedding(plan):  # Gptq quantizes no embedding; Olive's Rtn adds it to that checkpoint
            passes["embedding"] = {"type": "Rtn", "bits": 4, "group_size": q.block_size, "sym": q.symmetric,
                                   "embeds": True}
    elif streams_rtn(plan):
        # Not the builder's own RTN: that one exports every layer in FP32 and quantizes the whole graph
        # at the end, holding the model three times over (6.9 GB peak in `olive run` for the Qwen2.5-0.5B
        # shape; benchmarks/RESULTS.md). Nor Olive's Rtn pass, which loads the whole checkpoint: the layers
        # are already quantized, tensor by tensor (streamed_rtn), and the builder reads that checkpoint.
        model_dir = work_dir / RTN_CHECKPOINT
    passes["builder"] = builder
    if q.weights == "int4":
        builder.update(
            precision="int4",
            int4_block_size=q.block_size,
            int4_is_symmetric=q.symmetric,
        )
        if options.accuracy_level:  # 0 means "the provider's default"; Olive accepts only 1..4
            builder["int4_accuracy_level"] = options.accuracy_level
        builder["extra_options"]["int4_algo_config"] = int4_algorithm(plan)
        if q.lm_head == "float":
            builder["int4_nodes_to_exclude"] = [LM_HEAD_MATMUL]
        if q.embeddings == "int4" and not plan.model.tied_embeddings:
            builder["int4_op_types_to_quantize"] = ["MatMul", "Gather"]
    elif q.weights == "int8":
        builder["precision"] = "fp32"
        excluded = [EMBEDDING_GATHER] + ([LM_HEAD_MATMUL] if q.lm_head == "float" else [])
        passes["int8"] = {
            "type": "OnnxBlockWiseRtnQuantization",
            "bits": 8,
            "block_size": q.block_size,
            "is_symmetric": q.symmetric,
            "accuracy_level": options.accuracy_level,
            "nodes_to_exclude": excluded,
        }
    else:
        builder["precision"] = q.weights
    device = "gpu" if plan.device == "cuda" else "cpu"
    return {
        "input_model": {"type": "HfModel", "model_path": str(model_dir)},
        **extra,
        "systems": {
            "local_system": {
                "type": "LocalSystem",
                "accelerators": [{"device": device, "execution_providers": [EXECUTION_PROVIDERS[plan.device]]}],
            }
        },
        "passes": passes,
        "host": "local_system",
        "target": "local_system",
        "cache_dir": str(work_dir / "olive-cache"),
        "output_dir": str(work_dir / "olive-output"),
        "log_severity_level": 1,
    }


def streams_rtn(plan: BuildPlan) -> bool:
    """INT4 by RTN: the decoder layers quantized tensor by tensor before the builder (streamed_rtn)."""
    return plan.quantization.weights == "int4" and plan.engine_options.algorithm == "rtn"


def streamed_rtn_config(plan: BuildPlan, model_dir: Path, work_dir: Path) -> dict:
    q = plan.quantization
    return {"input": str(model_dir), "output": str(work_dir / RTN_CHECKPOINT), "bits": 4,
            "group_size": q.block_size, "symmetric": q.symmetric, "embeds": rtn_quantizes_embedding(plan)}


def rtn_quantizes_embedding(plan: BuildPlan) -> bool:
    """An INT4 embedding of its own (an untied model) is quantized by RTN on the checkpoint, with the layers or
    after GPTQ: the builder then quantizes only MatMuls, and would ship the table in float32. A tied one becomes
    the lm_head's (onnx_fixups)."""
    return plan.quantization.embeddings == "int4" and not plan.model.tied_embeddings


def calibration_data_config(name: str, model_dir: Path, work_dir: Path, block_tokens: int = GPTQ_BLOCK_TOKENS,
                            blocks: int = GPTQ_BLOCKS) -> dict:
    """An Olive data config over the calibration texts `write_calibration` writes (our own loader): `blocks`
    blocks of `block_tokens` tokens, for GPTQ here and for the QNN backend's activation ranges too."""
    return {
        "name": name,
        "type": "DataContainer",
        "user_script": str(Path(__file__).with_name("olive_calibration.py")),
        "load_dataset_config": {"type": "edgeqwen_calibration", "data_files": str(work_dir / CALIBRATION_FILE),
                                "model_name": str(model_dir), "max_seq_len": block_tokens,
                                "max_samples": blocks},
        "dataloader_config": {"batch_size": 1},
    }


def write_calibration(plan: BuildPlan, work_dir: Path) -> dict | None:
    """The calibration texts for GPTQ as JSONL in the work folder; facts for the manifest."""
    
    if plan.calibration is None:
        return None
    calibration = calibration_text(GPTQ_TEXTS, plan.calibration.path)
    with open(work_dir / CALIBRATION_FILE, "w", encoding="utf-8") as out:
        for text in calibration.samples:
            out.write(json.dumps({"text": text}) + "\n")
    return {"source": calibration.source, "sha256": calibration.sha256, "texts": len(calibration.samples),
            "blocks": f"up to {GPTQ_BLOCKS} x {GPTQ_BLOCK_TOKENS} tokens"}


def run_olive(config: dict, work_dir: Path, name: str = "olive", per_matmul_int4: bool = True) -> Path:
    """Run the workflow in a child process; return the folder holding the output model. `name` names its
    config and log files in the work folder (a backend may run Olive more than once). `per_matmul_int4`:
    the builder's INT4 step one MatMul at a time (builder_int4; same bytes, a fraction of the memory);
    False runs stock Olive (the tests compare the two)."""
    config_path = work_dir / f"{name}_config.json"
    config_path.write_text(json.dumps(config, indent=2))
    log_path = work_dir / f"{name}.log"
    env = {**os.environ, "OLIVE_DISABLE_TELEMETRY": "1", "PYTHONUNBUFFERED": "1"}
    launcher = "edgeqwen.backends.olive_child" if per_matmul_int4 else "olive"
    command = [sys.executable, "-m", launcher, "run", "--config", str(config_path), "--disable_telemetry"]
    pass_names = list(config["passes"])
    with tqdm(total=len(pass_names), desc=f"  {name} passes", unit="pass", leave=False) as bar:

        def progress(line: str) -> None:
            started = re.search(r"Running pass (\w+):", line)
            if started:
                bar.set_postfix_str(started.group(1))
            if re.search(r"Pass \w+:\w+ finished", line):
                bar.update(1)

        returncode = run_logged(command, log_path, env, progress)
    if returncode != 0:
        failed = failed_pass(log_path, pass_names)
        raise BuildError(f"Olive failed (exit {returncode}){failed}; last lines of {log_path}:\n{tail(log_path)}")
    output = Path(config["output_dir"])
    if not (output / "genai_config.json").is_file():
        raise BuildError(f"Olive finished but wrote no model to {output}; see {log_path}:\n{tail(log_path)}")
    return output


def failed_pass(log_path: Path, pass_names: list[str]) -> str:
    """", in pass NAME (TYPE)" for the last pass the log shows started and not finished, or ""."""
    text = log_path.read_text(errors="replace")
    started = re.findall(r"Running pass (\w+):(\w+)", text)
    finished = set(re.findall(r"Pass (\w+):\w+ finished", text))
    open_passes = [(name, kind) for name, kind in started if name not in finished and name in pass_names]
    return f" in pass {open_passes[-1][0]} ({open_passes[-1][1]})" if open_passes else ""


def finish_model(plan: BuildPlan, olive_output: Path, out_dir: Path) -> dict:
    """Repair Olive's graph, save it as model.onnx + model.onnx.data, and note what was done."""
    import onnx

    from edgeqwen.backends import onnx_fixups

    model = onnx.load(olive_output / onnx_files.read_genai_config(olive_output)["model"]["decoder"]["filename"])
    repairs = {"restored_logits_output": onnx_fixups.restore_output_name(model)}
    q = plan.quantization
    wants_shared = plan.model.tied_embeddings and q.embeddings != "float" and q.embeddings == q.lm_head
    repairs["shared_embedding"] = wants_shared and onnx_fixups.share_embedding_with_lm_head(model)
    if wants_shared and not repairs["shared_embedding"]:
        raise BuildError(f"could not share the {q.embeddings} embedding with the lm_head in {olive_output}")
    onnx.save(
        model,
        out_dir / MODEL_FILE,
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=MODEL_DATA_FILE,
        size_threshold=1024,
    )
    return repairs


def add_generation_end_tokens(model_dir: Path, out_dir: Path) -> None:
    """Stop on every end token the model's generation_config names, not only config.json's one.

    The builder copies `eos_token_id` from config.json (<|im_end|> for Qwen); Qwen's generation_config
    also ends on <|endoftext|>, and a model that emits it would otherwise run on into a new turn.
    """
    generation_config = model_dir / "generation_config.json"
    if not generation_config.is_file():
        return
    wanted = json.loads(generation_config.read_text()).get("eos_token_id")
    config = onnx_files.read_genai_config(out_dir)
    current = config["model"].get("eos_token_id")
    ids = [current] if isinstance(current, int) else list(current or [])
    for token in [wanted] if isinstance(wanted, int) else wanted or []:
        if token not in ids:
            ids.append(token)
    config["model"]["eos_token_id"] = ids[0] if len(ids) == 1 else ids
    (out_dir / "genai_config.json").write_text(json.dumps(config, indent=4) + "\n")


class OrtGenaiBackend(Backend):
    engine = ENGINE
    devices = tuple(EXECUTION_PROVIDERS)
    options_type = OrtGenaiOptions
    folder_description = "an ONNX Runtime GenAI folder (genai_config.json)"
    code_files = ("ort_genai.py", "streamed_rtn.py", "builder_int4.py", "olive_child.py", "onnx_fixups.py",
                  "onnx_files.py", "child.py", "olive_calibration.py")
    tool_distributions = ("olive-ai", "onnxruntime-genai", "onnxruntime", "onnx", "onnx-ir")

    def resolve_options(self, target, recipe) -> OrtGenaiOptions:
        chosen = {"accuracy_level": target.quantization.accuracy_level, "algorithm": target.quantization.algorithm}
        chosen.update({k: v for k, v in dataclasses.asdict(recipe.quantization).items() if k in chosen and v is not None})
        return OrtGenaiOptions(**chosen)

    def upgrade_v1_options(self, plan: dict) -> dict:
        q = plan["quantization"]
        return {"accuracy_level": q["accuracy_level"], "algorithm": q.get("algorithm", "rtn")}

    def check_supported(self, plan: BuildPlan) -> None:
        q, m, algorithm = plan.quantization, plan.model, plan.engine_options.algorithm
        if plan.device not in EXECUTION_PROVIDERS:
            raise PlanError(f"target {plan.target!r}: device {plan.device!r} is not an ONNX Runtime GenAI provider")
        if q.block_size == CHANNEL_WISE and q.weights in ("int4", "int8"):
            raise PlanError(
                f"block_size = {CHANNEL_WISE} (channel-wise) is an OpenVINO (NNCF) option; ONNX Runtime "
                f"quantizes in blocks of {', '.join(map(str, BLOCK_SIZES))}"
            )
        if q.weights == "int4" and q.embeddings != "float" and q.embeddings != q.lm_head:
            raise PlanError(
                f"embeddings = {q.embeddings!r} with lm_head = {q.lm_head!r}: the ONNX Runtime GenAI builder stores a "
                "quantized embedding only as the lm_head's own matrix; set both to the same precision, or embeddings "
                "to 'float'"
            )
        if q.weights == "int4" and q.embeddings == "int8" and not m.tied_embeddings:
            raise PlanError(
                f"{m.id} has separate embedding and lm_head tables; INT8 embeddings are only available for tied "
                "models here. Use embeddings = 'int4' or 'float'"
            )
        if q.weights == "int4" and algorithm == "k_quant" and q.embeddings != "float":
            raise PlanError(
                "algorithm = 'k_quant' with a quantized embedding: the onnxruntime-genai 0.14.1 builder's k-quant "
                "stores asymmetric weights and an 8-bit lm_head with zero points, which edgeqwen cannot share with "
                "the embedding; use algorithm = 'rtn' (or embeddings = 'float', which ships the table in FP32)"
            )
        if q.weights == "int4" and not q.symmetric and q.embeddings != "float" and m.tied_embeddings:
            raise PlanError(
                f"symmetric = false with embeddings = {q.embeddings!r}: {m.id} ties its embedding to the lm_head, and "
                "edgeqwen ships the two as one quantized table only without zero points (GatherBlockQuantized over "
                "the lm_head's matrix); use symmetric = true, or embeddings = 'float' (the table in FP32)"
            )
        blocks_per_row = m.hidden_size // q.block_size if q.block_size > 0 else 0
        if q.weights == "int4" and not q.symmetric and q.lm_head == "int4" and algorithm != "k_quant" \
                and blocks_per_row % 2:
            even = [b for b in (16, 32, 64) if m.hidden_size % b == 0 and (m.hidden_size // b) % 2 == 0]
            raise PlanError(
                f"symmetric = false with block_size = {q.block_size}: the lm_head's rows are {m.hidden_size} / "
                f"{q.block_size} = {blocks_per_row} blocks, and onnxruntime's RTN (which the builder uses for the "
                "lm_head) packs 4-bit zero points only for an even number of blocks per row; use symmetric = true"
                + (f", or block_size = {even[-1]}" if even else "")
            )
        if q.weights == "int8" and q.lm_head == "int4":
            raise PlanError("weights = 'int8' with lm_head = 'int4': the lm_head cannot be coarser than the weights")
        if algorithm == "gptq" and q.weights != "int4":
            raise PlanError(f"algorithm = 'gptq' with weights = {q.weights!r}: Olive's GPTQ pass is used for INT4 only")

    def estimate_memory(self, plan: BuildPlan):
        from edgeqwen.fit import estimate_memory

        # The model's I/O type, the KV cache and the block scales: fp16 on CUDA, fp32 on the CPU.
        return estimate_memory(plan, float_bytes=2 if plan.device == "cuda" else 4)

    def conversion_memory(self, plan: BuildPlan):
        """INT4 by the streamed RTN (one shard in the edgeqwen process) or Olive's Gptq pass, then ModelBuilder in
        the Olive process (whose imports take OLIVE_PROCESS_BYTES). The Gptq pass loads the whole checkpoint in its
        own dtype (bf16 for Qwen: 2 bytes a parameter) and quantizes it in place (its table term is the larger:
        Olive unties the tied table to quantize it). The builder then holds every INT4 layer once and the
        vocabulary table in bf16 and float32 (builder_int4 quantizes the lm_head a slice at a time). The
        per-weight figures are fitted to benchmarks/build_memory.py. Other precisions keep the engine-wide figures."""
        from edgeqwen.build_memory import PROCESS_BASE_BYTES, StageMemory
        from edgeqwen.fit import table_and_layer_weights

        if plan.quantization.weights != "int4" or plan.engine_options.algorithm == "k_quant":
            return super().conversion_memory(plan)
        m = plan.model
        table, layers = table_and_layer_weights(m)
        table_bytes = BUILDER_BYTES_PER_TABLE_ENTRY + (0 if m.tied_embeddings else BUILDER_BYTES_PER_UNTIED_ENTRY)
        build = StageMemory("convert / builder", int(
            OLIVE_PROCESS_BYTES + BUILDER_BYTES_PER_LAYER_WEIGHT * layers + table_bytes * table),
            "ModelBuilder: the INT4 layers, the table in float32, the lm_head's RTN a slice at a time (fitted)")
        if streams_rtn(plan):
            tables = table * (1 if m.tied_embeddings else 2)
            largest_matrix = m.intermediate_size * m.hidden_size
            shard = max(tables, layers // max(m.num_layers, 1))
            streamed = (PROCESS_BASE_BYTES + STREAMED_BYTES_PER_WEIGHT * shard
                        + STREAMED_WORK_BYTES_PER_WEIGHT * largest_matrix)
            return (StageMemory("convert / rtn", int(streamed),
                                "RTN streamed tensor by tensor: one layer (or the table) at a time"), build)
        quantize = OLIVE_PROCESS_BYTES + QUANTIZE_BYTES_PER_LAYER_WEIGHT * layers + QUANTIZE_BYTES_PER_TABLE_ENTRY * table
        return (StageMemory("convert / gptq", int(quantize),
                            "Olive's GPTQ pass: the whole checkpoint (fitted to measured builds)"), build)

    def runtime_requirement(self, plan: BuildPlan, device: str | None = None) -> str:
        package = "onnxruntime-genai-cuda" if (device or plan.device) == "cuda" else "onnxruntime-genai"
        return f"{package}=={runtime_version('onnxruntime-genai')}"

    def accuracy_suggestions(self, plan: BuildPlan) -> list[str]:
        q, int4 = plan.quantization, plan.quantization.weights == "int4"
        tips = []
        if q.lm_head == "int4":
            tips.append(INT8_TABLES_TIP)
        if int4 and not 0 < q.block_size <= 32:
            tips.append("use smaller quantization groups (block_size = 32)")
        if int4 and plan.engine_options.algorithm == "rtn" and q.embeddings == "float":
            tips.append("try the k-quant algorithm (algorithm = \"k_quant\")")
        if int4:
            tips.append("build INT8 weights (--precision int8)")
        return tips

    def engine_config(self, plan: BuildPlan, model_dir: Path, work_dir: Path) -> dict:
        streamed = {"streamed_rtn": streamed_rtn_config(plan, model_dir, work_dir)} if streams_rtn(plan) else {}
        return {**streamed, "olive_workflow": olive_workflow(plan, model_dir, work_dir)}

    def convert(self, plan: BuildPlan, model_dir: Path, work_dir: Path, out_dir: Path) -> dict:
        """Export and quantize the model into `out_dir`; return facts for the manifest.

        Writes the model, tokenizer and Olive's genai_config; `finalize` then applies the target's settings.
        """
        config = olive_workflow(plan, model_dir, work_dir)
        calibration = write_calibration(plan, work_dir)
        rtn = None
        if streams_rtn(plan):
            from edgeqwen.backends.streamed_rtn import write_rtn_checkpoint

            shown = streamed_rtn_config(plan, model_dir, work_dir)  # what --dry-run shows is what runs
            rtn = write_rtn_checkpoint(Path(shown["input"]), Path(shown["output"]), bits=shown["bits"],
                                       group_size=shown["group_size"], symmetric=shown["symmetric"],
                                       embeds=shown["embeds"])
        olive_output = run_olive(config, work_dir)
        shutil.rmtree(work_dir / RTN_CHECKPOINT, ignore_errors=True)  # scratch: 0.6 GB a billion parameters
        repairs = finish_model(plan, olive_output, out_dir)
        for name in RUNTIME_FILES:
            source = olive_output / name
            if source.is_file():
                shutil.copyfile(source, out_dir / name)
        add_generation_end_tokens(model_dir, out_dir)
        facts = {"olive_passes": list(config["passes"].values()), "graph_repairs": repairs}
        if calibration:
            facts["calibration"] = calibration
        if rtn:
            facts["streamed_rtn"] = rtn
        return facts

    def finalize(self, plan: BuildPlan, bundle_dir: Path) -> None:
        """The target's runtime settings (context budget, threads) in genai_config.json."""
        config = onnx_files.read_genai_config(bundle_dir)
        model = config["model"]
        model["context_length"] = plan.context_length
        model["decoder"]["filename"] = MODEL_FILE
        session = model["decoder"].setdefault("session_options", {})
        session["intra_op_num_threads"] = plan.threads
        config["search"]["max_length"] = plan.context_length
        (bundle_dir / "genai_config.json").write_text(json.dumps(config, indent=4) + "\n")

    def recognizes(self, folder: Path) -> bool:
        return (folder / onnx_files.GENAI_CONFIG).is_file() and not onnx_files.names_qnn(folder)

    def model_files(self, folder: Path) -> dict[str, tuple[str, ...]]:
        return onnx_files.model_files(folder)

    def bytes_per_token(self, folder: Path) -> int:
        return onnx_files.bytes_per_token(folder)
