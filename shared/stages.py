"""The names of a job's progress stages, in order: one closed vocabulary (#12).

The engine, the runner, the OpenAPI document and the client's progress bar all read this list; the bar adds
the two ends a job's life has around them.

    queued → fetch → decode → detect → frame → select → generate → finish → done

`fetch` is the worker's (the sealed source is read and opened), decode … finish are the engine's; `queued` and
`done` are not reported as stages (a job is queued or done by its state), but the client's bar shows them.
"""

from __future__ import annotations

from enum import StrEnum


class Stage(StrEnum):
    QUEUED = "queued"
    FETCH = "fetch"
    DECODE = "decode"
    DETECT = "detect"
    FRAME = "frame"
    SELECT = "select"
    GENERATE = "generate"
    FINISH = "finish"
    DONE = "done"


# The engine's stages, in the order it runs them (services/worker/engine/pipeline.py).
ENGINE_STAGES: tuple[Stage, ...] = (
    Stage.DECODE,
    Stage.DETECT,
    Stage.FRAME,
    Stage.SELECT,
    Stage.GENERATE,
    Stage.FINISH,
)
# What a job's `stage` field and its `stage` events can hold: the worker's own, then the engine's.
REPORTED_STAGES: tuple[Stage, ...] = (Stage.FETCH, *ENGINE_STAGES)
# A job's whole progress, as the client's bar shows it.
PROGRESS: tuple[Stage, ...] = tuple(Stage)
