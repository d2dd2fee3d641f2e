//! The gRPC route `opentelemetry.proto.collector.trace.v1.TraceService/Export`, served by
//! hand rather than by the generated server, so the message reaches fctrace as bytes: it
//! is scanned for its cost and caps before prost allocates for it, on the CPU pool, the
//! same way as an OTLP/HTTP body (see `receive::otlp_cost`).

use std::convert::Infallible;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use tonic::codec::{
    BufferSettings, Codec, CompressionEncoding, DecodeBuf, Decoder, EnabledCompressionEncodings,
};
use tonic::codegen::{http, BoxFuture, Service};
use tonic::server::{NamedService, UnaryService};

use super::otlp::{decode_and_map, ingest};
use super::AppState;
use crate::receive::OtlpFormat;

const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// Responses are prost-encoded; requests stay bytes.
struct RawCodec;

struct RawDecoder;

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, tonic::Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

impl Codec for RawCodec {
    type Encode = ExportTraceServiceResponse;
    type Decode = Bytes;
    type Encoder = tonic_prost::ProstEncoder<ExportTraceServiceResponse>;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        tonic_prost::ProstEncoder::new(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawDecoder
    }
}

struct Export(AppState);

impl UnaryService<Bytes> for Export {
    type Response = ExportTraceServiceResponse;
    type Future = BoxFuture<tonic::Response<ExportTraceServiceResponse>, tonic::Status>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let state = self.0.clone();
        Box::pin(async move {
            let mut mem = state.budget.reserve();
            let body = request.into_inner();
            let decoded = match mem.charge(body.len()) {
                Ok(()) => decode_and_map(&state, body, OtlpFormat::Protobuf, mem).await,
                Err(e) => Err(crate::receive::LimitError::from(e).into()),
            };
            let (mapped, _mem) = decoded.map_err(|e| {
                state.metrics.rejected_request(e.metric_reason());
                tonic::Status::new(e.code().grpc_code(), e.to_string())
            })?;
            match ingest(&state, mapped, "otlp_grpc").await {
                Ok(resp) => Ok(tonic::Response::new(resp)),
                Err(e) => {
                    state.metrics.rejected_request("submit");
                    Err(tonic::Status::new(e.code().grpc_code(), e.to_string()))
                }
            }
        })
    }
}

/// The service: gzip and zstd accepted, messages as large as an HTTP body.
#[derive(Clone)]
pub struct TraceService {
    state: AppState,
}

impl TraceService {
    pub fn new(state: AppState) -> Self {
        TraceService { state }
    }
}

impl NamedService for TraceService {
    const NAME: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
}

impl<B> Service<http::Request<B>> for TraceService
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<tonic::codegen::StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let state = self.state.clone();
        if req.uri().path() != EXPORT_PATH {
            return Box::pin(async move {
                Ok(tonic::Status::unimplemented("only TraceService/Export is served").into_http())
            });
        }
        Box::pin(async move {
            let mut accept = EnabledCompressionEncodings::default();
            accept.enable(CompressionEncoding::Gzip);
            accept.enable(CompressionEncoding::Zstd);
            let limit = state.settings.max_body_bytes;
            let mut grpc = tonic::server::Grpc::new(RawCodec)
                .apply_compression_config(accept, EnabledCompressionEncodings::default())
                .apply_max_message_size_config(Some(limit), None);
            Ok(grpc.unary(Export(state), req).await)
        })
    }
}
