#!/bin/sh
# Recompile the constraints files (#12): every transitive dependency pinned, one file per image plus dev,
# so the Makefile's venv and every Dockerfile install exactly what CI tested. Run after changing a pin in
# pyproject.toml (tests/deploy/test_locks.py fails until you do):
#
#   constraints/compile.sh                  # needs uv 0.13.8 (pip install uv==0.13.8), and PyPI
#
# uv 0.13.8: a different uv may resolve the same pins differently; pin it when you recompile. Resolved for
# CPython 3.11 on x86_64 Linux (the images' python:3.11-slim-bookworm and the CI machines).
# torch: resolved against PyTorch's CPU build (--torch-backend cpu, or the torch-*+cpu wheel in the folder
# TORCH_CPU_WHEELS names, for a machine that cannot reach PyTorch's index), so no nvidia-* or triton package (the
# CUDA build's) ever enters a file, and then left out of the files (--no-emit-package torch): its exact pin
# is pyproject's, installed first by the Makefile (the CPU build) and by the worker image (the CUDA build).
# No hashes: pip applies constraints files by version only.
set -eu
cd "$(dirname "$0")/.."
uv="${UV:-uv}"
if [ -n "${TORCH_CPU_WHEELS:-}" ]; then
  torch_cpu="--find-links=$TORCH_CPU_WHEELS"
else
  torch_cpu="--torch-backend=cpu"
fi
compile() {
  name="$1"
  shift
  "$uv" pip compile pyproject.toml "$@" --output-file "constraints/$name.txt" --quiet \
    --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
    "$torch_cpu" --no-emit-package torch --no-emit-package ai-portraits \
    --custom-compile-command constraints/compile.sh
}
compile gateway --extra gateway
compile janitor --extra janitor
compile worker --extra worker
compile dev --extra dev
