"""A function instrumented with the OpenTelemetry SDK and nothing else.

The SDK's default propagator (W3C traceparent and baggage) reads the context the gateway
hands over, and its OTLP/HTTP exporter finds fctrace through OTEL_EXPORTER_OTLP_ENDPOINT,
which the platform sets. No fctrace-specific code. The span is exported synchronously,
so it is stored before the function answers. The answer echoes the headers it got.
"""
import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry import baggage, propagate, trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

provider = TracerProvider(resource=Resource.create({"service.name": "w3c-function"}))
provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter()))
trace.set_tracer_provider(provider)
tracer = trace.get_tracer("w3c-function")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(n)
        headers = {k.lower(): v for k, v in self.headers.items()}
        ctx = propagate.extract(headers)
        with tracer.start_as_current_span("w3c-work", context=ctx) as span:
            span.set_attribute("user", str(baggage.get_baggage("user", ctx)))
        data = json.dumps(headers).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


ThreadingHTTPServer(("127.0.0.1", int(os.environ["FC_SERVER_PORT"])), Handler).serve_forever()
