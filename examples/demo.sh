#!/usr/bin/env bash
# The demo stack without Docker: fctrace with the example functions spawned as processes,
# and the caller invoking them. Ctrl-C stops everything cleanly.
#
# make demo runs this after building. Settings (all optional):
#   FCTRACE_BIN    the fctrace binary            (default: $CARGO_TARGET_DIR/release/fctrace)
#   DEMO_DATA      data directory                (default: ./data/demo)
#   DEMO_SECONDS   stop after this many seconds  (default: run until Ctrl-C)
#   FCTRACE_*      any daemon setting, e.g. FCTRACE_QUERY_ADDR=127.0.0.1:0
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${FCTRACE_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/fctrace/target}/release/fctrace}"
DATA="${DEMO_DATA:-./data/demo}"
mkdir -p "$DATA"
rm -f "$DATA/ports.json"

"$BIN" serve --data-dir "$DATA" --functions examples/functions.toml \
  --sampling-strategies examples/demo-strategies.json &
daemon=$!
caller=""
prom=""
stop() {
  trap - INT TERM EXIT
  [ -n "$caller" ] && kill "$caller" 2>/dev/null || true
  [ -n "$prom" ] && kill "$prom" 2>/dev/null || true
  kill -TERM "$daemon" 2>/dev/null || true
  wait "$daemon" 2>/dev/null || true
}
trap 'stop; exit 0' INT TERM
trap stop EXIT

for _ in $(seq 1 300); do
  [ -s "$DATA/ports.json" ] && break
  kill -0 "$daemon" 2>/dev/null || { echo "fctrace did not start" >&2; exit 1; }
  sleep 0.1
done
port() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$DATA/ports.json" "$1"; }
gateway="http://$(port gateway)"
query="http://$(port query)"
echo
echo "fctrace is up. Open the UI: $query/"
echo "  invoke gateway  $gateway"
echo "  Jaeger API      $query/api/traces?service=FC:demo/python"
# Prometheus (Debian's `prometheus` package) scraping the function series, when installed.
if command -v prometheus >/dev/null; then
  mkdir -p "$DATA/prometheus"
  sed "s|fctrace:16686|$(port query)|" examples/prometheus/prometheus.yml >"$DATA/prometheus/prometheus.yml"
  cp examples/prometheus/alerts.yml "$DATA/prometheus/"
  prometheus --config.file="$DATA/prometheus/prometheus.yml" \
    --storage.tsdb.path="$DATA/prometheus/data" \
    --web.listen-address="${DEMO_PROMETHEUS_ADDR:-127.0.0.1:9090}" >"$DATA/prometheus/log" 2>&1 &
  prom=$!
  echo "  Prometheus      http://${DEMO_PROMETHEUS_ADDR:-127.0.0.1:9090}/ (faas_* series; rules in examples/prometheus/alerts.yml)"
else
  echo "  (install Debian's prometheus package to have make demo start a Prometheus scraping fctrace)"
fi
echo "Press Ctrl-C to stop."
echo

python3 examples/caller/caller.py "$gateway" ${DEMO_SECONDS:+"$DEMO_SECONDS"} &
caller=$!
wait "$caller" || true
caller=""
