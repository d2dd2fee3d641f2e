//! One error code for every protocol: each layer's error says which [`ErrorCode`] it is,
//! and the servers map that one code to an HTTP status or a gRPC code.

/// What kind of failure an error is, from the client's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The request is malformed: fix it, don't retry it.
    BadRequest,
    /// The body is larger than the configured limit.
    TooLarge,
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
            ErrorCode::UnsupportedMedia => 415,
            ErrorCode::NotFound => 404,
            ErrorCode::RateLimited => 429,
            ErrorCode::Unavailable => 503,
            ErrorCode::Internal => 500,
        }
    }

    /// Whether a client should send the same request again later.
    pub fn is_retriable(self) -> bool {
        matches!(self, ErrorCode::RateLimited | ErrorCode::Unavailable)
    }
}
