"""JSON Schema for constrained decoding: the check every request's schema gets, and its translation into
an EBNF grammar for OpenVINO GenAI (xgrammar).

Why not hand OpenVINO the schema itself: its JSON-schema grammar allows any whitespace between tokens, and
a small model then fills its whole answer with newlines inside the object (measured on the demo model:
`{\\n\\n\\n\\n    "city" :" is a " , "days"\\n   \\n\\n     : 3\\n\\n   ...` until max_tokens). The grammar
written here has none: JSON exactly as Qwen's templates print it (", " and ": "), as onnxruntime-genai's
llguidance is told to write it too.

What the EBNF translation covers: type (one or a list), enum, const, properties with required and
additionalProperties, items with minItems and maxItems, minLength and maxLength, anyOf and oneOf, and
$ref into #/$defs or #/definitions (recursion included). Annotations (title, description, default,
examples, $schema, $id, $comment) are ignored. Any other keyword is refused by name, so a request never
gets output that looks constrained and is not.
"""

import json

from .errors import ShimError
from .runtime import ITEM_SEPARATOR, KEY_SEPARATOR

JSON_TYPES = ("string", "integer", "number", "boolean", "null", "object", "array")
ANNOTATIONS = frozenset({"title", "description", "default", "examples", "$schema", "$id", "$comment",
                         "deprecated", "readOnly", "writeOnly"})
# The most items an array's minItems or maxItems may ask for. A grammar holds a rule per item up to the bound:
# llguidance, asked for minItems 10**9, allocated until the process was killed (10**7 already took 1.7 GB and
# 7 s). No answer that fits a context has more items than this.
MAX_ITEMS = 10_000
# Where JSON Schema keeps sub-schemas: an object of them, one, or a non-empty list of them.
SCHEMA_OBJECTS = ("properties", "$defs", "definitions", "patternProperties", "dependentSchemas")
SCHEMA_VALUES = ("items", "additionalProperties", "additionalItems", "contains", "not", "if", "then", "else",
                 "propertyNames", "unevaluatedItems", "unevaluatedProperties")
SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
EBNF_KEYWORDS = frozenset({"type", "enum", "const", "properties", "required", "additionalProperties", "items",
                           "minItems", "maxItems", "minLength", "maxLength", "anyOf", "oneOf", "$ref", "$defs",
                           "definitions"}) | ANNOTATIONS


class SchemaError(ShimError):
    """The schema is not JSON Schema, or uses what this runtime's constrained decoding cannot enforce."""


def check_schema(schema, where):
    """Refuse what is not JSON Schema at all (the same on every runtime), naming the place."""
    if isinstance(schema, bool):
        return
    if not isinstance(schema, dict):
        raise SchemaError(f"{where}: a JSON Schema is an object (or true/false), not {type(schema).__name__}")
    kind = schema.get("type")
    for name in ([kind] if isinstance(kind, str) else kind if isinstance(kind, list) else [] if kind is None
                 else [kind]):
        if name not in JSON_TYPES:
            raise SchemaError(f"{where}.type: {name!r} is not a JSON Schema type ({', '.join(JSON_TYPES)})")
    for key in SCHEMA_OBJECTS:  # every sub-schema is checked, so no limit is escaped by a $ref to $defs
        subs = schema.get(key, {})
        if not isinstance(subs, dict):
            raise SchemaError(f"{where}.{key} must be an object of schemas")
        for name, sub in subs.items():
            check_schema(sub, f"{where}.{key}.{name}")
    required = schema.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        raise SchemaError(f"{where}.required must be a list of property names")
    for key in SCHEMA_VALUES:
        if key in schema and not isinstance(schema[key], (dict, bool)):
            raise SchemaError(f"{where}.{key} must be a schema")
        if isinstance(schema.get(key), dict):
            check_schema(schema[key], f"{where}.{key}")
    for key in SCHEMA_LISTS:
        if key in schema:
            if not isinstance(schema[key], list) or not schema[key]:
                raise SchemaError(f"{where}.{key} must be a non-empty list of schemas")
            for i, sub in enumerate(schema[key]):
                check_schema(sub, f"{where}.{key}[{i}]")
    for key in ("minItems", "maxItems", "minLength", "maxLength"):
        if key in schema and (isinstance(schema[key], bool) or not isinstance(schema[key], int) or schema[key] < 0):
            raise SchemaError(f"{where}.{key} must be a non-negative integer")
    for key in ("minItems", "maxItems"):
        if schema.get(key, 0) > MAX_ITEMS:
            raise SchemaError(f"{where}.{key}: at most {MAX_ITEMS} (no answer that fits the context has more items)")
    if "$ref" in schema and not isinstance(schema["$ref"], str):
        raise SchemaError(f"{where}.$ref must be a string")
    if "enum" in schema and (not isinstance(schema["enum"], list) or not schema["enum"]):
        raise SchemaError(f"{where}.enum must be a non-empty list")


def closed(schema):
    """`schema` with every object that lists its properties limited to them (additionalProperties false
    where the schema says nothing). The output still validates against the schema as given; without this
    a small model invents keys until max_tokens (measured on the demo model with llguidance)."""
    if isinstance(schema, list):
        return [closed(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: closed(value) if key not in ("enum", "const", "default", "examples") else value
              for key, value in schema.items()}
    if "properties" in schema and "additionalProperties" not in schema:
        result["additionalProperties"] = False
    if isinstance(schema.get("properties"), dict):
        result["properties"] = {name: closed(sub) for name, sub in schema["properties"].items()}
    return result


def literal(text):
    """An EBNF string literal."""
    return json.dumps(text, ensure_ascii=False)


def dumps(value):
    return json.dumps(value, ensure_ascii=False, separators=(ITEM_SEPARATOR, KEY_SEPARATOR))


class EbnfWriter:
    """One grammar: a rule per schema node, `root` the whole value."""

    CHAR = r'([^"\\\x00-\x1f] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4}))'
    BASE_RULES = {
        "json_string": f'"\\"" {CHAR}* "\\""',
        "json_integer": '"-"? ("0" | [1-9] [0-9]{0,17})',
        "json_number": 'json_integer ("." [0-9]{1,17})? ([eE] [-+]? [0-9]{1,3})?',
        "json_value": 'json_object | json_array | json_string | json_number | "true" | "false" | "null"',
        "json_object": f'"{{" (json_string {literal(KEY_SEPARATOR)} json_value ({literal(ITEM_SEPARATOR)} '
                       f'json_string {literal(KEY_SEPARATOR)} json_value)*)? "}}"',
        "json_array": f'"[" (json_value ({literal(ITEM_SEPARATOR)} json_value)*)? "]"',
    }

    def __init__(self, root_schema):
        self.root_schema = root_schema
        self.rules, self.refs = {}, {}

    def rule(self, body):
        name = f"r{len(self.rules)}"
        self.rules[name] = body
        return name

    def grammar(self, root):
        lines = [f"root ::= {root}"] + [f"{name} ::= {body}" for name, body in self.rules.items()]
        return "\n".join(lines + [f"{name} ::= {body}" for name, body in self.BASE_RULES.items()]) + "\n"

    def value(self, schema, where):
        """The EBNF expression for a value valid against `schema`."""
        if schema is True or schema == {}:
            return "json_value"
        if schema is False:
            raise SchemaError(f"{where}: the schema `false` allows no value")
        unknown = sorted(set(schema) - EBNF_KEYWORDS)
        if unknown:
            raise SchemaError(f"{where}.{unknown[0]}: this runtime's constrained decoding (OpenVINO GenAI) "
                              f"cannot enforce {unknown[0]!r}; it supports {', '.join(sorted(EBNF_KEYWORDS - ANNOTATIONS))}")
        if "$ref" in schema:
            return self.ref(schema["$ref"], where)
        if "const" in schema:
            return literal(dumps(schema["const"]))
        if "enum" in schema:
            return "(" + " | ".join(literal(dumps(v)) for v in schema["enum"]) + ")"
        for key in ("anyOf", "oneOf"):
            if key in schema:
                return "(" + " | ".join(self.value(sub, f"{where}.{key}[{i}]")
                                        for i, sub in enumerate(schema[key])) + ")"
        kind = schema.get("type")
        if isinstance(kind, list):
            return "(" + " | ".join(self.typed(dict(schema, type=k), k, where) for k in kind) + ")"
        if kind is None:
            kind = "object" if "properties" in schema else "array" if "items" in schema else None
        return self.typed(schema, kind, where) if kind else "json_value"

    def typed(self, schema, kind, where):
        if kind == "string":
            low, high = schema.get("minLength", 0), schema.get("maxLength")
            if low == 0 and high is None:
                return "json_string"
            return self.rule(f'"\\"" {repeat(self.CHAR, low, high)} "\\""')
        if kind in ("integer", "number"):
            return f"json_{kind}"
        if kind == "boolean":
            return '("true" | "false")'
        if kind == "null":
            return '"null"'
        if kind == "array":
            item = self.value(schema.get("items", True), f"{where}.items")
            low, high = schema.get("minItems", 0), schema.get("maxItems")
            if high == 0:
                return '"[]"'
            rest = repeat(f"{literal(ITEM_SEPARATOR)} {item}", max(low - 1, 0), None if high is None else high - 1)
            body = f"{item} {rest}"
            return self.rule(f'"[" {body} "]"' if low else f'"[" ({body})? "]"')
        return self.object(schema, where)

    def object(self, schema, where):
        properties = schema.get("properties")
        if not properties:
            # `"properties": {}` (a function without parameters) or additionalProperties false: the empty
            # object, which is valid; otherwise any object.
            if "properties" in schema and schema.get("additionalProperties") in (None, False) or \
                    schema.get("additionalProperties", True) is False:
                return '"{}"'
            return "json_object"
        required = set(schema.get("required", []))
        missing = sorted(required - set(properties))
        if missing:
            raise SchemaError(f"{where}.required names {missing[0]!r}, which is not in its properties")
        pairs = [(f"{literal(dumps(name) + KEY_SEPARATOR)} {self.value(sub, f'{where}.properties.{name}')}",
                  name in required) for name, sub in properties.items()]
        # The properties in the schema's order, each optional one present or not: `head` is the body when
        # nothing is written yet, and each property after the first written one comes with its separator.
        # The body always reaches the first required property, so no head after it is ever needed.
        first_required = next((i for i, (_, needed) in enumerate(pairs) if needed), len(pairs) - 1)
        head = ""
        for i in range(first_required, -1, -1):
            pair, needed = pairs[i]
            tail = " ".join(f"{literal(ITEM_SEPARATOR)} {p}" if need else f"({literal(ITEM_SEPARATOR)} {p})?"
                            for p, need in pairs[i + 1:])
            here = f"{pair} {tail}".strip()
            head = here if needed else self.rule(f"{here} | {head or chr(34) * 2}")
        return self.rule(f'"{{" {head} "}}"')

    def ref(self, ref, where):
        if ref in self.refs:
            return self.refs[ref]
        parts = ref.split("/")
        if len(parts) != 3 or parts[0] != "#" or parts[1] not in ("$defs", "definitions"):
            raise SchemaError(f"{where}.$ref: {ref!r}: only references into #/$defs or #/definitions are supported")
        target = (self.root_schema.get(parts[1]) or {}).get(parts[2]) if isinstance(self.root_schema, dict) else None
        if target is None:
            raise SchemaError(f"{where}.$ref: {ref!r} names no definition in the schema")
        name = self.rule("")  # named before its body, so a recursive reference finds it
        self.refs[ref] = name
        self.rules[name] = self.value(target, ref)
        return name


def repeat(item, low, high):
    """`item` low to high times (high None: no limit)."""
    if high is None:
        return f"({item}){{{low},}}" if low else f"({item})*"
    if high == low:
        return f"({item}){{{low}}}" if low else '""'
    return f"({item}){{{low},{high}}}"


def schema_grammar(schema, where="schema"):
    writer = EbnfWriter(schema)
    return writer.grammar(writer.value(schema, where))


def tool_call_grammar(constraint):
    """Qwen tool calls to the constraint's functions, as EBNF."""
    writer = EbnfWriter({})
    calls = []
    for name, parameters in constraint.functions:
        writer.root_schema, writer.refs = parameters, {}  # each function's $defs are its own
        arguments = writer.value(parameters, f"tools[{name}].parameters")
        header = literal('{"name"' + KEY_SEPARATOR + dumps(name) + ITEM_SEPARATOR + '"arguments"' + KEY_SEPARATOR)
        calls.append(f'{header} {arguments} "}}"')
    call = writer.rule(f'"<tool_call>\\n" ({" | ".join(calls)}) "\\n</tool_call>"')
    return writer.grammar(f'{call} ("\\n" {call})*' if constraint.parallel else call)
