#!/usr/bin/env bash
# A/B of two daemon binaries: a fresh daemon (temp dir, durable writes, every index on),
# `fctrace bench --no-ceilings` for SECS seconds, one JSON line: spans/s, CPU s per million
# spans, ack p99. Alternate binaries back to back: this machine varies ±10 % run to run.
#   scripts/ab.sh BIN [otlp-http|otlp-grpc|jaeger-thrift] [SECS]
set -euo pipefail
B=$1; PROTO=${2:-otlp-http}; SECS=${3:-30}
D=$(mktemp -d /tmp/abXXXX)
$B serve --data-dir $D --collector-http-addr 127.0.0.1:0 --query-addr 127.0.0.1:0 \
  --otlp-http-addr 127.0.0.1:0 --otlp-grpc-addr 127.0.0.1:0 --gateway-addr 127.0.0.1:0 \
  --sampling-addr 127.0.0.1:0 --agent-compact-addr 127.0.0.1:0 --agent-binary-addr 127.0.0.1:0 \
  --jaeger-grpc-addr 127.0.0.1:0 --zipkin-addr 127.0.0.1:0 >$D.log 2>&1 &
PID=$!
for i in $(seq 200); do [ -s $D/ports.json ] && break; sleep 0.05; done
case $PROTO in otlp-http) K=otlp_http;; otlp-grpc) K=otlp_grpc;; jaeger-thrift) K=collector_http;; esac
$B bench --protocol $PROTO --endpoint http://$(jq -r .$K $D/ports.json) --data-dir $D --duration ${SECS}s --no-ceilings --json 2>&1 | tail -1 | jq -c '{sps:.spans_per_second, cpu:.cpu_seconds_per_million_spans, p99:.ack_p99_ms}'
kill $PID; wait $PID 2>/dev/null; rm -rf $D $D.log
