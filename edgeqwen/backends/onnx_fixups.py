"""Graph repairs applied to Olive's output, each undoing a known defect of olive-ai 0.13.

1. Shared embedding. The ONNX Runtime GenAI builder can store a tied Qwen
   embedding and lm_head as one quantized matrix (GatherBlockQuantized reading
   the lm_head's MatMulNBits weight). Olive 0.13's ModelBuilder pass replaces
   the builder's `make_embedding` with its own, which always writes a separate
   float embedding: 151,936 x hidden fp32 values, most of a small model's size.
   `share_embedding_with_lm_head` rebuilds exactly the graph the builder makes
   with `shared_embeddings=true` (Olive's own TieWordEmbeddings surgery declines,
   because its RTN pass rounds Gather and MatMul weights with different code and
   about 0.1% of the nibbles differ).
2. Output name. Olive 0.13's OnnxBlockWiseRtnQuantization renames the output of
   every MatMul it quantizes, graph outputs included, so the lm_head's `logits`
   becomes `logits_Q8` and ONNX Runtime GenAI cannot find it.
   `restore_output_name` puts the name back.

Both work on the ModelProto in memory; the caller saves the model once.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

LM_HEAD_PREFIX = "/lm_head/MatMul"
MS_DOMAIN = "com.microsoft"


def _initializers(model: onnx.ModelProto) -> dict[str, onnx.TensorProto]:
    return {init.name: init for init in model.graph.initializer}


def _attributes(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def restore_output_name(model: onnx.ModelProto, expected: str = "logits") -> bool:
    """Rename a quantizer-suffixed graph output (`logits_Q4`, `logits_Q8`) back to `expected`."""
    names = [o.name for o in model.graph.output]
    if expected in names:
        return False
    renamed = [n for n in names if n.startswith(f"{expected}_Q")]
    if len(renamed) != 1:
        return False
    old = renamed[0]
    for output in model.graph.output:
        if output.name == old:
            output.name = expected
    for node in model.graph.node:
        node.output[:] = [expected if o == old else o for o in node.output]
        node.input[:] = [expected if i == old else i for i in node.input]
    return True


def share_embedding_with_lm_head(model: onnx.ModelProto) -> bool:
    """Replace a float embedding Gather with GatherBlockQuantized over the lm_head's quantized weight.

    Only valid for models whose config ties the two tables; the caller checks that. Returns False,
    changing nothing, when the graph is not the expected shape (float lm_head, asymmetric weights).
    """
    inits = _initializers(model)
    gathers = [n for n in model.graph.node if n.op_type == "Gather" and "input_ids" in n.input and n.input[0] in inits]
    heads = [n for n in model.graph.node if n.op_type == "MatMulNBits" and n.name.startswith(LM_HEAD_PREFIX)]
    if len(gathers) != 1 or len(heads) != 1:
        return False
    gather, head = gathers[0], heads[0]
    attrs = _attributes(head)
    has_zero_points = len(head.input) > 3 and head.input[3] != ""
    if has_zero_points:
        return False
    embedding = inits[gather.input[0]]
    vocab, hidden = embedding.dims
    if attrs["N"] != vocab or attrs["K"] != hidden:
        return False

    qweight, scales = inits[head.input[1]], inits[head.input[2]]
    k_blocks = -(-hidden // attrs["block_size"])
    if list(scales.dims) != [vocab, k_blocks]:  # GatherBlockQuantized needs 2-D scales; MatMulNBits takes both
        scales.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(scales).reshape(vocab, k_blocks), scales.name))
    packed_row = int(np.prod(qweight.dims[1:]))
    shape_name = "/model/embed_tokens/shared_weight_shape"
    reshaped = "/model/embed_tokens/Reshape/output_0"
    model.graph.initializer.append(numpy_helper.from_array(np.array([vocab, packed_row], dtype=np.int64), shape_name))
    reshape = helper.make_node("Reshape", [qweight.name, shape_name], [reshaped], name="/model/embed_tokens/Reshape")
    shared = helper.make_node(
        "GatherBlockQuantized",
        [reshaped, "input_ids", scales.name],
        list(gather.output),
        name="/model/embed_tokens/GatherBlockQuantized",
        domain=MS_DOMAIN,
        bits=attrs["bits"],
        block_size=attrs["block_size"],
        gather_axis=0,
        quantize_axis=1,
    )
    nodes = list(model.graph.node)
    position = nodes.index(gather)
    nodes[position : position + 1] = [reshape, shared]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    model.graph.initializer.remove(embedding)
    if not any(op.domain == MS_DOMAIN for op in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    return True
