"""The Python base image, where no registry serves it.

The Dockerfiles build FROM python:3.11-slim-bookworm. A machine that reaches no container registry (CI here,
an air-gapped cluster's build host) cannot pull it, so `make images` builds a stand-in from Debian packages
with mmdebstrap and imports it under the same name, into its private engine only. The stand-in is Debian 12
"minbase" with Debian's Python 3.11 (3.11.2; the official image builds 3.11 from source) and
`python-is-python3` for the `python` command, with docs, man pages and locales left out as the official
image's Debian base does. /usr is merged by mmdebstrap's own hook (usr-is-merged), not by the usrmerge package,
which would pull in perl (47 MB) that nothing needs: the official image has only perl-base. The machine's own
extra CA certificates go in, so pip inside a build trusts what pip outside it trusts (a TLS-inspecting proxy's
CA, a private mirror's).

An engine that already has the image (a real one, pulled) keeps it: nothing is replaced."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from scripts.containers.engine import Engine, ensure_packages

PYTHON_IMAGE = "python:3.11-slim-bookworm"
SUITE = "bookworm"  # the official image's Debian release
PACKAGES = ("python3", "python3-venv", "python-is-python3", "ca-certificates")
EXCLUDED_PATHS = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/info/*", "/usr/share/locale/*")
STAND_IN_LABEL = "org.opencontainers.image.description=Stand-in for python:3.11-slim-bookworm built by make images"
MERGED_USR_HOOK = Path("/usr/share/mmdebstrap/hooks/merged-usr")
LOCAL_CERTIFICATES = Path("/usr/local/share/ca-certificates")


class BaseImageError(RuntimeError):
    pass


def mmdebstrap_command(tarball: Path) -> list[str]:
    command = ["mmdebstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", "--quiet"]
    command.append(f"--hook-dir={MERGED_USR_HOOK}")
    command += [f"--dpkgopt=path-exclude={path}" for path in EXCLUDED_PATHS]
    if LOCAL_CERTIFICATES.is_dir() and any(LOCAL_CERTIFICATES.iterdir()):
        copy = f'cp -a {LOCAL_CERTIFICATES}/. "$1{LOCAL_CERTIFICATES}/"'
        command.append(f'--customize-hook={copy} && chroot "$1" update-ca-certificates')
    command += [
        '--customize-hook=rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*',
        SUITE,
        str(tarball),
    ]
    return command


def origin(engine: Engine) -> str:
    """'stand-in' (ours), 'pulled' (any other), or '' (none)."""
    if not engine.image_exists(PYTHON_IMAGE):
        return ""
    label = STAND_IN_LABEL.split("=")[0]
    format_ = f'{{{{index .Config.Labels "{label}"}}}}'
    description = engine.docker("image", "inspect", "--format", format_, PYTHON_IMAGE, capture=True).stdout
    return "stand-in" if description.strip() == STAND_IN_LABEL.split("=", 1)[1] else "pulled"


def ensure_python_base(engine: Engine, log_path: Path) -> str:
    """PYTHON_IMAGE in the engine: kept if present, else built and imported (mmdebstrap's output to log_path).
    Returns its origin: 'stand-in' or 'pulled'."""
    if found := origin(engine):
        return found
    ensure_packages(["mmdebstrap"])
    with tempfile.TemporaryDirectory(prefix="portraits-base-") as tmp:
        tarball = Path(tmp) / "base.tar"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("w") as log:
            built = subprocess.run(mmdebstrap_command(tarball), stdout=log, stderr=subprocess.STDOUT, timeout=900)
        if built.returncode != 0:
            tail = "\n".join(log_path.read_text().splitlines()[-30:])
            raise BaseImageError(f"mmdebstrap failed (exit {built.returncode}); the end of {log_path}:\n{tail}")
        engine.docker(
            "import",
            "--change", "ENV LANG=C.UTF-8",
            "--change", f'LABEL {STAND_IN_LABEL.split("=")[0]}="{STAND_IN_LABEL.split("=", 1)[1]}"',
            "--change", 'CMD ["python3"]',
            str(tarball),
            PYTHON_IMAGE,
            capture=True,
        )  # fmt: skip
    return origin(engine)
