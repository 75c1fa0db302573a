"""A Python with only a bundle's runtime installed, for the target's architecture: "run this on arch X".

The same check runs in either kind, and both are cached, keyed by everything that makes them:
  native    the target's architecture is this host's: a fresh virtualenv with the runtime from PyPI,
            exactly as the README's commands make one
  emulated  an arm64 target on an x86-64 host: a Debian bookworm arm64 userland (mmdebstrap, extract
            variant: no chroot, no maintainer scripts, no binfmt_misc), its own python3.11 run by
            qemu-aarch64-static with QEMU's model of the target's core, and the runtime's aarch64 wheels
            from PyPI. QEMU user mode cannot start a second foreign program (no binfmt_misc is
            registered, on purpose: Debian's binfmt-support would switch on every foreign format), so pip
            does not run inside: this host's pip installs the same requirement for the device's platform
            tags (`--platform manylinux_2_36_aarch64 ... --only-binary=:all:`), which resolves the same
            wheels pip on the device does.

QEMU 7.2 shows guest programs the host's /proc/cpuinfo, on which onnxruntime's cpuinfo library
crashes; the userland carries a /proc/cpuinfo written from the target profile (QEMU's -L prefix serves
it first), and QEMU_CPU gives the runtime the core's instruction-set extensions (getauxval).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import venv
from dataclasses import dataclass, field
from pathlib import Path

from edgeqwen.demo.assets import cache_root
from edgeqwen.errors import DeviceCheckError
from edgeqwen.targets import TargetProfile

DEBIAN_SUITE = "bookworm"  # Raspberry Pi OS 12 and Debian 12: glibc 2.36, Python 3.11
GUEST_PYTHON = "usr/bin/python3.11"
# pip matches only the platform tags it is given: every manylinux a glibc 2.36 system accepts.
AARCH64_TAGS = tuple(f"manylinux_2_{minor}_aarch64" for minor in range(36, 16, -1)) + ("manylinux2014_aarch64",)
HOST_ARCH = {"x86_64": "x86_64", "AMD64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}
APT_HINT = ("apt-get install qemu-user-static mmdebstrap (as root; on Ubuntu also debian-archive-keyring), "
            "or build with --no-device-check")


@dataclass
class Environment:
    kind: str  # "native" or "emulated"
    architecture: str  # the target's: "arm64" or "x86_64"
    description: str  # for people: what ran the bundle
    command: list[str]  # runs this environment's Python
    env: dict[str, str]
    site: Path  # where the runtime is installed
    setup_commands: list[str]  # how it was made
    facts: dict = field(default_factory=dict)

    def python(self, *args) -> list[str]:
        return [*self.command, *map(str, args)]

    def process_env(self) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
        return {**base, "PYTHONNOUSERSITE": "1", **self.env}

    def installed(self) -> dict[str, str]:
        """Every distribution installed in the environment, with its version (read from its metadata)."""
        found = {}
        for metadata in sorted(self.site.glob("*.dist-info/METADATA")):
            fields = dict(line.split(": ", 1) for line in metadata.read_text(errors="replace").splitlines()[:20]
                          if ": " in line)
            if "Name" in fields:
                found[fields["Name"].lower()] = fields.get("Version", "?")
        return found


def prepare(target: TargetProfile, requirement: str) -> Environment:
    """The environment for `target` with `requirement` installed: made once, then taken from the cache."""
    host = HOST_ARCH.get(platform.machine(), platform.machine())
    arch = target.hardware.cpu_arch
    if target.device_check.simulator:
        if host != "x86_64":
            raise DeviceCheckError(f"target {target.name!r} is checked on the {target.device_check.simulator} "
                                   f"simulator, which runs on x86-64 Linux; this host is {host}")
        return native(host, requirement)
    if arch == host:
        return native(arch, requirement)
    if arch == "arm64" and host == "x86_64":
        return emulated(target, requirement)
    raise DeviceCheckError(f"target {target.name!r} is {arch}; this {host} host can check x86_64 natively and arm64 "
                           "under QEMU, not this")


def environments_dir() -> Path:
    return Path(os.environ.get("EDGEQWEN_DEVICE_ENVS", cache_root() / "device-envs"))


def digest(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def made_once(final: Path, make) -> bool:
    """Make `final` with make(staging) in a sibling folder and rename it into place; False if it existed."""
    if final.is_dir():
        return False
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        make(staging)
        staging.rename(final)
    except OSError:
        if not final.is_dir():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return True


def run_setup(command: list[str], what: str, timeout: int = 1800) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        lines = [line for line in (done.stderr or done.stdout).strip().splitlines() if not line.startswith("WARNING:")]
        tail = "\n".join(lines[-12:])
        raise DeviceCheckError(f"{what} failed (exit {done.returncode}): {' '.join(command)}\n{tail}")


def native(arch: str, requirement: str) -> Environment:
    version = platform.python_version_tuple()
    folder = environments_dir() / f"native-{arch}-py{version[0]}{version[1]}-{digest(requirement)}"
    commands = ["python3 -m venv qwen-env", f"qwen-env/bin/python -m pip install {requirement}"]

    def make(staging: Path) -> None:
        venv.create(staging / "venv", with_pip=True, symlinks=True)
        python = staging / "venv" / "bin" / "python"
        run_setup([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *requirement.split()],
                  f"installing {requirement} into a fresh virtualenv")

    made_once(folder, make)
    python = folder / "venv" / "bin" / "python"
    site = next((folder / "venv" / "lib").glob("python3*/site-packages"))
    return Environment("native", arch, f"native {arch} ({host_cpu()}), a fresh virtualenv",
                       [str(python)], {}, site, commands, {"host_cpu": host_cpu(), "python": platform.python_version()})


def emulated(target: TargetProfile, requirement: str) -> Environment:
    for tool in ("qemu-aarch64-static", "mmdebstrap"):
        if shutil.which(tool) is None:
            raise DeviceCheckError(f"the device check of {target.name} runs arm64 under QEMU, and {tool} is not "
                                   f"installed: {APT_HINT}")
    check = target.device_check
    cpuinfo = cpuinfo_text(target)
    root = environments_dir() / f"debian-{DEBIAN_SUITE}-arm64-{digest(cpuinfo)}"
    site = environments_dir() / f"site-arm64-cp311-{digest(requirement, AARCH64_TAGS)}"
    debootstrap = ["mmdebstrap", "--variant=extract", "--architectures=arm64",
                   "--include=python3.11,libstdc++6,ca-certificates", DEBIAN_SUITE]
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--only-binary=:all:",
           "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311",
           *[arg for tag in AARCH64_TAGS for arg in ("--platform", tag)]]

    def make_root(staging: Path) -> None:
        run_setup([*debootstrap, str(staging / "root")], "making the arm64 Debian userland (mmdebstrap)")
        (staging / "root" / "proc").mkdir(exist_ok=True)
        (staging / "root" / "proc" / "cpuinfo").write_text(cpuinfo)

    def make_site(staging: Path) -> None:
        try:
            run_setup([*pip, "--target", str(staging / "site"), requirement],
                      f"installing {requirement} for linux/aarch64 (CPython 3.11)")
        except DeviceCheckError as e:
            raise DeviceCheckError(f"{e}\n{offered_for_aarch64(requirement)}") from None

    made_once(root, make_root)
    made_once(site, make_site)
    root, site = root / "root", site / "site"
    qemu = shutil.which("qemu-aarch64-static")
    version = subprocess.run([qemu, "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    return Environment(
        "emulated", "arm64",
        f"emulated {target.hardware.cpu.split(' @')[0]} ({version.split(' (')[0]}, -cpu {check.qemu_cpu})",
        [qemu, "-L", str(root), str(root / GUEST_PYTHON)],
        {"QEMU_CPU": check.qemu_cpu, "PYTHONPATH": str(site)},
        site,
        [" ".join([*debootstrap, "ROOT"]) + "  (then ROOT/proc/cpuinfo from the target profile)",
         " ".join(["pip", *pip[3:], "--target", "SITE", requirement]),
         f"QEMU_CPU={check.qemu_cpu} PYTHONPATH=SITE qemu-aarch64-static -L ROOT ROOT/{GUEST_PYTHON} shim.py ..."],
        {"qemu": version, "qemu_cpu": check.qemu_cpu, "debian": DEBIAN_SUITE, "python": "3.11"},
    )


def cpuinfo_text(target: TargetProfile) -> str:
    """/proc/cpuinfo as the device shows it (the cores, their part number and features)."""
    check = target.device_check
    block = ("processor\t: {n}\nBogoMIPS\t: 108.00\nFeatures\t: {features}\nCPU implementer\t: 0x41\n"
             "CPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: {part}\nCPU revision\t: 0\n")
    return "\n".join(block.format(n=n, features=check.cpu_features, part=check.cpu_part)
                     for n in range(target.hardware.cores)) + "\n"


def offered_for_aarch64(requirement: str) -> str:
    """What PyPI has of the requirement's package for linux/aarch64, for the error message."""
    package = requirement.split("==")[0].split(">=")[0].strip()
    listed = subprocess.run([sys.executable, "-m", "pip", "index", "versions", package, "--only-binary=:all:",
                             "--python-version", "3.11", "--implementation", "cp",
                             *[arg for tag in AARCH64_TAGS for arg in ("--platform", tag)]],
                            capture_output=True, text=True, timeout=300)
    if listed.returncode != 0:
        return f"PyPI has no linux/aarch64 wheel of {package} for CPython 3.11"
    versions = [line for line in listed.stdout.splitlines() if "versions" in line.lower()]
    return f"PyPI's linux/aarch64 wheels of {package} for CPython 3.11: " + (versions[0].split(":", 1)[-1].strip()
                                                                          if versions else "none")


def host_cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
