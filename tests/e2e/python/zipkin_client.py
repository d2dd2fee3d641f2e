"""py_zipkin (a real Zipkin client) sending to ZIPKIN=host:port with ENCODING=V1_JSON,
V2_JSON or V2_PROTO3 through its SimpleHTTPTransport (which picks /api/v1/spans or
/api/v2/spans and the content type from the encoding): a server span `handle` on
SERVICE with a tag, and its client child `call-db` to the remote `postgres` with an
annotation. Prints the trace id."""
import os

from py_zipkin import Encoding, Kind
from py_zipkin.transport import SimpleHTTPTransport
from py_zipkin.zipkin import zipkin_span

host, port = os.environ["ZIPKIN"].rsplit(":", 1)
service = os.environ.get("SERVICE", "py-zipkin")
encoding = Encoding[os.environ["ENCODING"]]
with zipkin_span(
    service_name=service,
    span_name="handle",
    transport_handler=SimpleHTTPTransport(host, int(port)),
    sample_rate=100,
    encoding=encoding,
    kind=Kind.SERVER,
    host="10.1.1.1",
    port=8000,
    use_128bit_trace_id=encoding == Encoding.V2_PROTO3,
) as root:
    root.update_binary_annotations({"http.path": "/py"})
    with zipkin_span(service_name=service, span_name="call-db", kind=Kind.CLIENT) as child:
        child.add_sa_binary_annotation(port=5432, service_name="postgres", host="10.0.0.9")
        child.add_annotation("query-sent")
        child.update_binary_annotations({"db.rows": "3"})
    trace_id = root.zipkin_attrs.trace_id
print(trace_id)
