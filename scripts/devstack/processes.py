"""Server child processes with their output in a log file, which die with their parent."""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO


class ProcessError(RuntimeError):
    """A managed server exited or did not become ready; the message ends with its log tail."""


_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: ask Linux to SIGKILL it when the parent dies, so a pytest
    # run that is itself SIGKILLed (or crashes) leaves no servers behind. (Strictly: when the *thread* that
    # started it exits — fixtures run on pytest's main thread.)
    assert _LIBC is not None
    _LIBC.prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


_live: set[ManagedProcess] = set()


@atexit.register
def _kill_leftovers() -> None:
    # Normal interpreter exit without teardown (e.g. an interrupted session): don't leave servers running.
    for proc in list(_live):
        proc.kill()


class ManagedProcess:
    """A server child process with its output in a log file.

    It runs in its own session/process group (so Ctrl-C in the terminal reaches pytest, not the server,
    and stop/kill reach the whole group) and, on Linux, dies with its parent.
    """

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        log_path: Path,
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.command = list(command)
        self.log_path = Path(log_path)
        self.cwd = cwd
        self.env = dict(env) if env is not None else None
        self._popen: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> ManagedProcess:
        if self.running:
            raise ProcessError(f"{self.name} is already running (pid {self.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # append: a restart keeps the earlier log
        self._popen = subprocess.Popen(
            self.command,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.cwd,
            env=self.env,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        _live.add(self)
        return self

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen else None

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._popen.poll() if self._popen else None

    def wait_ready(self, check: Callable[[], bool], timeout: float, interval: float = 0.05) -> float:
        """Poll `check` until it returns True; return the seconds waited.

        Fails fast (ProcessError with the log tail) if the process exits, and on timeout. Exceptions from
        `check` count as "not ready yet".
        """
        start = time.monotonic()
        last_error: BaseException | None = None
        while True:
            if not self.running:
                raise ProcessError(f"{self.name} exited with code {self.returncode}\n{self.log_tail()}")
            try:
                if check():
                    return time.monotonic() - start
            except Exception as exc:
                last_error = exc
            if time.monotonic() - start > timeout:
                raise ProcessError(
                    f"{self.name} not ready after {timeout:.0f}s (last error: {last_error!r})\n{self.log_tail()}"
                )
            time.sleep(interval)

    def _signal_group(self, sig: signal.Signals) -> None:
        # Only called before the leader is reaped (returncode is None): until then its pid, and so the group
        # id, cannot have been reused by an unrelated process.
        assert self._popen is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._popen.pid, sig)  # pgid == pid: start_new_session made it a group leader

    def stop(self, grace: float = 30.0) -> int | None:
        """SIGTERM the process group, then SIGKILL after `grace` seconds. Returns the exit code."""
        if self._popen is None:
            return None
        if self._popen.returncode is None:
            self._signal_group(signal.SIGTERM)
            try:
                self._popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
        return self._finish()

    def kill(self) -> int | None:
        """SIGKILL the process group at once (including anything the server forked, e.g. a redis BGSAVE
        child). Returns the exit code."""
        if self._popen is None:
            return None
        if self._popen.returncode is None:
            self._signal_group(signal.SIGKILL)
        return self._finish()

    def _finish(self) -> int | None:
        assert self._popen is not None
        code = self._popen.wait()
        if self._log:
            self._log.close()
            self._log = None
        _live.discard(self)
        return code

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> ManagedProcess:
        return self if self.running else self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.kill()

    def __repr__(self) -> str:
        return f"ManagedProcess({self.name!r}, pid={self.pid}, running={self.running})"
