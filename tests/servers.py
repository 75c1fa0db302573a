"""A shim server started for a test: `shim.py serve` (or `edgeqwen serve`) on a free port."""

import http.client
import re
import signal
import subprocess


class RunningServer:
    def __init__(self, python, bundle, *args, via_cli=False, quiet=True, env=None):
        command = [python, "-m", "edgeqwen", "serve", bundle] if via_cli else [python, bundle / "shim.py", "serve"]
        self.process = subprocess.Popen([*command, "--port", "0", *(["--quiet"] if quiet else []), *args],
                                        stderr=subprocess.PIPE, text=True, env=env)
        line, self.warnings = self.process.stderr.readline(), []
        while line.startswith("shim.py: WARNING"):
            self.warnings.append(line)
            line = self.process.stderr.readline()
        match = re.search(r"http://([\d.]+):(\d+)/v1", line)
        assert match, line + self.process.stderr.read()
        self.host, self.port = match.group(1), int(match.group(2))
        self.base_url = f"http://{self.host}:{self.port}/v1"

    def request(self, method, path, body=None, headers=None):
        connection = http.client.HTTPConnection(self.host, self.port, timeout=120)
        connection.request(method, path, body=body, headers=headers or {"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, response.read()

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=60)
        return code, self.process.stderr.read()
