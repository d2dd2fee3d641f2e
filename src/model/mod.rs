//! The one span model every part of fctrace speaks.
//!
//! Receivers turn wire formats into [`Span`]s, the pipeline and the store take them, the
//! query side reads them back. The model is Jaeger-shaped on purpose: span kind, status
//! and parent links live where Jaeger keeps them (`span.kind`/`error`/`otel.status_code`
//! tags and `references`), so Jaeger's JSON and OTLP views are both a straight mapping.
//! [`Span::kind`] and [`Span::status`] read those places; nothing stores them twice.
//!
//! This module owns no I/O and no encodings beyond the ids' hex forms and the Jaeger
//! context string ([`context`]).

pub mod context;
mod ids;
mod invocation;
mod log;

use std::sync::Arc;

pub use context::SpanContext;
pub use ids::{IdError, SpanId, TraceId};
pub use invocation::InvocationRecord;
pub use log::LogLine;

/// A tag's key or string value: kept inline up to 24 bytes, so the common short key or
/// value costs no allocation when a receiver decodes it or the store reads it back (an
/// allocation per key and value was most of decoding's CPU, BENCHMARKS.md).
pub type Str = compact_str::CompactString;

/// A typed tag value, as Jaeger's `vType` enumerates them.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(Str),
    Bool(bool),
    I64(i64),
    F64(f64),
    Binary(Vec<u8>),
}

impl Value {
    /// The value as a search would compare it: Jaeger matches tags by their string form.
    pub fn to_search_string(&self) -> String {
        match self {
            Value::Str(s) => s.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::I64(i) => i.to_string(),
            Value::F64(f) => f.to_string(),
            Value::Binary(b) => hex_lower(b),
        }
    }

    /// Whether the value's string form equals `s`, without allocating for strings.
    pub fn matches_str(&self, s: &str) -> bool {
        match self {
            Value::Str(v) => v == s,
            other => other.to_search_string() == s,
        }
    }
}

fn hex_lower(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[derive(Debug, Clone, PartialEq)]
pub struct KeyValue {
    pub key: Str,
    pub value: Value,
}

impl KeyValue {
    pub fn new(key: impl Into<Str>, value: Value) -> Self {
        KeyValue {
            key: key.into(),
            value,
        }
    }
}

/// The process (service) that emitted a span: shared by every span of one batch.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Process {
    pub service_name: String,
    pub tags: Vec<KeyValue>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Log {
    /// Microseconds since the Unix epoch.
    pub timestamp: u64,
    pub fields: Vec<KeyValue>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefType {
    ChildOf,
    FollowsFrom,
}

impl RefType {
    pub fn as_jaeger_str(self) -> &'static str {
        match self {
            RefType::ChildOf => "CHILD_OF",
            RefType::FollowsFrom => "FOLLOWS_FROM",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanRef {
    pub ref_type: RefType,
    pub trace_id: TraceId,
    pub span_id: SpanId,
}

/// Span kind as OpenTelemetry and Jaeger's `span.kind` tag name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum SpanKind {
    #[default]
    Unspecified,
    Internal,
    Server,
    Client,
    Producer,
    Consumer,
}

impl SpanKind {
    /// The `span.kind` tag value; empty for unspecified, as Jaeger's operations API shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            SpanKind::Unspecified => "",
            SpanKind::Internal => "internal",
            SpanKind::Server => "server",
            SpanKind::Client => "client",
            SpanKind::Producer => "producer",
            SpanKind::Consumer => "consumer",
        }
    }

    /// OTLP's number for the kind (also the byte the store's catalog keys use).
    pub fn otlp_number(self) -> u8 {
        match self {
            SpanKind::Unspecified => 0,
            SpanKind::Internal => 1,
            SpanKind::Server => 2,
            SpanKind::Client => 3,
            SpanKind::Producer => 4,
            SpanKind::Consumer => 5,
        }
    }

    pub fn from_otlp_number(n: i64) -> Option<SpanKind> {
        Some(match n {
            0 => SpanKind::Unspecified,
            1 => SpanKind::Internal,
            2 => SpanKind::Server,
            3 => SpanKind::Client,
            4 => SpanKind::Producer,
            5 => SpanKind::Consumer,
            _ => return None,
        })
    }

    pub fn parse(s: &str) -> Option<SpanKind> {
        Some(match s {
            "" => SpanKind::Unspecified,
            "internal" => SpanKind::Internal,
            "server" => SpanKind::Server,
            "client" => SpanKind::Client,
            "producer" => SpanKind::Producer,
            "consumer" => SpanKind::Consumer,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusCode {
    Unset,
    Ok,
    Error,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub code: StatusCode,
    pub message: Option<String>,
}

/// Tag keys the model gives meaning to.
pub mod keys {
    pub const SPAN_KIND: &str = "span.kind";
    pub const ERROR: &str = "error";
    pub const OTEL_STATUS_CODE: &str = "otel.status_code";
    pub const OTEL_STATUS_DESCRIPTION: &str = "otel.status_description";
    pub const OTEL_SCOPE_NAME: &str = "otel.scope.name";
    pub const OTEL_SCOPE_VERSION: &str = "otel.scope.version";
    pub const W3C_TRACESTATE: &str = "w3c.tracestate";
    /// An instrumentation scope's attribute, kept as a tag of the process its spans share
    /// (`otel.scope.attributes.KEY`).
    pub const SCOPE_ATTRIBUTE_PREFIX: &str = "otel.scope.attributes.";
    /// An attribute of a span's `N`th link, kept as a span tag (`otel.link.N.KEY`).
    pub const LINK_ATTRIBUTE_PREFIX: &str = "otel.link.";

    /// The key a tag is searched by: a scope's or a link's attribute by its own key, as
    /// span, log and resource attributes are; every other tag by its whole key.
    pub fn search_key(key: &str) -> &str {
        if !key.starts_with("otel.") {
            return key;
        }
        if let Some(k) = key.strip_prefix(SCOPE_ATTRIBUTE_PREFIX) {
            return k;
        }
        if let Some(rest) = key.strip_prefix(LINK_ATTRIBUTE_PREFIX) {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits > 0 {
                if let Some(k) = rest[digits..].strip_prefix('.') {
                    return k;
                }
            }
        }
        key
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub operation_name: String,
    pub references: Vec<SpanRef>,
    pub flags: u32,
    /// Microseconds since the Unix epoch.
    pub start_time: u64,
    /// Microseconds.
    pub duration: u64,
    pub tags: Vec<KeyValue>,
    pub logs: Vec<Log>,
    pub process: Arc<Process>,
}

impl Span {
    /// The first CHILD_OF reference within the same trace, which is what Jaeger calls the parent.
    pub fn parent_span_id(&self) -> Option<SpanId> {
        self.references
            .iter()
            .find(|r| r.ref_type == RefType::ChildOf && r.trace_id == self.trace_id)
            .map(|r| r.span_id)
    }

    pub fn tag(&self, key: &str) -> Option<&Value> {
        self.tags
            .iter()
            .find(|kv| kv.key == key)
            .map(|kv| &kv.value)
    }

    /// [`Span::kind`] and whether [`Span::status_code`] is `Error`, in one pass over the
    /// tags (the RED aggregation asks both of every span).
    pub fn kind_and_failed(&self) -> (SpanKind, bool) {
        let (mut kind, mut status, mut error) = (None, None, None);
        for kv in &self.tags {
            // tell the three keys apart by length before comparing bytes
            match kv.key.len() {
                9 if kv.key == keys::SPAN_KIND => kind = kind.or(Some(&kv.value)),
                16 if kv.key == keys::OTEL_STATUS_CODE => status = status.or(Some(&kv.value)),
                5 if kv.key == keys::ERROR => error = error.or(Some(&kv.value)),
                _ => {}
            }
        }
        let kind = match kind {
            Some(Value::Str(s)) => SpanKind::parse(s).unwrap_or(SpanKind::Unspecified),
            _ => SpanKind::Unspecified,
        };
        let failed = match status {
            Some(Value::Str(s)) if s == "ERROR" => true,
            Some(Value::Str(s)) if s == "OK" => false,
            _ => match error {
                Some(Value::Bool(b)) => *b,
                Some(Value::Str(s)) => s.eq_ignore_ascii_case("true"),
                _ => false,
            },
        };
        (kind, failed)
    }

    pub fn kind(&self) -> SpanKind {
        match self.tag(keys::SPAN_KIND) {
            Some(Value::Str(s)) => SpanKind::parse(s).unwrap_or(SpanKind::Unspecified),
            _ => SpanKind::Unspecified,
        }
    }

    /// Status from `otel.status_code`, falling back to Jaeger's `error` tag.
    pub fn status(&self) -> Status {
        let message = match self.tag(keys::OTEL_STATUS_DESCRIPTION) {
            Some(Value::Str(s)) => Some(s.to_string()),
            _ => None,
        };
        Status {
            code: self.status_code(),
            message,
        }
    }

    /// [`Span::status`]'s code alone (no copy of the description).
    pub fn status_code(&self) -> StatusCode {
        match self.tag(keys::OTEL_STATUS_CODE) {
            Some(Value::Str(s)) if s == "ERROR" => StatusCode::Error,
            Some(Value::Str(s)) if s == "OK" => StatusCode::Ok,
            _ if self.is_error() => StatusCode::Error,
            _ => StatusCode::Unset,
        }
    }

    /// Jaeger's error convention: a tag `error` that is true (bool or string).
    pub fn is_error(&self) -> bool {
        match self.tag(keys::ERROR) {
            Some(Value::Bool(b)) => *b,
            Some(Value::Str(s)) => s.eq_ignore_ascii_case("true"),
            _ => false,
        }
    }

    /// Whether the span carries `key=value` in its tags, its log fields or its process tags:
    /// the places a Jaeger tag search looks.
    pub fn has_tag_anywhere(&self, key: &str, value: &str) -> bool {
        let hit = |kvs: &[KeyValue]| {
            kvs.iter().any(|kv| {
                (kv.key == key || keys::search_key(&kv.key) == key) && kv.value.matches_str(value)
            })
        };
        hit(&self.tags) || hit(&self.process.tags) || self.logs.iter().any(|l| hit(&l.fields))
    }
}

#[cfg(test)]
impl Span {
    /// A bare span for unit tests: operation `op`, start 1 µs, duration 1 µs, no tags.
    pub(crate) fn for_test(trace: u128, id: u64, service: &str) -> Span {
        Span {
            trace_id: TraceId(trace),
            span_id: SpanId(id),
            operation_name: "op".into(),
            references: vec![],
            flags: 1,
            start_time: 1,
            duration: 1,
            tags: vec![],
            logs: vec![],
            process: Arc::new(Process {
                service_name: service.into(),
                tags: vec![],
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_and_failed_agrees_with_kind_and_status_code() {
        let str_ = |k: &str, v: &str| KeyValue::new(k, Value::Str(v.into()));
        let cases: Vec<Vec<KeyValue>> = vec![
            vec![],
            vec![str_("span.kind", "server")],
            vec![
                str_("span.kind", "consumer"),
                str_("otel.status_code", "ERROR"),
            ],
            vec![
                str_("otel.status_code", "OK"),
                KeyValue::new("error", Value::Bool(true)),
            ],
            vec![
                str_("otel.status_code", "UNSET"),
                KeyValue::new("error", Value::Bool(true)),
            ],
            vec![str_("error", "TRUE"), str_("span.kind", "bogus")],
            vec![
                KeyValue::new("error", Value::I64(1)),
                str_("span.kind", "client"),
            ],
            // the first of a repeated key counts, as `tag` finds it
            vec![str_("span.kind", "server"), str_("span.kind", "client")],
            vec![str_("error", "false"), str_("error", "true")],
            vec![str_("http.code", "500"), str_("kind.span", "server")],
        ];
        for tags in cases {
            let s = span(tags.clone());
            assert_eq!(
                s.kind_and_failed(),
                (s.kind(), s.status_code() == StatusCode::Error),
                "{tags:?}"
            );
        }
    }

    fn span(tags: Vec<KeyValue>) -> Span {
        Span {
            trace_id: TraceId(1),
            span_id: SpanId(2),
            operation_name: "op".into(),
            references: vec![],
            flags: 1,
            start_time: 0,
            duration: 0,
            tags,
            logs: vec![Log {
                timestamp: 1,
                fields: vec![KeyValue::new("event", Value::Str("hello".into()))],
            }],
            process: Arc::new(Process {
                service_name: "svc".into(),
                tags: vec![KeyValue::new("version", Value::Str("1".into()))],
            }),
        }
    }

    #[test]
    fn kind_and_status_read_the_tags() {
        let s = span(vec![
            KeyValue::new(keys::SPAN_KIND, Value::Str("server".into())),
            KeyValue::new(keys::ERROR, Value::Bool(true)),
        ]);
        assert_eq!(s.kind(), SpanKind::Server);
        assert_eq!(s.status().code, StatusCode::Error);
        assert_eq!(span(vec![]).status().code, StatusCode::Unset);
    }

    #[test]
    fn tag_search_looks_in_tags_logs_and_process() {
        let s = span(vec![KeyValue::new("http.status_code", Value::I64(200))]);
        assert!(s.has_tag_anywhere("http.status_code", "200"));
        assert!(s.has_tag_anywhere("event", "hello"));
        assert!(s.has_tag_anywhere("version", "1"));
        assert!(!s.has_tag_anywhere("version", "2"));
    }

    #[test]
    fn parent_is_first_child_of_in_same_trace() {
        let mut s = span(vec![]);
        s.references = vec![
            SpanRef {
                ref_type: RefType::FollowsFrom,
                trace_id: TraceId(1),
                span_id: SpanId(7),
            },
            SpanRef {
                ref_type: RefType::ChildOf,
                trace_id: TraceId(1),
                span_id: SpanId(9),
            },
        ];
        assert_eq!(s.parent_span_id(), Some(SpanId(9)));
    }
}
