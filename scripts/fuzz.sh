#!/usr/bin/env bash
# `make fuzz`: build the libFuzzer targets in fuzz/ and run each for FUZZ_SECONDS (default
# 120), seeded from ../shared/fixtures/clients and from small hand-made inputs. Crashes
# land in fuzz/artifacts/TARGET/; the summary (executions per target) goes to stdout.
#
#   FUZZ_SECONDS   time per target (default 120)
#   FUZZ_TARGETS   which targets (default: all)
#   FUZZ_RUNS      stop each target after this many executions instead (e.g. 10000000)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
FIXTURES=$ROOT/../shared/fixtures/clients
SECS=${FUZZ_SECONDS:-120}
TARGETS=${FUZZ_TARGETS:-"thrift_binary thrift_compact agent_datagram jaeger_proto zipkin otlp_protobuf otlp_json tracing_headers sampling_strategies query_params cluster_wire"}
# its own target directory: instrumented builds of every crate (RocksDB's C++ included,
# about 20 minutes the first time) must not replace the main build's
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-$HOME/.cache/fctrace/fuzz-target}
# libFuzzer's flags need a nightly compiler; this machine's stable one accepts them so
export RUSTC_BOOTSTRAP=1

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

seed() { # target files...
  local dir=$ROOT/fuzz/corpus/$1
  shift
  mkdir -p "$dir"
  for f in "$@"; do [ -f "$f" ] && cp "$f" "$dir/"; done
  return 0
}
seed thrift_binary "$FIXTURES"/jaeger-thrift-*.bin
seed thrift_compact
seed agent_datagram
seed jaeger_proto
seed zipkin
printf '[{"traceId":"5af7183fb1d4cf5f","id":"352bff9a74ca9ad2","parentId":"6b221d5bc9e6496c","name":"get","kind":"SERVER","timestamp":1556604172355737,"duration":1431,"shared":true,"localEndpoint":{"serviceName":"a","ipv4":"10.0.0.1"},"remoteEndpoint":{"serviceName":"b","port":80},"annotations":[{"timestamp":1556604172355800,"value":"x"}],"tags":{"error":"boom"}}]' \
  >"$ROOT/fuzz/corpus/zipkin/v2.json"
printf '[{"traceId":"a","id":"b","name":"get","annotations":[{"timestamp":1,"value":"cs","endpoint":{"serviceName":"f"}},{"timestamp":2,"value":"sr","endpoint":{"serviceName":"g"}},{"timestamp":3,"value":"ss"},{"timestamp":4,"value":"cr"}],"binaryAnnotations":[{"key":"sa","value":true,"endpoint":{"serviceName":"g"}},{"key":"k","value":1}]}]' \
  >"$ROOT/fuzz/corpus/zipkin/v1.json"
seed otlp_protobuf "$FIXTURES"/otlp-protobuf-node-*.bin "$FIXTURES"/otlp-protobuf-python-*.bin
seed otlp_json "$FIXTURES"/otlp-json-*.bin
seed tracing_headers
seed sampling_strategies "$ROOT"/examples/*.json
seed query_params
seed cluster_wire
# an empty log message and an empty traces answer, the smallest of each that decodes
printf 'FCB1\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0' >"$ROOT/fuzz/corpus/cluster_wire/batch"
printf 'FCT1\0\0\0\0' >"$ROOT/fuzz/corpus/cluster_wire/traces"
printf '5f22f355044a957a:5708f3a95a4ed10:5f22f355044a957a:1\nuser: alice\n' >"$ROOT/fuzz/corpus/tracing_headers/context"
printf '{"default_strategy":{"type":"ratelimiting","param":1},"service_strategies":[{"service":"a","type":"probabilistic","param":0.5,"operation_strategies":[{"operation":"/x","type":"probabilistic","param":0}]}]}' \
  >"$ROOT/fuzz/corpus/sampling_strategies/strategies.json"
printf 'service=a&operation=b&tags=%%7B%%22error%%22%%3A%%22true%%22%%7D&tag=k:v&start=1&end=2&minDuration=1.5ms&maxDuration=2s&limit=20&lookback=1h&query.service_name=a&query.start_time_min=2026-11-21T00:00:00Z&errors_only=true&sort=duration' \
  >"$ROOT/fuzz/corpus/query_params/search"

cd fuzz
if [ -n "${FUZZ_TARGETS:-}" ]; then
  for t in $TARGETS; do cargo fuzz build --release --sanitizer none --debug-assertions "$t"; done
else
  cargo fuzz build --release --sanitizer none --debug-assertions
fi
for t in $TARGETS; do
  mkdir -p "artifacts/$t"
  limit=(-max_total_time="$SECS")
  [ -n "${FUZZ_RUNS:-}" ] && limit=(-runs="$FUZZ_RUNS")
  # headers, strategies and query strings are small; bodies go up to a MiB
  case $t in
    tracing_headers | query_params) max_len=4096 ;;
    *) max_len=1048576 ;;
  esac
  echo "== $t" >&2
  "$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release/$t" "${limit[@]}" -rss_limit_mb=2048 \
    -max_len="$max_len" -artifact_prefix="artifacts/$t/" -print_final_stats=1 "corpus/$t" 2>&1 |
    tee "artifacts/$t/last-run.log" | grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb|==|#.*DONE|SUMMARY|.*deadly signal)" || true
done
