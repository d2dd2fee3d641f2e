#!/usr/bin/env bash
# The benchmark suite behind `make bench`: each protocol against a fresh daemon (durable
# writes, every index on), the OTLP/HTTP run long enough to hold ~10M spans and then
# measuring queries and a restart on that store. Prints the table and writes it to
# $BENCH_OUT. About 5 minutes on the 2-core machine of BENCHMARKS.md.
#
#   BIN          the fctrace binary (default: the release build)
#   BENCH_OUT    where the table goes (default: bench-results.md)
#   BENCH_DIR    scratch data directories (default: a temporary directory)
#   BENCH_SECONDS, BENCH_QUERY_SECONDS   run lengths (default 60 and 75)
#   BENCH_DECAY_SECONDS   the flat-out OTLP/HTTP run whose first and last minutes are
#                         compared (default 300)
#   BENCH_BULK_SPANS      spans `fctrace load` writes straight into a store before queries,
#                         a restart and idle memory are measured on it (default 100000000)
set -euo pipefail

BIN=${BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/fctrace/target}/release/fctrace}
OUT=${BENCH_OUT:-bench-results.md}
SECS=${BENCH_SECONDS:-60}
QSECS=${BENCH_QUERY_SECONDS:-75}
DSECS=${BENCH_DECAY_SECONDS:-300}
BULK=${BENCH_BULK_SPANS:-100000000}
QREQ=${BENCH_QUERY_REQUESTS:-500}
SCRATCH=${BENCH_DIR:-$(mktemp -d)}
mkdir -p "$SCRATCH"
RESULTS=$SCRATCH/results.jsonl
: >"$RESULTS"
PID=

command -v curl >/dev/null || { echo "scripts/bench.sh needs curl" >&2; exit 1; }

# The daemons and the bench share an admin token (compaction before measuring disk use).
FCTRACE_ADMIN_TOKEN=${FCTRACE_ADMIN_TOKEN:-bench-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')}
export FCTRACE_ADMIN_TOKEN

json() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$@"; }

serve() { # data dir
  rm -f "$1/ports.json"
  "$BIN" serve --data-dir "$1" --collector-http-addr 127.0.0.1:0 --query-addr 127.0.0.1:0 \
    --otlp-http-addr 127.0.0.1:0 --otlp-grpc-addr 127.0.0.1:0 --gateway-addr 127.0.0.1:0 \
    --sampling-addr 127.0.0.1:0 --agent-compact-addr 127.0.0.1:0 --agent-binary-addr 127.0.0.1:0 \
    --jaeger-grpc-addr 127.0.0.1:0 --zipkin-addr 127.0.0.1:0 >>"$1.log" 2>&1 &
  PID=$!
  for _ in $(seq 300); do [ -s "$1/ports.json" ] && return 0; sleep 0.05; done
  echo "fctrace did not start; see $1.log" >&2
  exit 1
}

stop() {
  kill "$PID"
  while kill -0 "$PID" 2>/dev/null; do sleep 0.05; done
  PID=
}

cleanup() {
  if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; fi
}
trap cleanup EXIT

run() { # results protocol port-key seconds extra...
  local results=$1 proto=$2 key=$3 secs=$4 dir=$SCRATCH/$2
  shift 4
  rm -rf "$dir" && mkdir -p "$dir"
  serve "$dir"
  echo "== $proto, ${secs}s" >&2
  "$BIN" bench --protocol "$proto" --endpoint "http://$(json "$dir/ports.json" "$key")" \
    --data-dir "$dir" --duration "${secs}s" --json "$@" | tee /dev/stderr | tail -n 1 >>"$results"
  stop
}

DECAY=$SCRATCH/decay.jsonl
: >"$DECAY"
run "$DECAY" otlp-http otlp_http "$DSECS" --no-ceilings
run "$RESULTS" jaeger-thrift collector_http "$SECS"
run "$RESULTS" otlp-grpc otlp_grpc "$SECS" --no-ceilings
run "$RESULTS" otlp-http otlp_http "$QSECS" --query --query-requests "$QREQ"

# Start a daemon on an existing store and leave it running: READY_MS until /readyz
# answers, then IDLE_RSS two seconds later.
start_on() { # data dir
  local t0 t1 q
  t0=$(date +%s%N)
  serve "$1"
  q=$(json "$1/ports.json" query)
  until curl -sf "http://$q/readyz" >/dev/null; do sleep 0.01; done
  t1=$(date +%s%N)
  READY_MS=$(((t1 - t0) / 1000000))
  sleep 2
  IDLE_RSS=$(awk '/VmRSS/ {print $2 * 1024}' "/proc/$PID/status")
}

# Start on the store the last run filled.
start_on "$SCRATCH/otlp-http"
stop
echo "{\"restart_ms\": $READY_MS, \"idle_rss_bytes\": $IDLE_RSS}" >>"$RESULTS"

# A store of $BULK spans written by `fctrace load`: start-up, idle memory, then queries.
dir=$SCRATCH/bulk
rm -rf "$dir" && mkdir -p "$dir"
echo "== load $BULK spans" >&2
"$BIN" load --data-dir "$dir" --spans "$BULK" --json | tail -n 1 >"$SCRATCH/load.json"
start_on "$dir"
# The load leaves compaction to do; the queries are measured once it is done (on two
# cores a running compaction is what the tail latencies would measure otherwise).
q=$(json "$dir/ports.json" query)
quiet() {
  curl -s "http://$q/metrics" | grep -q '^fctrace_store_compaction_pending_bytes 0$' &&
    curl -s "http://$q/metrics" | grep -q '^fctrace_store_compactions_running 0$'
}
for _ in $(seq 1800); do quiet && break; sleep 1; done
"$BIN" bench --protocol otlp-http --endpoint "http://$(json "$dir/ports.json" otlp_http)" \
  --data-dir "$dir" --duration 0s --no-ceilings --query --query-requests "$QREQ" --json \
  | tail -n 1 >"$SCRATCH/bulk-query.json"
stop
python3 - "$SCRATCH/load.json" "$SCRATCH/bulk-query.json" "$READY_MS" "$IDLE_RSS" \
  >"$SCRATCH/bulk.json" <<'PY'
import json, sys
load, q = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))["query"]
print(json.dumps({"load": load, "query": q, "restart_ms": int(sys.argv[3]), "idle_rss_bytes": int(sys.argv[4])}))
PY

python3 - "$RESULTS" "$OUT" "$DECAY" "$SCRATCH/bulk.json" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
decay = json.loads(open(sys.argv[3]).read())
bulk = json.loads(open(sys.argv[4]).read())
runs, extra = rows[:-1], rows[-1]
mib = lambda b: f"{b / 1048576:.0f} MiB" if b else "n/a"
def ratio(v, c):
    return f"{100 * v / c:.0f} % of {c:,.0f}" if c else "not measured"
out = ["| protocol | spans/s acked | vs decode alone | vs RocksDB alone | ack p50 / p99 / max | refused | daemon CPU | peak RSS | disk/span |",
       "|---|---|---|---|---|---|---|---|---|"]
for r in runs:
    cpu = (f"{100 * r['cpu_seconds'] / r['seconds']:.0f} % of a core, "
           f"{r['cpu_seconds_per_million_spans']:.1f} s/M spans") if r.get("cpu_seconds") else "n/a"
    disk = f"{r['disk_bytes_per_span']:.0f} B" if r.get("disk_bytes_per_span") else "n/a"
    out.append(f"| {r['protocol']} | {r['spans_per_second']:,.0f} | "
               f"{ratio(r['spans_per_second'], r.get('decode_ceiling_spans_per_second'))} | "
               f"{ratio(r['spans_per_second'], r.get('store_ceiling_spans_per_second'))} | "
               f"{r['ack_p50_ms']:.0f} / {r['ack_p99_ms']:.0f} / {r['ack_max_ms']:.0f} ms | "
               f"{r['refused']} | {cpu} | {mib(r.get('rss_peak_bytes'))} | {disk} |")
q = next((r["query"] for r in runs if r.get("query")), None)
if q:
    out += ["", f"Queries at {q['stored_spans']:,} stored spans:", "",
            "| query | p50 | p99 |", "|---|---|---|",
            f"| trace by id (200 spans) | {q['trace_by_id_p50_ms']:.2f} ms | {q['trace_by_id_p99_ms']:.2f} ms |",
            f"| service + tag (limit 20) | {q['search_p50_ms']:.2f} ms | {q['search_p99_ms']:.2f} ms |",
            f"| service + tag, no match | {q['miss_p50_ms']:.2f} ms | {q['miss_p99_ms']:.2f} ms |",
            f"| tree API (200 spans) | {q['tree_p50_ms']:.2f} ms | {q['tree_p99_ms']:.2f} ms |"]
out += ["", f"Restart on that store to ready: {extra['restart_ms']} ms; idle RSS then: {mib(extra['idle_rss_bytes'])}."]
d = decay
out += ["", f"Decay, OTLP/HTTP flat out for {d['seconds']:.0f} s ({d['spans_sent']:,} spans): "
        f"first {d['window_seconds']:.0f} s {d['first_window_spans_per_second']:,.0f} spans/s "
        f"(ack p99 {d['first_window_ack_p99_ms']:.0f} ms), last {d['window_seconds']:.0f} s "
        f"{d['last_window_spans_per_second']:,.0f} spans/s (ack p99 {d['last_window_ack_p99_ms']:.0f} ms): "
        f"{100 * d['last_window_spans_per_second'] / max(d['first_window_spans_per_second'], 1):.0f} % of the first; "
        f"{d['cpu_seconds_per_million_spans']:.1f} CPU s per million spans."]
b, bq = bulk, bulk["query"]
out += ["", f"A store of {b['load']['spans']:,} spans written by `fctrace load` "
        f"({b['load']['spans_per_second']:,.0f} spans/s, {b['load']['disk_bytes_per_span']:.0f} B a span "
        f"before any compaction): start to ready {b['restart_ms']} ms, idle RSS {mib(b['idle_rss_bytes'])}; "
        f"trace by id p50 {bq['trace_by_id_p50_ms']:.2f} / p99 {bq['trace_by_id_p99_ms']:.2f} ms, "
        f"service + tag p50 {bq['search_p50_ms']:.2f} / p99 {bq['search_p99_ms']:.2f} ms, "
        f"no match p50 {bq['miss_p50_ms']:.2f} / p99 {bq['miss_p99_ms']:.2f} ms, "
        f"tree p50 {bq['tree_p50_ms']:.2f} / p99 {bq['tree_p99_ms']:.2f} ms."]
text = "\n".join(out) + "\n"
open(sys.argv[2], "w").write(text)
print(text)
EOF
echo "table written to $OUT" >&2
