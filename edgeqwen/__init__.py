"""edgeqwen: build quantized, runnable Qwen bundles for edge devices."""

__version__ = "0.1.0"
