"""Many clients at once against a running shim server: does every request get an HTTP answer?

Each client is a thread with its own loopback source address (127.0.x.y), as separate machines would be,
so the server's per-address connection limit does not decide the result. A client sends one chat
completion per round and records what came back: a status (200, or 429 with Retry-After when the queue
is full), or the network failure a client would report (a reset, a refused or dropped connection), which
must never happen. Used by the load test (a few dozen clients) and benchmarks/server_load.py (200 x 3).
"""

from __future__ import annotations

import http.client
import json
import socket
import statistics
import threading
import time
from dataclasses import dataclass, field

NETWORK_FAILURES = (ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine, socket.timeout)


@dataclass
class Outcome:
    status: int | None  # None: no HTTP answer at all
    seconds: float
    retry_after: str | None = None
    failure: str | None = None


@dataclass
class RoundResult:
    outcomes: list[Outcome] = field(default_factory=list)
    server_rss_bytes: int | None = None

    def count(self, status):
        return sum(o.status == status for o in self.outcomes)

    @property
    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status is None]


def source_address(index: int) -> str:
    return f"127.0.{1 + index // 250}.{1 + index % 250}"


def one_request(host: str, port: int, index: int, body: bytes, timeout: float) -> Outcome:
    started = time.perf_counter()
    connection = http.client.HTTPConnection(host, port, timeout=timeout, source_address=(source_address(index), 0))
    try:
        connection.request("POST", "/v1/chat/completions", body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        return Outcome(response.status, time.perf_counter() - started, response.getheader("Retry-After"))
    except NETWORK_FAILURES as e:
        return Outcome(None, time.perf_counter() - started, failure=type(e).__name__)
    finally:
        connection.close()


def server_rss(pid: int | None) -> int | None:
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def run_round(host: str, port: int, clients: int, max_tokens: int = 8, timeout: float = 600.0,
              server_pid: int | None = None) -> RoundResult:
    """`clients` requests at once (released together); waits for every answer."""
    body = json.dumps({"messages": [{"role": "user", "content": "What is a list?"}], "max_tokens": max_tokens}).encode()
    result, lock, gate = RoundResult(), threading.Lock(), threading.Barrier(clients)

    def client(index):
        gate.wait()
        outcome = one_request(host, port, index, body, timeout)
        with lock:
            result.outcomes.append(outcome)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.server_rss_bytes = server_rss(server_pid)
    return result


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def summary(rounds: list[RoundResult]) -> dict:
    outcomes = [o for r in rounds for o in r.outcomes]
    answered = [o.seconds for o in outcomes if o.status == 200]
    return {
        "requests": len(outcomes), "answered_200": len(answered), "refused_429": sum(o.status == 429 for o in outcomes),
        "429_without_retry_after": sum(o.status == 429 and not o.retry_after for o in outcomes),
        "other_status": sorted({o.status for o in outcomes if o.status not in (200, 429, None)}),
        "network_failures": len([o for o in outcomes if o.status is None]),
        "failure_kinds": sorted({o.failure for o in outcomes if o.failure}),
        "p50_s_answered": percentile(answered, 50), "p99_s_answered": percentile(answered, 99),
        "p99_s_429": percentile([o.seconds for o in outcomes if o.status == 429], 99),
        "server_rss_mb_after_each_round": [round(r.server_rss_bytes / 2**20, 1) if r.server_rss_bytes else None
                                           for r in rounds],
    }
