//! Trace context at the gateway: which trace a call joins, read from whatever its caller
//! sent, and the context handed to the function.
//!
//! In, first valid one wins: the platform's `x-fc-tracing-opentracing-span-context`, W3C
//! `traceparent` (with `tracestate`), Jaeger `uber-trace-id`, B3 (single `b3` header, then
//! `X-B3-*`), AWS `X-Amzn-Trace-Id` (mapped as OpenTelemetry's X-Ray propagator maps it:
//! `Root=1-<8 hex>-<24 hex>` is the 128-bit trace id, `Parent` the span id). A header that
//! is present but malformed is skipped with a warning (a tag on InvokeFunction); with none
//! valid the call starts a fresh trace. The caller's sampling decision wins when it made
//! one; otherwise the function's strategy decides. Baggage comes from the platform's
//! `…-baggage-<key>` headers, W3C `baggage` and Jaeger `uberctx-<key>`, in that order of
//! precedence per key.
//!
//! Out: the platform's `x-fc-tracing-*` headers and W3C `traceparent`/`tracestate`/
//! `baggage`, both naming the Invocation span as parent, so a function with an unmodified
//! OpenTelemetry SDK continues the trace. This module runs no calls and builds no spans.

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use base64::Engine;
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS};

use crate::model::{SpanContext, SpanId, TraceId};
use crate::sampling::intelligent::Class;
use crate::sampling::HeadSampler;

pub const CONTEXT_HEADER: &str = "x-fc-tracing-opentracing-span-context";
pub const BAGGAGE_PREFIX: &str = "x-fc-tracing-opentracing-span-context-baggage-";
pub const BAGGAGES_HEADER: &str = "x-fc-tracing-opentracing-span-baggages";
pub const JAEGER_ENDPOINT_HEADER: &str = "x-fc-tracing-jaeger-endpoint";

/// Baggage items read at most (W3C's limit for one `baggage` header is 64 members).
const MAX_BAGGAGE_ITEMS: usize = 64;
/// Characters escaped in a W3C baggage value: controls, space, and the list's own
/// separators (RFC 3986 would allow more; this is what the W3C spec requires).
const BAGGAGE_VALUE: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b',')
    .add(b';')
    .add(b'\\')
    .add(b'%')
    .add(b'=');

/// The trace an invocation belongs to, decided from the inbound headers.
pub struct TraceDecision {
    pub trace_id: TraceId,
    pub caller: Option<SpanId>,
    pub sampled: bool,
    pub debug: bool,
    /// The header the context came from (`None` for a fresh trace): a tag on the span.
    pub format: Option<&'static str>,
    /// The caller's W3C `tracestate`, passed on unchanged.
    pub tracestate: Option<String>,
    pub warnings: Vec<String>,
    /// The call's URL for intelligent sampling's statistics (when it is on).
    pub url: Option<String>,
    /// The URL's class, when intelligent sampling made the decision.
    pub class: Option<Class>,
}

/// A context one inbound format carried: ids when it had them, and its sampling decision
/// when it made one.
struct Inbound {
    ids: Option<(TraceId, SpanId)>,
    sampled: Option<bool>,
    debug: bool,
}

pub fn random_span_id() -> SpanId {
    SpanId(fastrand::u64(1..))
}

/// The caller's context when it sent a valid one; otherwise a new trace, sampled by the
/// function's strategy unless the caller decided.
pub fn decide_trace(
    headers: &HeaderMap,
    sampler: &HeadSampler,
    platform_service: &str,
    route: &str,
) -> TraceDecision {
    type Reader = fn(&HeaderMap) -> Option<Result<Inbound, String>>;
    let readers: [(&'static str, Reader); 6] = [
        (CONTEXT_HEADER, fc_context),
        ("traceparent", traceparent),
        ("uber-trace-id", uber_trace_id),
        ("b3", b3_single),
        ("x-b3-traceid", b3_multi),
        ("x-amzn-trace-id", xray),
    ];
    let mut warnings = Vec::new();
    let mut decided: Option<(Inbound, &'static str)> = None;
    for (name, read) in readers {
        match read(headers) {
            None => {}
            Some(Err(e)) => warnings.push(format!("ignored malformed {name}: {e}")),
            Some(Ok(inbound)) => {
                decided = Some((inbound, name));
                break;
            }
        }
    }
    let tracestate = headers
        .get("tracestate")
        .and_then(|v| v.to_str().ok())
        .filter(|_| decided.as_ref().is_some_and(|d| d.1 == "traceparent"))
        .map(str::to_owned);
    let (ids, sampled, debug, format) = match decided {
        Some((i, name)) => (i.ids, i.sampled, i.debug, i.ids.map(|_| name)),
        None => (None, None, false, None),
    };
    // 64-bit trace ids for fresh traces, as function platforms write them.
    let trace_id = ids.map_or_else(|| TraceId(fastrand::u64(1..) as u128), |i| i.0);
    let url = sampler
        .intelligent()
        .map(|_| format!("{platform_service} {route}"));
    let mut class = None;
    let sampled = debug
        || sampled.unwrap_or_else(|| match (sampler.intelligent(), &url) {
            (Some(i), Some(url)) => {
                let (c, keep) = i.decide(url, crate::clock::now_us());
                class = Some(c);
                keep
            }
            _ => sampler.decide(platform_service, "InvokeFunction", trace_id),
        });
    TraceDecision {
        url,
        class,
        trace_id,
        caller: ids.map(|i| i.1),
        sampled,
        debug,
        format,
        tracestate,
        warnings,
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<Result<&'a str, String>> {
    headers.get(name).map(|v| {
        v.to_str()
            .map(str::trim)
            .map_err(|_| "not visible ASCII".to_owned())
    })
}

fn fc_context(headers: &HeaderMap) -> Option<Result<Inbound, String>> {
    Some(header(headers, CONTEXT_HEADER)?.and_then(jaeger_context))
}

fn uber_trace_id(headers: &HeaderMap) -> Option<Result<Inbound, String>> {
    // Jaeger clients may URL-encode the colons.
    Some(
        header(headers, "uber-trace-id")?
            .and_then(|s| jaeger_context(&s.replace("%3A", ":").replace("%3a", ":"))),
    )
}

fn jaeger_context(s: &str) -> Result<Inbound, String> {
    let ctx = s.parse::<SpanContext>().map_err(|e| e.to_string())?;
    Ok(Inbound {
        ids: Some((ctx.trace_id, ctx.span_id)),
        sampled: Some(ctx.is_sampled()),
        debug: ctx.is_debug(),
    })
}

/// Exactly `len` lower- or upper-case hex digits, not all zero.
fn hex_id(s: &str, len: usize, what: &str) -> Result<u128, String> {
    if s.len() != len || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("{what} must be {len} hex digits"));
    }
    match u128::from_str_radix(s, 16) {
        Ok(0) => Err(format!("{what} is zero")),
        Ok(v) => Ok(v),
        Err(_) => Err(format!("{what} must be {len} hex digits")),
    }
}

/// W3C Trace Context: `version-traceid-parentid-flags`; versions above 00 may append
/// fields, version ff is invalid.
fn traceparent(headers: &HeaderMap) -> Option<Result<Inbound, String>> {
    Some(header(headers, "traceparent")?.and_then(|s| {
        let parts: Vec<&str> = s.splitn(5, '-').collect();
        if parts.len() < 4 {
            return Err("must be version-traceid-parentid-flags".into());
        }
        let version = u8::from_str_radix(parts[0], 16)
            .ok()
            .filter(|_| parts[0].len() == 2)
            .ok_or("version must be 2 hex digits")?;
        if version == 0xff || (version == 0 && parts.len() != 4) {
            return Err(format!("version {} with {} fields", parts[0], parts.len()));
        }
        let trace = hex_id(parts[1], 32, "trace id")?;
        let span = hex_id(parts[2], 16, "parent id")?;
        let flags = u8::from_str_radix(parts[3], 16)
            .ok()
            .filter(|_| parts[3].len() == 2)
            .ok_or("flags must be 2 hex digits")?;
        Ok(Inbound {
            ids: Some((TraceId(trace), SpanId(span as u64))),
            sampled: Some(flags & 1 == 1),
            debug: false,
        })
    }))
}

fn b3_sampling(s: &str) -> Result<(Option<bool>, bool), String> {
    match s {
        "1" | "true" => Ok((Some(true), false)),
        "0" | "false" => Ok((Some(false), false)),
        "d" => Ok((Some(true), true)),
        _ => Err(format!("sampling state {s:?} is not 0, 1 or d")),
    }
}

fn b3_trace(s: &str) -> Result<u128, String> {
    hex_id(s, if s.len() == 16 { 16 } else { 32 }, "trace id")
}

/// `b3: {traceid}-{spanid}[-{sampling}[-{parentspanid}]]`, or a sampling state alone.
fn b3_single(headers: &HeaderMap) -> Option<Result<Inbound, String>> {
    Some(header(headers, "b3")?.and_then(|s| {
        let parts: Vec<&str> = s.split('-').collect();
        if parts.len() == 1 {
            let (sampled, debug) = b3_sampling(parts[0])?;
            return Ok(Inbound {
                ids: None,
                sampled,
                debug,
            });
        }
        if parts.len() > 4 {
            return Err("more than 4 fields".into());
        }
        let trace = b3_trace(parts[0])?;
        let span = hex_id(parts[1], 16, "span id")?;
        let (sampled, debug) = match parts.get(2) {
            Some(p) => b3_sampling(p)?,
            None => (None, false),
        };
        if let Some(p) = parts.get(3) {
            hex_id(p, 16, "parent span id")?;
        }
        Ok(Inbound {
            ids: Some((TraceId(trace), SpanId(span as u64))),
            sampled,
            debug,
        })
    }))
}

fn b3_multi(headers: &HeaderMap) -> Option<Result<Inbound, String>> {
    let trace = header(headers, "x-b3-traceid")?;
    Some(trace.and_then(|t| {
        let trace = b3_trace(t)?;
        let span = header(headers, "x-b3-spanid").ok_or("X-B3-SpanId is missing")??;
        let span = hex_id(span, 16, "span id")?;
        let debug = header(headers, "x-b3-flags").and_then(Result::ok) == Some("1");
        let sampled = match header(headers, "x-b3-sampled") {
            Some(s) => b3_sampling(s?)?.0,
            None => None,
        };
        Ok(Inbound {
            ids: Some((TraceId(trace), SpanId(span as u64))),
            sampled: if debug { Some(true) } else { sampled },
            debug,
        })
    }))
}

/// `Root=1-<epoch 8 hex>-<24 hex>;Parent=<16 hex>;Sampled=<0|1|?>`, fields in any order;
/// others (`Lineage`, `Self`) are ignored.
fn xray(headers: &HeaderMap) -> Option<Result<Inbound, String>> {
    Some(header(headers, "x-amzn-trace-id")?.and_then(|s| {
        let (mut root, mut parent, mut sampled) = (None, None, None);
        for field in s.split(';') {
            let (k, v) = field.trim().split_once('=').unwrap_or((field.trim(), ""));
            match k {
                "Root" => root = Some(v),
                "Parent" => parent = Some(v),
                "Sampled" => sampled = Some(v),
                _ => {}
            }
        }
        let root = root.ok_or("Root is missing")?;
        let trace = match root.split('-').collect::<Vec<_>>()[..] {
            ["1", epoch, unique] if epoch.len() == 8 && unique.len() == 24 => {
                hex_id(&format!("{epoch}{unique}"), 32, "Root")?
            }
            _ => return Err("Root must be 1-<8 hex>-<24 hex>".into()),
        };
        let parent = hex_id(parent.ok_or("Parent is missing")?, 16, "Parent")?;
        let sampled = match sampled {
            Some("1") => Some(true),
            Some("0") => Some(false),
            Some("?") | None => None,
            Some(other) => return Err(format!("Sampled {other:?} is not 0, 1 or ?")),
        };
        Ok(Inbound {
            ids: Some((TraceId(trace), SpanId(parent as u64))),
            sampled,
            debug: false,
        })
    }))
}

/// Baggage items from the platform's `…-baggage-<key>` headers, W3C `baggage` and Jaeger
/// `uberctx-<key>`, sorted by key; a key's first source wins.
pub fn baggage(headers: &HeaderMap) -> Vec<(String, String)> {
    let mut items: Vec<(String, String)> = Vec::new();
    let mut add = |k: &str, v: &str| {
        if items.len() < MAX_BAGGAGE_ITEMS && !k.is_empty() && !items.iter().any(|(x, _)| x == k) {
            items.push((k.to_owned(), v.to_owned()));
        }
    };
    for (k, v) in headers {
        if let (Some(key), Ok(v)) = (k.as_str().strip_prefix(BAGGAGE_PREFIX), v.to_str()) {
            add(key, v);
        }
    }
    for v in headers.get_all("baggage") {
        let Ok(list) = v.to_str() else { continue };
        for member in list.split(',') {
            // properties after ';' are metadata of the member, not part of its value
            let kv = member.split(';').next().unwrap_or_default();
            if let Some((k, v)) = kv.split_once('=') {
                if let Ok(v) = percent_decode_str(v.trim()).decode_utf8() {
                    add(k.trim(), &v);
                }
            }
        }
    }
    for (k, v) in headers {
        if let (Some(key), Ok(v)) = (k.as_str().strip_prefix("uberctx-"), v.to_str()) {
            if let Ok(v) = percent_decode_str(v).decode_utf8() {
                add(key, &v);
            }
        }
    }
    items.sort();
    items
}

/// Headers that carry an inbound context: not relayed to the function, which gets the
/// gateway's own.
pub fn is_context_header(name: &str) -> bool {
    name.starts_with("x-fc-")
        || name.starts_with("uberctx-")
        || name.starts_with("x-b3-")
        || matches!(
            name,
            "traceparent" | "tracestate" | "baggage" | "uber-trace-id" | "b3" | "x-amzn-trace-id"
        )
}

/// The context headers handed to the function: the Invocation span (`span`, child of
/// InvokeFunction `parent`) in both the platform's and W3C's form.
pub fn outbound(
    h: &mut HeaderMap,
    decision: &TraceDecision,
    span: SpanId,
    parent: SpanId,
    flags: u8,
    baggage: &[(String, String)],
) {
    let mut put = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(HeaderName::from_static(name), v);
        }
    };
    let ctx = SpanContext {
        trace_id: decision.trace_id,
        span_id: span,
        parent_span_id: parent,
        flags,
    };
    put(CONTEXT_HEADER, ctx.to_string());
    let map: serde_json::Map<String, serde_json::Value> = baggage
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str())))
        .collect();
    put(
        BAGGAGES_HEADER,
        base64::engine::general_purpose::STANDARD
            .encode(serde_json::Value::Object(map).to_string()),
    );
    put(
        "traceparent",
        format!(
            "00-{:032x}-{:016x}-{:02x}",
            decision.trace_id.0,
            span.0,
            flags & 1
        ),
    );
    if let Some(state) = &decision.tracestate {
        put("tracestate", state.clone());
    }
    if !baggage.is_empty() {
        let list: Vec<String> = baggage
            .iter()
            .map(|(k, v)| format!("{k}={}", utf8_percent_encode(v, BAGGAGE_VALUE)))
            .collect();
        put("baggage", list.join(","));
    }
}

#[cfg(test)]
#[path = "context_tests.rs"]
mod tests;
