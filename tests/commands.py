"""`billing-kernel` commands as real processes, started in a fraction of the time.

A command's process spends most of its second importing the kernel. `run_command` asks a
zygote (`zygote.py`: a process of this test process's own that imported the command line
once) to fork a child for each command: the child is a process of its own with the
command's arguments, environment, working directory, standard output and error and exit
code, as `python -m billing_kernel` would be, less the import. `serve` and `worker`, which
tests kill and restart, still start as `python -m billing_kernel`."""

from __future__ import annotations

import atexit
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any


class _Zygote:
    def __init__(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("zygote.py"))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._lock = threading.Lock()

    def _answer(self, timeout: float | None) -> dict[str, Any]:
        """The zygote's next answer; TimeoutError if none comes within `timeout` seconds."""
        assert self._process.stdout is not None
        ready, _, _ = select.select([self._process.stdout], [], [], timeout)
        if not ready:
            raise TimeoutError
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError("the command zygote exited")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def run(
        self, args: list[str], env: dict[str, str], timeout: float
    ) -> subprocess.CompletedProcess[str]:
        with self._lock, tempfile.TemporaryDirectory() as directory:
            out, err = Path(directory, "stdout"), Path(directory, "stderr")
            request = {
                "args": args,
                "env": env,
                "cwd": os.getcwd(),
                "stdout": str(out),
                "stderr": str(err),
            }
            assert self._process.stdin is not None
            self._process.stdin.write(json.dumps(request) + "\n")
            self._process.stdin.flush()
            pid = self._answer(None)["pid"]
            try:
                code = self._answer(timeout)["code"]
            except TimeoutError:
                os.kill(pid, signal.SIGKILL)
                self._answer(None)
                raise subprocess.TimeoutExpired(["billing-kernel", *args], timeout) from None
            return subprocess.CompletedProcess(
                ["billing-kernel", *args], code, out.read_text(), err.read_text()
            )

    def stop(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        self._process.wait(10)


_zygote: _Zygote | None = None


def run_command(
    *args: str, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`billing-kernel *args` with `env` as its whole environment, in a process of its own;
    what it printed and its exit code, as `subprocess.run(..., capture_output=True)` gives."""
    global _zygote
    if _zygote is None:
        _zygote = _Zygote()
        atexit.register(_zygote.stop)
    return _zygote.run(list(args), env, timeout)
