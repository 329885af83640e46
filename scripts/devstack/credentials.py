"""S3 credentials and the SeaweedFS identities file that turns SigV4 checking on."""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class S3Credentials:
    access_key: str
    secret_key: str = field(repr=False)  # keep secrets out of logs and pytest failure output


def generate_credentials() -> S3Credentials:
    """Random credentials shaped like AWS ones (20-char access key id, 40-char secret)."""
    return S3Credentials(access_key="AK" + secrets.token_hex(9).upper(), secret_key=secrets.token_urlsafe(30))


def write_s3_identities(path: Path, admin: S3Credentials, *, name: str = "admin") -> Path:
    """Write a SeaweedFS S3 identities file (`weed server -s3.config=PATH`) with one all-powerful identity.

    With an identities file SeaweedFS checks every S3 request's signature; without one it accepts anything.
    """
    identities = {
        "identities": [
            {
                "name": name,
                "credentials": [{"accessKey": admin.access_key, "secretKey": admin.secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Create it owner-only from the start: it holds a secret.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(identities, f, indent=2)
    return path
