"""OpenTelemetry's Python Jaeger thrift exporter with its default agent transport (UDP,
thrift compact) to AGENT=host:port: a parent and a child span with attributes and an
event. Prints the trace id as 32 hex digits."""
import os

from opentelemetry import trace
from opentelemetry.exporter.jaeger.thrift import JaegerExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

host, port = os.environ["AGENT"].rsplit(":", 1)
provider = TracerProvider(
    resource=Resource.create({"service.name": os.environ.get("SERVICE", "py-agent")})
)
provider.add_span_processor(
    SimpleSpanProcessor(JaegerExporter(agent_host_name=host, agent_port=int(port)))
)
tracer = provider.get_tracer("agent-e2e")
with tracer.start_as_current_span("py-parent") as parent:
    with tracer.start_as_current_span("py-child") as child:
        child.set_attribute("db.system", "redis")
        child.add_event("cache-hit", {"keys": 2})
print(format(parent.get_span_context().trace_id, "032x"))
provider.shutdown()
