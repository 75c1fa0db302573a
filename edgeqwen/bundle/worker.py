"""The host side of the shim's worker mode: a bundle driven through its own shim, in a child process.

The drift gate, `edgeqwen eval` and `edgeqwen bench` measure a bundle this way, so what they measure
is the code and the runtime that ship: the bundle's own shim.py, its runtime adapter, its tokenizer and
chat template. The child needs nothing of edgeqwen: the device check runs the same worker under an
emulator with only the runtime installed (`python_command` names that interpreter).

Which shim: a bundle's own (a bundle being built has one before its manifest is written). A bundle of
format_version 1 has a shim without worker mode, and a plain export (another tool's folder, for a
benchmark) has none: those are run by this edgeqwen's shim, assembled into a scratch folder and pointed
at the folder with --bundle. The protocol is described in edgeqwen/shim/worker.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from edgeqwen.bundle.shim_file import write_shim
from edgeqwen.errors import WorkerError
from edgeqwen.processes import die_with_parent

PROTOCOL_VERSION = 1
SHIM = "shim.py"
FIRST_WORKER_FORMAT = 2  # bundles from this format_version on ship a shim with worker mode


def ships_worker(folder: Path) -> bool:
    if not (folder / SHIM).is_file():
        return False
    manifest = folder / "manifest.json"
    if not manifest.is_file():
        return True  # a bundle being built: the shim was written by this edgeqwen
    try:
        return json.loads(manifest.read_text()).get("format_version", 1) >= FIRST_WORKER_FORMAT
    except ValueError:
        return False


class BundleWorker:
    """`with BundleWorker(folder) as worker:` ... worker.logits(tokens), worker.generate(ids, n), ..."""

    def __init__(self, folder: Path, *, device: str | None = "cpu", threads: int | None = None,
                 verify: bool = True, python_command: list[str] | None = None, env: dict[str, str] | None = None):
        """`python_command` runs the shim's Python (default: this one), e.g. an emulated interpreter;
        `env` is the child's whole environment (default: this process's)."""
        self.folder = Path(folder)
        self.scratch = None
        if ships_worker(self.folder):
            shim = self.folder / SHIM
        else:
            self.scratch = tempfile.TemporaryDirectory(prefix="edgeqwen-shim-")
            shim = write_shim(Path(self.scratch.name) / SHIM)
        command = [*(python_command or [sys.executable]), str(shim), "worker", "--bundle", str(self.folder.resolve())]
        if device:
            command += ["--device", device]
        if threads:
            command += ["--threads", str(threads)]
        if not verify:
            command.append("--no-verify")
        self.stderr = tempfile.TemporaryFile()
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr,
                                        env=env, preexec_fn=die_with_parent)
        hello = self._read_answer("hello")
        if hello.get("protocol") != PROTOCOL_VERSION:
            self.close()
            raise WorkerError(f"{shim} speaks worker protocol {hello.get('protocol')!r}; this edgeqwen speaks "
                              f"{PROTOCOL_VERSION}")
        self.info = hello

    def __enter__(self) -> BundleWorker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.process.stdin.write(b'{"op": "quit"}\n')
                self.process.stdin.close()
                self.process.wait(timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
        self.stderr.close()
        if self.scratch:
            self.scratch.cleanup()

    def _stderr_tail(self, lines: int = 12) -> str:
        self.stderr.seek(0)
        text = self.stderr.read().decode(errors="replace")
        return "\n".join(text.strip().splitlines()[-lines:])

    def _read_answer(self, op: str) -> dict:
        line = self.process.stdout.readline()
        if not line:
            self.process.wait()
            raise WorkerError(f"the shim worker for {self.folder} ended (exit {self.process.returncode}) before "
                              f"answering {op!r}:\n{self._stderr_tail()}")
        answer = json.loads(line)
        if not answer.get("ok"):
            raise WorkerError(f"the shim worker for {self.folder} refused {op!r}: {answer.get('error')}")
        return answer

    def request(self, op: str, **fields) -> tuple[dict, dict[str, np.ndarray]]:
        """One request; the answer's JSON and its arrays by name."""
        try:
            self.process.stdin.write(json.dumps({"op": op, **fields}).encode() + b"\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            self.process.wait()
            raise WorkerError(f"the shim worker for {self.folder} has ended (exit {self.process.returncode}):\n"
                              f"{self._stderr_tail()}") from None
        answer = self._read_answer(op)
        arrays = {}
        for spec in answer.get("arrays", []):
            shape = tuple(spec["shape"])
            size = int(np.prod(shape)) * np.dtype(spec["dtype"]).itemsize
            data = self.process.stdout.read(size)
            if len(data) != size:
                raise WorkerError(f"the shim worker for {self.folder} sent {len(data)} of {size} bytes of "
                                  f"{spec['name']}:\n{self._stderr_tail()}")
            arrays[spec["name"]] = np.frombuffer(data, dtype=np.dtype(spec["dtype"]).newbyteorder("<")).reshape(shape)
        return answer, arrays

    def encode(self, texts: list[str]) -> list[list[int]]:
        return self.request("encode", texts=texts)[0]["ids"]

    def render(self, messages: list[dict], think: bool = False, tools: list[dict] | None = None
               ) -> tuple[str, list[int]]:
        answer, _ = self.request("render", messages=messages, think=think, tools=tools)
        return answer["text"], answer["ids"]

    def logits(self, tokens: list[int]) -> tuple[np.ndarray, dict]:
        """Teacher-forced logits, [len(tokens) - 1, vocab] float32 (row i predicts tokens[i + 1]), and facts."""
        answer, arrays = self.request("logits", tokens=[int(t) for t in tokens])
        return arrays["logits"], answer

    def generate(self, prompt_ids: list[int], max_new_tokens: int, **sampling) -> dict:
        return self.request("generate", prompt_ids=[int(t) for t in prompt_ids], max_new_tokens=max_new_tokens,
                            **sampling)[0]

    def stats(self) -> dict:
        return self.request("stats")[0]
