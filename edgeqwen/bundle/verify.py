"""`verify`: a bundle is exactly what its manifest says, no more and no less, and its device check agrees.

It also says what the build's checks recorded: the device check, and the tokenizer and chat-template parity
check (edgeqwen.parity; bundles from before either have no record of it, which is not a problem)."""

from __future__ import annotations

import json
from pathlib import Path

from edgeqwen.bundle.manifest import DEVICE_CHECK_FILE, MANIFEST_NAME, read_manifest
from edgeqwen.hashing import file_problems
from edgeqwen.parity import summary_line as parity_line


def verify_bundle(bundle_dir: Path) -> list[str]:
    """Every problem found, as a sentence naming the file; an empty list means the bundle is intact."""
    manifest = read_manifest(bundle_dir)  # raises on a missing manifest or an unknown format_version
    problems = file_problems(bundle_dir, manifest.get("files", {}), frozenset({MANIFEST_NAME}))
    return problems + device_check_problems(bundle_dir, manifest) + parity_problems(manifest)


def parity_problems(manifest: dict) -> list[str]:
    """A bundle whose manifest records a failed parity check was not made by a build that gated it."""
    recorded = manifest.get("parity")
    if recorded is None or recorded.get("result") == "passed":
        return []
    return [f"{MANIFEST_NAME}: records a tokenizer and chat-template parity check that did not pass "
            f"({recorded.get('result')!r})"]


def parity_note(manifest: dict) -> str | None:
    """What `verify` says of the parity check, or None for a bundle from before it existed."""
    recorded = manifest.get("parity")
    return None if recorded is None else f"tokenizer parity {parity_line(recorded)}"


def device_check_problems(bundle_dir: Path, manifest: dict) -> list[str]:
    """The manifest's device-check verdict against device_check.json (bundles from before the check have neither)."""
    recorded = manifest.get("device_check")
    if recorded is None:
        return []
    path = bundle_dir / DEVICE_CHECK_FILE
    if not path.is_file():
        return [f"{DEVICE_CHECK_FILE}: the manifest records a device check, but the report is missing"]
    try:
        report = json.loads(path.read_text())
    except ValueError as e:
        return [f"{DEVICE_CHECK_FILE}: not valid JSON ({e})"]
    problems = []
    if report.get("status") != recorded.get("status"):
        problems.append(f"{DEVICE_CHECK_FILE}: status {report.get('status')!r}, the manifest says "
                        f"{recorded.get('status')!r}")
    if report.get("status") == "failed":
        problems.append(f"{DEVICE_CHECK_FILE}: the bundle failed its device check ({', '.join(report.get('failed', []))})")
    return problems


def device_check_note(manifest: dict) -> str | None:
    """What `verify` says of the device check, or None for a bundle from before it existed."""
    recorded = manifest.get("device_check")
    if recorded is None:
        return None
    status = recorded["status"]
    where = f" on {recorded['environment']}" if recorded.get("environment") else ""
    missing = "; ".join(f"{item['what']} not run ({item['reason']})" for item in recorded.get("not_run", []))
    return f"device check {status}{where}" + (f"; {missing}" if missing else "")
