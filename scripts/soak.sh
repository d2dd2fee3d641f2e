#!/usr/bin/env bash
# `make soak`: one daemon under steady load for SOAK_SECONDS (default 3600) at SOAK_RATE
# spans/s (default 87000, half of the 175k spans/s a 5-minute OTLP/HTTP run sustains), in
# one-minute bench runs. Each minute's line: spans/s, ack p50/p99, the daemon's RSS; at the
# end, the daemon is stopped and `fctrace check` counts the distinct spans in its store,
# against the spans acknowledged. Writes soak-results.md. The binary is copied first, so
# a rebuild during the hour does not change what runs.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/fctrace/target}
DIR=$(mktemp -d)
cp "$CARGO_TARGET_DIR/release/fctrace" "$DIR/fctrace"
BIN=$DIR/fctrace
SECS=${SOAK_SECONDS:-3600}
RATE=${SOAK_RATE:-87000}
OUT=${SOAK_OUT:-soak-results.md}
trap 'kill $PID 2>/dev/null || true; rm -rf "$DIR"' EXIT

"$BIN" serve --data-dir "$DIR/data" --collector-http-addr 127.0.0.1:0 --query-addr 127.0.0.1:0 \
  --otlp-http-addr 127.0.0.1:0 --otlp-grpc-addr 127.0.0.1:0 --gateway-addr 127.0.0.1:0 \
  --sampling-addr 127.0.0.1:0 --agent-compact-addr 127.0.0.1:0 --agent-binary-addr 127.0.0.1:0 \
  --jaeger-grpc-addr 127.0.0.1:0 --zipkin-addr 127.0.0.1:0 >"$DIR/daemon.log" 2>&1 &
PID=$!
for _ in $(seq 300); do [ -s "$DIR/data/ports.json" ] && break; sleep 0.05; done
port() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$DIR/data/ports.json" "$1"; }
OTLP=$(port otlp_http)
QUERY=$(port query)
rss() { awk '/VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$PID/status"; }

{
  echo "| minute | spans/s | ack p50 ms | ack p99 ms | refused | failed | RSS MiB |"
  echo "|---|---|---|---|---|---|---|"
} >"$OUT"
acked=0
minutes=$(((SECS + 59) / 60))
for m in $(seq "$minutes"); do
  line=$("$BIN" bench --protocol otlp-http --endpoint "http://$OTLP" --duration 60s \
    --rate "$RATE" --no-ceilings --json | tail -n 1)
  python3 - "$line" "$m" "$(rss)" >>"$OUT" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
print(f"| {sys.argv[2]} | {r['spans_per_second']:.0f} | {r['ack_p50_ms']:.1f} | {r['ack_p99_ms']:.1f} | {r['refused']} | {r['failed']} | {sys.argv[3]} |")
PY
  acked=$((acked + $(python3 -c "import json,sys; print(json.loads(sys.argv[1])['spans_sent'])" "$line")))
  tail -n 1 "$OUT"
done
counted=$(curl -s "http://$QUERY/metrics" | awk '/^fctrace_spans_stored_total / {print $2}')
kill -TERM "$PID"
wait "$PID" || true
census=$("$BIN" check --data-dir "$DIR/data")
stored=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['spans'])" "$census")
echo >>"$OUT"
echo "acknowledged: $acked spans; in the store (fctrace check): $stored; the daemon's own counter: $counted" | tee -a "$OUT"
[ "$stored" -ge "$acked" ] || { echo "LOST $((acked - stored)) acknowledged spans" | tee -a "$OUT"; exit 1; }
