"""Structural checks of an OpenVINO IR: what a bundle's model really stores, and whether an NPU can take it.

No NPU is needed: these read the IR's graph. NNCF stores a compressed weight
as an integer constant followed by Convert -> (Subtract zero point) ->
Multiply scale; its element type says the format: i4 / i8 symmetric, u4 / u8
asymmetric (with a zero-point constant beside it).
"""

from __future__ import annotations

from math import prod

INTEGER_FORMATS = {"i4": "int4_sym", "u4": "int4_asym", "i8": "int8_sym", "u8": "int8_asym"}
FLOAT_TYPES = ("f16", "bf16", "f32")
WEIGHT_CONSUMERS = ("MatMul", "Gather")
# The axes OpenVINO GenAI's NPU pipeline fixes itself (batch, and the token axis to MAX_PROMPT_LEN or 1).
STATIC_ON_NPU = {"input_ids": (0, 1), "attention_mask": (0, 1), "position_ids": (0, 1), "beam_idx": (0,)}


def _consumers(node) -> list:
    return [target.get_node() for target in node.output(0).get_target_inputs()]


def _feeds_weight_consumer(node, depth: int = 0) -> bool:
    """A float constant used as a weight: MatMul/Gather input, possibly through a Convert."""
    for consumer in _consumers(node):
        kind = consumer.get_type_name()
        if kind in WEIGHT_CONSUMERS:
            return True
        if kind == "Convert" and depth == 0 and _feeds_weight_consumer(consumer, 1):
            return True
    return False


def weight_precisions(model) -> dict[str, dict[str, int]]:
    """{format: {"tensors": n, "parameters": n}} over every weight matrix in the IR."""
    found: dict[str, dict[str, int]] = {}
    for op in model.get_ops():
        if op.get_type_name() != "Constant":
            continue
        element = op.get_element_type().get_type_name()
        shape = list(op.get_output_shape(0))
        if len(shape) < 2 or min(shape) < 1:
            continue
        if element in INTEGER_FORMATS:
            if shape[-1] == 1:  # a zero point (one per group), not a weight
                continue
            label = INTEGER_FORMATS[element]
        elif element in FLOAT_TYPES and min(shape) >= 16 and _feeds_weight_consumer(op):
            label = f"float ({element})"
        else:
            continue
        entry = found.setdefault(label, {"tensors": 0, "parameters": 0})
        entry["tensors"] += 1
        entry["parameters"] += prod(shape)
    return dict(sorted(found.items()))


def unbounded_dimensions(model) -> list[str]:
    """Dynamic dimensions with no upper bound that the NPU pipeline does not fix itself (should be none)."""
    problems = []
    for port in model.inputs:
        name = port.get_any_name()
        allowed = STATIC_ON_NPU.get(name, ())
        for axis, dim in enumerate(port.get_partial_shape()):
            if dim.is_dynamic and axis not in allowed:
                problems.append(f"input {name} axis {axis} ({port.get_partial_shape()})")
    for port in model.outputs:
        shape = port.get_partial_shape()
        for axis, dim in enumerate(shape):
            if dim.is_dynamic and axis > 1:  # logits: [batch, tokens, vocab]; the vocabulary must be static
                problems.append(f"output {port.get_any_name()} axis {axis} ({shape})")
    return problems


def describe_io(model) -> dict[str, str]:
    ports = [("input", p) for p in model.inputs] + [("output", p) for p in model.outputs]
    return {f"{kind} {p.get_any_name()}": str(p.get_partial_shape()) for kind, p in ports}
