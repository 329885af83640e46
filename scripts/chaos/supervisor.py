"""The chaos stacks' supervisor (issue 9, #24): a thread that starts again, within a second, whatever process
exits, as supervisord does for `make run` and the kubelet does for pods; a fault that must hold a process down
says so with `held_down`."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from scripts.devstack import ManagedProcess


@dataclass
class Program:
    """One supervised process: restarted when it exits unless a fault holds it down. `cleanup` runs after it is
    killed (weed leaves unix sockets behind a SIGKILL); `before_start` before it starts again (a Redis that must
    rejoin its set as a replica takes the current primary's address, as the dev overlay's redis.sh does)."""

    name: str
    process: ManagedProcess
    restarts: int = 0
    held: bool = False
    cleanup: Callable[[], None] | None = None
    before_start: Callable[[], None] | None = None

    def kill(self) -> None:
        self.process.kill()
        if self.cleanup is not None:
            self.cleanup()


class Supervisor:
    def __init__(self) -> None:
        self.programs: dict[str, Program] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._supervise, name="chaos-supervisor", daemon=True)

    def add(self, program: Program) -> Program:
        self.programs[program.name] = program
        return program

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop supervising and kill every program, the last added first."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        for program in reversed(list(self.programs.values())):
            with contextlib.suppress(Exception):
                program.kill()

    @contextlib.contextmanager
    def held_down(self, *names: str) -> Iterator[None]:
        """Keep the named programs from being restarted while the body runs (a fault holding them down)."""
        for name in names:
            self.programs[name].held = True
        try:
            yield
        finally:
            for name in names:
                self.programs[name].held = False

    def _supervise(self) -> None:
        while not self._stop.wait(0.2):
            for program in list(self.programs.values()):
                if program.held or program.process.running:
                    continue
                program.kill()  # reap it and close its log (and clean up) before starting again
                if program.before_start is not None:
                    program.before_start()
                program.process.start()
                program.restarts += 1
