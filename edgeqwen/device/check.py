"""The device check: the finished bundle run in an environment of its target's architecture, with its
runtime installed as the README's checked install path says (edgeqwen.device.install).

    answer   `shim.py "..."` gives an answer (exit 0, text out)
    server   `shim.py serve` answers GET /v1/models and one chat completion, then stops on SIGTERM
    drift    the held-out windows the build measured, teacher-forced on the device's kernels through the
             shim's worker, against the build's full-precision reference logits, gated by the budget
    host     the same windows through the same bundle on this host: how far the device's logits are
             from the host's (mean KL, top-1 agreement, largest absolute difference), so a kernel
             difference shows on its own

device_check.json records what ran where, the commands, the runtime packages installed and the
figures; what could not run is listed with the reason and never reads as passed. Times are kept out of
it (bundles are reproducible); the build summary shows them.
"""

from __future__ import annotations

import http.client
import json
import platform
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeqwen.bundle.manifest import DEVICE_CHECK_FILE
from edgeqwen.bundle.worker import BundleWorker
from edgeqwen.device.environments import HOST_ARCH, Environment, native, prepare
from edgeqwen.device.install import checked_path
from edgeqwen.drift.evaldata import load_eval_data, token_windows
from edgeqwen.drift.evaluate import WINDOW
from edgeqwen.drift.reference import CachedReference
from edgeqwen.drift.gate import check_budget
from edgeqwen.drift.metrics import TokenMetrics, summarize, token_metrics
from edgeqwen.errors import WorkerError
from edgeqwen.plan import BuildPlan
from edgeqwen.schema import to_dict
from edgeqwen.targets import TargetProfile

REPORT_VERSION = 1
REPORT_FILE = DEVICE_CHECK_FILE
PROMPT = "What does os.path.join do?"
ANSWER_TOKENS = 24
# Under emulation a process start (Python, numpy, the runtime's shared libraries) takes 10-20 s and
# decoding is 10-30x slower than native; these bound a run that hangs, not one that is slow.
PROCESS_TIMEOUT_S = 900


@dataclass
class DeviceCheck:
    report: dict  # device_check.json
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return self.report["status"]

    def summary(self) -> dict:
        """What the manifest keeps of the report."""
        r = self.report
        keep = {"status": r["status"], "environment": r.get("environment", {}).get("description"),
                "not_run": r.get("not_run", [])}
        if "drift" in r.get("parts", {}):
            keep["drift"] = {k: r["parts"]["drift"]["summary"][k] for k in ("mean_kld", "top1_agreement", "ppl_ratio")}
            keep["host_agreement"] = r["parts"]["host"]["figures"]
        return keep


def not_run(target: str, reason: str) -> DeviceCheck:
    return DeviceCheck({"report_version": REPORT_VERSION, "target": target, "status": "not run", "reason": reason,
                        "not_run": [{"what": "the whole device check", "reason": reason}]})


def accelerator_not_run(plan: BuildPlan, target: TargetProfile) -> list[dict]:
    """What an emulator or this host cannot stand in for: the bundle's accelerator."""
    if plan.device == "cuda":
        absent = cuda_absent()
        return [{"what": "the CUDA execution provider", "reason": absent}] if absent else []
    if plan.device == "npu" and target.device_check.simulator:
        return [{"what": "the NPU", "reason": "no Snapdragon NPU here; its numerics ran on the Hexagon HTP "
                 "simulator (onnxruntime-qnn), which says nothing of its speed or its driver"}]
    if plan.device == "npu":
        return [{"what": "the NPU", "reason": "no NPU here, and an NPU cannot be emulated; the IR ran on the CPU device"}]
    if plan.device == "gpu":
        return [{"what": "the GPU device", "reason": "no GPU check here; the IR ran on the CPU device"}]
    return []


def cuda_absent() -> str | None:
    """Why CUDA cannot be checked here, or None when a CUDA GPU is visible."""
    try:
        found = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "no CUDA device here (no nvidia-smi)"
    if found.returncode != 0 or "GPU" not in found.stdout:
        return "no CUDA device here"
    return None


def run_check(bundle_dir: Path, plan: BuildPlan, target: TargetProfile, model_dir: Path,
              eval_data: Path | None, eval_tokens: int, reference_memo: dict | None = None) -> DeviceCheck:
    """Run every part; DeviceCheckError when the environment cannot be made (the caller decides)."""
    seconds = {}
    started = time.monotonic()
    path = checked_path(plan, target)
    environment = prepare(target, path.requirement)
    seconds["setup"] = time.monotonic() - started
    shim = bundle_dir / "shim.py"
    device_args = ["--device", path.run_device] if path.run_device else []
    parts = {}

    started = time.monotonic()
    parts["answer"] = check_answer(environment, shim, device_args)
    seconds["answer"] = time.monotonic() - started
    started = time.monotonic()
    parts["server"] = check_server(environment, shim, device_args)
    seconds["server"] = time.monotonic() - started
    started = time.monotonic()
    parts.update(check_drift(environment, bundle_dir, plan, model_dir, eval_data, eval_tokens, reference_memo,
                             worker_device=path.run_device or "cpu"))
    seconds["drift"] = time.monotonic() - started
    if plan.device == "cuda" and cuda_absent() is None:
        started = time.monotonic()
        parts.update(check_cuda(bundle_dir, plan, model_dir, eval_data, eval_tokens, reference_memo))
        seconds["cuda"] = time.monotonic() - started

    missing = accelerator_not_run(plan, target)
    failed = [name for name, part in parts.items() if part["status"] != "passed"]
    status = "failed" if failed else ("partial" if missing else "passed")
    report = {
        "report_version": REPORT_VERSION,
        "target": target.name,
        "status": status,
        "failed": failed,
        "architecture": target.hardware.cpu_arch,
        "environment": {"kind": environment.kind, "description": environment.description,
                        **{k: v for k, v in environment.facts.items() if environment.kind == "native" or k != "host_cpu"}},
        "runtime": {
            "install_path": path.title,
            "readme_commands": list(path.commands),
            "commands": environment.setup_commands,
            "run": path.run_command,
            "installed": environment.installed(),
        },
        "parts": parts,
        "not_run": missing,
    }
    return DeviceCheck(report, seconds)


def run_in(environment: Environment, args: list, timeout: int = PROCESS_TIMEOUT_S) -> subprocess.CompletedProcess:
    return subprocess.run(environment.python(*args), capture_output=True, text=True, timeout=timeout,
                          env=environment.process_env())


def last_lines(text: str, lines: int = 8) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def check_answer(environment: Environment, shim: Path, device_args: list[str]) -> dict:
    try:
        done = run_in(environment, [shim, *device_args, PROMPT, "--max-new-tokens", ANSWER_TOKENS])
    except subprocess.TimeoutExpired:
        return {"status": "failed", "detail": f"no answer within {PROCESS_TIMEOUT_S} s"}
    if done.returncode != 0 or not done.stdout.strip():
        return {"status": "failed", "detail": f"exit {done.returncode}: {last_lines(done.stderr)}"}
    return {"status": "passed", "prompt": PROMPT, "answer": done.stdout.strip()}


def check_server(environment: Environment, shim: Path, device_args: list[str]) -> dict:
    process = subprocess.Popen(environment.python(shim, "serve", *device_args, "--port", "0", "--quiet"),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               env=environment.process_env())
    try:
        line = process.stderr.readline()
        match = re.search(r"http://([\d.]+):(\d+)/v1", line)
        if not match:
            process.kill()
            return {"status": "failed", "detail": f"did not start: {line.strip()} {last_lines(process.stderr.read())}"}
        host, port = match.group(1), int(match.group(2))
        models = http_request(host, port, "GET", "/v1/models")
        body = {"messages": [{"role": "user", "content": PROMPT}], "max_tokens": 8}
        completion = http_request(host, port, "POST", "/v1/chat/completions", body)
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=120)
    except (OSError, ValueError, subprocess.TimeoutExpired, http.client.HTTPException) as e:
        process.kill()
        return {"status": "failed", "detail": f"{type(e).__name__}: {e}"}
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
    ok = models[0] == 200 and completion[0] == 200 and code == 0
    return {"status": "passed" if ok else "failed", "models_status": models[0], "completion_status": completion[0],
            "completion_tokens": completion[1].get("usage", {}).get("completion_tokens"), "exit": code,
            **({} if ok else {"detail": json.dumps(completion[1])[:300]})}


def http_request(host: str, port: int, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    connection = http.client.HTTPConnection(host, port, timeout=PROCESS_TIMEOUT_S)
    connection.request(method, path, body=json.dumps(body) if body else None,
                       headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response.status, json.loads(data) if data else {}


def check_cuda(bundle_dir: Path, plan: BuildPlan, model_dir: Path, eval_data: Path | None, eval_tokens: int,
               reference_memo: dict | None) -> dict:
    """A CUDA bundle on this host's CUDA GPU: a fresh virtualenv with the x86-64 CUDA runtime from PyPI, the
    bundle on its own provider, its drift gated like the CPU's (this host's GPU, not the Orin's)."""
    from edgeqwen.backends import backend_for

    environment = native(HOST_ARCH.get(platform.machine(), platform.machine()),
                         backend_for(plan.engine).runtime_requirement(plan, device="cuda"))
    parts = check_drift(environment, bundle_dir, plan, model_dir, eval_data, eval_tokens, reference_memo,
                        worker_device=None)
    return {"cuda_drift": parts["drift"], "cuda_host": parts["host"]}


def check_drift(environment: Environment, bundle_dir: Path, plan: BuildPlan, model_dir: Path,
                eval_data: Path | None, eval_tokens: int, reference_memo: dict | None,
                worker_device: str | None = "cpu") -> dict:
    """The build's held-out windows on the device's kernels: against the reference, and against the host.

    `worker_device`: the shim's --device in the environment (None: the bundle's own provider)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    data = load_eval_data(eval_data)
    window = min(WINDOW, plan.context_length)
    windows = token_windows(tokenizer, data, eval_tokens, window)
    reference = CachedReference(model_dir, plan.model.weights_sha256, data.sha256, reference_memo)
    reference_logits = reference.windows_logits(windows)  # the drift stage's, from the memo: before any worker starts
    against_reference, against_host, largest = [], [], 0.0
    try:
        with BundleWorker(bundle_dir, device=worker_device, threads=None, python_command=environment.command,
                          env=environment.process_env()) as device, \
                BundleWorker(bundle_dir, device="cpu", verify=False) as host:
            for tokens, expected in zip(windows, reference_logits):
                on_device, _ = device.logits(tokens)
                on_host, _ = host.logits(tokens)
                targets = np.array(tokens[1:])
                against_reference.append(token_metrics(expected, on_device, targets))
                against_host.append(token_metrics(on_host, on_device, targets))
                largest = max(largest, float(np.abs(on_host - on_device).max()))
            runtime = device.info
    except WorkerError as e:
        return {"drift": {"status": "failed", "detail": str(e)}, "host": {"status": "failed", "detail": str(e)}}
    summary = summarize(TokenMetrics.concat(against_reference))
    misses = check_budget(summary, plan.drift)
    agreement = TokenMetrics.concat(against_host)
    figures = {"mean_kld": float(agreement.kld.mean()), "max_kld": float(agreement.kld.max()),
               "top1_agreement": float(agreement.top1_agree.mean()), "max_abs_logit_diff": largest}
    return {
        "drift": {"status": "failed" if misses else "passed", "summary": summary, "budget": to_dict(plan.drift),
                  "misses": [m.describe() for m in misses], "eval_tokens": int(sum(len(w) for w in windows)),
                  "eval_data_sha256": data.sha256, "runtime": {k: runtime[k] for k in ("engine", "runtime_version",
                                                                                     "device", "threads")}},
        # Informational: an emulated core and this host's may choose different kernels; the budget is the gate.
        "host": {"status": "passed", "figures": figures},
    }


def write_report(folder: Path, check: DeviceCheck) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / REPORT_FILE).write_text(json.dumps(check.report, indent=2, sort_keys=True) + "\n")


def summary_line(check: DeviceCheck, seconds: dict[str, float] | None = None) -> str:
    """One line for the build summary and `edgeqwen check`."""
    r = check.report
    if r["status"] == "not run":
        return f"NOT RUN ({r['reason']})"
    took = f" in {sum((seconds or check.seconds).values()):.0f} s" if (seconds or check.seconds) else ""
    text = f"{r['status'].upper() if r['status'] == 'failed' else r['status']} on {r['environment']['description']}{took}"
    parts = r["parts"]
    if parts.get("drift", {}).get("summary"):
        d, h = parts["drift"]["summary"], parts["host"]["figures"]
        text += (f": mean KLD {d['mean_kld']:.4f}, top-1 {d['top1_agreement']:.1%} against the reference; "
                 f"against this host's run KLD {h['mean_kld']:.2g}, top-1 {h['top1_agreement']:.1%}, "
                 f"max |diff| {h['max_abs_logit_diff']:.3g}")
    if r.get("failed"):
        text += "; failed: " + "; ".join(f"{name}: {parts[name].get('detail') or ', '.join(parts[name].get('misses', []))}"
                                         for name in r["failed"])
    if r.get("not_run"):
        text += "; not run: " + "; ".join(f"{item['what']} ({item['reason']})" for item in r["not_run"])
    return text
