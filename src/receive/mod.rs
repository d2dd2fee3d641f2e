//! Receivers: bytes in a wire format in, `model::Span` batches out.
//!
//! Each submodule owns one format (`jaeger_thrift`; the thrift protocol readers it uses
//! live in `thrift`). `body` reads an HTTP body within its size limit and undoes its
//! content encoding, for every HTTP receiver alike. Receivers decide nothing about storage,
//! sampling or limits: they hand their batch to the pipeline.

pub mod body;
pub mod jaeger_thrift;
pub mod otlp;
pub mod otlp_json;
pub mod thrift;

use thiserror::Error;

use crate::error::ErrorCode;

#[derive(Debug, Error)]
pub enum ReceiveError {
    #[error("unsupported content type {0:?}; send application/x-thrift, application/vnd.apache.thrift.binary or application/vnd.apache.thrift.compact")]
    ContentType(String),
    #[error("unsupported content type {0:?}; send application/x-protobuf or application/json")]
    OtlpContentType(String),
    #[error("unsupported content encoding {0:?}; send identity, gzip, deflate or zstd")]
    ContentEncoding(String),
    #[error("request body is larger than the {limit}-byte limit")]
    TooLarge { limit: usize },
    #[error("could not read request body: {0}")]
    Body(String),
    #[error("could not decompress request body: {0}")]
    Decompress(String),
    #[error("could not decode thrift batch: {0}")]
    Thrift(#[from] thrift::ThriftError),
    #[error("could not decode OTLP protobuf: {0}")]
    Protobuf(#[from] prost::DecodeError),
    #[error("could not decode OTLP JSON: {0}")]
    Json(#[from] otlp_json::JsonError),
}

impl ReceiveError {
    pub fn code(&self) -> ErrorCode {
        match self {
            // Jaeger's collector answers 400 for a content type it does not take.
            ReceiveError::ContentType(_) => ErrorCode::BadRequest,
            ReceiveError::OtlpContentType(_) | ReceiveError::ContentEncoding(_) => {
                ErrorCode::UnsupportedMedia
            }
            ReceiveError::TooLarge { .. } => ErrorCode::TooLarge,
            ReceiveError::Body(_)
            | ReceiveError::Decompress(_)
            | ReceiveError::Thrift(_)
            | ReceiveError::Protobuf(_)
            | ReceiveError::Json(_) => ErrorCode::BadRequest,
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

/// The two encodings of OTLP over HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpFormat {
    Protobuf,
    Json,
}

/// Pick the OTLP encoding from a content type.
pub fn otlp_format(content_type: Option<&str>) -> Result<OtlpFormat, ReceiveError> {
    let ct = content_type.unwrap_or("");
    match media_type(ct).as_str() {
        "application/x-protobuf" | "application/protobuf" => Ok(OtlpFormat::Protobuf),
        "application/json" => Ok(OtlpFormat::Json),
        _ => Err(ReceiveError::OtlpContentType(
            ct.chars().take(100).collect(),
        )),
    }
}

/// Decode an OTLP/HTTP body in either encoding.
pub fn decode_otlp(
    body: &[u8],
    format: OtlpFormat,
) -> Result<opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest, ReceiveError>
{
    match format {
        OtlpFormat::Protobuf => Ok(prost::Message::decode(body)?),
        OtlpFormat::Json => Ok(otlp_json::decode(body)?),
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
