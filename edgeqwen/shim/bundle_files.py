"""The bundle folder: its manifest (every format version this shim reads), its files' hashes, the host's CPUs."""

import hashlib
import json
import os

from .errors import ShimError

# 1: the first bundles; 2: the plan's engine options in their own section, and a shim with worker mode.
# What the shim reads (engine, model id, context, file list) is the same in both.
SUPPORTED_FORMAT_VERSIONS = (1, 2)
MANIFEST = "manifest.json"


def read_json(bundle_dir, name):
    path = os.path.join(bundle_dir, name)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise ShimError(f"cannot read {path}: {e}") from None


def has_manifest(bundle_dir):
    return os.path.isfile(os.path.join(bundle_dir, MANIFEST))


def read_manifest(bundle_dir):
    manifest = read_json(bundle_dir, MANIFEST)
    if manifest.get("format_version") not in SUPPORTED_FORMAT_VERSIONS:
        raise ShimError(f"manifest.json: bundle format_version {manifest.get('format_version')!r} is not one this "
                        f"shim knows ({', '.join(map(str, SUPPORTED_FORMAT_VERSIONS))}); use the shim that came "
                        "with the bundle")
    return manifest


def verify_files(bundle_dir, manifest):
    """Every file the manifest lists, by size and sha256: a damaged or altered bundle is refused."""
    for name, entry in sorted(manifest["files"].items()):
        path = os.path.join(bundle_dir, name)
        if not os.path.isfile(path):
            raise ShimError(f"{name} is listed in manifest.json but missing")
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                digest.update(block)
        if os.path.getsize(path) != entry["size"] or digest.hexdigest() != entry["sha256"]:
            raise ShimError(f"{name} does not match its sha256 in manifest.json: the bundle was changed or damaged "
                            "(copy it again; --no-verify skips this check)")


def usable_cpus():
    """The CPUs this process may run on (a container or `taskset` may allow fewer than the machine has)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def thread_count(configured, requested):
    """The compute threads to ask the runtime for, or None to leave its setting alone.

    `requested` (--threads) wins. Otherwise the bundle's own setting (the target's core count) is kept,
    capped at the CPUs this process may use: more threads than CPUs spin against each other (a 4-thread
    bundle decoded 2.5x slower on 2 CPUs). A folder that sets nothing runs at the runtime's default.
    """
    if requested:
        return requested
    if configured and configured > usable_cpus():
        return usable_cpus()
    return None


def read_text(bundle_dir, name):
    path = os.path.join(bundle_dir, name)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return f.read()


def chat_template(bundle_dir):
    """The model's chat template: chat_template.jinja, else the one in tokenizer_config.json (or None)."""
    template = read_text(bundle_dir, "chat_template.jinja")
    if template is None and os.path.exists(os.path.join(bundle_dir, "tokenizer_config.json")):
        template = read_json(bundle_dir, "tokenizer_config.json").get("chat_template")
    return template if isinstance(template, str) else None
