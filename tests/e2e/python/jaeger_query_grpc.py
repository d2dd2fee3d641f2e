"""A gRPC client of Jaeger's query API (jaeger.api_v3.QueryService) at ADDR=host:port,
with grpcio's generic calls: requests written by hand in protobuf's wire format from the
IDL's field numbers, trace answers read as OpenTelemetry's TracesData (from the
opentelemetry-proto package). Prints what it got as one JSON object."""
import json
import os
import time

import grpc
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData


def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


def ld(num, payload):
    if isinstance(payload, str):
        payload = payload.encode()
    return varint(num << 3 | 2) + varint(len(payload)) + payload


def vi(num, v):
    return varint(num << 3) + varint(v)


def fields(b):
    i = 0
    while i < len(b):
        key, n = 0, 0
        while True:
            c = b[i]; i += 1
            key |= (c & 0x7F) << (7 * n); n += 1
            if c < 0x80:
                break
        num, wt = key >> 3, key & 7
        if wt == 2:
            ln, n = 0, 0
            while True:
                c = b[i]; i += 1
                ln |= (c & 0x7F) << (7 * n); n += 1
                if c < 0x80:
                    break
            yield num, b[i:i + ln]
            i += ln
        elif wt == 0:
            while b[i] & 0x80:
                i += 1
            i += 1
        else:
            raise ValueError(f"wire type {wt}")


ident = lambda b: b
ch = grpc.insecure_channel(os.environ["ADDR"])
M = "/jaeger.api_v3.QueryService/"
out = {}

services = ch.unary_unary(M + "GetServices", ident, ident)(b"", timeout=10)
out["services"] = [v.decode() for n, v in fields(services) if n == 1]

ops = ch.unary_unary(M + "GetOperations", ident, ident)(ld(1, os.environ["SERVICE"]) + ld(2, "server"), timeout=10)
out["operations"] = [
    {("name" if n2 == 1 else "span_kind"): v2.decode() for n2, v2 in fields(v)}
    for n, v in fields(ops) if n == 1
]


def spans_of(stream):
    got = []
    for msg in stream:
        td = TracesData.FromString(msg)
        for rs in td.resource_spans:
            svc = [a.value.string_value for a in rs.resource.attributes if a.key == "service.name"]
            for ss in rs.scope_spans:
                for s in ss.spans:
                    got.append({"trace": s.trace_id.hex(), "name": s.name, "service": svc[0] if svc else "",
                                "attributes": {a.key: a.value.string_value for a in s.attributes}})
    return got


query = (ld(1, os.environ["SERVICE"]) + ld(3, ld(1, "env") + ld(2, "prod"))
         + ld(4, vi(1, int(time.time()) - 3600)) + vi(8, 10))
out["found"] = spans_of(ch.unary_stream(M + "FindTraces", ident, ident)(ld(1, query), timeout=10))
# every service: no service_name
out["found_any"] = spans_of(ch.unary_stream(M + "FindTraces", ident, ident)(ld(1, ld(3, ld(1, "env") + ld(2, "prod"))), timeout=10))
out["trace"] = spans_of(ch.unary_stream(M + "GetTrace", ident, ident)(ld(1, os.environ["TRACE"]), timeout=10))
for name, tid in [("bad_id", "xyz"), ("missing", "ffffffffffffffff")]:
    try:
        spans_of(ch.unary_stream(M + "GetTrace", ident, ident)(ld(1, tid), timeout=10))
        out[name] = "OK"
    except grpc.RpcError as e:
        out[name] = e.code().name
try:
    spans_of(ch.unary_stream(M + "FindTraces", ident, ident)(ld(1, ld(10, b"\x0a\x00")), timeout=10))
    out["filter"] = "OK"
except grpc.RpcError as e:
    out["filter"] = e.code().name
print(json.dumps(out, sort_keys=True))
