"""Start `python -m service` as a real process on a loopback port, exactly as the README runs it
(used by the benchmark and by the tests)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, models_dir: Path, command: list[str] | None = None, **env: str):
        self.command = command or [sys.executable, "-m", "service"]
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "EMBED_MODELS_DIR": str(models_dir),
            "EMBED_HOST": "127.0.0.1",
            "EMBED_PORT": str(self.port),
            "EMBED_THREADS": "1",
            **{k: str(v) for k, v in env.items()},
        }
        self.proc: subprocess.Popen | None = None
        self.log = b""
        # The server's output goes to a file, not a pipe: nobody reads a pipe while the server runs,
        # and once its 64 KiB filled (an access-log line per request) the server would block on a write.
        self._out = tempfile.TemporaryFile()

    def start(self, timeout: float = 60) -> "Server":
        self.proc = subprocess.Popen(self.command, cwd=REPO, env=self.env, stdout=self._out, stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.output().decode()[-2000:]}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code in (200, 503):
                    r = httpx.get(self.url + "/models", timeout=1, headers=self.auth())
                    if r.status_code == 200 and r.json()["ready"]:
                        return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("server did not become ready")

    def auth(self) -> dict[str, str]:
        key = self.env.get("EMBED_API_KEY")
        return {"Authorization": f"Bearer {key}"} if key else {}

    def terminate(self, timeout: float = 30) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self.log = self.output()
        return code

    def output(self) -> bytes:
        """Everything the server has written to stdout and stderr so far."""
        self._out.seek(0)
        return self._out.read()

    def rss(self) -> int:
        """Resident bytes of the server process."""
        assert self.proc is not None
        return psutil.Process(self.proc.pid).memory_info().rss

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def __enter__(self) -> "Server":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
