"""Server under load: 200 concurrent clients x 3 rounds against `shim.py serve` on the demo bundle.

    .venv/bin/python benchmarks/server_load.py                     # builds the demo Pi 5 bundle if needed
    .venv/bin/python benchmarks/server_load.py --bundle DIR --clients 200 --rounds 3 --max-queue 4

Every request must get an HTTP answer: 200, or 429 with Retry-After when the queue is full; a network
failure (connection reset or refused) is a bug. Prints requests answered, 429s, network failures,
p50/p99 latency of the answered requests and of the 429s, and the server's RSS after each round and at
its peak (flat RSS over rounds: nothing held per refused request). Loopback only.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from edgeqwen.bench.server_load import run_round, summary


def peak_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, help="a bundle folder (default: build the demo Pi 5 bundle)")
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-queue", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--json", action="store_true", help="print the summary as JSON only")
    args = parser.parse_args()

    bundle = args.bundle
    if bundle is None:
        bundle = Path(tempfile.mkdtemp(prefix="edgeqwen-load-")) / "pi5"
        subprocess.run([sys.executable, "-m", "edgeqwen", "build", "--target", "raspberry-pi-5", "--out", bundle,
                        "--no-device-check"], check=True, stdout=subprocess.DEVNULL)
    server = subprocess.Popen([sys.executable, bundle / "shim.py", "serve", "--port", "0", "--quiet",
                               "--max-queue", str(args.max_queue)], stderr=subprocess.PIPE, text=True)
    try:
        match = re.search(r"http://([\d.]+):(\d+)/v1", server.stderr.readline())
        if not match:
            raise SystemExit("the server did not start: " + server.stderr.read())
        host, port = match.group(1), int(match.group(2))
        rounds = []
        for number in range(args.rounds):
            rounds.append(run_round(host, port, args.clients, args.max_tokens, server_pid=server.pid))
            if not args.json:
                print(f"round {number + 1}: {rounds[-1].count(200)} answered, {rounds[-1].count(429)} x 429, "
                      f"{len(rounds[-1].failures)} network failures", file=sys.stderr)
        result = {"clients": args.clients, "rounds": args.rounds, "max_queue": args.max_queue,
                  "max_tokens": args.max_tokens, **summary(rounds), "server_peak_rss_mb": peak_rss_mb(server.pid)}
    finally:
        server.terminate()
        server.wait(timeout=60)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"  {key:32} {value if not isinstance(value, float) else round(value, 3)}")
    return 0 if result["network_failures"] == 0 and not result["429_without_retry_after"] else 1


if __name__ == "__main__":
    sys.exit(main())
