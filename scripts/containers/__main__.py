"""`make images`: build every image, run them (tests/containers), stop the engine.

python -m scripts.containers                 # build, then run the container tests
python -m scripts.containers --build-only    # build and print the sizes
TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu python -m scripts.containers   # torch from PyTorch
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from contextlib import ExitStack

from scripts.containers import base, torch_index
from scripts.containers.build import BuildError, build, images, pinned_version, size_table
from scripts.containers.engine import EXTERNAL_ENGINE_ENV, EngineError, private_engine
from shared.settings import PROJECT_ROOT as ROOT

WORK = ROOT / "var" / "containers"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build-only", action="store_true", help="skip tests/containers")
    parser.add_argument("pytest_args", nargs="*", help="passed to pytest (after --)")
    options = parser.parse_args(argv)
    started = time.perf_counter()

    def stage(message: str) -> None:
        print(f"[images {time.perf_counter() - started:6.1f}s] {message}", flush=True)

    try:
        with ExitStack() as stack:
            stage("starting the Docker engine")
            engine = stack.enter_context(private_engine(WORK / "docker"))
            stage(f"engine up at {engine.host}")
            origin = base.ensure_python_base(engine, WORK / "logs" / "base.log")
            stage(f"base {base.PYTHON_IMAGE}: {origin}")
            torch_url = os.environ.get("TORCH_INDEX_URL", "")
            if not torch_url:
                wheel = torch_index.download_cpu_wheel(pinned_version("torch"), WORK / "torch-index")
                torch_url = stack.enter_context(torch_index.serve(wheel.parent.parent))
                stage(f"torch from this machine's pip: {wheel.name}")
            specs = images(torch_url)
            for spec in specs:
                stage(f"building {spec.tag}")
                seconds = build(engine, spec, WORK / "logs")
                stage(f"built {spec.tag} in {seconds:.0f}s")
            print(size_table(engine, specs, base.PYTHON_IMAGE, origin), flush=True)
            if options.build_only:
                return 0
            stage("running tests/containers")
            env = {**os.environ, EXTERNAL_ENGINE_ENV: engine.host}
            tests = [sys.executable, "-m", "pytest", "tests/containers", "-p", "no:cacheprovider", *options.pytest_args]
            code = subprocess.run(tests, cwd=ROOT, env=env, check=False).returncode
            stage(f"tests/containers exited {code}; stopping the engine")
            return code
    except (EngineError, BuildError, base.BaseImageError, torch_index.TorchWheelError) as error:
        print(f"make images: {error}", file=sys.stderr)
        return 1
    finally:
        stage("done")


if __name__ == "__main__":
    sys.exit(main())
