"""Send OTLP/gRPC exports that fctrace must refuse, with grpcio (what the Python exporter
uses underneath), and print each answer's status code and details as one JSON object.

    grpc_limits.py HOST:PORT
"""
import json
import sys
import time

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2


def request(n_spans, attributes=0):
    now = time.time_ns()
    spans = [
        trace_pb2.Span(
            trace_id=(7).to_bytes(16, "big"),
            span_id=(i + 1).to_bytes(8, "big"),
            name="limits",
            start_time_unix_nano=now,
            end_time_unix_nano=now + 1000,
            attributes=[
                common_pb2.KeyValue(key=f"k{a}", value=common_pb2.AnyValue(bool_value=True))
                for a in range(attributes)
            ],
        )
        for i in range(n_spans)
    ]
    resource = resource_pb2.Resource(
        attributes=[common_pb2.KeyValue(key="service.name", value=common_pb2.AnyValue(string_value="grpc-limits"))]
    )
    return trace_service_pb2.ExportTraceServiceRequest(
        resource_spans=[trace_pb2.ResourceSpans(resource=resource, scope_spans=[trace_pb2.ScopeSpans(spans=spans)])]
    )


stub = trace_service_pb2_grpc.TraceServiceStub(
    grpc.insecure_channel(sys.argv[1], options=[("grpc.max_send_message_length", 64 << 20)])
)
out = {}
for name, req in [
    ("small", request(5)),
    ("over_rate", request(60)),
    ("too_many_spans", request(100_001)),
    ("too_many_attributes", request(1, attributes=2000)),
]:
    try:
        stub.Export(req, timeout=60)
        out[name] = {"code": "OK"}
    except grpc.RpcError as e:
        out[name] = {"code": e.code().name, "details": e.details()}
print(json.dumps(out))
