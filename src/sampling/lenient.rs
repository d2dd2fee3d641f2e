//! The two liberties the platforms' documented strategies files take with JSON: comments
//! (`//` to the end of the line, `/* … */`) and trailing commas before `}` or `]`.
//!
//! [`tolerate`] blanks them out with spaces (newlines kept), so the text is plain JSON
//! whose every other byte, and so every line and column serde_json reports, is where it
//! was; it says what it blanked, for a warning. Anything else that is not JSON is left for
//! serde_json to refuse. Strings are never touched.

/// The text with comments and trailing commas blanked, and what was blanked, by line.
pub fn tolerate(text: &str) -> (String, Vec<String>) {
    let b = text.as_bytes();
    let line_of = |at: usize| 1 + b[..at].iter().filter(|&&c| c == b'\n').count();
    let mut notes: Vec<(usize, String)> = Vec::new();
    // comments first, so a comma before one is seen as trailing
    let mut out = b.to_vec();
    walk(b, |i| match (b[i], b.get(i + 1)) {
        (b'/', Some(b'/')) => {
            let end = b[i..]
                .iter()
                .position(|&c| c == b'\n')
                .map_or(b.len(), |p| i + p);
            notes.push((i, format!("line {}: a // comment", line_of(i))));
            blank(&mut out[i..end]);
            end
        }
        // an unclosed comment is left for the parser to refuse
        (b'/', Some(b'*')) => match text[i + 2..].find("*/") {
            Some(p) => {
                let end = i + 2 + p + 2;
                notes.push((i, format!("line {}: a /* */ comment", line_of(i))));
                blank(&mut out[i..end]);
                end
            }
            None => i + 1,
        },
        _ => i + 1,
    });
    let commented = out.clone();
    walk(&commented, |i| {
        if commented[i] == b',' {
            let next = commented[i + 1..].iter().find(|c| !c.is_ascii_whitespace());
            if matches!(next, Some(b'}') | Some(b']')) {
                notes.push((i, format!("line {}: a trailing comma", line_of(i))));
                out[i] = b' ';
            }
        }
        i + 1
    });
    notes.sort_by_key(|n| n.0);
    // only ASCII bytes were replaced by spaces, so the text is still UTF-8
    (
        String::from_utf8(out).unwrap_or_else(|_| text.to_owned()),
        notes.into_iter().map(|n| n.1).collect(),
    )
}

fn blank(bytes: &mut [u8]) {
    for c in bytes {
        if *c != b'\n' {
            *c = b' ';
        }
    }
}

/// Call `f` at each byte outside strings; it returns where to go on from.
fn walk(b: &[u8], mut f: impl FnMut(usize) -> usize) {
    let (mut i, mut in_string) = (0, false);
    while i < b.len() {
        if in_string {
            match b[i] {
                b'\\' => i += 1,
                b'"' => in_string = false,
                _ => {}
            }
            i += 1;
        } else if b[i] == b'"' {
            in_string = true;
            i += 1;
        } else {
            i = f(i).max(i + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::tolerate;

    #[test]
    fn comments_and_trailing_commas_are_blanked_in_place() {
        let text = "{\"a\": 1, // one\n \"b\": [1, 2,], /* x */ \"c\": \"//, not a comment,}\", // last\n}";
        let (clean, notes) = tolerate(text);
        let v: serde_json::Value = serde_json::from_str(&clean).unwrap();
        assert_eq!(v["c"], "//, not a comment,}");
        assert_eq!(v["b"], serde_json::json!([1, 2]));
        assert_eq!(clean.len(), text.len());
        assert_eq!(
            notes,
            [
                "line 1: a // comment",
                "line 2: a trailing comma",
                "line 2: a /* */ comment",
                "line 2: a trailing comma",
                "line 2: a // comment"
            ]
        );
        // what is still not JSON is refused where it is
        let (clean, _) = tolerate("{\n  \"a\": 1,\n  'b': 2\n}");
        let e = serde_json::from_str::<serde_json::Value>(&clean).unwrap_err();
        assert_eq!((e.line(), e.column()), (3, 3));
    }
}
