# Sourced by the install scripts: `apt_install PACKAGE` installs a Debian package when run as root, without
# starting any service it brings (prometheus would listen on :9090, redis-server on :6379), and asks for root
# otherwise. The caller's EXIT trap must remove "$made_policy" when it is set.
made_policy=""
apt_install() {
  local package="$1"
  if [ "$(id -u)" -ne 0 ]; then
    echo "$package is missing: run as root, or: sudo apt-get install --no-install-recommends $package" >&2
    exit 1
  fi
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    made_policy=/usr/sbin/policy-rc.d
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends "$package" \
    || { apt-get update -q && apt-get install -y -q --no-install-recommends "$package"; }
}
