"""Run `python -m cvi_lab serve ...` as a real subprocess on a free loopback port (SIGKILL tests, CLI)."""

from __future__ import annotations

import os
import pathlib
import socket
import subprocess
import sys
import time
import urllib.request

REPO = pathlib.Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(REPO) + (os.pathsep + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
    e.setdefault("HF_HUB_OFFLINE", "1")
    return e


class ServerProcess:
    def __init__(self, home: pathlib.Path, *overrides: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = home / f"server-{self.port}.log"
        home.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cvi_lab", "serve", f"server.port={self.port}", f"server.home={home}", *overrides],
            cwd=REPO, env=env(), stdout=self._log, stderr=subprocess.STDOUT,
        )

    def wait_ready(self, deadline_s: float = 90.0) -> None:
        """Poll /health until it answers (generous: the machine may be loaded)."""
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.output()}")
            try:
                with urllib.request.urlopen(f"{self.base}/health", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise TimeoutError(f"server not ready after {deadline_s}s:\n{self.output()}")

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log.read_text(errors="replace")

    def stop(self, sig: int, timeout: float = 60.0) -> int:
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.close()

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        if not self._log.closed:
            self._log.close()
