//! Go's renderings of the values that appear inside Kubernetes' selector errors: `%q` strings,
//! `%#v` string slices, `field.Error` and `errors.Aggregate`. Kept in one place so that every
//! message in this module is built the same way Kubernetes builds it.

use std::fmt::Write;

/// A string as Go's `%q` (`strconv.Quote`) prints it. Exact for ASCII; outside ASCII, Go's
/// `unicode.IsPrint` is approximated (controls and non-space whitespace are escaped), which only
/// matters for inputs that are invalid anyway.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_ascii() || (!c.is_control() && !c.is_whitespace()) => out.push(c),
            c if (c as u32) < 0x10000 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
    }
    out.push('"');
    out
}

/// A `[]string` as Go's `%#v` prints it. An empty list prints as the nil slice, because the only
/// empty lists that reach an error message in Kubernetes are nil (`append([]string(nil), …)`).
pub(crate) fn string_slice(values: &[String]) -> String {
    if values.is_empty() {
        return "[]string(nil)".to_string();
    }
    let quoted: Vec<String> = values.iter().map(|v| quote(v)).collect();
    format!("[]string{{{}}}", quoted.join(", "))
}

/// A `field.Invalid` error as its `Error()` prints it: `<path>: Invalid value: <value>: <detail>`.
/// `rendered_value` is already in Go's rendering (see [`quote`] and [`string_slice`]).
pub(crate) fn invalid(path: &str, rendered_value: &str, detail: &str) -> String {
    if detail.is_empty() {
        format!("{path}: Invalid value: {rendered_value}")
    } else {
        format!("{path}: Invalid value: {rendered_value}: {detail}")
    }
}

/// `field.ErrorList.ToAggregate().Error()`: duplicates dropped, one message bare, several joined
/// in brackets. `None` when there is nothing to report.
pub(crate) fn aggregate(messages: Vec<String>) -> Option<String> {
    let mut unique: Vec<String> = Vec::with_capacity(messages.len());
    for message in messages {
        if !unique.contains(&message) {
            unique.push(message);
        }
    }
    match unique.len() {
        0 => None,
        1 => unique.pop(),
        _ => Some(format!("[{}]", unique.join(", "))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_quoted_as_go_quotes_them() {
        let cases = [
            ("abc", r#""abc""#),
            ("", r#""""#),
            ("a\"b", r#""a\"b""#),
            ("a\\b", r#""a\\b""#),
            ("tab\there", r#""tab\there""#),
            ("nul\u{0}", r#""nul\x00""#),
            ("del\u{7f}", r#""del\x7f""#),
            ("héllo", r#""héllo""#),
            ("nbsp\u{a0}", r#""nbsp\u00a0""#),
        ];
        for (input, want) in cases {
            assert_eq!(quote(input), want, "quoting {input:?}");
        }
    }

    #[test]
    fn string_slices_print_as_go_sharp_v() {
        assert_eq!(string_slice(&[]), "[]string(nil)");
        assert_eq!(string_slice(&["a".into()]), r#"[]string{"a"}"#);
        assert_eq!(
            string_slice(&["a".into(), "b".into()]),
            r#"[]string{"a", "b"}"#
        );
    }

    #[test]
    fn aggregates_drop_duplicates_and_bracket_several() {
        assert_eq!(aggregate(vec![]), None);
        assert_eq!(aggregate(vec!["x".into()]), Some("x".into()));
        assert_eq!(aggregate(vec!["x".into(), "x".into()]), Some("x".into()));
        assert_eq!(
            aggregate(vec!["x".into(), "y".into(), "x".into()]),
            Some("[x, y]".into())
        );
    }
}
