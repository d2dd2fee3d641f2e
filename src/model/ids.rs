//! Trace and span ids and their hex forms.
//!
//! Jaeger writes a trace id as 16 hex digits when its high half is zero and as 32 otherwise;
//! span ids always as 16. Clients in the wild drop leading zeros or use upper case, so
//! parsing takes 1..=32 (or 1..=16) hex digits of either case.

use std::fmt;

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum IdError {
    #[error("id is empty")]
    Empty,
    #[error("id {0:?} is longer than {1} hex digits")]
    TooLong(String, usize),
    #[error("id {0:?} is not hexadecimal")]
    NotHex(String),
}

fn parse_hex(s: &str, max_digits: usize) -> Result<u128, IdError> {
    if s.is_empty() {
        return Err(IdError::Empty);
    }
    if s.len() > max_digits {
        return Err(IdError::TooLong(truncate(s), max_digits));
    }
    u128::from_str_radix(s, 16)
        .map_err(|_| IdError::NotHex(truncate(s)))
        .and_then(|v| {
            // from_str_radix accepts a leading '+'; an id never has one.
            if s.starts_with('+') {
                Err(IdError::NotHex(truncate(s)))
            } else {
                Ok(v)
            }
        })
}

/// Ids come from untrusted input: keep error messages short.
fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct TraceId(pub u128);

impl TraceId {
    pub fn from_parts(high: u64, low: u64) -> Self {
        TraceId(((high as u128) << 64) | low as u128)
    }
    pub fn high(self) -> u64 {
        (self.0 >> 64) as u64
    }
    pub fn low(self) -> u64 {
        self.0 as u64
    }
    pub fn from_hex(s: &str) -> Result<Self, IdError> {
        parse_hex(s, 32).map(TraceId)
    }
    pub fn to_bytes(self) -> [u8; 16] {
        self.0.to_be_bytes()
    }
    pub fn from_bytes(b: [u8; 16]) -> Self {
        TraceId(u128::from_be_bytes(b))
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.high() == 0 {
            write!(f, "{:016x}", self.low())
        } else {
            write!(f, "{:032x}", self.0)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct SpanId(pub u64);

impl SpanId {
    pub fn from_hex(s: &str) -> Result<Self, IdError> {
        parse_hex(s, 16).map(|v| SpanId(v as u64))
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_id_formats_like_jaeger() {
        assert_eq!(TraceId(0x5f22f355044a957a).to_string(), "5f22f355044a957a");
        assert_eq!(TraceId(0xab).to_string(), "00000000000000ab");
        let t = TraceId::from_parts(1, 2);
        assert_eq!(t.to_string(), "00000000000000010000000000000002");
    }

    #[test]
    fn parses_short_long_and_upper_case() {
        assert_eq!(TraceId::from_hex("AB").unwrap(), TraceId(0xab));
        assert_eq!(
            TraceId::from_hex("0000000000000000124ed43254b54966").unwrap(),
            TraceId(0x124ed43254b54966)
        );
        assert_eq!(
            SpanId::from_hex("5708f3a95a4ed10").unwrap(),
            SpanId(0x05708f3a95a4ed10)
        );
        assert_eq!(TraceId::from_hex(""), Err(IdError::Empty));
        assert!(matches!(TraceId::from_hex("+1"), Err(IdError::NotHex(_))));
        assert!(matches!(TraceId::from_hex("xyz"), Err(IdError::NotHex(_))));
        assert!(matches!(
            SpanId::from_hex("11112222333344445"),
            Err(IdError::TooLong(..))
        ));
        assert!(matches!(
            TraceId::from_hex(&"1".repeat(33)),
            Err(IdError::TooLong(..))
        ));
    }
}
