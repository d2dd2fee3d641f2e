//! `jaeger.api_v3.QueryService` over gRPC, on the OTLP/gRPC port: `GetTrace` and
//! `FindTraces` (each streams one `TracesData`), `GetServices`, `GetOperations`. The same
//! searches as `/api/v3` over HTTP (`query`); traces take the one model-to-OTLP mapping
//! (`query::otlp_json`), read back into protobuf by the OTLP/JSON reader, so both
//! transports answer alike. Served by hand like the receivers' methods (`grpc`): requests
//! are small and typed, decoded by prost.

use std::convert::Infallible;
use std::task::{Context, Poll};

use opentelemetry_proto::tonic::trace::v1::TracesData;
use tonic::codec::EnabledCompressionEncodings;
use tonic::codegen::{http, BoxFuture, Service};
use tonic::server::{NamedService, ServerStreamingService, UnaryService};
use tonic::Status;

use super::AppState;
use crate::model::{Span, SpanKind, TraceId};
use crate::query::params::{TraceQuery, DEFAULT_LIMIT, MAX_LIMIT};

#[allow(clippy::all)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/jaeger.api_v3.rs"));
}

const SERVICE: &str = "jaeger.api_v3.QueryService";

type TraceStream = futures_util::stream::Iter<std::vec::IntoIter<Result<TracesData, Status>>>;

fn internal(e: impl std::fmt::Display) -> Status {
    Status::internal(e.to_string())
}

/// Run a store read off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(internal)?
        .map_err(|e| match e {
            crate::store::StoreError::Unreachable(m) => Status::unavailable(m),
            e => internal(e),
        })
}

/// The query API has no place for a partial answer: what a query node could not read
/// (a store node down) makes the call UNAVAILABLE.
fn unless_gaps(gaps: &crate::query::remote::Gaps) -> Result<(), Status> {
    match gaps.refusal() {
        None => Ok(()),
        Some(why) => Err(Status::unavailable(why)),
    }
}

/// Traces as the one `TracesData` a stream answers (none: an empty stream).
fn traces_stream<'a>(spans: impl IntoIterator<Item = &'a Span>) -> Result<TraceStream, Status> {
    let json =
        serde_json::to_vec(&crate::query::otlp_json::traces_data(spans)).map_err(internal)?;
    let req = crate::receive::otlp_json::decode(&json).map_err(internal)?;
    let items = if req.resource_spans.is_empty() {
        Vec::new()
    } else {
        vec![Ok(TracesData {
            resource_spans: req.resource_spans,
        })]
    };
    Ok(futures_util::stream::iter(items))
}

fn micros(t: &prost_types::Timestamp) -> u64 {
    let us = i128::from(t.seconds) * 1_000_000 + i128::from(t.nanos) / 1000;
    u64::try_from(us).unwrap_or(0)
}

fn duration_micros(d: &prost_types::Duration) -> u64 {
    let us = i128::from(d.seconds) * 1_000_000 + i128::from(d.nanos) / 1000;
    u64::try_from(us).unwrap_or(0)
}

/// The search of a `FindTracesRequest`, checked as `/api/v3/traces`' parameters are.
fn trace_query(state: &AppState, q: pb::TraceQueryParameters) -> Result<TraceQuery, Status> {
    if !q.filter.is_empty() {
        return Err(Status::invalid_argument(
            "structured filters (query.filter) are not supported; use the other fields",
        ));
    }
    let now = crate::clock::now_us();
    let end = q.start_time_max.as_ref().map_or(now, micros);
    let retention = state.settings.retention.as_micros().min(u64::MAX as u128) as u64;
    let start = q
        .start_time_min
        .as_ref()
        .map_or(end.saturating_sub(retention), micros);
    if start > end {
        return Err(Status::invalid_argument(
            "query.start_time_min is after query.start_time_max",
        ));
    }
    let (min, max) = (
        q.duration_min.as_ref().map(duration_micros),
        q.duration_max.as_ref().map(duration_micros),
    );
    if let (Some(a), Some(b)) = (min, max) {
        if a > b {
            return Err(Status::invalid_argument(
                "query.duration_min is greater than query.duration_max",
            ));
        }
    }
    let mut tags: Vec<(String, String)> = q.attributes.into_iter().collect();
    tags.sort();
    Ok(TraceQuery {
        service: q.service_name,
        operation: (!q.operation_name.is_empty()).then_some(q.operation_name),
        tags,
        start,
        end,
        min_duration: min,
        max_duration: max,
        limit: match q.search_depth {
            n if n <= 0 => DEFAULT_LIMIT,
            n => (n as usize).min(MAX_LIMIT),
        },
        trace_ids: Vec::new(),
    })
}

struct GetTrace(AppState);

impl ServerStreamingService<pb::GetTraceRequest> for GetTrace {
    type Response = TracesData;
    type ResponseStream = TraceStream;
    type Future = BoxFuture<tonic::Response<TraceStream>, Status>;

    fn call(&mut self, request: tonic::Request<pb::GetTraceRequest>) -> Self::Future {
        let state = self.0.clone();
        Box::pin(async move {
            let tenant = super::tenant::of_metadata(&state, request.metadata())?;
            let id = TraceId::from_hex(&request.into_inner().trace_id)
                .map_err(|e| Status::invalid_argument(format!("trace_id: {e}")))?;
            let query = state.query.clone();
            match blocking(move || query.trace(tenant, id)).await? {
                Some(spans) => Ok(tonic::Response::new(traces_stream(&spans)?)),
                None => Err(Status::not_found("trace not found")),
            }
        })
    }
}

struct FindTraces(AppState);

impl ServerStreamingService<pb::FindTracesRequest> for FindTraces {
    type Response = TracesData;
    type ResponseStream = TraceStream;
    type Future = BoxFuture<tonic::Response<TraceStream>, Status>;

    fn call(&mut self, request: tonic::Request<pb::FindTracesRequest>) -> Self::Future {
        let state = self.0.clone();
        Box::pin(async move {
            let tenant = super::tenant::of_metadata(&state, request.metadata())?;
            let q = trace_query(&state, request.into_inner().query.unwrap_or_default())?;
            let (query, gaps) = state.query.for_request();
            let traces = blocking(move || query.search(tenant, &q)).await?;
            unless_gaps(&gaps)?;
            Ok(tonic::Response::new(traces_stream(
                traces.iter().flatten(),
            )?))
        })
    }
}

struct GetServices(AppState);

impl UnaryService<pb::GetServicesRequest> for GetServices {
    type Response = pb::GetServicesResponse;
    type Future = BoxFuture<tonic::Response<pb::GetServicesResponse>, Status>;

    fn call(&mut self, request: tonic::Request<pb::GetServicesRequest>) -> Self::Future {
        let tenant = super::tenant::of_metadata(&self.0, request.metadata());
        let (query, gaps) = self.0.query.for_request();
        Box::pin(async move {
            let tenant = tenant?;
            let services = blocking(move || Ok(query.services(tenant))).await?;
            unless_gaps(&gaps)?;
            Ok(tonic::Response::new(pb::GetServicesResponse { services }))
        })
    }
}

struct GetOperations(AppState);

impl UnaryService<pb::GetOperationsRequest> for GetOperations {
    type Response = pb::GetOperationsResponse;
    type Future = BoxFuture<tonic::Response<pb::GetOperationsResponse>, Status>;

    fn call(&mut self, request: tonic::Request<pb::GetOperationsRequest>) -> Self::Future {
        let tenant = super::tenant::of_metadata(&self.0, request.metadata());
        let r = request.into_inner();
        let state = self.0.clone();
        Box::pin(async move {
            let tenant = tenant?;
            if r.service.is_empty() {
                return Err(Status::invalid_argument("service is required"));
            }
            let kind = match r.span_kind.as_str() {
                "" => None,
                k => Some(SpanKind::parse(k).ok_or_else(|| {
                    Status::invalid_argument(format!(
                        "span_kind must be one of server, client, producer, consumer, internal; got {k:?}"
                    ))
                })?),
            };
            let (query, gaps) = state.query.for_request();
            let service = r.service.clone();
            let operations = blocking(move || Ok(query.operations(tenant, &service, kind))).await?;
            unless_gaps(&gaps)?;
            let operations = operations
                .into_iter()
                .map(|(name, kind)| pb::Operation {
                    name,
                    span_kind: kind.as_str().to_owned(),
                })
                .collect();
            Ok(tonic::Response::new(pb::GetOperationsResponse {
                operations,
            }))
        })
    }
}

/// The service, for the OTLP/gRPC port's server.
#[derive(Clone)]
pub struct QueryService {
    state: AppState,
}

impl QueryService {
    pub fn new(state: AppState) -> Self {
        QueryService { state }
    }
}

impl NamedService for QueryService {
    const NAME: &'static str = SERVICE;
}

fn grpc<Resp, Req>(state: &AppState) -> tonic::server::Grpc<tonic_prost::ProstCodec<Resp, Req>>
where
    Resp: prost::Message + Send + 'static,
    Req: prost::Message + Default + Send + 'static,
{
    tonic::server::Grpc::new(tonic_prost::ProstCodec::default())
        .apply_compression_config(
            super::grpc::accepted(),
            EnabledCompressionEncodings::default(),
        )
        .apply_max_message_size_config(Some(1 << 20), Some(state.settings.max_body_bytes))
}

impl<B> Service<http::Request<B>> for QueryService
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
        let method = req
            .uri()
            .path()
            .strip_prefix("/jaeger.api_v3.QueryService/")
            .unwrap_or("")
            .to_owned();
        Box::pin(async move {
            Ok(match method.as_str() {
                "GetTrace" => grpc(&state).server_streaming(GetTrace(state), req).await,
                "FindTraces" => grpc(&state).server_streaming(FindTraces(state), req).await,
                "GetServices" => grpc(&state).unary(GetServices(state), req).await,
                "GetOperations" => grpc(&state).unary(GetOperations(state), req).await,
                other => Status::unimplemented(format!(
                    "{SERVICE}/{other} is not served (GetTrace, FindTraces, GetServices, GetOperations are)"
                ))
                .into_http(),
            })
        })
    }
}
