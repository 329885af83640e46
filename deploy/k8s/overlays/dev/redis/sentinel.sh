#!/bin/sh
# One Sentinel of the dev overlay's three (#24): it watches the primary named SENTINEL_MASTER and, with
# SENTINEL_QUORUM of them agreeing it is down, promotes the replica. Hostnames everywhere (resolve-hostnames,
# announce-hostnames): pod IPs change when a pod is replaced, and clients are told the names.
#
# Env: REDIS_HOSTS (every Redis, space-separated), PORTRAITS_REDIS_SENTINELS and SENTINEL_MASTER (the services'
# own settings, from portraits-config), SENTINEL_QUORUM.
set -eu

self="$(hostname).redis-sentinel"

ask() { timeout 3 redis-cli --raw "$@" 2>/dev/null | head -n 1 || true; }

# The primary now: the other Sentinels know it after a failover (a Sentinel's state lives in /tmp and is lost on
# restart); with none up, the Redis that says it is the primary; on the first start, pod-0 (as redis.sh decides).
master=""
for sentinel in $(echo "$PORTRAITS_REDIS_SENTINELS" | tr ',' ' '); do
  [ "${sentinel%:*}" != "$self" ] || continue
  master="$(ask -h "${sentinel%:*}" -p "${sentinel##*:}" sentinel get-master-addr-by-name "$SENTINEL_MASTER")"
  [ -z "$master" ] || break
done
if [ -z "$master" ]; then
  for host in $REDIS_HOSTS; do
    if [ "$(ask -h "$host" role)" = master ]; then master="$host"; break; fi
  done
fi
[ -n "$master" ] || master="${REDIS_HOSTS%% *}"

# `sentinel monitor` refuses a name that does not resolve yet: wait for the primary's pod.
until ask -h "$master" ping | grep -q PONG; do echo "sentinel.sh: waiting for $master"; sleep 2; done

# down-after 5 s: a primary silent that long is down (a pod restart takes longer); failover-timeout 30 s bounds
# a failover that stalls. Sentinel rewrites this file with what it learns, hence /tmp (writable, per pod).
cat > /tmp/sentinel.conf <<CONF
port 26379
dir /tmp
protected-mode no
sentinel resolve-hostnames yes
sentinel announce-hostnames yes
sentinel announce-ip $self
sentinel monitor $SENTINEL_MASTER $master 6379 $SENTINEL_QUORUM
sentinel down-after-milliseconds $SENTINEL_MASTER 5000
sentinel failover-timeout $SENTINEL_MASTER 30000
sentinel parallel-syncs $SENTINEL_MASTER 1
CONF
echo "sentinel.sh: $self watches $master as $SENTINEL_MASTER (quorum $SENTINEL_QUORUM)"
exec redis-server /tmp/sentinel.conf --sentinel
