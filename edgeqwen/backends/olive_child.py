"""Olive's own command line, run as a child process, with the builder's INT4 step done one MatMul at a time.

    python -m edgeqwen.backends.olive_child run --config olive_config.json --disable_telemetry

is `python -m olive run ...` after `builder_int4.patch_builder()`: Olive drives the workflow as ever, and its
ModelBuilder pass (in this process, on the local system) quantizes what is left of the graph without
copying the model. The patch lives only in this child, never in the edgeqwen process.
"""

from edgeqwen.backends.builder_int4 import patch_builder

if __name__ == "__main__":
    patch_builder()
    from olive.cli.launcher import main

    main(called_as_console_script=False)
