//! Jaeger's gRPC collector (14250): `jaeger.api_v2.CollectorService/PostSpans`, what
//! jaeger-agent and older OpenTelemetry Collector and SDK Jaeger exporters send. Served
//! as bytes (see `grpc`), decoded by `receive::jaeger_proto` on the CPU pool, with the
//! same admission and status codes as OTLP/gRPC. A batch with an invalid span is refused
//! whole, as Jaeger's API has no partial answer.

use bytes::Bytes;
use tonic::codegen::BoxFuture;

use super::grpc::RawMethod;
use super::AppState;
use crate::cpu;
use crate::pipeline::Partial;
use crate::receive::{jaeger_proto, ReceiveError};

pub struct PostSpans;

impl RawMethod for PostSpans {
    const SERVICE: &'static str = "jaeger.api_v2.CollectorService";
    const PATH: &'static str = "/jaeger.api_v2.CollectorService/PostSpans";
    type Response = jaeger_proto::pb::PostSpansResponse;

    fn call(
        state: AppState,
        tenant: crate::store::keys::Tenant,
        body: Bytes,
    ) -> BoxFuture<tonic::Response<Self::Response>, tonic::Status> {
        Box::pin(async move {
            let mut mem = state.budget.reserve();
            let limits = state.settings.limits;
            let decoded = cpu::run(body.len(), move || {
                let spans = jaeger_proto::decode_post_spans(&body, &limits, &mut mem)
                    .map_err(ReceiveError::from)?;
                Ok::<_, ReceiveError>((spans, mem))
            })
            .await;
            // held until the spans are stored: the budget counts them while in memory
            let (spans, _mem) = decoded.map_err(|e| {
                state.metrics.rejected_request(e.metric_reason());
                tonic::Status::new(e.code().grpc_code(), e.to_string())
            })?;
            state.metrics.received("jaeger_grpc", spans.len());
            match state
                .pipeline
                .submit(tenant, spans, Partial::RejectBatch)
                .await
            {
                Ok(_) => Ok(tonic::Response::new(Default::default())),
                Err(e) => {
                    state.metrics.rejected_request("submit");
                    Err(tonic::Status::new(e.code().grpc_code(), e.to_string()))
                }
            }
        })
    }
}
