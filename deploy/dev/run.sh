#!/usr/bin/env bash
# make dev: a local edge stack on loopback — versitygw (S3), the imgedge
# server on it, and the edge adapter's HTTP simulation in front — seeded with
# the sample photos. Ctrl-C stops everything it started.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
work="$root/dist/dev"
S3=127.0.0.1:7070 GRPC=127.0.0.1:50051 EDGE=127.0.0.1:8080 METRICS=127.0.0.1:9464
mkdir -p "$work/s3"

export ROOT_ACCESS_KEY=imgedge-dev ROOT_SECRET_KEY=imgedge-dev-secret
export AWS_ACCESS_KEY_ID=$ROOT_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$ROOT_SECRET_KEY
export AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true

pids=()
cleanup() {
	trap - EXIT INT TERM
	echo; echo "stopping ${#pids[@]} processes"
	kill "${pids[@]}" 2>/dev/null || true
	wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

wait_port() {
	for _ in $(seq 100); do (echo >"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null && return 0; sleep 0.1; done
	echo "nothing listens on $1; see $work/*.log" >&2; exit 1
}
s3() { curl -sf --aws-sigv4 "aws:amz:us-east-1:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "$@"; }

echo "building"
(cd "$root" && go build -o "$work/imgedge-server" ./server && go build -o "$work/imgedge-edge-sim" ./edgeadapter/cmd/imgedge-edge-sim && go build -o "$work/imgedge" ./client/cmd/imgedge)

"$root/.bin/versitygw" --port "$S3" --keep-alive posix "$work/s3" >"$work/versitygw.log" 2>&1 & pids+=($!)
wait_port "$S3"
s3 -X PUT "http://$S3/demo" >/dev/null || true # exists already on a second run
for f in "$root"/deploy/dev/samples/photos/*; do
	s3 -T "$f" "http://$S3/demo/photos/$(basename "$f")" >/dev/null
done

"$work/imgedge-server" --store s3 --s3-endpoint "http://$S3" --s3-path-style \
	--grpc-addr "$GRPC" --metrics-addr "$METRICS" 2>"$work/server.log" & pids+=($!)
wait_port "$GRPC"

printf '{"service": {"address": "%s", "insecure": true}, "formats": ["auto", "jpeg", "webp", "avif", "best"]}\n' "$GRPC" >"$work/edge.json"
"$work/imgedge-edge-sim" --config "$work/edge.json" --listen "$EDGE" --bucket demo \
	--origin s3 --s3-endpoint "http://$S3" 2>"$work/edge.log" & pids+=($!)
wait_port "$EDGE"

cat <<MSG

imgedge dev stack (logs in $work):
  S3 (versitygw)   http://$S3        bucket "demo", key $AWS_ACCESS_KEY_ID
  gRPC service     $GRPC
  metrics          http://$METRICS/metrics
  edge (HTTP)      http://$EDGE

Try:
  curl -s -o /dev/null -D - -H 'Accept: image/avif,image/webp' http://$EDGE/photos/saw.jpg
  curl -s -o /dev/null -D - 'http://$EDGE/photos/scooter.jpg?w=500&q=auto'
  .bin/grpcurl -plaintext $GRPC list
  .bin/grpcurl -plaintext -d '{"bucket":"demo","key":"photos/saw.jpg","variant":{"preset":"small","accept":"image/webp"}}' \\
      $GRPC imgedge.v1.ImageTransformService/EnsureVariant
  $work/imgedge backfill --insecure --addr $GRPC demo photos/ --preset thumbnail

Ctrl-C stops everything.
MSG
wait
