"""OpenTelemetry's Python Jaeger gRPC exporter (jaeger.api_v2 CollectorService/PostSpans)
sending to COLLECTOR=host:port: a parent and a child span with attributes, an event and
a link; prints the trace id as 32 hex digits. With MODE=bad, the exporter's own generated
stubs post a span whose trace id is 8 bytes and print the gRPC status code and details."""
import os
import sys

from opentelemetry import trace

if os.environ.get("MODE") == "bad":
    import grpc
    from opentelemetry.exporter.jaeger.proto.grpc.gen import (
        collector_pb2,
        collector_pb2_grpc,
        model_pb2,
    )

    stub = collector_pb2_grpc.CollectorServiceStub(
        grpc.insecure_channel(os.environ["COLLECTOR"])
    )
    bad = model_pb2.Span(trace_id=b"\x01" * 8, span_id=b"\x02" * 8, operation_name="bad")
    req = collector_pb2.PostSpansRequest(
        batch=model_pb2.Batch(spans=[bad], process=model_pb2.Process(service_name="bad"))
    )
    try:
        stub.PostSpans(req, timeout=10)
        print("OK")
    except grpc.RpcError as e:
        print(e.code().name, e.details())
    sys.exit(0)

from opentelemetry.exporter.jaeger.proto.grpc import JaegerExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

provider = TracerProvider(
    resource=Resource.create({"service.name": os.environ.get("SERVICE", "py-jaeger-grpc")})
)
trace.set_tracer_provider(provider)
finished = InMemorySpanExporter()
provider.add_span_processor(SimpleSpanProcessor(finished))
tracer = provider.get_tracer("jaeger-grpc-e2e")
with tracer.start_as_current_span("grpc-parent") as parent:
    with tracer.start_as_current_span(
        "grpc-child", links=[trace.Link(parent.get_span_context(), {"why": "batch"})]
    ) as child:
        child.set_attribute("db.system", "postgresql")
        child.set_attribute("db.rows", 3)
        child.add_event("rows-read", {"n": 3})
exporter = JaegerExporter(collector_endpoint=os.environ["COLLECTOR"], insecure=True)
result = exporter.export(finished.get_finished_spans())
if result != SpanExportResult.SUCCESS:
    sys.exit(f"export failed: {result}")
print(format(parent.get_span_context().trace_id, "032x"))
