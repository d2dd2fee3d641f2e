//! Receivers: bytes in a wire format in, `model::Span` batches out.
//!
//! Each submodule owns one format: `jaeger_thrift` (the thrift protocol readers it uses
//! live in `thrift`), `jaeger_proto`, `otlp*`, `zipkin` and `zipkin_v1`; `proto_fields`
//! walks protobuf on the wire for the receivers that count before decoding. `body` reads an HTTP body within its size limit and undoes its
//! content encoding, for every HTTP receiver alike. Receivers decide nothing about storage,
//! sampling or limits: they hand their batch to the pipeline.

pub mod body;
pub mod jaeger_proto;
pub mod jaeger_tag;
pub mod jaeger_thrift;
pub mod limits;
pub mod otlp;
pub mod otlp_cost;
pub mod otlp_json;
pub mod otlp_wire;
pub mod proto_fields;
mod recent;
pub mod thrift;
pub mod zipkin;
pub mod zipkin_v1;

use thiserror::Error;

use crate::budget::Reservation;
use crate::error::ErrorCode;
pub use limits::{LimitError, Limits};

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
    #[error("request body was not received within {0:?}")]
    Timeout(std::time::Duration),
    #[error("{0}")]
    Limit(#[from] LimitError),
    #[error("could not decompress request body: {0}")]
    Decompress(String),
    #[error("could not decode thrift batch: {0}")]
    Thrift(thrift::ThriftError),
    #[error("could not decode OTLP protobuf: {0}")]
    ProtobufWire(String),
    #[error("could not decode OTLP JSON: {0}")]
    Json(#[from] otlp_json::JsonError),
    #[error("unsupported content type {0:?}; send application/json or application/x-protobuf")]
    ZipkinContentType(String),
    #[error("could not decode Zipkin spans: {0}")]
    Zipkin(String),
    #[error("could not decode Jaeger protobuf: {0}")]
    JaegerProto(String),
}

impl ReceiveError {
    pub fn code(&self) -> ErrorCode {
        match self {
            // Jaeger's collector answers 400 for a content type it does not take.
            ReceiveError::ContentType(_) => ErrorCode::BadRequest,
            ReceiveError::OtlpContentType(_)
            | ReceiveError::ZipkinContentType(_)
            | ReceiveError::ContentEncoding(_) => ErrorCode::UnsupportedMedia,
            ReceiveError::TooLarge { .. } => ErrorCode::TooLarge,
            ReceiveError::Timeout(_) => ErrorCode::Timeout,
            ReceiveError::Limit(l) => l.code(),
            ReceiveError::Body(_)
            | ReceiveError::ProtobufWire(_)
            | ReceiveError::Decompress(_)
            | ReceiveError::Thrift(_)
            | ReceiveError::Zipkin(_)
            | ReceiveError::JaegerProto(_)
            | ReceiveError::Json(_) => ErrorCode::BadRequest,
        }
    }
}

impl From<thrift::ThriftError> for ReceiveError {
    fn from(e: thrift::ThriftError) -> Self {
        match e {
            // a cap is not a decoding problem: say it as itself
            thrift::ThriftError::Limit(l) => ReceiveError::Limit(l),
            other => ReceiveError::Thrift(other),
        }
    }
}

impl From<jaeger_proto::JaegerProtoError> for ReceiveError {
    fn from(e: jaeger_proto::JaegerProtoError) -> Self {
        match e {
            jaeger_proto::JaegerProtoError::Limit(l) => ReceiveError::Limit(l),
            other => ReceiveError::JaegerProto(other.to_string()),
        }
    }
}

impl From<zipkin::ZipkinError> for ReceiveError {
    fn from(e: zipkin::ZipkinError) -> Self {
        match e {
            zipkin::ZipkinError::Limit(l) => ReceiveError::Limit(l),
            other => ReceiveError::Zipkin(other.to_string()),
        }
    }
}

impl From<otlp_cost::ScanError> for ReceiveError {
    fn from(e: otlp_cost::ScanError) -> Self {
        match e {
            otlp_cost::ScanError::Limit(l) => ReceiveError::Limit(l),
            otlp_cost::ScanError::Malformed(at) => {
                ReceiveError::ProtobufWire(format!("malformed at byte {at}"))
            }
        }
    }
}

impl ReceiveError {
    /// The `reason` label of `fctrace_requests_rejected_total` for this error.
    pub fn metric_reason(&self) -> &'static str {
        match self {
            ReceiveError::TooLarge { .. } => "too_large",
            ReceiveError::Timeout(_) => "timeout",
            ReceiveError::Limit(LimitError::Budget(crate::budget::BudgetError::Busy {
                ..
            })) => "memory_busy",
            ReceiveError::Limit(LimitError::Budget(_)) => "memory",
            ReceiveError::Limit(_) => "limit",
            _ => "bad_request",
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

/// Decode an OTLP body in either encoding within `limits` and map it to spans, charging
/// `mem` for what it will hold before it is allocated (see `otlp_cost`). Protobuf is read
/// straight into the model (`otlp_wire`); JSON through prost's structs (`otlp_json`).
pub fn decode_otlp(
    body: &[u8],
    format: OtlpFormat,
    limits: &Limits,
    mem: &mut Reservation,
) -> Result<otlp::Mapped, ReceiveError> {
    match format {
        OtlpFormat::Protobuf => {
            let counted = otlp_cost::scan_protobuf(body, limits)?;
            // strings are copied out of the body once
            mem.charge(counted.bytes().saturating_add(body.len()))
                .map_err(LimitError::from)?;
            otlp_wire::decode(body, counted.spans()).map_err(|e| ReceiveError::ProtobufWire(e.0))
        }
        OtlpFormat::Json => {
            mem.charge_each(otlp_cost::json_values(body), otlp_cost::JSON_VALUE_COST)
                .and_then(|_| mem.charge(body.len()))
                .map_err(LimitError::from)?;
            let req = otlp_json::decode(body)?;
            let counted = otlp_cost::count_request(&req, limits)?;
            mem.charge(counted.bytes()).map_err(LimitError::from)?;
            Ok(otlp::map_request(req))
        }
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
