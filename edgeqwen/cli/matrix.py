"""`edgeqwen matrix`: the (model, target) cells for a GitHub Actions matrix, as JSON.

When there are more models and targets than one machine can build, the matrix is how the work fans out:
each cell is one `edgeqwen build` on its own runner (see .github/workflows/bundles.yml).
"""

from __future__ import annotations

import argparse
import json

from edgeqwen.cli.build import target_list
from edgeqwen.errors import ProfileError
from edgeqwen.targets import load_target

EXAMPLES = """Examples:
  edgeqwen matrix                                   # the demo model x every target
  edgeqwen matrix --models Qwen/Qwen3-0.6B,Qwen/Qwen2.5-0.5B-Instruct --targets raspberry-pi-5,android-arm64
"""


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "matrix", help="print a CI build matrix (JSON)", epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--models", default="demo", help="comma-separated Hugging Face ids or folders; 'demo'")
    parser.add_argument("--targets", default="all", help="comma-separated target names, or 'all'")
    parser.set_defaults(handler=handle)


def cell_name(model: str, target: str) -> str:
    return f"{model.rstrip('/').rsplit('/', 1)[-1]}-{target}"


def matrix(models: list[str], targets: list[str]) -> dict:
    return {"include": [{"model": m, "target": t, "name": cell_name(m, t)} for m in models for t in targets]}


def select_targets(spec: str) -> list[str]:
    """'all' means every target in targets/; named targets are taken as asked (and must exist)."""
    names = target_list(spec)
    if not names:
        raise ProfileError("--targets: no target named; give names separated by commas, or 'all'")
    return [load_target(name).name for name in names]


def handle(args) -> int:
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    print(json.dumps(matrix(models, select_targets(args.targets)), sort_keys=True))
    return 0
