"""The runner's seams (#12): what it needs of the engine (`PortraitRenderer`), how a job's turn ends (`Outcome`,
a frozen value), and the error that asks for a retry."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from shared.errors import JobErrorCode, PortraitError

if TYPE_CHECKING:  # torch underneath: the engine's types are only named here, its module loads in render processes
    from services.worker.engine.pipeline import Portrait, RenderRequest


class TransientError(RuntimeError):
    """Worth retrying later: nothing is wrong with the job itself."""


Progress = Callable[[str], None]  # called with each stage's name as the stage starts


class PortraitRenderer(Protocol):
    """What the runner needs of the engine (services/worker/engine/pipeline.py's `PortraitEngine`, or a test's)."""

    def render(
        self, data: bytes, style: str = ..., strength: float | None = ..., progress: Progress | None = ...
    ) -> Portrait:
        """One photo's portrait; raises the stage's `PortraitError` if it cannot be painted."""
        ...

    def render_batch(
        self, requests: Sequence[RenderRequest], progress: Progress | None = ...
    ) -> list[Portrait | PortraitError]:
        """Each photo's portrait or its `PortraitError`, in order."""
        ...


class OutcomeKind(StrEnum):
    DONE = "done"  # painted, stored, the job done
    SKIPPED = "skipped"  # nothing to do here: finished, erased, leased elsewhere, or rescued during the render
    FAILED = "failed"  # the job failed for good, with a code


@dataclass(frozen=True)
class Outcome:
    """How one job's turn in this process ended (#12: was a string, "failed:<code>")."""

    kind: OutcomeKind
    code: JobErrorCode | None = None  # FAILED only

    @classmethod
    def failed(cls, code: JobErrorCode) -> Outcome:
        return cls(OutcomeKind.FAILED, code)

    @property
    def label(self) -> str:
        """The `outcome` label of portraits_worker_jobs_total: done, skipped or failed:<code> (dashboards and
        alerts read these values)."""
        return f"{self.kind}:{self.code}" if self.code is not None else str(self.kind)

    @property
    def settled(self) -> bool:
        """This process brought the job to an end (done or failed), rather than leaving it to someone else."""
        return self.kind is not OutcomeKind.SKIPPED

    def __str__(self) -> str:
        return self.label


DONE = Outcome(OutcomeKind.DONE)
SKIPPED = Outcome(OutcomeKind.SKIPPED)
