"""The worker's torch, for a build on a machine whose pip holds the CPU build but that reaches no PyTorch
index: this machine's pip downloads torch==<pin>+cpu by its own configuration, and a one-package index
(`<root>/torch/<wheel>`, PEP 503 by directory listing) serves it to the build over loopback.

A machine without that wheel builds from PyTorch's own index instead: `make images TORCH_INDEX_URL=...`."""

from __future__ import annotations

import functools
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class TorchWheelError(RuntimeError):
    pass


def download_cpu_wheel(version: str, root: Path) -> Path:
    """torch-<version>+cpu into root/torch/ (kept between runs), through this machine's pip."""
    folder = root / "torch"
    folder.mkdir(parents=True, exist_ok=True)
    found = sorted(folder.glob(f"torch-{version}+cpu-*.whl"))
    if found:
        return found[-1]
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--dest", str(folder)]
    result = subprocess.run([*command, f"torch=={version}+cpu"], capture_output=True, text=True, check=False)
    found = sorted(folder.glob(f"torch-{version}+cpu-*.whl"))
    if result.returncode != 0 or not found:
        raise TorchWheelError(
            f"this machine's pip has no torch {version}+cpu ({result.stderr.strip()[-300:]}); build from PyTorch's "
            "index instead: make images TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu"
        )
    return found[-1]


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def serve(root: Path) -> Iterator[str]:
    """An index URL for root on 127.0.0.1 (the build runs with --network host to reach it)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, name="torch-index", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
