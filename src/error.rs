//! One error code for every protocol: each layer's error says which [`ErrorCode`] it is,
//! and this is the one place that code becomes an HTTP status, a gRPC code and a
//! `Retry-After`.

/// What kind of failure an error is, from the client's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The request is malformed: fix it, don't retry it.
    BadRequest,
    /// The body is larger than the configured limit.
    TooLarge,
    /// The client did not send its request in time.
    Timeout,
    /// A content type or encoding fctrace does not speak.
    UnsupportedMedia,
    NotFound,
    /// A per-service or per-client limit: retry later.
    RateLimited,
    /// The daemon as a whole cannot take more now (queue full, draining, disk full).
    Unavailable,
    Internal,
}

impl ErrorCode {
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadRequest => 400,
            ErrorCode::TooLarge => 413,
            ErrorCode::Timeout => 408,
            ErrorCode::UnsupportedMedia => 415,
            ErrorCode::NotFound => 404,
            ErrorCode::RateLimited => 429,
            ErrorCode::Unavailable => 503,
            ErrorCode::Internal => 500,
        }
    }

    pub fn grpc_code(self) -> tonic::Code {
        match self {
            ErrorCode::BadRequest | ErrorCode::UnsupportedMedia => tonic::Code::InvalidArgument,
            ErrorCode::TooLarge | ErrorCode::RateLimited => tonic::Code::ResourceExhausted,
            ErrorCode::Timeout => tonic::Code::DeadlineExceeded,
            ErrorCode::NotFound => tonic::Code::NotFound,
            ErrorCode::Unavailable => tonic::Code::Unavailable,
            ErrorCode::Internal => tonic::Code::Internal,
        }
    }

    /// Whether a client should send the same request again later.
    pub fn is_retriable(self) -> bool {
        self.retry_after().is_some()
    }

    /// The `Retry-After` to answer with, in seconds, when retrying later helps.
    pub fn retry_after(self) -> Option<&'static str> {
        match self {
            ErrorCode::RateLimited | ErrorCode::Unavailable => Some("1"),
            _ => None,
        }
    }
}
