//! The recursion guard's count: how many times one call chain has passed through a
//! function, carried in the trace's baggage (`fc.recursion.<hash of the function>`) that
//! SDKs and the platform's own headers pass from call to call, as Lambda carries it in its
//! trace header. This module reads and bumps the count; `Platform::invoke_as` stops a call
//! over the function's `max_recursion_depth`.

/// The baggage key of `function`'s count (a hash: baggage keys are tokens, function names
/// need not be).
fn key(function: &str) -> String {
    format!(
        "fc.recursion.{:016x}",
        xxhash_rust::xxh3::xxh3_64(function.as_bytes())
    )
}

/// The depth of this call (the count the caller's baggage carried, plus one), written
/// back into `baggage` for the function to pass on. A count that does not parse counts as
/// none.
pub fn depth(baggage: &mut Vec<(String, String)>, function: &str) -> u32 {
    let key = key(function);
    let depth = match baggage.iter_mut().find(|(k, _)| *k == key) {
        Some((_, v)) => {
            let d = v.trim().parse::<u32>().unwrap_or(0).saturating_add(1);
            *v = d.to_string();
            d
        }
        None => {
            baggage.push((key, "1".into()));
            1
        }
    };
    depth
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_pass_adds_one_for_its_own_function_only() {
        let mut b = Vec::new();
        assert_eq!(depth(&mut b, "FC:a/f"), 1);
        assert_eq!(depth(&mut b, "FC:a/f"), 2);
        assert_eq!(depth(&mut b, "FC:a/g"), 1);
        assert_eq!(depth(&mut b, "FC:a/f"), 3);
        assert_eq!(b.len(), 2);
        let mut junk = vec![(key("FC:a/f"), "lots".to_owned())];
        assert_eq!(depth(&mut junk, "FC:a/f"), 1);
    }
}
