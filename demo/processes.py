"""Child processes whose output lines are prefixed with their name, stopped in order.

Each child runs in its own session, so Ctrl+C reaches only the runner, which
then stops the children one by one with SIGTERM (the clean-shutdown path of
every script) and SIGKILL after a grace period. Linux also stops them if the
runner itself dies.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
from typing import IO, Optional

_COLORS = ("36", "33", "35", "32", "34", "31")
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Child:
    def __init__(self, name: str, command: list[str], env: dict[str, str], out: IO[str], color: Optional[str]) -> None:
        self.name = name
        self.process = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            text=True, bufsize=1, start_new_session=True, preexec_fn=_die_with_parent,
        )
        self._out = out
        self._color = color
        self._pump = threading.Thread(target=self._copy_lines, name=f"pump-{name}", daemon=True)
        self._pump.start()

    def _copy_lines(self) -> None:
        assert self.process.stdout is not None
        prefix = f"{self.name:<8}| "
        if self._color:
            prefix = f"\x1b[{self._color}m{prefix}\x1b[0m"
        for line in self.process.stdout:
            self._out.write(prefix + line)
            self._out.flush()

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, grace_s: float = 20.0) -> int:
        if self.running():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._pump.join(5)
        return self.process.returncode


class ProcessGroup:
    """Named children started in order and stopped in reverse order."""

    def __init__(self, out: IO[str] = sys.stdout) -> None:
        self.out = out
        self.children: list[Child] = []
        self._colors = _COLORS if out.isatty() and "NO_COLOR" not in os.environ else ()

    def start(self, name: str, command: list[str], env: dict[str, str]) -> Child:
        color = self._colors[len(self.children) % len(self._colors)] if self._colors else None
        child = Child(name, command, env, self.out, color)
        self.children.append(child)
        return child

    def exited(self) -> list[Child]:
        return [child for child in self.children if not child.running()]

    def stop_all(self) -> None:
        for child in reversed(self.children):
            child.stop()
