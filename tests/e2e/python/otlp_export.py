"""A real OpenTelemetry Python SDK exporting to fctrace over OTLP/HTTP protobuf or gRPC.

Usage: otlp_export.py http|grpc ENDPOINT SERVICE. Prints the trace id (32 hex digits).
"""
import sys

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

protocol, endpoint, service = sys.argv[1], sys.argv[2], sys.argv[3]
if protocol == "http":
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    exporter = OTLPSpanExporter(endpoint=endpoint + "/v1/traces")
else:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    exporter = OTLPSpanExporter(endpoint=endpoint, insecure=True)

provider = TracerProvider(resource=Resource.create({"service.name": service, "faas.name": "hello"}))
provider.add_span_processor(SimpleSpanProcessor(exporter))
tracer = provider.get_tracer("e2e.python", "2.0.0")
with tracer.start_as_current_span("handle", kind=trace.SpanKind.SERVER) as root:
    with tracer.start_as_current_span("query-db", kind=trace.SpanKind.CLIENT) as child:
        child.set_attribute("db.system", "postgresql")
        child.add_event("rows", {"count": 3})
provider.shutdown()
print(format(root.get_span_context().trace_id, "032x"))
