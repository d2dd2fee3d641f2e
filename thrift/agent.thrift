# The Jaeger agent's UDP protocol: each datagram is one thrift message calling
# emitBatch (oneway) with a Batch from jaeger.thrift, compact protocol on port 6831,
# binary on 6832. fctrace decodes it by hand in src/receive/jaeger_thrift.rs
# (`decode_emit_batch`); this file is the reference that decoder follows.
# emitZipkinBatch, the older Zipkin-thrift call, is not taken.

include "jaeger.thrift"

namespace rs jaeger_agent

service Agent {
  oneway void emitBatch(1: jaeger.Batch batch)
}
