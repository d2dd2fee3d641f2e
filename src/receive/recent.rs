//! The strings of the last span's tags, by position, with the bytes they came from.
//!
//! A client writes its spans' tags in one order, so most keys (and many values) are the
//! same bytes as the tag at the same place in the span before: those are copied instead
//! of checked as UTF-8 and built again (`from_utf8` and building the string were ~5 % of
//! the daemon's CPU under the OTLP bench). Only inline strings are kept: copying a longer
//! one allocates as much as building it. The decoders (`otlp_wire`, `jaeger_thrift`)
//! own when to ask; this module only remembers.

use crate::model::Str;

/// Tag positions remembered: spans with more are decoded as usual past it.
const SLOTS: usize = 64;

#[derive(Default)]
pub struct Recent<'a> {
    slots: Vec<Slot<'a>>,
}

/// What was at one position: its key's bytes and string, and its value's (if a string).
#[derive(Default)]
pub struct Slot<'a> {
    pub key: Remembered<'a>,
    pub value: Remembered<'a>,
}

#[derive(Default)]
pub struct Remembered<'a>(Option<(&'a [u8], Str)>);

impl<'a> Recent<'a> {
    /// Tag positions seen so far (at most [`SLOTS`]): the most tags a span had, what the
    /// decoders make room for in the next span's list before reading it.
    pub fn positions(&self) -> usize {
        self.slots.len()
    }

    /// The slot of tag position `at`; `None` past [`SLOTS`].
    pub fn slot(&mut self, at: usize) -> Option<&mut Slot<'a>> {
        if at == self.slots.len() && at < SLOTS {
            self.slots.push(Slot::default());
        }
        self.slots.get_mut(at)
    }
}

impl<'a> Remembered<'a> {
    /// The string of `b` when it is the one remembered.
    pub fn get(&self, b: &[u8]) -> Option<Str> {
        match &self.0 {
            Some((seen, s)) if crate::short_eq::eq(seen, b) => Some(s.clone()),
            _ => None,
        }
    }

    /// Remember `s`, the string `b` holds.
    pub fn keep(&mut self, b: &'a [u8], s: &Str) {
        if !s.is_heap_allocated() {
            self.0 = Some((b, s.clone()));
        }
    }

    /// The string of `b`: remembered, or checked as UTF-8 and built (`None` if it is
    /// not UTF-8) and remembered.
    pub fn text(&mut self, b: &'a [u8]) -> Option<Str> {
        if let Some(s) = self.get(b) {
            return Some(s);
        }
        let s = Str::from(std::str::from_utf8(b).ok()?);
        self.keep(b, &s);
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_bytes_give_the_remembered_string_and_other_bytes_their_own() {
        let mut r = Recent::default();
        let slot = r.slot(0).unwrap();
        assert_eq!(
            slot.key.text(b"http.method").as_deref(),
            Some("http.method")
        );
        assert_eq!(slot.key.get(b"http.method").as_deref(), Some("http.method"));
        assert_eq!(slot.key.get(b"http.url"), None);
        assert_eq!(slot.key.text(b"http.url").as_deref(), Some("http.url"));
        assert_eq!(slot.key.get(b"http.method"), None, "replaced");
        // not UTF-8: refused, and what was remembered stays
        assert_eq!(slot.key.text(b"\xff"), None);
        assert_eq!(slot.key.get(b"http.url").as_deref(), Some("http.url"));
        // long strings are not kept
        let long = "x".repeat(100);
        assert_eq!(
            slot.value.text(long.as_bytes()).as_deref(),
            Some(long.as_str())
        );
        assert_eq!(slot.value.get(long.as_bytes()), None);
        // positions come in order; past the last one there is none
        assert!(r.slot(2).is_none());
        assert!(r.slot(1).is_some());
        for at in 2..SLOTS {
            assert!(r.slot(at).is_some());
        }
        assert!(r.slot(SLOTS).is_none());
        assert_eq!(r.positions(), SLOTS);
    }
}
