"""The bundle's own program: the shim that runs a bundle on the device with nothing but its runtime.

Here it is a small package, one module per concern, that imports only the Python standard library at
module level and the bundle's runtime (onnxruntime_genai, or openvino and openvino_genai; numpy, which
both runtimes depend on) inside the functions that need it. A bundle ships it as one readable file,
`shim.py`, assembled from these modules in the order of MODULES by `edgeqwen.bundle.shim_file`: each
module's names become the file's globals, so the modules import one another by relative imports only
(`from .runtime import Sampling`), which the assembly drops.

    errors        ShimError: what the user can fix, printed as one line
    bundle_files  the bundle folder: manifest (every format version this shim reads), hashes, CPUs
    runtime       the token-level interface every engine adapter implements, and its capabilities
    json_grammar  JSON Schema checks, and schemas as xgrammar EBNF (OpenVINO's constrained decoding)
    ort_genai     ONNX Runtime GenAI adapter
    ort_qnn       ONNX Runtime GenAI on a Qualcomm NPU (the QNN provider), windowed prompts
    openvino      OpenVINO GenAI adapter
    engines       which adapter runs a folder (the device side's one engine decision)
    generation    the generation loop, stop sequences, logprobs, prompt fitting, and Qwen3's <think> split
    tools         Qwen tool calls: tools and tool_choice, tool turns, <tool_call> blocks parsed
    api           the OpenAI request bodies: every field honoured or refused by name
    security      API keys, CORS, and the limits on what one client may hold
    terminal      one answer, and chat through stdin
    server        the OpenAI-compatible HTTP server
    worker        worker mode: JSON lines in, JSON and arrays out (drift, bench and device checks)
    values        command-line number types that name the option and the range it takes
    cli           the command line
"""

MODULES = ("errors", "bundle_files", "runtime", "json_grammar", "ort_genai", "ort_qnn", "openvino", "engines",
           "generation", "tools", "api", "security", "terminal", "server", "worker", "values", "cli")
