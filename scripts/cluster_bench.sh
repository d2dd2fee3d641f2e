#!/bin/bash
# `scripts/cluster_bench.sh`: the same OTLP/HTTP load (`fctrace bench`, $SECS s) against one
# daemon, then against an ingest node and a store node sharing one nats-server (all on
# this machine, with the client); prints spans/s, ack p99 and each process's CPU ticks
# (1/100 s) over the run; then times trace-by-id and search on the store node itself
# and through a query node (the fan-out's cost). Needs nats-server (`make test-deps`).
BIN=${BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/fctrace/target}/release/fctrace}
SECS=${SECS:-20}
W=$(mktemp -d)
addrs() { for n in collector-http query otlp-http otlp-grpc gateway sampling agent-compact agent-binary jaeger-grpc zipkin; do echo --$n-addr 127.0.0.1:0; done; }
waitports() { for i in $(seq 200); do [ -f $1/ports.json ] && return; sleep 0.1; done; }
port() { python3 -c "import json;print(json.load(open('$1/ports.json'))['$2'])"; }
ticks() { awk '{print $14+$15}' /proc/$1/stat; }
run() { $BIN bench --endpoint http://$(port $1 otlp_http) --data-dir $1 --duration ${SECS}s --no-ceilings --protocol otlp-http --json 2>/dev/null | tail -1; }
$BIN serve --data-dir $W/single $(addrs) >/dev/null 2>&1 & P=$!
waitports $W/single
A=$(ticks $P); R=$(run $W/single); sleep 2; B=$(ticks $P)
echo "single: $(echo $R | python3 -c 'import json,sys; r=json.load(sys.stdin); print(round(r["spans_per_second"]), "spans/s, ack p99", r.get("ack_p99_ms"), "ms,", r["spans_acknowledged"] if "spans_acknowledged" in r else "", "cpu s/M:", r.get("cpu_seconds_per_million_spans"))') daemon ticks $((B-A))"
kill $P; wait $P
mkdir -p $W/nports
nats-server -js -a 127.0.0.1 -p -1 -sd $W/js --ports_file_dir $W/nports >/dev/null 2>&1 & N=$!
sleep 1
URL=$(python3 -c "import json,glob;print(json.load(open(glob.glob('$W/nports/*.ports')[0]))['nats'][0])")
$BIN serve --data-dir $W/store --role store --nats-url $URL --replicas 1 --node-id store-1 $(addrs) >/dev/null 2>&1 & S=$!
$BIN serve --data-dir $W/ingest --role ingest --nats-url $URL --replicas 1 --node-id ingest-1 $(addrs) >/dev/null 2>&1 & I=$!
$BIN serve --data-dir $W/query --role query --nats-url $URL --replicas 1 --node-id query-1 $(addrs) >/dev/null 2>&1 & Q=$!
waitports $W/store; waitports $W/ingest; waitports $W/query
a=$(ticks $I); b=$(ticks $S); c=$(ticks $N)
R=$(run $W/ingest); sleep 3
a2=$(ticks $I); b2=$(ticks $S); c2=$(ticks $N)
echo "cluster: $(echo $R | python3 -c 'import json,sys; r=json.load(sys.stdin); print(round(r["spans_per_second"]), "spans/s, ack p99", r.get("ack_p99_ms"), "ms; ingest cpu s/M:", r.get("cpu_seconds_per_million_spans"))') ticks ingest $((a2-a)) store $((b2-b)) nats $((c2-c))"

python3 - "$(port $W/store query)" "$(port $W/query query)" <<'PY'
import json, sys, time, urllib.request
store, query = sys.argv[1], sys.argv[2]
get = lambda host, path: json.load(urllib.request.urlopen(f"http://{host}{path}"))
svc = get(store, "/api/services")["data"][0]
ids = [t["traceID"] for t in get(store, f"/api/traces?service={svc}&limit=300")["data"]]
for name, host in (("store node", store), ("query node", query)):
    for what, paths in (("trace by id", [f"/api/traces/{i}" for i in ids]),
                        ("search limit 20", [f"/api/traces?service={svc}&limit=20"] * 100)):
        took = []
        for p in paths:
            t = time.perf_counter(); get(host, p); took.append(time.perf_counter() - t)
        took.sort()
        print(f"{name}: {what}: p50 {took[len(took)//2]*1000:.2f} ms, p99 {took[int(len(took)*0.99)]*1000:.2f} ms ({len(took)} requests)")
PY

kill $I $S $Q; wait $I $S $Q; kill $N; wait $N
rm -rf $W
