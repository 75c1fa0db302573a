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
    damaged = record_problems(manifest)
    if damaged:
        return problems + damaged
    return problems + device_check_problems(bundle_dir, manifest) + parity_problems(manifest)


# The checks' records in a manifest, and the fields `verify` reads from each (name -> type).
RECORD_FIELDS = {
    "parity": {"result": str},
    "device_check": {"status": str},
}


def record_problems(manifest: dict) -> list[str]:
    """Check records that are not what a build writes: the manifest was edited or damaged."""
    problems = []
    for key, fields in RECORD_FIELDS.items():
        record = manifest.get(key)
        if record is None:
            continue
        if not isinstance(record, dict) or any(not isinstance(record.get(f), t) for f, t in fields.items()):
            problems.append(f"{MANIFEST_NAME}: its {key!r} record is damaged (not what a build writes)")
        elif key == "device_check" and not all(isinstance(item, dict) and isinstance(item.get("what"), str)
                                               and isinstance(item.get("reason"), str)
                                               for item in record.get("not_run") or []):
            problems.append(f"{MANIFEST_NAME}: its 'device_check' record is damaged (not_run)")
    return problems


def parity_problems(manifest: dict) -> list[str]:
    """A bundle whose manifest records a failed parity check was not made by a build that gated it."""
    recorded = manifest.get("parity")
    if recorded is None or recorded.get("result") == "passed":
        return []
    return [f"{MANIFEST_NAME}: records a tokenizer and chat-template parity check that did not pass "
            f"({recorded.get('result')!r})"]


def parity_note(manifest: dict) -> str | None:
    """What `verify` says of the parity check, or None for a bundle from before it existed (or a damaged record,
    which `verify_bundle` reports)."""
    recorded = manifest.get("parity")
    return None if recorded is None or record_problems(manifest) else f"tokenizer parity {parity_line(recorded)}"


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
    """What `verify` says of the device check, or None for a bundle from before it existed (or a damaged record,
    which `verify_bundle` reports)."""
    recorded = manifest.get("device_check")
    if recorded is None or record_problems(manifest):
        return None
    status = recorded["status"]
    where = f" on {recorded['environment']}" if recorded.get("environment") else ""
    missing = "; ".join(f"{item['what']} not run ({item['reason']})" for item in recorded.get("not_run") or [])
    return f"device check {status}{where}" + (f"; {missing}" if missing else "")
