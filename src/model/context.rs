//! The Jaeger / function-platform trace context string `traceId:spanId:parentSpanId:flags`.
//!
//! Read leniently (1..=32 hex digits per id, any case, flags in hex), written strictly:
//! lower case, ids zero-padded to 16 digits (trace ids to 32 only when the high half is
//! set), flags only 0, 1 (sampled) or 3 (sampled + debug).

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

use super::{IdError, SpanId, TraceId};

pub const FLAG_SAMPLED: u8 = 1;
pub const FLAG_DEBUG: u8 = 2;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ContextError {
    #[error("span context must have 4 parts separated by ':', found {0}")]
    Parts(usize),
    #[error("span context trace id: {0}")]
    TraceId(IdError),
    #[error("span context span id: {0}")]
    SpanId(IdError),
    #[error("span context parent span id: {0}")]
    ParentId(IdError),
    #[error("span context flags {0:?} are not a hex number")]
    Flags(String),
    #[error("span context has a zero trace id or span id")]
    Zero,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanContext {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    /// Zero when the span is a root.
    pub parent_span_id: SpanId,
    pub flags: u8,
}

impl SpanContext {
    pub fn is_sampled(&self) -> bool {
        self.flags & FLAG_SAMPLED != 0
    }
    pub fn is_debug(&self) -> bool {
        self.flags & FLAG_DEBUG != 0
    }
    /// Flags as written: debug implies sampled, other bits are dropped.
    fn written_flags(&self) -> u8 {
        if self.is_debug() {
            FLAG_SAMPLED | FLAG_DEBUG
        } else {
            self.flags & FLAG_SAMPLED
        }
    }
}

impl FromStr for SpanContext {
    type Err = ContextError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.trim().splitn(5, ':').collect();
        if parts.len() != 4 {
            return Err(ContextError::Parts(parts.len()));
        }
        let trace_id = TraceId::from_hex(parts[0]).map_err(ContextError::TraceId)?;
        let span_id = SpanId::from_hex(parts[1]).map_err(ContextError::SpanId)?;
        let parent_span_id = SpanId::from_hex(parts[2]).map_err(ContextError::ParentId)?;
        let flags = u8::from_str_radix(parts[3], 16)
            .ok()
            .filter(|_| !parts[3].starts_with('+'))
            .ok_or_else(|| ContextError::Flags(parts[3].chars().take(10).collect()))?;
        if trace_id.0 == 0 || span_id.0 == 0 {
            return Err(ContextError::Zero);
        }
        Ok(SpanContext {
            trace_id,
            span_id,
            parent_span_id,
            flags,
        })
    }
}

impl fmt::Display for SpanContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}:{:x}",
            self.trace_id,
            self.span_id,
            self.parent_span_id,
            self.written_flags()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_platform_example() {
        let c: SpanContext = "5f22f355044a957a:5708f3a95a4ed10:5f22f355044a957a:1"
            .parse()
            .unwrap();
        assert_eq!(c.trace_id, TraceId(0x5f22f355044a957a));
        assert_eq!(c.span_id, SpanId(0x5708f3a95a4ed10));
        assert_eq!(c.parent_span_id, SpanId(0x5f22f355044a957a));
        assert!(c.is_sampled());
        assert_eq!(
            c.to_string(),
            "5f22f355044a957a:05708f3a95a4ed10:5f22f355044a957a:1"
        );
    }

    #[test]
    fn writes_only_0_1_or_3() {
        let mut c: SpanContext = "A:B:0:ff".parse().unwrap();
        assert_eq!(
            c.to_string(),
            "000000000000000a:000000000000000b:0000000000000000:3"
        );
        c.flags = 4;
        assert!(c.to_string().ends_with(":0"));
        c.flags = 5;
        assert!(c.to_string().ends_with(":1"));
    }

    #[test]
    fn long_trace_ids_keep_their_high_half() {
        let c: SpanContext = "0102030405060708090a0b0c0d0e0f10:1:0:1".parse().unwrap();
        assert_eq!(c.trace_id.to_string(), "0102030405060708090a0b0c0d0e0f10");
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!("a:b:c".parse::<SpanContext>(), Err(ContextError::Parts(3)));
        assert_eq!(
            "a:b:c:d:e".parse::<SpanContext>(),
            Err(ContextError::Parts(5))
        );
        assert!(matches!(
            "g:b:0:1".parse::<SpanContext>(),
            Err(ContextError::TraceId(_))
        ));
        assert!(matches!(
            "a:b:0:zz".parse::<SpanContext>(),
            Err(ContextError::Flags(_))
        ));
        assert_eq!("0:b:0:1".parse::<SpanContext>(), Err(ContextError::Zero));
    }
}
