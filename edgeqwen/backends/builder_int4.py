"""The ONNX Runtime GenAI builder's last INT4 step, one MatMul at a time instead of over a copy of the model.

The 0.14.1 builder ends with `Model.to_int4`: the whole IR model serialized into one protobuf
(`ir.to_proto`: every weight copied, every lazy cast made, the vocabulary table bf16 -> float32 among
them), onnxruntime's MatMulNBitsQuantizer over it, and `ir.from_proto` back. The model is then in
memory three times over: 9.9 GB for the Qwen2.5-1.5B shape when only the lm_head is left to quantize
(benchmarks/build_memory.py; RESULTS.md "Build memory"). The quantizer's RTN and k-quant
(`rtn_quantize`) treat each MatMul on its own and name each result after its weight, so this runs the
same quantizer with the same settings over a one-node model per float MatMul and splices the result
into the IR: one weight in memory at a time (RTN: a slice of its columns at a time). Then the nodes are put in the order `rtn_quantize`'s
`topological_sort` gives the whole graph, so the saved model is the same bytes as the builder's
(tests/test_streamed_rtn.py builds a bundle both ways and compares them).

`patch_builder()` installs it; Olive's child process calls it (olive_child.py) before Olive's
ModelBuilder pass imports the builder. Other algorithms (the quantizer's DEFAULT, HQQ) keep the
builder's own step.
"""

from __future__ import annotations

import importlib

PER_MATMUL_ALGORITHMS = ("RTN", "k_quant")  # the quantizer's rtn_quantize: node by node
SLICE_BYTES = 64 << 20  # RTN quantizes a wide weight this many bytes of columns at a time


def patch_builder() -> None:
    importlib.import_module("onnxruntime_genai.models.builder")  # puts its `builders` package on sys.path
    base = importlib.import_module("builders.base")
    builder_to_int4 = base.Model.to_int4

    def to_int4(self):
        algorithm = getattr(self.quant_attrs["int4"]["algo_config"], "algorithm", None)
        if algorithm not in PER_MATMUL_ALGORITHMS or self.quant_attrs["use_qdq"]:
            return builder_to_int4(self)
        quantize_each_matmul(self.model, self.quant_attrs)
        return self.model

    base.Model.to_int4 = to_int4


def quantizer_for(model_proto, quant_attrs):
    """The quantizer exactly as the builder's to_int4 makes it, over `model_proto`."""
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
    from onnxruntime.quantization.quant_utils import QuantFormat

    int4 = quant_attrs["int4"]
    return MatMulNBitsQuantizer(
        model=model_proto,
        block_size=int4["qdq_block_size"],
        is_symmetric=int4["is_symmetric"],
        accuracy_level=int4["accuracy_level"],
        nodes_to_exclude=int4["nodes_to_exclude"],
        quant_format=QuantFormat.QDQ if quant_attrs["use_qdq"] else QuantFormat.QOperator,
        op_types_to_quantize=int4["op_types_to_quantize"],
        algo_config=int4["algo_config"],
    )


def quantize_each_matmul(model, quant_attrs) -> None:
    """Replace each float MatMul over a 2-D initializer in the IR `model` by the quantizer's MatMulNBits."""
    import onnx
    import onnx_ir as ir

    graph = model.graph
    excluded = set(quant_attrs["int4"]["nodes_to_exclude"] or ())
    opsets = [onnx.helper.make_opsetid(domain, version) for domain, version in model.opset_imports.items()]
    # Values the builder's nodes read by the name of a quantizer result not made yet (the shared table's
    # Reshape reads lm_head.MatMul.weight_Q4G{block}): they become those initializers.
    awaited = {value.name: value for node in graph for value in node.inputs
               if value is not None and value.producer() is None and not value.is_initializer()
               and not value.is_graph_input()}
    for node in list(graph):
        if node.op_type != "MatMul" or node.domain != "" or node.name in excluded or len(node.inputs) != 2:
            continue
        x, weight = node.inputs
        if weight is None or not weight.is_initializer() or weight.const_value is None \
                or len(weight.const_value.shape) != 2 or not weight.const_value.dtype.is_floating_point():
            continue
        array = weight.const_value.numpy()  # a lazy cast (the table bf16 -> float32) is made here, for this one
        # RTN rounds each output column's blocks on their own, so a wide matrix (the lm_head: vocabulary-many
        # columns) is quantized a slice of columns at a time and the results joined: the same bytes.
        rtn = quant_attrs["int4"]["algo_config"].algorithm == "RTN"
        columns = max(1, SLICE_BYTES // (array.shape[0] * array.itemsize)) if rtn else array.shape[1]
        pieces = [quantize_one(node, array[:, start:start + columns], quant_attrs, opsets, model.ir_version)
                  for start in range(0, array.shape[1], columns)]
        del array
        done = pieces[0]
        new_nodes = list(done)
        if [n.op_type for n in new_nodes] == ["MatMul"]:
            continue  # the quantizer left it as it was
        if len(pieces) > 1:
            join_columns(done, pieces, weight.name, weight.const_value.shape[1])
        splice(graph, node, new_nodes, done, awaited)
    sort_as_the_quantizer_does(model)


def quantize_one(node, weight_array, quant_attrs, opsets, ir_version):
    """The quantizer's result for `node` over `weight_array` alone, as an IR graph: MatMulNBits and its
    initializers (or the MatMul as it was)."""
    import numpy as np
    import onnx
    import onnx_ir as ir
    from onnx import numpy_helper

    x, weight = node.inputs
    elem_type = weight.const_value.dtype.value
    model = onnx.helper.make_model(
        onnx.helper.make_graph(
            [onnx.helper.make_node("MatMul", [x.name, weight.name], [node.outputs[0].name], name=node.name)],
            "one_matmul",
            [onnx.helper.make_tensor_value_info(x.name, elem_type, None)],
            [onnx.helper.make_tensor_value_info(node.outputs[0].name, elem_type, None)],
            [numpy_helper.from_array(np.ascontiguousarray(weight_array), weight.name)],
        ),
        opset_imports=opsets, ir_version=ir_version)
    quantizer = quantizer_for(model, quant_attrs)
    quantizer.process()
    return ir.from_proto(quantizer.model.model).graph


def join_columns(done, pieces, weight_name: str, columns: int) -> None:
    """Make `done` (the first slice's result) the whole matrix's: each new initializer the slices' joined
    (MatMulNBits keeps them output column first), and the node's N the full width."""
    import numpy as np
    import onnx_ir as ir

    for name, value in done.initializers.items():
        if name == weight_name:
            continue
        joined = np.concatenate([piece.initializers[name].const_value.numpy() for piece in pieces])
        value.const_value = ir.tensor(joined, name=name)
        value.shape = ir.Shape(joined.shape)
    for node in done:
        if "N" in node.attributes:
            node.attributes["N"] = ir.AttrInt64("N", columns)


def splice(graph, old, new_nodes, donor, awaited: dict) -> None:
    """Put `new_nodes` (from the one-node `donor` graph) in place of `old`, with their new initializers,
    appended where the quantizer appends them; drop the old weight if nothing else reads it."""
    import onnx_ir as ir

    values = {donor.inputs[0]: old.inputs[0]}
    for value in donor.initializers.values():
        if value.name == old.inputs[1].name:
            values[value] = old.inputs[1]
            continue
        made = awaited.pop(value.name, None) or ir.Value(name=value.name)
        made.shape, made.type, made.const_value = value.shape, value.type, value.const_value
        graph.register_initializer(made)
        values[value] = made
    old_output = old.outputs[0]
    for new in new_nodes:
        inputs = [values.get(v, v) if v is not None else None for v in new.inputs]
        made = ir.Node(new.domain, new.op_type, inputs, attributes=list(new.attributes.values()),
                       num_outputs=len(new.outputs), name=new.name)
        for produced, output in zip(new.outputs, made.outputs):
            values[produced] = output
        graph.append(made)
    replacement = values[donor.outputs[0]]
    replacement.shape, replacement.type = old.outputs[0].shape, old.outputs[0].type
    weight = old.inputs[1]
    old_output.replace_all_uses_with(replacement, replace_graph_outputs=True)
    graph.remove(old, safe=True)
    replacement.name = old_output.name
    if not weight.uses() and weight not in graph.outputs:
        graph.initializers.pop(weight.name)


def sort_as_the_quantizer_does(model) -> None:
    """Order the nodes as the quantizer's `rtn_quantize` leaves the whole graph (its ONNXModel.topological_sort,
    the neural_compressor one), computed on the graph's structure alone: initializers named, not copied."""
    import onnx
    from onnxruntime.quantization.neural_compressor.onnx_model import ONNXModel

    graph = model.graph
    nodes = list(graph)
    skeleton = onnx.helper.make_graph(
        [onnx.helper.make_node("N", [v.name if v is not None else "" for v in n.inputs],
                               [v.name for v in n.outputs], name=str(i)) for i, n in enumerate(nodes)],
        "skeleton",
        [onnx.helper.make_tensor_value_info(v.name, onnx.TensorProto.FLOAT, None) for v in graph.inputs],
        [],
        [onnx.helper.make_tensor(name, onnx.TensorProto.FLOAT, [0], []) for name in graph.initializers])
    sorted_model = ONNXModel(onnx.helper.make_model(skeleton))
    sorted_model.topological_sort()
    order = [nodes[int(n.name)] for n in sorted_model.nodes()]
    for node in nodes:
        graph.remove(node)
    graph.extend(order)
