//! Unary gRPC methods served by hand rather than by generated servers, so a request
//! reaches fctrace as bytes: it is scanned for its cost and caps before prost allocates
//! for it, on the CPU pool, the same way as an HTTP body. Each receiver's gRPC route
//! (`otlp_grpc`, `jaeger_grpc`) is a [`RawMethod`]; [`RawService`] is the one tonic
//! service shape they share (gzip and zstd accepted, messages as large as an HTTP body),
//! and [`serve`] the one server set-up (the query service, `query_grpc`, shares it).

use std::convert::Infallible;
use std::marker::PhantomData;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::sync::watch;
use tonic::codec::{
    BufferSettings, Codec, CompressionEncoding, DecodeBuf, Decoder, EnabledCompressionEncodings,
};
use tonic::codegen::{http, BoxFuture, Service};
use tonic::server::{NamedService, UnaryService};

use super::{listener, AppState};

/// One unary method whose request is taken as bytes.
pub trait RawMethod: Send + Sync + 'static {
    /// The service's full name, `package.Service`.
    const SERVICE: &'static str;
    /// The method's path, `/package.Service/Method`.
    const PATH: &'static str;
    type Response: prost::Message + Default + Send + 'static;

    /// Called once the request's tenant is known (`tenant::of_metadata`).
    fn call(
        state: AppState,
        tenant: crate::store::keys::Tenant,
        body: Bytes,
    ) -> BoxFuture<tonic::Response<Self::Response>, tonic::Status>;
}

/// Responses are prost-encoded; requests stay bytes.
struct RawCodec<R>(PhantomData<R>);

struct RawDecoder;

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, tonic::Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

impl<R: prost::Message + Default + Send + 'static> Codec for RawCodec<R> {
    type Encode = R;
    type Decode = Bytes;
    type Encoder = tonic_prost::ProstEncoder<R>;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        tonic_prost::ProstEncoder::new(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawDecoder
    }
}

struct Call<M>(AppState, PhantomData<M>);

impl<M: RawMethod> UnaryService<Bytes> for Call<M> {
    type Response = M::Response;
    type Future = BoxFuture<tonic::Response<M::Response>, tonic::Status>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        match super::tenant::of_metadata(&self.0, request.metadata()) {
            Ok(tenant) => M::call(self.0.clone(), tenant, request.into_inner()),
            Err(status) => Box::pin(async move { Err(status) }),
        }
    }
}

/// A tonic service with the one method `M`.
pub struct RawService<M> {
    state: AppState,
    _method: PhantomData<M>,
}

impl<M> RawService<M> {
    pub fn new(state: AppState) -> Self {
        RawService {
            state,
            _method: PhantomData,
        }
    }
}

impl<M> Clone for RawService<M> {
    fn clone(&self) -> Self {
        RawService::new(self.state.clone())
    }
}

impl<M: RawMethod> NamedService for RawService<M> {
    const NAME: &'static str = M::SERVICE;
}

impl<M, B> Service<http::Request<B>> for RawService<M>
where
    M: RawMethod,
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
        if req.uri().path() != M::PATH {
            return Box::pin(async move {
                Ok(
                    tonic::Status::unimplemented(format!("only {} is served here", M::PATH))
                        .into_http(),
                )
            });
        }
        Box::pin(async move {
            let limit = state.settings.max_body_bytes;
            let mut grpc = tonic::server::Grpc::new(RawCodec::<M::Response>(PhantomData))
                .apply_compression_config(accepted(), EnabledCompressionEncodings::default())
                .apply_max_message_size_config(Some(limit), None);
            Ok(grpc.unary(Call::<M>(state, PhantomData), req).await)
        })
    }
}

/// The request encodings every gRPC method here takes.
pub fn accepted() -> EnabledCompressionEncodings {
    let mut accept = EnabledCompressionEncodings::default();
    accept.enable(CompressionEncoding::Gzip);
    accept.enable(CompressionEncoding::Zstd);
    accept
}

/// Concurrent streams one gRPC connection may have.
const STREAMS_PER_CONNECTION: u32 = 16;

/// Serve `routes` (one or more services) on `listener` until `stop`.
pub async fn serve(
    routes: tonic::service::Routes,
    listener: listener::Limited,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    // Export requests are hundreds of KiB: windows this size let a client send one
    // without waiting for window updates along the way.
    // Each request is buffered whole before it is charged to the memory budget, so
    // streams per connection are bounded too: connections x streams x body limit is
    // what gRPC can hold before fctrace sees a message.
    tonic::transport::Server::builder()
        .initial_stream_window_size(Some(4 << 20))
        .initial_connection_window_size(Some(16 << 20))
        .max_concurrent_streams(Some(STREAMS_PER_CONNECTION))
        .concurrency_limit_per_connection(STREAMS_PER_CONNECTION as usize)
        .add_routes(routes)
        .serve_with_incoming_shutdown(listener::incoming(listener), async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await
        .map_err(std::io::Error::other)
}
