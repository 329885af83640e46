"""`portraits submit`: send a photo to a running gateway through the public API and wait for the portrait."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from tqdm import tqdm

STAGES = ("queued", "fetch", "decode", "detect", "frame", "select", "generate", "finish", "done")


class ApiError(RuntimeError):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{message} [{code}, HTTP {status}]")
        self.status, self.code = status, code


@dataclass
class PortraitsClient:
    server: str
    timeout: float = 30.0

    def _check(self, response: requests.Response) -> dict[str, Any]:
        if response.status_code >= 400:
            try:
                error = response.json()["error"]
            except (ValueError, KeyError, TypeError):
                error = {"code": "http_error", "message": response.text[:200] or response.reason}
            raise ApiError(response.status_code, error.get("code", "?"), error.get("message", ""))
        return response.json() if response.content else {}

    def submit(self, photo: Path, style: str = "auto", strength: float | None = None) -> dict[str, Any]:
        form = {"style": style} | ({"strength": str(strength)} if strength is not None else {})
        with photo.open("rb") as handle:
            response = requests.post(f"{self.server}/v1/portraits", files={"image": (photo.name, handle)},
                                     data=form, timeout=self.timeout)
        return self._check(response)

    def status(self, status_url: str) -> dict[str, Any]:
        url = status_url if status_url.startswith("http") else f"{self.server}{status_url}"
        return self._check(requests.get(url, timeout=self.timeout))

    def download(self, url: str) -> bytes:
        response = requests.get(url, timeout=self.timeout)
        if response.status_code != 200:
            raise ApiError(response.status_code, "download_failed", "the portrait could not be downloaded")
        return response.content

    def wait(self, status_url: str, deadline_seconds: float = 300.0, interval: float = 0.5) -> dict[str, Any]:
        """Poll until done or failed, with a progress bar over the pipeline's stages."""
        deadline = time.monotonic() + deadline_seconds
        with tqdm(total=len(STAGES) - 1, desc="queued", unit="stage", bar_format="{desc:<24}{bar}| {n}/{total}") as bar:
            while True:
                job = self.status(status_url)
                stage = "done" if job["status"] == "done" else (job.get("stage") or job["status"])
                if stage in STAGES:
                    bar.n = STAGES.index(stage)
                position = job.get("queue_position")
                bar.set_description(f"{stage} (#{position + 1} in queue)" if position is not None else stage)
                if job["status"] in ("done", "failed"):
                    return job
                if time.monotonic() > deadline:
                    raise ApiError(0, "timeout", f"still {job['status']} after {deadline_seconds:.0f}s")
                time.sleep(interval)
