#!/usr/bin/env bash
# Debian 12's redis-server 7.0: the one Redis of the tests, the local run, compose and the dev overlay (#24;
# tests/deploy/test_redis_version.py fails if they drift). Installed only when missing and only as root; its
# service is not started (the tests and `make run` start their own servers on loopback). Quick when in place.
set -euo pipefail
cd "$(dirname "$0")/.."
REDIS_MINOR="7.0"  # as scripts/devstack/binaries.py's REDIS_VERSION

if command -v redis-server >/dev/null && redis-server --version | grep -q "v=${REDIS_MINOR//./\\.}\."; then
  exit 0
fi
# shellcheck source=lib/apt_install.sh
. scripts/lib/apt_install.sh
trap '[ -z "$made_policy" ] || rm -f "$made_policy"' EXIT
apt_install redis-server
redis-server --version | grep -q "v=${REDIS_MINOR//./\\.}\." || {
  echo "redis-server is not Redis $REDIS_MINOR: $(redis-server --version)" >&2
  exit 1
}
