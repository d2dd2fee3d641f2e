//! Equality of short byte strings, inline, without a call into libc's `memcmp`.
//!
//! Tag keys and values are mostly under 32 bytes, and the ingest path compares them a
//! few times a span (the decoders' remembered strings, the encoder's repeated tags).
//! `[u8] == [u8]` calls `memcmp`, whose call and size dispatch cost more than such a
//! comparison: 3.8 % of the daemon's samples under the OTLP bench were in it
//! (BENCHMARKS.md). Up to 32 bytes this compares two overlapping words from each end;
//! longer strings go to `memcmp` as before.

/// Whether `a` and `b` hold the same bytes.
#[inline]
pub fn eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    match n {
        0 => true,
        // indexes 0, n/2 and n-1 cover every byte of 1 to 3
        1..=3 => a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1],
        4..=7 => ends::<4>(a, b, n),
        8..=16 => ends::<8>(a, b, n),
        17..=32 => ends::<16>(a, b, n),
        _ => a == b,
    }
}

/// Compare the first and the last `W` bytes of two strings of `n` bytes (`W <= n <= 2W`,
/// so the two words cover them all).
#[inline(always)]
fn ends<const W: usize>(a: &[u8], b: &[u8], n: usize) -> bool {
    word::<W>(a, 0) == word::<W>(b, 0) && word::<W>(a, n - W) == word::<W>(b, n - W)
}

#[inline(always)]
fn word<const W: usize>(s: &[u8], at: usize) -> [u8; W] {
    // the callers' lengths make the range whole; the fallback is never taken
    s.get(at..at + W)
        .and_then(|w| w.try_into().ok())
        .unwrap_or([0; W])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_slice_equality_for_every_length_and_differing_byte() {
        for n in 0..=40usize {
            let a: Vec<u8> = (0..n as u8).map(|i| i.wrapping_mul(7) ^ 0x5a).collect();
            assert!(eq(&a, &a.clone()), "length {n}");
            for at in 0..n {
                let mut b = a.clone();
                b[at] ^= 1;
                assert!(!eq(&a, &b), "length {n}, byte {at} differs");
            }
            let mut longer = a.clone();
            longer.push(0);
            assert!(
                !eq(&a, &longer) && !eq(&longer, &a),
                "length {n} against {}",
                n + 1
            );
        }
        assert!(eq(b"", b""));
        assert!(!eq(b"http.method", b"http.methoD"));
        assert!(eq(
            "héllo wörld, a tag value".as_bytes(),
            "héllo wörld, a tag value".as_bytes()
        ));
    }
}
