//! A tiny writer for one-line JSON objects (no serde): `--json` prints one per line.

use std::fmt::Write as _;

/// Builds one JSON object, field by field, in insertion order.
///
/// ```text
/// Json::new().str("type", "batch").int("base_offset", 0).finish()
///   == {"type":"batch","base_offset":0}
/// ```
#[derive(Debug, Default)]
pub struct Json {
    out: String,
}

impl Json {
    pub fn new() -> Self {
        Json { out: "{".into() }
    }

    fn key(&mut self, key: &str) {
        if self.out.len() > 1 {
            self.out.push(',');
        }
        escape_into(&mut self.out, key);
        self.out.push(':');
    }

    pub fn str(mut self, key: &str, value: &str) -> Self {
        self.key(key);
        escape_into(&mut self.out, value);
        self
    }

    pub fn int(mut self, key: &str, value: impl Into<i128>) -> Self {
        self.key(key);
        let _ = write!(self.out, "{}", value.into());
        self
    }

    pub fn bool(mut self, key: &str, value: bool) -> Self {
        self.key(key);
        self.out.push_str(if value { "true" } else { "false" });
        self
    }

    /// A value that is already JSON (a nested object or array).
    pub fn raw(mut self, key: &str, json: &str) -> Self {
        self.key(key);
        self.out.push_str(json);
        self
    }

    pub fn finish(mut self) -> String {
        self.out.push('}');
        self.out
    }
}

/// A JSON array of strings.
pub fn str_array<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = String::from("[");
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        escape_into(&mut out, item);
    }
    out.push(']');
    out
}

/// Appends `s` as a quoted JSON string, escaping quotes, backslashes and control characters.
pub fn escape_into(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_strings() {
        let s = Json::new()
            .str("a\"b", "q\"\\\n\u{1}é")
            .int("n", -3i64)
            .bool("ok", true)
            .raw("xs", &str_array(["x", "y"]))
            .finish();
        assert_eq!(
            s,
            r#"{"a\"b":"q\"\\\n\u0001é","n":-3,"ok":true,"xs":["x","y"]}"#
        );
        assert_eq!(Json::new().finish(), "{}");
    }
}
