"""This host's memory read bandwidth, measured in a few hundred milliseconds with numpy.

Token-by-token decoding of a small model is bound by memory bandwidth: every weight is read once per
token. The ceiling ("roofline") for a model is therefore bandwidth / bytes read per token. The
bandwidth is measured, not looked up: one thread per core each reduces its own slice of a buffer much
larger than the caches (numpy releases the GIL inside the reduction). The best of several passes is
kept; the figure is a lower bound of the hardware's peak, so fractions of it are slight overestimates.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

BUFFER_BYTES = 512 * 1024 * 1024  # far beyond any last-level cache
PASSES = 5


def measure_read_bandwidth(threads: int | None = None, buffer_bytes: int = BUFFER_BYTES) -> float:
    """Bytes per second read by `threads` threads (default: every core) streaming through memory."""
    threads = threads or os.cpu_count() or 1
    buffer = np.ones(buffer_bytes, dtype=np.uint8)  # written once, so every page is really mapped
    slices = np.array_split(buffer, threads)
    best = 0.0
    with ThreadPoolExecutor(threads) as pool:
        for _ in range(PASSES):
            started = time.perf_counter()
            list(pool.map(np.max, slices))
            best = max(best, buffer_bytes / (time.perf_counter() - started))
    return best


def decode_ceiling(bandwidth_bytes_per_s: float, bytes_per_token: int) -> float:
    """Tokens per second if decoding did nothing but read the weights once per token."""
    return bandwidth_bytes_per_s / bytes_per_token if bytes_per_token else 0.0
