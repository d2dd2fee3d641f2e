//! Receivers: bytes in a wire format in, `model::Span` batches out.
//!
//! Each submodule owns one format (`jaeger_thrift`; the thrift protocol readers it uses
//! live in `thrift`). `body` reads an HTTP body within its size limit and undoes its
//! content encoding, for every HTTP receiver alike. Receivers decide nothing about storage,
//! sampling or limits: they hand their batch to the pipeline.

pub mod body;
pub mod jaeger_thrift;
pub mod thrift;

use thiserror::Error;

use crate::error::ErrorCode;

#[derive(Debug, Error)]
pub enum ReceiveError {
    #[error("unsupported content type {0:?}; send application/x-thrift, application/vnd.apache.thrift.binary or application/vnd.apache.thrift.compact")]
    ContentType(String),
    #[error("unsupported content encoding {0:?}; send identity or gzip")]
    ContentEncoding(String),
    #[error("request body is larger than the {limit}-byte limit")]
    TooLarge { limit: usize },
    #[error("could not read request body: {0}")]
    Body(String),
    #[error("could not decompress request body: {0}")]
    Decompress(String),
    #[error("could not decode thrift batch: {0}")]
    Thrift(#[from] thrift::ThriftError),
}

impl ReceiveError {
    pub fn code(&self) -> ErrorCode {
        match self {
            ReceiveError::ContentType(_) | ReceiveError::ContentEncoding(_) => {
                ErrorCode::UnsupportedMedia
            }
            ReceiveError::TooLarge { .. } => ErrorCode::TooLarge,
            ReceiveError::Body(_) | ReceiveError::Decompress(_) | ReceiveError::Thrift(_) => {
                ErrorCode::BadRequest
            }
        }
    }
}

/// The media type of a `Content-Type` header value: lower case, parameters dropped.
pub fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Pick the thrift protocol for a Jaeger collector request from its content type.
pub fn jaeger_protocol(
    content_type: Option<&str>,
) -> Result<jaeger_thrift::ThriftProtocol, ReceiveError> {
    let ct = content_type.unwrap_or("");
    match media_type(ct).as_str() {
        "application/x-thrift" | "application/vnd.apache.thrift.binary" => {
            Ok(jaeger_thrift::ThriftProtocol::Binary)
        }
        "application/vnd.apache.thrift.compact" => Ok(jaeger_thrift::ThriftProtocol::Compact),
        _ => Err(ReceiveError::ContentType(ct.chars().take(100).collect())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_ignore_parameters_and_case() {
        assert_eq!(
            jaeger_protocol(Some("Application/X-Thrift; charset=utf-8")).unwrap(),
            jaeger_thrift::ThriftProtocol::Binary
        );
        assert_eq!(
            jaeger_protocol(Some("application/vnd.apache.thrift.compact")).unwrap(),
            jaeger_thrift::ThriftProtocol::Compact
        );
        assert!(jaeger_protocol(Some("application/json")).is_err());
        assert!(jaeger_protocol(None).is_err());
    }
}
