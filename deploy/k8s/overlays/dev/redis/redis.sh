#!/bin/sh
# One Redis of the dev overlay's primary + replica (#24), started as the primary or as a replica of whichever Redis
# is the primary now. Every name is a hostname (redis-0.redis), never a pod IP: IPs change when a pod is replaced.
#
# Env: REDIS_HOSTS (every Redis of the StatefulSet, space-separated), PORTRAITS_REDIS_SENTINELS and
# SENTINEL_MASTER (the services' own settings, from portraits-config).
set -eu

self="$(hostname).redis"

# Ask Redis or a Sentinel a question, giving up after 3 s (a pod not yet there, or not yet listening).
ask() { timeout 3 redis-cli --raw "$@" 2>/dev/null | head -n 1 || true; }

# The Sentinels know the primary once they run: asking them first makes a pod that restarts after a failover
# (pod-0 that was the primary) come back as a replica, not as a second primary.
master=""
for sentinel in $(echo "$PORTRAITS_REDIS_SENTINELS" | tr ',' ' '); do
  master="$(ask -h "${sentinel%:*}" -p "${sentinel##*:}" sentinel get-master-addr-by-name "$SENTINEL_MASTER")"
  [ -z "$master" ] || break
done
# No Sentinel answers (the set's first start, or every Sentinel down): a Redis that says it is the primary; none
# (the first start): pod-0.
if [ -z "$master" ]; then
  for host in $REDIS_HOSTS; do
    if [ "$host" != "$self" ] && [ "$(ask -h "$host" role)" = master ]; then master="$host"; break; fi
  done
fi
[ -n "$master" ] || master="${REDIS_HOSTS%% *}"

# The file is written at every start and lives in /tmp: the Sentinels rewrite it (CONFIG REWRITE) on a failover,
# and the next start asks them again anyway. No password, protected mode off, as before (#24): only the
# services, the Redis pods and the Sentinels may connect (networkpolicies.yaml).
{
  echo "port 6379"
  echo "dir /data"
  echo "appendonly yes"
  echo 'save ""'
  echo "protected-mode no"
  # Sync a rejoining replica at once: Redis 7.0 waits 5 s for more replicas to share it, 5 s more of uploads
  # refused for want of a replica (PORTRAITS_REDIS_WAIT_REPLICAS; measured in the chaos run's failover row).
  echo "repl-diskless-sync-delay 0"
  echo "replica-announce-ip $self"
  if [ "$master" != "$self" ]; then echo "replicaof $master 6379"; fi
} > /tmp/redis.conf
echo "redis.sh: $self starts as $([ "$master" = "$self" ] && echo primary || echo "replica of $master")"
exec redis-server /tmp/redis.conf
