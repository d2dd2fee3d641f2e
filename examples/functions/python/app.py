"""A Python function for fctrace's gateway, traced with OpenTelemetry and its Jaeger exporter.

It speaks the custom-runtime HTTP protocol: it listens on FC_SERVER_PORT, answers
POST /initialize once per instance and POST /invoke per event (or any other path when
invoked through the HTTP trigger). Its own spans take the platform's Invocation span from
`x-fc-tracing-opentracing-span-context` as their parent and go to the collector named in
`x-fc-tracing-jaeger-endpoint`, so they land under Invocation in the platform's trace.
"""
import json
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry import trace
from opentelemetry.exporter.jaeger.thrift import JaegerExporter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import NonRecordingSpan

SERVICE = os.environ.get("FC_SERVICE_NAME", "demo") + "-" + os.environ.get("FC_FUNCTION_NAME", "python")
provider = TracerProvider(resource=Resource.create({SERVICE_NAME: SERVICE}))
trace.set_tracer_provider(provider)
tracer = trace.get_tracer("fctrace.example.python")
exporter_endpoint = None
initialized_at = None


def fc_parent(headers):
    """The platform's Invocation span, from the x-fc-tracing context header."""
    raw = headers.get("x-fc-tracing-opentracing-span-context")
    if not raw:
        return None
    trace_id, span_id, _parent, flags = raw.split(":")
    ctx = trace.SpanContext(
        trace_id=int(trace_id, 16),
        span_id=int(span_id, 16),
        is_remote=True,
        trace_flags=trace.TraceFlags(int(flags, 16) & 1),
    )
    return trace.set_span_in_context(NonRecordingSpan(ctx))


def ensure_exporter(headers):
    global exporter_endpoint
    endpoint = headers.get("x-fc-tracing-jaeger-endpoint")
    if endpoint and exporter_endpoint is None:
        provider.add_span_processor(SimpleSpanProcessor(JaegerExporter(collector_endpoint=endpoint)))
        exporter_endpoint = endpoint


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def reply(self, status, body, headers=()):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def do_POST(self):
        global initialized_at
        event = self.body()
        if self.path == "/initialize":
            time.sleep(0.05)  # load a model, open connections...
            initialized_at = time.time()
            return self.reply(200, {"initialized": True})
        self.handle_event(event)

    def do_GET(self):
        self.handle_event(b"")

    def handle_event(self, event):
        ensure_exporter(self.headers)
        baggage = self.headers.get("x-fc-tracing-opentracing-span-baggages", "")
        with tracer.start_as_current_span("python-handler", context=fc_parent(self.headers)) as span:
            span.set_attribute("fc.request_id", self.headers.get("x-fc-request-id", ""))
            span.set_attribute("event.size", len(event))
            with tracer.start_as_current_span("python-query-db") as child:
                child.set_attribute("db.system", "mysql")
                time.sleep(0.01)
                child.add_event("rows", {"count": 3})
        self.reply(200, {"language": "python", "path": self.path, "initialized": initialized_at is not None,
                         "baggages": baggage, "event": event.decode(errors="replace")})


if __name__ == "__main__":
    port = int(os.environ.get("FC_SERVER_PORT") or os.environ.get("PORT") or 9000)
    host = os.environ.get("FC_SERVER_HOST", "127.0.0.1")
    ThreadingHTTPServer((host, port), Handler).serve_forever()
