"""`make images` (#22): build every image of the project from its Dockerfiles on a private Docker engine, then
run them (tests/containers: the three images locked down as Kubernetes runs them, and docker compose) and
stop the engine again.

- engine.py: Debian's docker.io started without systemd on a private socket, stopped by its PID.
- base.py: a stand-in for python:3.11-slim-bookworm built from Debian packages, where no registry serves it.
- torch_index.py: the CPU build of torch served to the worker's build as a one-package index.
- build.py: the images, their build arguments and their sizes.
"""
