#!/usr/bin/env bash
# Where the daemon's CPU goes under load, stage by stage: a fresh daemon (durable writes,
# every index on), `fctrace bench` flat out for PROFILE_SECONDS, and `perf record` on the
# daemon alone for the middle of that run (call graphs from DWARF, PROFILE_HZ samples a
# second). Prints the share of the daemon's samples per thread kind and per pipeline
# stage (inclusive: a stage's callees count to it), then the top functions, and leaves
# perf.data in PROFILE_DIR for `perf report`. BENCHMARKS.md "Where the CPU goes" was
# written from its output.
#
#   PROTOCOL          otlp-http (default), otlp-grpc or jaeger-thrift
#   PROFILE_SECONDS   length of the bench run (default 40; perf records the middle 20 s)
#   PROFILE_HZ        samples a second per CPU (default 499)
#   PROFILE_DIR       where the data directory and perf.data go (default: a temp dir)
set -euo pipefail

BIN=${BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/fctrace/target}/release/fctrace}
PROTOCOL=${PROTOCOL:-otlp-http}
SECS=${PROFILE_SECONDS:-40}
HZ=${PROFILE_HZ:-499}
DIR=${PROFILE_DIR:-$(mktemp -d)}
command -v perf >/dev/null || { echo "scripts/profile.sh needs perf (Debian: linux-perf)" >&2; exit 1; }
case $PROTOCOL in
  otlp-http) KEY=otlp_http ;;
  otlp-grpc) KEY=otlp_grpc ;;
  jaeger-thrift) KEY=collector_http ;;
  *) echo "PROTOCOL must be otlp-http, otlp-grpc or jaeger-thrift" >&2; exit 2 ;;
esac
json() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$@"; }

data=$DIR/data
rm -rf "$data" && mkdir -p "$data"
"$BIN" serve --data-dir "$data" --collector-http-addr 127.0.0.1:0 --query-addr 127.0.0.1:0 \
  --otlp-http-addr 127.0.0.1:0 --otlp-grpc-addr 127.0.0.1:0 --gateway-addr 127.0.0.1:0 \
  --sampling-addr 127.0.0.1:0 --agent-compact-addr 127.0.0.1:0 --agent-binary-addr 127.0.0.1:0 \
  --jaeger-grpc-addr 127.0.0.1:0 --zipkin-addr 127.0.0.1:0 >"$DIR/daemon.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
for _ in $(seq 300); do [ -s "$data/ports.json" ] && break; sleep 0.05; done
[ -s "$data/ports.json" ] || { echo "fctrace did not start; see $DIR/daemon.log" >&2; exit 1; }

"$BIN" bench --protocol "$PROTOCOL" --endpoint "http://$(json "$data/ports.json" "$KEY")" \
  --data-dir "$data" --duration "${SECS}s" --no-ceilings --json >"$DIR/bench.out" 2>&1 &
BENCH=$!
# the middle of the run: past the first memtable flushes, before the client winds down
LEAD=$(((SECS - 20) / 2))
sleep "$LEAD"
perf record -q -F "$HZ" --call-graph dwarf,16384 -p "$PID" -o "$DIR/perf.data" -- sleep 20 \
  2>"$DIR/perf.log" || true
wait "$BENCH"
tail -n 1 "$DIR/bench.out" | python3 -c '
import json, sys
r = json.load(sys.stdin)
print("bench: {:,.0f} spans/s, {:.2f} CPU s per million spans".format(
    r["spans_per_second"], r["cpu_seconds_per_million_spans"]))'

# One line per sample: the thread, then its frames innermost first.
perf script -i "$DIR/perf.data" -F comm,ip,sym --no-inline 2>/dev/null >"$DIR/stacks.txt"
python3 - "$DIR/stacks.txt" <<'PY'
import collections, re, sys

# Pipeline stages, matched against any frame of a sample (innermost match wins, so a
# zstd call under the span encoder counts to "encode: span chunks (zstd)").
STAGES = [
    ("decode: OTLP protobuf", r"receive::otlp_wire|receive::otlp::span_of|otlp_cost"),
    ("decode: OTLP JSON", r"receive::otlp_json"),
    ("decode: Jaeger thrift", r"receive::thrift|receive::jaeger_thrift"),
    ("body: read, gunzip, budget", r"receive::body|flate2|budget::"),
    ("encode: span chunks (zstd)", r"ZSTD_compress|codec::encode_chunk"),
    ("encode: span chunks (protobuf)", r"codec::wire::put_span"),
    ("encode: postings and terms", r"store::postings::Builder|IndexPrefix|xxh3"),
    ("encode: other", r"store::write::encode"),
    ("writer: group commit (memtable, WAL)", r"store::write::<impl fctrace::store::Store>::commit|DBImpl::WriteImpl|WriteBatchInternal|MemTable::Add"),
    ("writer: merge postings", r"store::postings::merge"),
    ("metrics: journal fold and pending", r"store::journal|store::metrics::write_fold"),
    ("RocksDB: flush", r"FlushJob|BuildTable"),
    ("RocksDB: compaction", r"CompactionJob"),
    ("sampling and admission", r"pipeline::admission|sampling::"),
    ("HTTP and gRPC serving", r"hyper::|h2::|axum::|tonic::|tower::"),
    ("tokio runtime", r"tokio::runtime"),
]
compiled = [(name, re.compile(pat)) for name, pat in STAGES]
threads, stages, leaf = collections.Counter(), collections.Counter(), collections.Counter()
total = 0
comm, frames = None, []

def thread_kind(c):
    if c.startswith("rocksdb:low") or c.startswith("rocksdb:bottom"):
        return "RocksDB compaction threads"
    if c.startswith("rocksdb:high"):
        return "RocksDB flush thread"
    if c.startswith("fctrace-writer") or c.startswith("writer"):
        return "writer thread"
    if c.startswith("fctrace-fold"):
        return "metrics fold thread"
    if c.startswith("tokio") or c.startswith("fctrace"):
        return "request threads (" + c + ")"
    return c

def flush():
    global total
    if comm is None:
        return
    total += 1
    threads[thread_kind(comm)] += 1
    if frames:
        leaf[frames[0]] += 1
    for f in frames:
        hit = next((name for name, rx in compiled if rx.search(f)), None)
        if hit:
            stages[hit] += 1
            return
    stages["other (kernel, allocator, unattributed)"] += 1

for line in open(sys.argv[1], errors="replace"):
    if not line.strip():
        flush(); comm, frames = None, []
    elif not line.startswith(("\t", " ")):
        flush(); comm, frames = line.split()[0], []
    else:
        frames.append(line.strip())
flush()
if total == 0:
    sys.exit("no samples: is perf allowed here (kernel.perf_event_paranoid)?")
pct = lambda n: f"{100 * n / total:5.1f} %"
print(f"\n{total} samples of the daemon\n\nby thread:")
for k, n in threads.most_common():
    print(f"  {pct(n)}  {k}")
print("\nby stage (first matching frame from the innermost):")
for k, n in stages.most_common():
    print(f"  {pct(n)}  {k}")
print("\ntop functions (self):")
for k, n in leaf.most_common(25):
    print(f"  {pct(n)}  {k[:110]}")
PY
echo "perf.data in $DIR" >&2
