//! Zipkin's span model in: v2 JSON and protobuf (`POST /api/v2/spans`), and the one
//! mapping from a Zipkin span to the model. v1 JSON is turned into the same [`ZSpan`]s by
//! `zipkin_v1`.
//!
//! The mapping is the one Jaeger's collector applies: the local endpoint becomes the
//! process (service name, `ip`), the remote endpoint `peer.service`, `peer.ipv4`,
//! `peer.ipv6` and `peer.port` tags, `kind` the `span.kind` tag, annotations logs with an
//! `event` field, an `error` tag `error=true` (its message, when there is one, kept as
//! `error.message`), `debug` the debug flag. Zipkin lets a client and a server report one
//! span id between them (`shared`); fctrace keeps both by giving the server half an id
//! derived from the shared one, child of the client half, as Jaeger's query side does.
//! Bodies are charged to the request's memory budget before they are parsed.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use serde::Deserialize;
use thiserror::Error;

use super::limits::{LimitError, Limits};
use super::proto_fields::Fields;
use crate::budget::Reservation;
use crate::model::{KeyValue, Log, Process, RefType, Span, SpanId, SpanRef, TraceId, Value};

/// The service name of a span with no local endpoint, as Jaeger names it.
pub const UNKNOWN_SERVICE: &str = "unknown-service-name";

#[allow(clippy::all)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/zipkin.proto3.rs"));
}

#[derive(Debug, Error)]
pub enum ZipkinError {
    #[error("span {index}: {message}")]
    Span { index: usize, message: String },
    #[error("not a JSON list of spans: {0}")]
    Json(String),
    #[error("not a protobuf ListOfSpans: {0}")]
    Protobuf(String),
    #[error(transparent)]
    Limit(#[from] LimitError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Client,
    Server,
    Producer,
    Consumer,
}

impl Kind {
    fn tag(self) -> &'static str {
        match self {
            Kind::Client => "client",
            Kind::Server => "server",
            Kind::Producer => "producer",
            Kind::Consumer => "consumer",
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        match s.to_ascii_uppercase().as_str() {
            "CLIENT" => Some(Kind::Client),
            "SERVER" => Some(Kind::Server),
            "PRODUCER" => Some(Kind::Producer),
            "CONSUMER" => Some(Kind::Consumer),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    pub service_name: String,
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
    pub port: Option<u16>,
}

/// A Zipkin v2 span with its ids parsed: what every Zipkin encoding is read into.
#[derive(Debug, Clone, Default)]
pub struct ZSpan {
    pub trace_id: TraceId,
    pub id: SpanId,
    pub parent_id: Option<SpanId>,
    pub name: String,
    pub kind: Option<Kind>,
    pub timestamp: u64,
    pub duration: u64,
    pub debug: bool,
    pub shared: bool,
    pub local: Option<Endpoint>,
    pub remote: Option<Endpoint>,
    pub annotations: Vec<(u64, String)>,
    pub tags: Vec<(String, String)>,
}

/// Map Zipkin spans to the model; spans with one local endpoint share one process.
pub fn to_model(spans: Vec<ZSpan>) -> Vec<Span> {
    let mut processes: BTreeMap<Option<Endpoint>, Arc<Process>> = BTreeMap::new();
    spans
        .into_iter()
        .map(|z| {
            let process = processes
                .entry(z.local.clone().map(|mut e| {
                    // the port is the connection's, not the process's
                    e.port = None;
                    e
                }))
                .or_insert_with_key(|local| Arc::new(process(local.as_ref())))
                .clone();
            span(z, process)
        })
        .collect()
}

fn process(local: Option<&Endpoint>) -> Process {
    let mut p = Process {
        service_name: local
            .map(|e| e.service_name.as_str())
            .filter(|s| !s.is_empty())
            .unwrap_or(UNKNOWN_SERVICE)
            .to_owned(),
        tags: Vec::new(),
    };
    if let Some(e) = local {
        if let Some(ip) = e
            .ipv4
            .map(|ip| ip.to_string())
            .or(e.ipv6.map(|ip| ip.to_string()))
        {
            p.tags.push(KeyValue::new("ip", Value::Str(ip.into())));
        }
    }
    p
}

/// The id the server half of a shared span is stored under: derived from the shared id
/// (so a retried report lands on the same span), never zero, never the shared id.
pub fn server_half_id(shared: SpanId) -> SpanId {
    let h = xxhash_rust::xxh3::xxh3_64_with_seed(&shared.0.to_be_bytes(), 0x7a69_706b);
    SpanId(if h == 0 || h == shared.0 { h ^ 1 } else { h })
}

fn span(z: ZSpan, process: Arc<Process>) -> Span {
    let mut tags = Vec::with_capacity(z.tags.len() + 5);
    if let Some(kind) = z.kind {
        tags.push(KeyValue::new("span.kind", Value::Str(kind.tag().into())));
    }
    if let Some(r) = &z.remote {
        if !r.service_name.is_empty() {
            tags.push(KeyValue::new(
                "peer.service",
                Value::Str(r.service_name.clone().into()),
            ));
        }
        if let Some(ip) = r.ipv4 {
            tags.push(KeyValue::new(
                "peer.ipv4",
                Value::Str(compact_str::ToCompactString::to_compact_string(&ip)),
            ));
        }
        if let Some(ip) = r.ipv6 {
            tags.push(KeyValue::new(
                "peer.ipv6",
                Value::Str(compact_str::ToCompactString::to_compact_string(&ip)),
            ));
        }
        if let Some(port) = r.port {
            tags.push(KeyValue::new("peer.port", Value::I64(port.into())));
        }
    }
    for (k, v) in z.tags {
        if k == "error" {
            tags.push(KeyValue::new("error", Value::Bool(true)));
            if !v.is_empty() && v != "true" {
                tags.push(KeyValue::new("error.message", Value::Str(v.into())));
            }
        } else {
            tags.push(KeyValue::new(k, Value::Str(v.into())));
        }
    }
    let (span_id, parent) = if z.shared && z.kind == Some(Kind::Server) {
        (server_half_id(z.id), Some(z.id))
    } else {
        (z.id, z.parent_id)
    };
    Span {
        trace_id: z.trace_id,
        span_id,
        operation_name: z.name,
        references: parent
            .filter(|p| p.0 != 0)
            .map(|p| SpanRef {
                ref_type: RefType::ChildOf,
                trace_id: z.trace_id,
                span_id: p,
            })
            .into_iter()
            .collect(),
        flags: if z.debug { 1 | 2 } else { 1 },
        start_time: z.timestamp,
        duration: z.duration,
        tags,
        logs: z
            .annotations
            .into_iter()
            .map(|(timestamp, value)| Log {
                timestamp,
                fields: vec![KeyValue::new("event", Value::Str(value.into()))],
            })
            .collect(),
        process,
    }
}

/// Check counts against the request's caps once spans are read.
pub fn check_limits(spans: &[ZSpan], limits: &Limits) -> Result<(), LimitError> {
    limits.spans(spans.len())?;
    for s in spans {
        limits.tags("Span.tags", s.tags.len())?;
        limits.logs(s.annotations.len())?;
    }
    Ok(())
}

/// Charge a JSON body's parse before it happens (see `otlp_cost::json_values`).
pub fn charge_json(body: &[u8], mem: &mut Reservation) -> Result<(), LimitError> {
    mem.charge_each(
        super::otlp_cost::json_values(body),
        super::otlp_cost::JSON_VALUE_COST,
    )?;
    mem.charge(body.len())?;
    Ok(())
}

// ---- v2 JSON ----

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonSpan {
    trace_id: String,
    id: String,
    #[serde(default)]
    parent_id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    timestamp: Option<u64>,
    #[serde(default)]
    duration: Option<u64>,
    #[serde(default)]
    debug: Option<bool>,
    #[serde(default)]
    shared: Option<bool>,
    #[serde(default)]
    local_endpoint: Option<JsonEndpoint>,
    #[serde(default)]
    remote_endpoint: Option<JsonEndpoint>,
    #[serde(default)]
    annotations: Option<Vec<JsonAnnotation>>,
    #[serde(default)]
    tags: Option<BTreeMap<String, Scalar>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct JsonEndpoint {
    #[serde(default)]
    pub service_name: Option<String>,
    #[serde(default)]
    pub ipv4: Option<String>,
    #[serde(default)]
    pub ipv6: Option<String>,
    #[serde(default)]
    pub port: Option<i64>,
}

impl JsonEndpoint {
    pub(super) fn to_endpoint(&self) -> Result<Endpoint, String> {
        let ipv4 = match self.ipv4.as_deref().filter(|s| !s.is_empty()) {
            Some(s) => Some(
                s.parse()
                    .map_err(|_| format!("ipv4 {s:?} is not an address"))?,
            ),
            None => None,
        };
        let ipv6 = match self.ipv6.as_deref().filter(|s| !s.is_empty()) {
            Some(s) => Some(
                s.parse()
                    .map_err(|_| format!("ipv6 {s:?} is not an address"))?,
            ),
            None => None,
        };
        Ok(Endpoint {
            // as sent: Zipkin's server lowers service names, Jaeger (whose searches
            // users bring) keeps them
            service_name: self.service_name.clone().unwrap_or_default(),
            ipv4,
            ipv6,
            port: self
                .port
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p != 0),
        })
    }
}

#[derive(Deserialize)]
pub(super) struct JsonAnnotation {
    pub timestamp: u64,
    pub value: String,
}

/// A tag or binary-annotation value: Zipkin says strings, clients also send numbers and
/// booleans.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum Scalar {
    Str(String),
    Bool(bool),
    Num(serde_json::Number),
}

impl Scalar {
    pub(super) fn into_string(self) -> String {
        match self {
            Scalar::Str(s) => s,
            Scalar::Bool(b) => b.to_string(),
            Scalar::Num(n) => n.to_string(),
        }
    }
}

pub(super) fn trace_id(s: &str) -> Result<TraceId, String> {
    TraceId::from_hex(s)
        .map_err(|e| format!("traceId: {e}"))
        .and_then(|t| {
            if t.0 == 0 {
                Err("traceId is zero".into())
            } else {
                Ok(t)
            }
        })
}

pub(super) fn span_id(what: &str, s: &str) -> Result<SpanId, String> {
    SpanId::from_hex(s)
        .map_err(|e| format!("{what}: {e}"))
        .and_then(|t| {
            if t.0 == 0 {
                Err(format!("{what} is zero"))
            } else {
                Ok(t)
            }
        })
}

/// Decode a v2 JSON list of spans.
pub fn decode_json_v2(
    body: &[u8],
    limits: &Limits,
    mem: &mut Reservation,
) -> Result<Vec<ZSpan>, ZipkinError> {
    charge_json(body, mem)?;
    let list: Vec<JsonSpan> =
        serde_json::from_slice(body).map_err(|e| ZipkinError::Json(e.to_string()))?;
    let spans = list
        .into_iter()
        .enumerate()
        .map(|(index, j)| json_span(j).map_err(|message| ZipkinError::Span { index, message }))
        .collect::<Result<Vec<_>, _>>()?;
    check_limits(&spans, limits)?;
    Ok(spans)
}

fn json_span(j: JsonSpan) -> Result<ZSpan, String> {
    let kind = match j.kind.as_deref() {
        None | Some("") => None,
        Some(k) => Some(Kind::parse(k).ok_or_else(|| {
            format!("kind {k:?} is not one of CLIENT, SERVER, PRODUCER, CONSUMER")
        })?),
    };
    let annotations: Vec<(u64, String)> = j
        .annotations
        .unwrap_or_default()
        .into_iter()
        .map(|a| (a.timestamp, a.value))
        .collect();
    Ok(ZSpan {
        trace_id: trace_id(&j.trace_id)?,
        id: span_id("id", &j.id)?,
        parent_id: match j.parent_id.as_deref().filter(|p| !p.is_empty()) {
            Some(p) => Some(span_id("parentId", p)?),
            None => None,
        },
        name: j.name.unwrap_or_default(),
        kind,
        // a span reported without its timestamp starts at its first annotation
        timestamp: j
            .timestamp
            .or_else(|| annotations.iter().map(|a| a.0).min())
            .unwrap_or(0),
        duration: j.duration.unwrap_or(0),
        debug: j.debug.unwrap_or(false),
        shared: j.shared.unwrap_or(false),
        local: j.local_endpoint.map(|e| e.to_endpoint()).transpose()?,
        remote: j.remote_endpoint.map(|e| e.to_endpoint()).transpose()?,
        annotations,
        tags: j
            .tags
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.into_string()))
            .collect(),
    })
}

// ---- protobuf ----

/// Decode a protobuf `ListOfSpans`, after counting its spans, annotations and tags on
/// the wire and charging them, so a body of empty spans cannot become a large allocation.
pub fn decode_proto(
    body: &[u8],
    limits: &Limits,
    mem: &mut Reservation,
) -> Result<Vec<ZSpan>, ZipkinError> {
    use prost::Message;
    let (spans, elements) = count_proto(body).map_err(ZipkinError::Protobuf)?;
    limits.spans(spans)?;
    mem.charge_each(
        spans,
        std::mem::size_of::<pb::Span>() + std::mem::size_of::<Span>(),
    )
    .and_then(|_| mem.charge_each(elements, 128))
    .and_then(|_| mem.charge(body.len()))
    .map_err(LimitError::from)?;
    let list = pb::ListOfSpans::decode(body).map_err(|e| ZipkinError::Protobuf(e.to_string()))?;
    let spans = list
        .spans
        .into_iter()
        .enumerate()
        .map(|(index, s)| proto_span(s).map_err(|message| ZipkinError::Span { index, message }))
        .collect::<Result<Vec<_>, _>>()?;
    check_limits(&spans, limits)?;
    Ok(spans)
}

/// Spans (field 1 of the list) and their annotations and tags (fields 10 and 11 of a span),
/// counted by walking the wire without decoding.
fn count_proto(body: &[u8]) -> Result<(usize, usize), String> {
    let mut spans = 0;
    let mut elements = 0;
    for (field, value) in Fields::new(body) {
        let value = value?;
        if field == 1 {
            spans += 1;
            for (f, v) in Fields::new(value) {
                v?;
                if f == 10 || f == 11 {
                    elements += 1;
                }
            }
        }
    }
    Ok((spans, elements))
}

fn id_bytes(what: &str, b: &[u8]) -> Result<u128, String> {
    match b.len() {
        8 | 16 => {
            let mut a = [0u8; 16];
            a[16 - b.len()..].copy_from_slice(b);
            Ok(u128::from_be_bytes(a))
        }
        n => Err(format!("{what} is {n} bytes; Zipkin ids are 8 or 16 bytes")),
    }
}

fn proto_endpoint(e: pb::Endpoint) -> Result<Endpoint, String> {
    let ipv4 = match e.ipv4.len() {
        0 => None,
        4 => Some(Ipv4Addr::new(e.ipv4[0], e.ipv4[1], e.ipv4[2], e.ipv4[3])),
        n => return Err(format!("ipv4 is {n} bytes")),
    };
    let ipv6 = match <[u8; 16]>::try_from(e.ipv6.as_slice()) {
        Ok(a) => Some(Ipv6Addr::from(a)),
        Err(_) if e.ipv6.is_empty() => None,
        Err(_) => return Err(format!("ipv6 is {} bytes", e.ipv6.len())),
    };
    Ok(Endpoint {
        service_name: e.service_name,
        ipv4,
        ipv6,
        port: u16::try_from(e.port).ok().filter(|p| *p != 0),
    })
}

fn proto_span(s: pb::Span) -> Result<ZSpan, String> {
    let trace = id_bytes("trace_id", &s.trace_id)?;
    if trace == 0 {
        return Err("trace_id is zero".into());
    }
    if s.id.len() != 8 {
        return Err(format!("id is {} bytes; span ids are 8", s.id.len()));
    }
    let id = id_bytes("id", &s.id)? as u64;
    if id == 0 {
        return Err("id is zero".into());
    }
    let parent_id = match s.parent_id.len() {
        0 => None,
        8 => Some(SpanId(id_bytes("parent_id", &s.parent_id)? as u64)),
        n => return Err(format!("parent_id is {n} bytes; span ids are 8")),
    };
    let kind = match pb::span::Kind::try_from(s.kind) {
        Ok(pb::span::Kind::Client) => Some(Kind::Client),
        Ok(pb::span::Kind::Server) => Some(Kind::Server),
        Ok(pb::span::Kind::Producer) => Some(Kind::Producer),
        Ok(pb::span::Kind::Consumer) => Some(Kind::Consumer),
        _ => None,
    };
    let annotations: Vec<(u64, String)> = s
        .annotations
        .into_iter()
        .map(|a| (a.timestamp, a.value))
        .collect();
    let mut tags: Vec<(String, String)> = s.tags.into_iter().collect();
    // a hash map's order is arbitrary: store tags in a stable one
    tags.sort_unstable();
    Ok(ZSpan {
        trace_id: TraceId(trace),
        id: SpanId(id),
        parent_id,
        name: s.name,
        kind,
        timestamp: if s.timestamp != 0 {
            s.timestamp
        } else {
            annotations.iter().map(|a| a.0).min().unwrap_or(0)
        },
        duration: s.duration,
        debug: s.debug,
        shared: s.shared,
        local: s.local_endpoint.map(proto_endpoint).transpose()?,
        remote: s.remote_endpoint.map(proto_endpoint).transpose()?,
        annotations,
        tags,
    })
}

#[cfg(test)]
#[path = "zipkin_tests.rs"]
mod tests;
