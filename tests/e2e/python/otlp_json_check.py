"""Check that a /api/v3 answer is OTLP/JSON the OpenTelemetry protobuf definitions accept.

Reads {"result": TracesData} on stdin. OTLP/JSON differs from proto3 JSON only in writing
trace and span ids as hex, so ids are turned to base64 and the document is parsed strictly
(unknown fields refused) with protobuf's own JSON parser into opentelemetry-proto's
TracesData. Prints the parsed spans as JSON lines: trace id, span id, parent, name, kind.
"""
import base64
import json
import sys

from google.protobuf import json_format
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

ID_FIELDS = {"traceId", "spanId", "parentSpanId"}


def hex_to_b64(node):
    if isinstance(node, dict):
        return {
            k: base64.b64encode(bytes.fromhex(v)).decode() if k in ID_FIELDS and isinstance(v, str) else hex_to_b64(v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [hex_to_b64(x) for x in node]
    return node


doc = json.load(sys.stdin)["result"]
msg = json_format.Parse(json.dumps(hex_to_b64(doc)), TracesData(), ignore_unknown_fields=False)
for rs in msg.resource_spans:
    service = [a.value.string_value for a in rs.resource.attributes if a.key == "service.name"]
    for ss in rs.scope_spans:
        for s in ss.spans:
            print(json.dumps({
                "service": service[0] if service else None,
                "scope": ss.scope.name,
                "traceId": s.trace_id.hex(),
                "spanId": s.span_id.hex(),
                "parentSpanId": s.parent_span_id.hex(),
                "name": s.name,
                "kind": s.kind,
                "status": s.status.code,
                "statusMessage": s.status.message,
                "attributes": {a.key: json_format.MessageToDict(a.value) for a in s.attributes},
                "events": [e.name for e in s.events],
                "start": s.start_time_unix_nano,
                "end": s.end_time_unix_nano,
            }))
