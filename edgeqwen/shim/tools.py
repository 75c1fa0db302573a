"""Tool calls, Qwen's way: the request's tools and tool_choice, the history's tool turns, and the model's
`<tool_call>` blocks parsed into OpenAI's `tool_calls`.

Qwen2.5 and Qwen3 are trained on the Hermes format: the chat template lists the tools in the system
turn, the model answers `<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>` (one block per
call, a newline between), and a tool's result comes back as a `tool` turn, which the template wraps in
`<tool_response>`. With tool_choice "required" or a named function the calls are constrained by the
runtime's grammar, so they always parse and their arguments validate against the function's schema.
Under "auto" the model may write anything: a block that does not parse, or calls a function not in
`tools`, stays in the answer as plain text.
"""

import json
import re
import uuid

from .errors import ApiError
from .generation import partial_tag_length
from .json_grammar import SchemaError, check_schema, closed
from .runtime import TOOL_CALL_CLOSE, TOOL_CALL_OPEN, Constraint

FUNCTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # OpenAI's rule for function names


class ToolRequest:
    """The validated tools, tool_choice and parallel_tool_calls of one request."""

    def __init__(self, body):
        tools = body.get("tools")
        self.functions = []  # (name, parameters schema), in the request's order
        self.definitions = []  # as the chat template receives them
        if tools is not None:
            if not isinstance(tools, list):
                raise ApiError(400, "'tools' must be a list of {type: function, function: {...}}", "tools")
            for i, tool in enumerate(tools):
                self.functions.append(self.parse_tool(tool, f"tools[{i}]"))
                self.definitions.append(tool)
        names = [name for name, _ in self.functions]
        duplicate = next((n for n in names if names.count(n) > 1), None)
        if duplicate:
            raise ApiError(400, f"tools: the function {duplicate!r} is defined twice", "tools")
        self.parallel = body.get("parallel_tool_calls", True)
        if not isinstance(self.parallel, bool):
            raise ApiError(400, "'parallel_tool_calls' must be true or false", "parallel_tool_calls")
        self.choice = self.parse_choice(body.get("tool_choice"), names)

    @staticmethod
    def parse_tool(tool, where):
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(tool.get("function"), dict):
            raise ApiError(400, f"{where} must be {{\"type\": \"function\", \"function\": {{\"name\", "
                                "\"description\", \"parameters\"}}", where)
        unknown = sorted(set(tool) - {"type", "function"}) + sorted(set(tool["function"]) - {
            "name", "description", "parameters", "strict"})
        if unknown:
            raise ApiError(400, f"{where}: unknown field {unknown[0]!r}", where)
        function = tool["function"]
        name = function.get("name")
        if not isinstance(name, str) or not FUNCTION_NAME.match(name):
            raise ApiError(400, f"{where}.function.name must be 1-64 letters, digits, _ or -", f"{where}.function.name")
        if not isinstance(function.get("description", ""), str):
            raise ApiError(400, f"{where}.function.description must be a string", f"{where}.function.description")
        parameters = function.get("parameters", {"type": "object", "properties": {}})
        try:
            check_schema(parameters, f"{where}.function.parameters")
        except SchemaError as e:
            raise ApiError(400, str(e), f"{where}.function.parameters") from None
        if not isinstance(parameters, dict) or parameters.get("type", "object") != "object":
            raise ApiError(400, f"{where}.function.parameters must be a JSON Schema of type object",
                           f"{where}.function.parameters")
        if "properties" not in parameters and "additionalProperties" not in parameters:
            parameters = {**parameters, "properties": {}}  # no parameters: the call's arguments are {}
        return name, closed(parameters)

    @staticmethod
    def parse_choice(choice, names):
        if choice is None:
            return "auto" if names else "none"
        if choice in ("auto", "none", "required"):
            if choice != "none" and not names:
                raise ApiError(400, f"tool_choice {choice!r} needs 'tools'", "tool_choice")
            return choice
        if isinstance(choice, dict) and choice.get("type") == "function" and isinstance(choice.get("function"), dict):
            name = choice["function"].get("name")
            if name not in names:
                raise ApiError(400, f"tool_choice names the function {name!r}, which is not in 'tools' "
                                    f"({', '.join(names) or 'none given'})", "tool_choice")
            return name
        raise ApiError(400, "'tool_choice' must be \"auto\", \"none\", \"required\" or "
                            "{\"type\": \"function\", \"function\": {\"name\": ...}}", "tool_choice")

    @property
    def offered(self):
        """Whether the model is shown the tools and its calls are parsed."""
        return self.choice != "none" and bool(self.functions)

    def constraint(self):
        """The grammar for "required" or a named function; None under "auto" and "none"."""
        if self.choice in ("auto", "none"):
            return None
        functions = self.functions if self.choice == "required" else [f for f in self.functions if f[0] == self.choice]
        return Constraint(functions=functions, parallel=self.parallel and self.choice == "required")

    def parser(self):
        return ToolCallParser({name for name, _ in self.functions}, self.parallel) if self.offered else None


def history_tool_calls(calls, where):
    """An assistant message's OpenAI tool_calls in the template's form (arguments as an object)."""
    if not isinstance(calls, list) or not calls:
        raise ApiError(400, f"{where} must be a non-empty list", where)
    rendered = []
    for i, call in enumerate(calls):
        here = f"{where}[{i}]"
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str) or \
                call.get("type", "function") != "function":
            raise ApiError(400, f"{here} must be {{\"id\", \"type\": \"function\", \"function\": {{\"name\", "
                                "\"arguments\"}}", here)
        arguments = function.get("arguments", "{}")
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except (ValueError, RecursionError):  # RecursionError: nested past Python's limit
                raise ApiError(400, f"{here}.function.arguments is not valid JSON", f"{here}.function.arguments") \
                    from None
        rendered.append({"type": "function", "function": {"name": function["name"], "arguments": arguments}})
    return rendered


class ToolCall:
    def __init__(self, name, arguments, pieces):
        self.id = f"call_{uuid.uuid4().hex[:24]}"
        self.name, self.arguments = name, arguments
        self.pieces = pieces  # the arguments as the model wrote them, token by token

    def message(self):
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}


class ToolCallParser:
    """The answer's text in, ("content", text) and ("call", ToolCall) events out, as the text streams.

    Text outside the blocks is passed on at once (all but what could be the start of `<tool_call>`); a
    block is held until it closes, then parsed. So a streamed call arrives whole, and a malformed one can
    still become plain text. With parallel_tool_calls false, `done` is set after the first call.
    """

    CALL = re.compile(r'^\s*\{\s*"name"\s*:\s*("(?:[^"\\]|\\.)*")\s*,\s*"arguments"\s*:\s*(.*)\}\s*$', re.S)

    def __init__(self, names, parallel=True):
        self.names, self.parallel = names, parallel
        self.text, self.pieces, self.inside = "", [], False
        self.calls = []
        self.done = False

    def feed(self, piece):
        events = []
        self.text += piece
        if self.inside:
            self.pieces.append(piece)
        while self.text:
            if not self.inside:
                at = self.text.find(TOOL_CALL_OPEN)
                if at < 0:
                    keep = partial_tag_length(self.text, [TOOL_CALL_OPEN])
                    self.emit(events, self.text[:len(self.text) - keep])
                    self.text = self.text[len(self.text) - keep:]
                    break
                self.emit(events, self.text[:at])
                self.text, self.inside = self.text[at:], True
                self.pieces = [self.text[len(TOOL_CALL_OPEN):]]
            end = self.text.find(TOOL_CALL_CLOSE)
            if end < 0:
                break
            block, self.text = self.text[:end + len(TOOL_CALL_CLOSE)], self.text[end + len(TOOL_CALL_CLOSE):]
            self.inside = False
            call = self.parse(block[len(TOOL_CALL_OPEN):-len(TOOL_CALL_CLOSE)])
            if call is None:
                self.emit(events, block)
            else:
                self.calls.append(call)
                events.append(("call", call))
                if not self.parallel:
                    self.done = True
                    break
        return events

    def finish(self):
        """What is left when generation ends: an unclosed block is plain text."""
        events = []
        self.emit(events, self.text)
        self.text, self.inside = "", False
        return events

    @staticmethod
    def emit(events, text):
        if text:
            events.append(("content", text))

    def parse(self, body):
        match = self.CALL.match(body)
        if not match:
            return None
        try:
            name, arguments = json.loads(match.group(1)), json.loads(match.group(2))
        except ValueError:
            return None
        if name not in self.names or not isinstance(arguments, dict):
            return None
        raw = match.group(2).strip()
        return ToolCall(name, raw, argument_pieces(raw, self.pieces))


def argument_pieces(raw, pieces):
    """`raw` cut where the model's tokens were cut (the pieces fed while the block was open)."""
    joined = "".join(pieces)
    start = joined.find(raw)
    if start < 0:
        return [raw]
    cuts, at = [], 0
    for piece in pieces:
        at += len(piece)
        if start < at < start + len(raw):
            cuts.append(at - start)
    bounds = [0, *cuts, len(raw)]
    return [raw[a:b] for a, b in zip(bounds, bounds[1:]) if b > a]
