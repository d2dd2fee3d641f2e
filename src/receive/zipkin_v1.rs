//! Zipkin's v1 JSON (`POST /api/v1/spans`) read into v2 [`ZSpan`]s, the way Zipkin's own
//! v1-to-v2 conversion does it: the core annotations (`cs`/`cr`, `sr`/`ss`, `ms`, `mr`)
//! become the span's kind, timestamp, duration and local endpoint; a span holding both a
//! client and a server side becomes two, the server's marked shared; the `ca`, `sa` and
//! `ma` address annotations become remote endpoints; `lc` names a local span's service;
//! other binary annotations become tags of the side whose service reported them.
//! The mapping to the model is `zipkin::to_model`'s, shared with v2.

use serde::Deserialize;

use super::limits::Limits;
use super::zipkin::{
    charge_json, check_limits, span_id, trace_id, JsonAnnotation, JsonEndpoint, Kind, Scalar,
    ZSpan, ZipkinError,
};
use crate::budget::Reservation;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct V1Span {
    trace_id: String,
    id: String,
    #[serde(default)]
    parent_id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    timestamp: Option<u64>,
    #[serde(default)]
    duration: Option<u64>,
    #[serde(default)]
    debug: Option<bool>,
    #[serde(default)]
    annotations: Option<Vec<V1Annotation>>,
    #[serde(default)]
    binary_annotations: Option<Vec<V1Binary>>,
}

#[derive(Deserialize)]
struct V1Annotation {
    #[serde(flatten)]
    a: JsonAnnotation,
    #[serde(default)]
    endpoint: Option<JsonEndpoint>,
}

#[derive(Deserialize)]
struct V1Binary {
    key: String,
    value: Scalar,
    #[serde(default)]
    endpoint: Option<JsonEndpoint>,
}

/// Decode a v1 JSON list of spans into v2 spans (one or two per v1 span).
pub fn decode_json_v1(
    body: &[u8],
    limits: &Limits,
    mem: &mut Reservation,
) -> Result<Vec<ZSpan>, ZipkinError> {
    charge_json(body, mem)?;
    let list: Vec<V1Span> =
        serde_json::from_slice(body).map_err(|e| ZipkinError::Json(e.to_string()))?;
    let mut out = Vec::with_capacity(list.len());
    for (index, v1) in list.into_iter().enumerate() {
        convert(v1, &mut out).map_err(|message| ZipkinError::Span { index, message })?;
    }
    check_limits(&out, limits)?;
    Ok(out)
}

/// One side of a v1 span, while it is being assembled.
struct Side {
    span: ZSpan,
    start: Option<u64>,
    end: Option<u64>,
}

fn convert(v1: V1Span, out: &mut Vec<ZSpan>) -> Result<(), String> {
    let base = ZSpan {
        trace_id: trace_id(&v1.trace_id)?,
        id: span_id("id", &v1.id)?,
        parent_id: match v1.parent_id.as_deref().filter(|p| !p.is_empty()) {
            Some(p) => Some(span_id("parentId", p)?),
            None => None,
        },
        name: v1.name.unwrap_or_default(),
        debug: v1.debug.unwrap_or(false),
        ..ZSpan::default()
    };
    let mut sides: Vec<(Kind, Side)> = Vec::new();
    let mut plain: Vec<(u64, String)> = Vec::new();
    let mut local = None;
    for ann in v1.annotations.unwrap_or_default() {
        let endpoint = ann.endpoint.as_ref().map(|e| e.to_endpoint()).transpose()?;
        let (kind, is_start) = match ann.a.value.as_str() {
            "cs" => (Kind::Client, true),
            "cr" => (Kind::Client, false),
            "sr" => (Kind::Server, true),
            "ss" => (Kind::Server, false),
            "ms" => (Kind::Producer, true),
            "mr" => (Kind::Consumer, true),
            _ => {
                if local.is_none() {
                    local = endpoint;
                }
                plain.push((ann.a.timestamp, ann.a.value));
                continue;
            }
        };
        let i = match sides.iter().position(|(k, _)| *k == kind) {
            Some(i) => i,
            None => {
                sides.push((
                    kind,
                    Side {
                        span: ZSpan {
                            kind: Some(kind),
                            ..base.clone()
                        },
                        start: None,
                        end: None,
                    },
                ));
                sides.len() - 1
            }
        };
        let side = &mut sides[i].1;
        if is_start {
            side.start = Some(ann.a.timestamp);
        } else {
            side.end = Some(ann.a.timestamp);
        }
        if side.span.local.is_none() {
            side.span.local = endpoint;
        }
    }
    if sides.is_empty() {
        sides.push((
            Kind::Client, // placeholder: a local span has no kind
            Side {
                span: ZSpan {
                    local,
                    ..base.clone()
                },
                start: None,
                end: None,
            },
        ));
    }
    for b in v1.binary_annotations.unwrap_or_default() {
        let endpoint = b.endpoint.as_ref().map(|e| e.to_endpoint()).transpose()?;
        let address_of = match b.key.as_str() {
            "ca" => Some(Kind::Server),
            "sa" => Some(Kind::Client),
            "ma" => None,
            _ => {
                // a tag goes to the side its service reported, else the first side
                let service = endpoint.as_ref().map(|e| e.service_name.as_str());
                let i = sides
                    .iter()
                    .position(|(_, s)| {
                        service.is_some()
                            && s.span.local.as_ref().map(|l| l.service_name.as_str()) == service
                    })
                    .unwrap_or(0);
                let side = &mut sides[i].1;
                if b.key == "lc" && side.span.local.is_none() {
                    side.span.local = endpoint;
                }
                side.span.tags.push((b.key, b.value.into_string()));
                continue;
            }
        };
        for (kind, side) in sides.iter_mut() {
            let wanted = match address_of {
                Some(k) => *kind == k,
                None => matches!(kind, Kind::Producer | Kind::Consumer),
            };
            if wanted && side.span.remote.is_none() {
                side.span.remote = endpoint.clone();
            }
        }
    }
    let n = sides.len();
    let has_client = sides.iter().any(|(k, _)| *k == Kind::Client);
    for (i, (kind, mut side)) in sides.into_iter().enumerate() {
        let local_span = side.span.kind.is_none();
        // the first side owns the v1 span's own timestamp and duration; a server that
        // shares its id with a client (in this span or one reported apart) is shared
        let owns_times = i == 0;
        side.span.timestamp = match (owns_times, v1.timestamp) {
            (true, Some(ts)) => ts,
            _ => side.start.or(side.end).unwrap_or(0),
        };
        side.span.duration = match (owns_times, v1.duration) {
            (true, Some(d)) => d,
            _ => match (side.start, side.end) {
                (Some(s), Some(e)) if e >= s => e - s,
                _ => 0,
            },
        };
        if side.span.timestamp == 0 {
            side.span.timestamp = plain.iter().map(|a| a.0).min().unwrap_or(0);
        }
        if kind == Kind::Server && !local_span {
            side.span.shared = has_client || v1.timestamp.is_none();
        }
        if i == 0 || n == 1 {
            side.span.annotations = std::mem::take(&mut plain);
        }
        out.push(side.span);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(body: &str) -> Vec<ZSpan> {
        decode_json_v1(
            body.as_bytes(),
            &Limits::default(),
            &mut Reservation::unlimited(),
        )
        .unwrap()
    }

    #[test]
    fn a_client_and_server_span_becomes_two() {
        let spans = decode(
            r#"[{"traceId":"a","id":"b","parentId":"c","name":"get","timestamp":100,"duration":50,
            "annotations":[
              {"timestamp":100,"value":"cs","endpoint":{"serviceName":"Front","ipv4":"10.0.0.1"}},
              {"timestamp":110,"value":"sr","endpoint":{"serviceName":"back","ipv4":"10.0.0.2"}},
              {"timestamp":120,"value":"cache-miss","endpoint":{"serviceName":"back"}},
              {"timestamp":140,"value":"ss","endpoint":{"serviceName":"back"}},
              {"timestamp":150,"value":"cr","endpoint":{"serviceName":"front"}}],
            "binaryAnnotations":[
              {"key":"http.path","value":"/x","endpoint":{"serviceName":"back"}},
              {"key":"sa","value":true,"endpoint":{"serviceName":"back","port":8080}}]}]"#,
        );
        assert_eq!(spans.len(), 2);
        let (client, server) = (&spans[0], &spans[1]);
        assert_eq!(client.kind, Some(Kind::Client));
        assert_eq!(client.local.as_ref().unwrap().service_name, "Front");
        assert_eq!((client.timestamp, client.duration), (100, 50));
        assert_eq!(client.remote.as_ref().unwrap().port, Some(8080));
        assert!(!client.shared);
        assert_eq!(client.annotations, vec![(120, "cache-miss".to_owned())]);
        assert_eq!(server.kind, Some(Kind::Server));
        assert!(server.shared);
        assert_eq!((server.timestamp, server.duration), (110, 30));
        assert_eq!(server.tags, vec![("http.path".to_owned(), "/x".to_owned())]);
        assert_eq!(server.id, client.id);
    }

    #[test]
    fn a_local_span_takes_its_service_from_lc() {
        let spans = decode(
            r#"[{"traceId":"a","id":"b","name":"work","timestamp":5,"duration":2,
            "binaryAnnotations":[{"key":"lc","value":"batch","endpoint":{"serviceName":"worker"}}]}]"#,
        );
        assert_eq!(spans.len(), 1);
        assert_eq!(spans[0].kind, None);
        assert_eq!(spans[0].local.as_ref().unwrap().service_name, "worker");
        assert_eq!(spans[0].tags, vec![("lc".to_owned(), "batch".to_owned())]);
        assert_eq!((spans[0].timestamp, spans[0].duration), (5, 2));
    }
}
