#!/bin/sh
# As the official redis image's entrypoint does: a redis-server started without a configuration file gets
# `--protected-mode no`, since the container's network, not Redis, decides who can connect (compose keeps Redis
# on its own network). Without it Redis refuses every client that is not on the container's loopback.
set -eu
if [ "${1:-}" = redis-server ]; then
  shift
  exec redis-server --protected-mode no "$@"
fi
exec "$@"
