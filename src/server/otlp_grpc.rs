//! The gRPC route `opentelemetry.proto.collector.trace.v1.TraceService/Export`: its
//! request taken as bytes (see `grpc`) and sent down the same path as an OTLP/HTTP body.

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use tonic::codegen::BoxFuture;

use super::grpc::RawMethod;
use super::otlp::{decode_and_map, ingest};
use super::AppState;
use crate::receive::OtlpFormat;

pub struct Export;

impl RawMethod for Export {
    const SERVICE: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
    const PATH: &'static str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
    type Response = ExportTraceServiceResponse;

    fn call(
        state: AppState,
        tenant: crate::store::keys::Tenant,
        body: Bytes,
    ) -> BoxFuture<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        Box::pin(async move {
            let mut mem = state.budget.reserve();
            let decoded = match mem.charge(body.len()) {
                Ok(()) => decode_and_map(&state, body, OtlpFormat::Protobuf, mem).await,
                Err(e) => Err(crate::receive::LimitError::from(e).into()),
            };
            let (mapped, _mem) = decoded.map_err(|e| {
                state.metrics.rejected_request(e.metric_reason());
                tonic::Status::new(e.code().grpc_code(), e.to_string())
            })?;
            match ingest(&state, tenant, mapped, "otlp_grpc").await {
                Ok(resp) => Ok(tonic::Response::new(resp)),
                Err(e) => {
                    state.metrics.rejected_request("submit");
                    Err(tonic::Status::new(e.code().grpc_code(), e.to_string()))
                }
            }
        })
    }
}
